#!/usr/bin/env bash
# What each of the enforcer's cgroup programs costs per run, on a loop of
# loopback connects (connect + accept + close) run under a profile:
#   scripts/prog-costs.sh [profile.yaml] [connects]
# The enforcer runs the loop in a fresh cgroup of its own (`minerguard run`);
# the kernel's BPF run-time statistics (kernel.bpf_stats_enabled, restored on
# exit) are read with bpftool for exactly the programs attached to that
# cgroup. The statistics themselves add two clock reads per run (≈20-40 ns),
# so the figures are upper bounds. Needs root and bpftool.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-profiles/default.yaml}
connects=${2:-20000}

command -v bpftool >/dev/null || { echo "prog-costs: bpftool not found (apt-get install bpftool)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "prog-costs: needs root" >&2; exit 1; }

cargo build --release -p minerguard-cli >&2
inner=$(mktemp /tmp/prog-costs.XXXXXX.py)
before=$(sysctl -n kernel.bpf_stats_enabled)
trap 'sysctl -qw kernel.bpf_stats_enabled="$before"; rm -f "$inner"' EXIT
sysctl -qw kernel.bpf_stats_enabled=1
cat > "$inner" <<'EOF'
import json, socket, subprocess, sys, time

connects = int(sys.argv[1])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1024)
addr = srv.getsockname()
start = time.perf_counter()
for _ in range(connects):
    c = socket.socket()
    c.connect(addr)
    a, _ = srv.accept()
    a.close()
    c.close()
took = time.perf_counter() - start

# This process's cgroup, under the cgroup2 mount of /proc/self/mountinfo.
mount = next(l.split()[4] for l in open("/proc/self/mountinfo")
             if l.split(" - ")[1].split()[0] == "cgroup2")
cgroup = mount + open("/proc/self/cgroup").read().strip().split("::", 1)[1]
attached = json.loads(subprocess.check_output(["bpftool", "-j", "cgroup", "show", cgroup]))
print(f"{connects} connect+accept+close in {took:.2f} s under the profile; cgroup {cgroup}")
print(f"{'program':<18} {'attach type':<16} {'runs':>9} {'runs/connect':>12} {'ns/run':>8} {'ns/connect':>10}")
for prog in attached:
    info = json.loads(subprocess.check_output(["bpftool", "-j", "prog", "show", "id", str(prog["id"])]))
    runs, ns = info.get("run_cnt", 0), info.get("run_time_ns", 0)
    per_run = ns / runs if runs else 0.0
    print(f"{info['name']:<18} {prog['attach_type']:<16} {runs:>9} {runs / connects:>12.2f} "
          f"{per_run:>8.0f} {ns / connects:>10.0f}")
EOF
target/release/minerguard run --profile "$profile" -- python3 "$inner" "$connects"
