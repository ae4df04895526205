#!/usr/bin/env bash
# Application benchmarks (#25): what a service loses under minerguard, the
# way users compare enforcement tools. Each workload runs unhooked and under
# each profile in the same rounds, interleaved (round 1: none, default, …;
# round 2: the same again), and is reported as a ratio to the unhooked run
# of its own round: the median over the rounds and the lowest and highest.
#
# Workloads (all on 127.0.0.1 of a network namespace of the script's own;
# the "scope" is a fresh cgroup made by `minerguard run`, which the command
# runs in):
#   ab-close      nginx + `ab -c 4`, a new connection per request, client in the scope
#   ab-keepalive  the same with keep-alive (`ab -k`)
#   ab-server     nginx in the scope, `ab -c 4` without keep-alive outside it
#   redis         `redis-benchmark -c 20 -t set,get`, client in the scope
#   build         `make -j2` of 40 small C files (many execs), in the scope
# Profiles: default, container-strict, and default without its `stratum`
# rule (the Stratum judge is the per-connection cost; #25); a name with
# `+notp` appended runs that profile with --no-syscall-tracepoints, one with
# `+sk-msg` (or `+egress`, the default) with that --stratum-judge; suffixes
# combine (`default+sk-msg+notp`).
# Three more "profiles" are no minerguard at all, to price a design before
# it is built (#25's egress-first judge): `cgroup` (a fresh cgroup, no
# program), `egress-empty` (a cgroup_skb/egress program that returns at
# once) and `egress-lookup` (one that gets the socket's storage on every
# packet, what each packet of a judged socket would pay), both from
# benches/bpf/egress_cost.bpf.c (compiled with clang, loaded with bpftool).
# The judge itself: `default` (the earlier one: `default+sk-msg`).
#
# Usage: scripts/bench-apps.sh [--rounds N] [--quick] [--requests N] [--only WORKLOAD]
#                              [--profiles "default container-strict default-nostratum"]
#   --quick     one round of small runs: proves the harness works (CI), no figures.
#   --requests  HTTP requests per `ab` run (60,000; fewer in an emulated VM:
#               scripts/vm-bench.sh apps)
# MG_BENCH_DIR=dir keeps the raw runs and the scratch files there (default:
# target/bench-apps and a directory under /var/tmp).
# Needs root, nginx, ab (apache2-utils), redis-server and redis-benchmark
# (redis-tools), make and cc; builds minerguard (release) first, unless
# MINERGUARD_BIN names the binary to run (to compare two builds).
# Results: a Markdown table on stdout; raw runs in target/bench-apps/runs.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
args=("$@")

rounds=5
quick=0
requests_arg=""
only=""
profiles="default container-strict default-nostratum"
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --quick) quick=1; rounds=1; shift ;;
        --requests) requests_arg=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --profiles) profiles=$2; shift 2 ;;
        *) echo "bench-apps: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "bench-apps: needs root (it applies profiles)" >&2; exit 1; }

# Everything runs in a network namespace of its own: a loopback whose
# TIME_WAIT sockets no other program shares, reused at once
# (tcp_tw_reuse), with the widest port range. Without it, a run of
# thousands of short connections could wait for ports the runs before it
# left in TIME_WAIT (one unhooked ab-close run here fell to 7,675 req/s).
if [ -z "${MG_BENCH_NETNS:-}" ]; then
    ns=mg-bench-apps-$$
    ip netns add "$ns"
    trap 'ip netns delete "$ns" 2>/dev/null || true' EXIT
    ip -n "$ns" link set lo up
    # nsenter, not `ip netns exec`: that one remounts /sys, hiding cgroupfs.
    nsenter --net="/run/netns/$ns" sysctl -q -w net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65000"
    MG_BENCH_NETNS=$ns nsenter --net="/run/netns/$ns" bash "$0" "${args[@]}"
    exit $?
fi
for tool in nginx ab redis-server redis-benchmark make cc; do
    command -v "$tool" >/dev/null || {
        echo "bench-apps: $tool not found (apt-get install nginx-light apache2-utils redis-server redis-tools make gcc)" >&2
        exit 1
    }
done

if [ "$quick" = 1 ]; then
    requests=400 redis_requests=2000 files=8
else
    requests=60000 redis_requests=200000 files=40
fi
case $requests_arg in
    "") ;;
    *[!0-9]* | 0) echo "bench-apps: --requests takes a positive number, not '$requests_arg'" >&2; exit 2 ;;
    *) requests=$requests_arg ;;
esac

if [ -n "${MINERGUARD_BIN:-}" ]; then
    mg=$(realpath "$MINERGUARD_BIN")
else
    echo "bench-apps: building minerguard (release)" >&2
    cargo build --quiet --release --bin minerguard
    mg=$root/target/release/minerguard
fi

if [ -n "${MG_BENCH_DIR:-}" ]; then
    out=$MG_BENCH_DIR/runs
    rm -rf "$out" && mkdir -p "$out"
    work=$(mktemp -d "$MG_BENCH_DIR/work.XXXXXX")
