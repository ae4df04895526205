#!/usr/bin/env bash
# The behaviour detector's evaluation (#24): real XMRig (light mode, renamed,
# config-file only) hashing against a loopback RandomX pool, and benign CPU-
# and memory-heavy programs, each alone in a cgroup made for it, sampled with
# the default thresholds. Prints a table (detected / missed / false positive,
# time to detection from start and from the first share) and a SUMMARY line.
# Exits 1 on a missed miner, a false positive, or a benign workload that did
# not run (a tool missing: it would pass unmeasured otherwise).
#
#   scripts/behaviour-eval.sh            short form (CI): 30 s per case
#   scripts/behaviour-eval.sh --full     600 s per case (the issue's 10 minutes)
#   scripts/behaviour-eval.sh -- ARGS    extra arguments (--busy-percent P, --window-secs S,
#                                        --needs-rhythm, --case PART-OF-A-NAME)
#
# Needs root (cgroups), XMRig in /var/cache/minerguard-test (scripts/install-deps.sh),
# stress-ng, openssl, xz, python3, cc, 7z (p7zip-full). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=30
if [ "${1:-}" = "--full" ]; then
    seconds=600
    shift
fi
[ "${1:-}" = "--" ] && shift
cargo build --release --example behaviour_eval
out=$(mktemp)
trap 'rm -f "$out"' EXIT
./target/release/examples/behaviour_eval --seconds "$seconds" "$@" | tee "$out"
! grep -qE '\| (MISSED|FALSE POSITIVE|DID NOT RUN) \|' "$out"
