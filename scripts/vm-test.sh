#!/usr/bin/env bash
# Runs the kernel integration tests with the lsm backend inside a VM whose
# kernel has BPF LSM enabled: one of Debian 12's kernels booted by virtme-ng
# under QEMU (software emulation: nested KVM crashes on our hosts), sharing
# this filesystem, so the test binaries built here run there. One boot for
# the whole suite. Fails when the VM does not boot or the suite does not run.
#
# Environment:
#   MINERGUARD_VM_KERNEL       kernel series to boot (default 6.1, Debian 12's
#                              own; 6.12 is in bookworm-security too)
#   MINERGUARD_VM_TESTS        test binaries run with the lsm backend
#                              (default: kernel cli capi)
#   MINERGUARD_VM_CGROUP_TESTS test binaries run with the cgroup backend too
#                              (default: kernel; empty for none)
#   MINERGUARD_VM_CGROUP_SKIP  test-name filters the cgroup-backend runs
#                              leave out, each passed as `--skip FILTER`
#                              (default: `exec_rules:: stratum`: the kernel
#                              binary's exec_rules and Stratum tests, which
#                              run natively with the cgroup backend; the
#                              Stratum ones twice stopped making progress in
#                              the 6.1 VM with the cgroup backend, with the
#                              guest's CPUs busy (#19's note). Empty:
#                              nothing skipped)
#   MINERGUARD_VM_CGROUP_FILTER
#                              test-name filters the cgroup-backend runs keep
#                              (default: the tests whose kernel side differs
#                              on an old kernel: kill fallbacks without
#                              bpf_send_signal, the kernel's proc reads, the
#                              tracepoint exec and clone guards, the probe, and
#                              every bundled profile loading; one test per
#                              program, not every case of each: the whole
#                              kernel binary runs natively on the cgroup
#                              backend, and each test here costs 8-28 s.
#                              Empty: every test. Ignored when
#                              MINERGUARD_VM_FILTER is set)
#   MINERGUARD_VM_OWN_FILTER   test-name filters of a second lsm run of the
#                              kernel binary with MINERGUARD_TEST_OWN_COPIES=1
#                              (the lsm Stratum judge reads every send in a
#                              copy of its thread's own, the path taken when
#                              every spare copy is in use; see
#                              bpf/lsm_stratum.bpf.c), one test at a time.
#                              Default: two Stratum tests, mining and clean.
#                              Empty: no such run
#   MINERGUARD_VM_APPEND       extra guest kernel command line (e.g.
#                              "softlockup_panic=1 ignore_loglevel")
#   MINERGUARD_VM_FILTER       test-name filters passed to every binary
#                              (default: none, every test runs)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
series=${MINERGUARD_VM_KERNEL:-6.1}
lsm_tests=${MINERGUARD_VM_TESTS-kernel cli capi}
cgroup_tests=${MINERGUARD_VM_CGROUP_TESTS-kernel}
cgroup_skip=${MINERGUARD_VM_CGROUP_SKIP-exec_rules:: stratum}
cgroup_filter=${MINERGUARD_VM_CGROUP_FILTER-connect::kill_on_connect exec::miner_exec exec::fileless identity::exec_event identity::connect_event kill_container::exec_kill_container kill_container::connect_kill_container scope_escape::a_task_moving_itself_out scope_escape::a_clone_into_another_cgroup lifecycle::probe workloads::each_bundled_profile}
filter=${MINERGUARD_VM_FILTER:-}
own_filter=${MINERGUARD_VM_OWN_FILTER-stratum_evasions::every_mining_method_is_refused stratum_evasions::clean_traffic_passes_untouched}
# Userspace-only tests (see below): the C API's contract without a kernel,
# struct layouts, the header as C++, handle races, seccomp exports, the
# contract under valgrind, and the behaviour detector (it reads only /proc;
# its test has a real XMRig hash for a window), and the C contract under the
# leak sanitizer (a userspace leak check: over 60 s under emulation).
userspace_only="c_contract_checks_pass_without_a_kernel c_and_rust_agree_on_struct_layouts header_compiles_as_cpp_too rust_callers_get_the_same_contract freeing_while_other_threads seccomp_exports_match_the_library seccomp_without_a_seccomp_rule c_contract_leaks_nothing_under_valgrind behaviour_detector_through_the_c_api c_contract_with_an_enforcer_leaks_nothing_under_leak_sanitizer"
# CLI tests whose kernel side on lsm the kernel binary already proves (exec
# events in learn mode, exec refusals): what they add is the CLI's own
# userspace (writing the learned profile, scans and the behaviour detector
# reading /proc, installing the seccomp filter), the same on either backend
# and run natively. The behaviour test has XMRig hash for a window.
userspace_only+=" learn_writes_an_allow_only_profile_that_run_enforces watch_kills_a_miner_by_behaviour_and_reports_why run_installs_the_profiles_filter_in_the_command scan_kills_what_ran_before_reports_it_as_events_and_exits_1 watch_scans_what_ran_before_it_applied"
out=$root/target/vm-test-$series
lsm="lockdown,capability,landlock,bpf"