else
    out=$root/target/bench-apps
    rm -rf "$out" && mkdir -p "$out"
    work=$(mktemp -d /var/tmp/mg-bench-apps.XXXXXX)
fi
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ! declare -F cleanup_bare >/dev/null || cleanup_bare
    rm -rf "$work"
}
trap cleanup EXIT

# `default` without its `stratum` rule: every other rule as it is.
python3 - "$root/profiles/default.yaml" "$work/default-nostratum.yaml" <<'EOF'
import sys
lines = open(sys.argv[1]).read().splitlines(keepends=True)
out, skip = [], False
for line in lines:
    if line.startswith("  - name: "):
        skip = line.strip() == "- name: stratum-protocol"
    if line.startswith("name: "):
        line = "name: default-nostratum\n"
    if not skip:
        out.append(line)
text = "".join(out)
assert "stratum: " not in text, "the stratum rule is still there"
open(sys.argv[2], "w").write(text)
EOF
profile_arg() {
    case $1 in
        default-nostratum) echo "$work/default-nostratum.yaml" ;;
        *) echo "$1" ;;
    esac
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bench-apps: nothing listens on port $1" >&2
    return 1
}

# nginx serving a 612-byte page, as root (no user switch), files in $work.
nginx_conf() {
    local dir=$1 port=$2
    mkdir -p "$dir/html" "$dir/tmp"
    head -c 612 /dev/zero | tr '\0' 'x' >"$dir/html/index.html"
    cat >"$dir/nginx.conf" <<EOF
user root;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log;
daemon off;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp;
    proxy_temp_path $dir/tmp;
    fastcgi_temp_path $dir/tmp;
    uwsgi_temp_path $dir/tmp;
    scgi_temp_path $dir/tmp;
    keepalive_requests 100000;
    server { listen 127.0.0.1:$port; root $dir/html; }
}
EOF
}

# The bare cgroups of the `cgroup` and `egress-*` profiles, made here, in
# this shell, before any round: a failure stops the script rather than
# leaving a run unhooked under a hooked name.
cgroot=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
# bpffs takes no dots in names (mktemp's template would have one).
bpf_pins=/sys/fs/bpf/mg-bench-apps-$$
cleanup_bare() {
    rmdir "$cgroot"/mg-bench-apps-$$-* 2>/dev/null || true
    rm -rf "$bpf_pins"
}
bare_cgroup_path() { echo "$cgroot/mg-bench-apps-$$-$1"; }
make_bare_cgroup() {
    local name=$1 cg inc
    cg=$(bare_cgroup_path "$name")
    mkdir "$cg"
    case $name in
        cgroup) ;;
        egress-empty | egress-lookup)
            if [ ! -d "$bpf_pins/progs" ]; then
                mkdir "$bpf_pins"
                [ "$(stat -f -c %T "$bpf_pins")" = bpf_fs ] || {
                    echo "bench-apps: $bpf_pins is not on a BPF filesystem" >&2
                    exit 1
                }
                inc=$(ls -d target/release/build/libbpf-sys-*/out/include | head -n 1)
                clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -Ibpf/include -I"$inc" \
                    -c benches/bpf/egress_cost.bpf.c -o "$work/egress_cost.o"
                # --nomount: bpftool mounts a BPF filesystem where a pin
                # path is not on one; never let it.
                bpftool --nomount prog loadall "$work/egress_cost.o" "$bpf_pins/progs" type cgroup/skb
            fi
            bpftool --nomount cgroup attach "$cg" egress pinned "$bpf_pins/progs/${name/-/_}"
            bpftool --nomount cgroup show "$cg" | grep -q "${name/-/_}" || {
                echo "bench-apps: ${name/-/_} is not attached to $cg" >&2
                exit 1
            } ;;
        *) echo "bench-apps: no bare cgroup named $name" >&2; exit 1 ;;
    esac
}
for profile in $profiles; do
    case $profile in cgroup | egress-*) make_bare_cgroup "$profile" ;; esac
done
cat >"$work/in-cgroup.sh" <<'EOF2'
#!/bin/bash
echo $$ >"$1/cgroup.procs" || exit 1
shift
exec "$@"
EOF2
chmod +x "$work/in-cgroup.sh"

# The command prefix that puts a command in a scope under `$1` (nothing
# for `none`).
# A profile name ending in `+notp` runs with `--no-syscall-tracepoints`
# (no loader-exec and Fast Open checks: no tracing slow path on syscalls).
scope() {
    local name=$1 flags="" stripped=1
    # Suffixes in any order: +notp, +egress, +sk-msg.
    while [ "$stripped" = 1 ]; do
        stripped=0
        case $name in
            *+notp) name=${name%+notp}; flags="$flags--no-syscall-tracepoints "; stripped=1 ;;
            *+egress) name=${name%+egress}; flags="$flags--stratum-judge egress "; stripped=1 ;;
            *+sk-msg) name=${name%+sk-msg}; flags="$flags--stratum-judge sk-msg "; stripped=1 ;;
        esac
    done
    if [ "$1" = none ]; then
        echo ""
    elif [ "$1" = cgroup ] || [ "${1#egress-}" != "$1" ]; then
        echo "$work/in-cgroup.sh $(bare_cgroup_path "$1")"
    else
        echo "$mg run --quiet $flags--profile $(profile_arg "$name") --"
    fi
}

