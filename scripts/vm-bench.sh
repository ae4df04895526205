#!/usr/bin/env bash
# Runs the kernel benches (connect, exec, stratum_send) with the lsm backend
# inside the VM of scripts/vm-test.sh (Debian 12's 6.1 kernel with BPF LSM,
# or MINERGUARD_VM_KERNEL=6.12; QEMU without KVM). The CPU is emulated: only
# the ratios of the interleaved SUMMARY lines mean anything, and only against
# the unhooked baseline of the same VM run. Usage: scripts/vm-bench.sh
# [bench...]; output in target/vm-bench-<series>/<bench>.log, SUMMARY lines
# printed at the end. The pseudo-bench `apps` runs scripts/bench-apps.sh in
# the guest (the release minerguard, on the lsm backend) with the arguments
# in MINERGUARD_VM_APPS_ARGS (default: `--rounds 3 --requests 2000 --only
# "ab-close ab-server" --profiles "default default-nostratum"`); it needs
# nginx and ab on the host (the guest runs the host's root filesystem).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
series=${MINERGUARD_VM_KERNEL:-6.1}
out=$root/target/vm-bench-$series
lsm="lockdown,capability,landlock,bpf"
benches=("$@")
[ "${#benches[@]}" -gt 0 ] || benches=(connect exec stratum_send)

die() { echo "vm-bench: $*" >&2; exit 1; }

kernel=$(ls -1 "/boot/vmlinuz-$series".* 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$kernel" ] || die "no /boot/vmlinuz-$series.* (scripts/install-deps.sh installs Debian 12's 6.1 and 6.12 kernels)"
PATH=$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
command -v vng >/dev/null || die "vng not found (pip install virtme-ng)"

rm -rf "$out" && mkdir -p "$out/bin"
# Words as the guest's shell will read them (quotes kept).
apps_args='--rounds 3 --requests 2000 --only "ab-close ab-server" --profiles "default default-nostratum"'
apps_args=${MINERGUARD_VM_APPS_ARGS:-$apps_args}
for b in "${benches[@]}"; do
    if [ "$b" = apps ]; then
        echo "vm-bench: building minerguard (release) for apps"
        cargo build --quiet --release --bin minerguard
        cp target/release/minerguard "$out/bin/minerguard"
        continue
    fi
    echo "vm-bench: building $b"
    exe=$(cargo bench --no-run --message-format=json --bench "$b" 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])
' | tail -n 1)
    [ -n "$exe" ] || die "bench $b did not build"
    # A copy: a build on the host while the VM runs must not swap it.
    cp "$exe" "$out/bin/$b"
done

guest=$out/guest.sh
{
    echo '#!/bin/sh'
    echo "cd $root"
    # Criterion keeps its reports under target/, read-only in the guest.
    echo "export CRITERION_HOME=$out/criterion"
    echo "echo \"guest: kernel \$(uname -r), lsm=\$(cat /sys/kernel/security/lsm)\""
    for b in "${benches[@]}"; do
        if [ "$b" = apps ]; then
            echo "MINERGUARD_BIN=$out/bin/minerguard MG_BENCH_DIR=$out/apps bash scripts/bench-apps.sh $apps_args > $out/apps.log 2>&1; echo \"apps \$?\" >> $out/status"
            continue
        fi
        # Short criterion phases: the SUMMARY rounds carry the ratios.
        echo "MINERGUARD_BENCH_ROUNDS=\${MINERGUARD_BENCH_ROUNDS:-5} $out/bin/$b --bench --warm-up-time 0.3 --measurement-time 1 --sample-size 10 > $out/$b.log 2>&1; echo \"$b \$?\" >> $out/status"
    done
    echo "echo done >> $out/status"
} > "$guest"
chmod +x "$guest"

echo "vm-bench: booting $(basename "$kernel") with lsm=$lsm (QEMU, no KVM)"
start=$(date +%s)
set +e
timeout 2400 vng --run "$kernel" --disable-kvm --memory 2G --cpus 2 \
    --append "lsm=$lsm" --rwdir "$out" --exec "$guest" > "$out/console.log" 2>&1
set -e
echo "vm-bench: VM ran $(( $(date +%s) - start )) s"
grep -qx done "$out/status" 2>/dev/null || die "the benches did not run to the end (see $out/console.log)"
rc=0
for b in "${benches[@]}"; do
    status=$(awk -v n="$b" '$1 == n { print $2 }' "$out/status")
    echo "== $b (exit $status)"
    if [ "$b" = apps ]; then
        grep -E "^\|" "$out/apps.log" || tail -n 5 "$out/apps.log"
    else
        grep -E "^SUMMARY|backend" "$out/$b.log" || true
    fi
    [ "$status" = 0 ] || rc=1
done
exit $rc