die() { echo "vm-test: $*" >&2; exit 1; }

kernel=$(ls -1 "/boot/vmlinuz-$series".* 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$kernel" ] || die "no /boot/vmlinuz-$series.* (scripts/install-deps.sh installs Debian 12's 6.1 and 6.12 kernels)"
# pip may have put vng where PATH does not look (e.g. a pyenv version dir).
PATH=$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
command -v vng >/dev/null || die "vng not found (pip install virtme-ng)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"

echo "vm-test: building test binaries"
# The build of `cargo test --workspace` (every test target), whatever
# binaries are picked: scripts/test.sh's build, reused as it is. Picking
# targets with --test, or leaving out --workspace, resolves other features
# (dev-dependencies of the packages whose tests are left out) and builds
# every binary again (≈3 min). `cli` is the minerguard-cli package's test;
# its build includes the `minerguard` binary it runs.
mapfile -t bins < <(cargo test --workspace --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
wanted = sys.argv[1].split()
for line in sys.stdin:
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m.get("executable")
            and "test" in m["target"]["kind"] and m["target"]["name"] in wanted):
        print(m["executable"])
' "$lsm_tests")
n=$(wc -w <<<"$lsm_tests")
[ "${#bins[@]}" -eq "$n" ] || die "expected $n test binaries ($lsm_tests), found ${#bins[@]}"

rm -rf "$out" && mkdir -p "$out"
# Each run: "<backend> <test binary>". The lsm backend is the point of the
# VM; the cgroup backend runs too, to prove it (and its fallbacks, e.g. no
# bpf_send_signal in cgroup programs on 6.1) on the oldest kernel we support.
runs=()
for b in "${bins[@]}"; do runs+=("lsm $b"); done
if [ -n "$own_filter" ]; then
    for b in "${bins[@]}"; do
        case $(basename "$b") in kernel-*) runs+=("lsm-own $b") ;; esac
    done
fi
for b in "${bins[@]}"; do
    for t in $cgroup_tests; do
        case $(basename "$b") in "$t"-*) runs+=("cgroup $b") ;; esac
    done
done

# Per test binary: past this many seconds it is stopped and its log says
# where its tasks wait (scripts/vm-guest.sh); the other binaries still run.
# 900: the kernel binary (every kernel test but the CLI's and the C API's,
# one binary since the enforcement and exec_rules tests were merged) takes
# about 230 + 45 s on lsm in the emulated VM; 600 would leave too little
# margin for a slow host.
limit=${MINERGUARD_VM_BINARY_LIMIT:-900}
# Test threads of the library's binaries (kernel, capi) in the guest. More
# than its 2 CPUs: a test also waits (RCU grace periods as links and maps
# go, child processes), and 3 threads ran 8 kernel tests in 35-38 s where 2
# took 40-48 s. The CLI's binary keeps 2: each of its tests starts
# minerguard processes that each load the programs, under pin deadlines.
threads=${MINERGUARD_VM_THREADS:-3}
# Extra kernel command line (e.g. "softlockup_panic=1 ignore_loglevel" when
# hunting a guest that stops making progress).
append=${MINERGUARD_VM_APPEND:-}
guest=$out/guest.sh
# The guest sees /var/cache as its own: it gets the cached XMRig (the
# stratum evasion tests run it) through the shared output directory.
xmrig=${MINERGUARD_XMRIG:-/var/cache/minerguard-test/xmrig-6.16.0/xmrig}
if [ -x "$xmrig" ]; then
    cp "$xmrig" "$out/xmrig"
