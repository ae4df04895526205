#!/usr/bin/env bash
# What each cgroup program costs per run and per connection, on a loop of
# loopback connections (connect + accept + close) made in a scope:
#   scripts/prog-costs.sh [--request] [--stratum-judge sk-msg|egress] [profile.yaml] [connects]
#   scripts/prog-costs.sh [--request] --egress PROGRAM [connects]
# --request   each connection also carries an 83-byte HTTP GET (client to
#             server) and a 102-byte reply: what a short-lived HTTP
#             connection gives a Stratum judge to read (both sockets are in
#             the scope, so both directions are judged)
# --stratum-judge J  the cgroup backend's Stratum judge (`minerguard run
#             --stratum-judge`)
# --egress P  instead of minerguard, attach program P of
#             benches/bpf/egress_cost.bpf.c (egress_empty, egress_lookup)
#             to a fresh cgroup of the script's own: what a judge costs per
#             packet before it reads anything (#25)
# Without --egress the enforcer runs the loop in a fresh cgroup of its own
# (`minerguard run`). The kernel's BPF run-time statistics
# (kernel.bpf_stats_enabled, restored on exit) are read with bpftool for
# exactly the programs attached to that cgroup. The statistics themselves
# add two clock reads per run (≈20-40 ns), so the figures are upper bounds.
# MINERGUARD_BIN=path runs that minerguard binary instead of building
# target/release/minerguard (to compare two builds in one session).
# Needs root, bpftool (and clang for --egress).
set -euo pipefail
cd "$(dirname "$0")/.."

request=0
egress=""
judge=egress
while [ $# -gt 0 ]; do
    case $1 in
        --request) request=1; shift ;;
        --egress) egress=$2; shift 2 ;;
        --stratum-judge) judge=$2; shift 2 ;;
        -*) echo "prog-costs: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
if [ -n "$egress" ]; then
    profile=""
    connects=${1:-20000}
else
    profile=${1:-profiles/default.yaml}
    connects=${2:-20000}
fi

command -v bpftool >/dev/null || { echo "prog-costs: bpftool not found (apt-get install bpftool)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "prog-costs: needs root" >&2; exit 1; }

bin=${MINERGUARD_BIN:-target/release/minerguard}
[ -n "$egress" ] || [ -n "${MINERGUARD_BIN:-}" ] || cargo build --release -p minerguard-cli >&2
inner=$(mktemp /tmp/prog-costs.XXXXXX.py)
before=$(sysctl -n kernel.bpf_stats_enabled)
cgroup=""
# bpffs takes no dots in names.
pins=/sys/fs/bpf/mg-prog-costs-$$
cleanup() {
    sysctl -qw kernel.bpf_stats_enabled="$before"
    rm -f "$inner"
    [ -z "$cgroup" ] || rmdir "$cgroup" 2>/dev/null || true
    rm -rf "$pins"
}
trap cleanup EXIT
cat > "$inner" <<'EOF'
import json, socket, subprocess, sys, time

connects, request = int(sys.argv[1]), sys.argv[2] == "1"
get = b"GET /index.html HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: prog-costs\r\nAccept: */*\r\n\r\n"
reply = b"HTTP/1.0 200 OK\r\nServer: prog-costs\r\nContent-Type: text/html\r\nContent-Length: 19\r\n\r\n<html>hello</html>\n"
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1024)
addr = srv.getsockname()
start = time.perf_counter()
for _ in range(connects):
    c = socket.socket()
    c.connect(addr)
    a, _ = srv.accept()
    if request:
        c.sendall(get)
        got = b""
        while len(got) < len(get):
            got += a.recv(4096)
        a.sendall(reply)
        got = b""
        while len(got) < len(reply):
            got += c.recv(4096)
    a.close()
    c.close()
took = time.perf_counter() - start

# This process's cgroup, under the cgroup2 mount of /proc/self/mountinfo.
mount = next(l.split()[4] for l in open("/proc/self/mountinfo")
             if l.split(" - ")[1].split()[0] == "cgroup2")
cgroup = mount + open("/proc/self/cgroup").read().strip().split("::", 1)[1]
attached = json.loads(subprocess.check_output(["bpftool", "-j", "cgroup", "show", cgroup]))
what = "connect+accept+" + ("request+reply+" if request else "") + "close"
print(f"{connects} {what} in {took:.2f} s in the scope; cgroup {cgroup}")
print(f"{'program':<18} {'attach type':<16} {'runs':>9} {'runs/connect':>12} {'ns/run':>8} {'ns/connect':>10}")
# The sk_msg verdict hangs off the sockhash, not the cgroup: every sk_msg
# program loaded (run this on a machine with no other enforcer).
progs = [(p["id"], p["attach_type"]) for p in attached]
progs += [(p["id"], "sk_msg (sockhash)")
          for p in json.loads(subprocess.check_output(["bpftool", "-j", "prog", "show"]))
          if p.get("type") == "sk_msg"]
total = 0
for prog_id, attach_type in progs:
    info = json.loads(subprocess.check_output(["bpftool", "-j", "prog", "show", "id", str(prog_id)]))
    runs, ns = info.get("run_cnt", 0), info.get("run_time_ns", 0)
    per_run = ns / runs if runs else 0.0
    total += ns
    print(f"{info['name']:<18} {attach_type:<16} {runs:>9} {runs / connects:>12.2f} "
          f"{per_run:>8.0f} {ns / connects:>10.0f}")
print(f"{'all':<18} {'':<16} {'':>9} {'':>12} {'':>8} {total / connects:>10.0f}")
EOF

if [ -z "$egress" ]; then
    sysctl -qw kernel.bpf_stats_enabled=1
    "$bin" run --stratum-judge "$judge" --profile "$profile" -- python3 "$inner" "$connects" "$request"
    exit 0
fi

# A bare cgroup with one program of egress_cost.bpf.c on egress.
# libbpf's headers, from whichever build of libbpf-sys there is.
inc=$(ls -d target/*/build/libbpf-sys-*/out/include 2>/dev/null | head -n 1)
[ -n "$inc" ] || { echo "prog-costs: no libbpf headers under target/ (cargo build first)" >&2; exit 1; }
obj=$(mktemp /tmp/prog-costs.XXXXXX.o)
clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -Ibpf/include -I"$inc" \
    -c benches/bpf/egress_cost.bpf.c -o "$obj"
mkdir "$pins"
[ "$(stat -f -c %T "$pins")" = bpf_fs ] || { echo "prog-costs: $pins is not on a BPF filesystem" >&2; exit 1; }
# --nomount: bpftool mounts a BPF filesystem where a pin path is not on
# one; never let it.
bpftool --nomount prog loadall "$obj" "$pins/progs" type cgroup/skb
rm -f "$obj"
[ -e "$pins/progs/$egress" ] || { echo "prog-costs: no program $egress in egress_cost.bpf.c" >&2; exit 1; }
cgroup=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)/mg-prog-costs-$$
mkdir "$cgroup"
bpftool --nomount cgroup attach "$cgroup" egress pinned "$pins/progs/$egress"
sysctl -qw kernel.bpf_stats_enabled=1
bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' _ "$cgroup" python3 "$inner" "$connects" "$request"