# Each workload prints its figure: requests per second, or builds per hour.
ab_rps() { grep -o 'Requests per second: *[0-9.]*' | awk '{print $4}'; }

nginx_port=$(free_port)
nginx_conf "$work/nginx" "$nginx_port"
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)
wait_port "$nginx_port"

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
wait_port "$redis_port"

# A small C project: many short compiler execs.
mkdir -p "$work/build"
for i in $(seq 1 "$files"); do
    printf 'int f%d(int x) { int s = 0; for (int i = 0; i < x; i++) s += i * %d; return s; }\n' "$i" "$i" >"$work/build/f$i.c"
done
{
    echo "OBJS := $(for i in $(seq 1 "$files"); do printf 'f%d.o ' "$i"; done)"
    echo 'all: $(OBJS)'
    echo '%.o: %.c'
    printf '\tcc -pipe -O1 -c $< -o $@\n'
    echo 'clean:'
    printf '\trm -f *.o\n'
} >"$work/build/Makefile"

run_workload() {
    local workload=$1 profile=$2 pre
    pre=$(scope "$profile")
    case $workload in
        ab-close)
            $pre ab -q -n "$requests" -c 4 "http://127.0.0.1:$nginx_port/" 2>/dev/null | ab_rps ;;
        ab-keepalive)
            $pre ab -q -k -n "$requests" -c 4 "http://127.0.0.1:$nginx_port/" 2>/dev/null | ab_rps ;;
        ab-server)
            local port dir=$work/nginx-$profile
            port=$(free_port)
            nginx_conf "$dir" "$port"
            $pre nginx -c "$dir/nginx.conf" -p "$dir" 2>/dev/null &
            local server=$!
            wait_port "$port"
            ab -q -n "$requests" -c 4 "http://127.0.0.1:$port/" 2>/dev/null | ab_rps
            kill -TERM "$server" 2>/dev/null || true
            wait "$server" 2>/dev/null || true ;;
        redis)
            $pre redis-benchmark -p "$redis_port" -c 20 -n "$redis_requests" -t set,get --csv 2>/dev/null |
                awk -F'"' '$2 == "SET" || $2 == "GET" { s += $4; n++ } END { if (n) printf "%.1f\n", s / n }' ;;
        build)
            make -s -C "$work/build" clean
            # Timed inside the scope: loading the profile is not the build's
            # cost. Builds per hour: higher is better, like the others.
            # shellcheck disable=SC2016
            $pre bash -c 's=$(date +%s.%N); make -s -j2 -C "$1" >/dev/null; e=$(date +%s.%N)
                awk -v s="$s" -v e="$e" "BEGIN { printf \"%.1f\n\", 3600 / (e - s) }"' _ "$work/build" ;;
    esac
}

workloads="ab-close ab-keepalive ab-server redis build"
[ -z "$only" ] || workloads=$only
echo "round,workload,profile,figure" >"$out/runs.csv"
for round in $(seq 1 "$rounds"); do
    for workload in $workloads; do
        for profile in none $profiles; do
            figure=$(run_workload "$workload" "$profile")
            [ -n "$figure" ] || { echo "bench-apps: $workload under $profile gave no figure" >&2; exit 1; }
            echo "$round,$workload,$profile,$figure" >>"$out/runs.csv"
            echo "bench-apps: round $round/$rounds $workload $profile: $figure" >&2
        done
    done
done

# Ratio to the same round's unhooked figure; median, min and max per cell.
python3 - "$out/runs.csv" "$profiles" "$quick" <<'EOF'
import csv, statistics, sys
runs = list(csv.DictReader(open(sys.argv[1])))
profiles = sys.argv[2].split()
base = {(r["round"], r["workload"]): float(r["figure"]) for r in runs if r["profile"] == "none"}
workloads = list(dict.fromkeys(r["workload"] for r in runs))
units = {"build": "builds/h"}
print("| workload | unhooked (median) | " + " | ".join(profiles) + " |")
print("|---|---|" + "---|" * len(profiles))
for w in workloads:
    unhooked = statistics.median(v for (rd, wl), v in base.items() if wl == w)
    cells = []
    for p in profiles:
        ratios = [float(r["figure"]) / base[(r["round"], w)] for r in runs
                  if r["workload"] == w and r["profile"] == p and base[(r["round"], w)] > 0]
        if not ratios:
            cells.append("—")
            continue
        cells.append(f"×{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})")
    print(f"| {w} | {unhooked:,.0f} {units.get(w, 'req/s')} | " + " | ".join(cells) + " |")
if sys.argv[3] == "1":
    print("\n(--quick: one short round, no figures to quote)")
EOF