fi
{
    echo '#!/bin/bash'
    echo "export RUST_BACKTRACE=1"
    # The guest's init leaves the soft descriptor limit at 1,024; three
    # test threads, each holding an enforcer of a few hundred descriptors
    # (two in the restart tests), ran out once (EMFILE loading lsm_mmap).
    echo "ulimit -n \$(ulimit -Hn)"
    # The guest sees this tree read-only but for $out: tests that place
    # programs outside the scratch directories put them here.
    echo "export MINERGUARD_TEST_PLAIN_DIR=$out/plain; mkdir -p $out/plain"
    # Each watch start loads the lsm programs under an emulated CPU (≈30 s
    # beside a busy host): three restarts prove the adoption repeats.
    echo "export MINERGUARD_RESTART_CYCLES=${MINERGUARD_RESTART_CYCLES:-3}"
    [ -x "$out/xmrig" ] && echo "export MINERGUARD_XMRIG=$out/xmrig"
    echo ". $root/scripts/vm-guest.sh"
    echo "echo \"guest: kernel \$(uname -r), lsm=\$(cat /sys/kernel/security/lsm 2>/dev/null || echo unknown)\""
    for run in "${runs[@]}"; do
        read -r backend b <<<"$run"
        name=$backend-$(basename "$b")
        log="$out/$name.log"
        echo "echo \"guest: $(basename "$b") with the $backend backend\""
        # The binary's test-name arguments: the filters, and for the cgroup
        # backend a --skip per MINERGUARD_VM_CGROUP_SKIP entry.
        read -ra targs <<<"$filter"
        [ "$backend" != lsm-own ] || read -ra targs <<<"$own_filter"
        # Real-runtime tests (podman) need the host's container storage,
        # which the guest cannot write: they run natively.
        targs+=(--skip containers::)
        # Tests with nothing of the kernel in them run natively only: the
        # same code, many times slower under emulation (valgrind above all).
        for skip in $userspace_only; do targs+=(--skip "$skip"); done
        if [ "$backend" = cgroup ]; then
            # Only without a general filter: test filters are
            # alternatives, so both together would widen a targeted run.
            if [ -z "$filter" ] && [ -n "$cgroup_filter" ]; then
                read -ra targs <<<"$cgroup_filter"
                targs+=(--skip containers::)
                for skip in $userspace_only; do targs+=(--skip "$skip"); done
            fi
            read -ra skips <<<"$cgroup_skip"
            for skip in "${skips[@]}"; do targs+=(--skip "$skip"); done
        fi
        # The own-copy run takes one test at a time: before Linux 6.2 a
        # thread's create of its own copy fails while another test's
        # sender is inside a task-storage helper on that CPU (what the
        # spare copies are for), and such a send is refused.
        if [ "$backend" = lsm-own ]; then
            targs+=(--test-threads=1)
        else
            case $(basename "$b") in kernel-* | capi-*) targs+=("--test-threads=$threads") ;; esac
        fi
        # A second boot (see below) runs only what the first did not finish.
        echo "if ! grep -q '^$name ' $out/status 2>/dev/null; then"
        echo "s=\$(date +%s); run_one $backend $b $log $limit ${targs[*]@Q}; echo \"$name \$?\" >> $out/status"
        echo "cat $log; echo \"guest: $name took \$((\$(date +%s) - s)) s\""
        echo "fi"
    done
    echo "echo done >> $out/status"
} >"$guest"
chmod +x "$guest"

# The emulated guest has, now and then, stopped making progress altogether
# (its CPUs busy, no test output, not even the in-guest time limit firing):
# twice in one day's CI runs, in different binaries, never reproduced by
# running them again. A watchdog stops a guest whose output directory has
# not changed for $stall seconds (past the in-guest limit of one binary,
# which names a hung test); the suite then boots once more and runs
# what did not finish (each binary's runs are recorded in $out/status).
stall=${MINERGUARD_VM_STALL_SECONDS:-960}
boot() {
    echo "vm-test: booting $(basename "$kernel") with lsm=$lsm (QEMU, no KVM; takes a minute)"
    local start watchdog
    start=$(date +%s)
    (
        while sleep 30; do
            newest=$(find "$out" -newermt "-$stall seconds" -print -quit 2>/dev/null)
            if [ -z "$newest" ]; then
                echo "vm-test: no output from the guest for $stall s: stopping it"
                pkill -KILL -f "qemu-system-x86_64 -name virtme-ng" || true
                exit 0
            fi
        done
    ) &
    watchdog=$!
    set +e
    timeout 1800 vng --run "$kernel" --disable-kvm --memory 2G --cpus 2 \
        --append "lsm=$lsm $append" --rwdir "$out" --exec "$guest" 2>&1 | tee -a "$out/console.log"
    vng_rc=${PIPESTATUS[0]}
    set -e
    kill "$watchdog" 2>/dev/null || true
    wait "$watchdog" 2>/dev/null || true
    echo "vm-test: VM exited with $vng_rc after $(( $(date +%s) - start )) s"
}
finished() { [ -f "$out/status" ] && grep -qx done "$out/status"; }
boot
if ! finished; then
    echo "vm-test: the suite did not finish in the first boot; booting again for the runs left (done so far: $(cut -d' ' -f1 "$out/status" 2>/dev/null | tr '\n' ' '))"
    # The run that was under way when the guest stopped starts over.
    boot
fi

if ! finished; then
    # Show where the unfinished binary was (its log is not in the console).
    last=$(ls -t "$out"/*.log 2>/dev/null | grep -v console.log | head -n 1 || true)
    [ -z "$last" ] || { echo "vm-test: last lines of $last:"; tail -n 60 "$last"; }
    die "the suite did not run to the end inside the VM (see $out/console.log)"
fi

passed=0 failed=0 bad=0
for run in "${runs[@]}"; do
    read -r backend b <<<"$run"
    name=$backend-$(basename "$b")
    rc=$(awk -v n="$name" '$1 == n { print $2 }' "$out/status")
    result=$(grep -E '^test result:' "$out/$name.log" | tail -n 1 || true)
    [ -n "$result" ] || { echo "vm-test: $name printed no test result"; bad=1; continue; }
    p=$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$result")
    f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$result")
    echo "vm-test: $backend backend, $(basename "$b"): $p passed, $f failed"
    passed=$((passed + p)) failed=$((failed + f))
    [ "$rc" = 0 ] || bad=1
done
[ "$passed" -gt 0 ] || bad=1
[ "$bad" = 0 ] && [ "$failed" = 0 ] || die "VM suite failed ($passed passed, $failed failed)"
echo "vm-test: all suites ran in $(basename "$kernel")"
echo "lsm-vm ($series): $passed passed, $failed failed"
