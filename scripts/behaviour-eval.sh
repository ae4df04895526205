#!/usr/bin/env bash
# The behaviour detector's evaluation (#24): real XMRig (light mode, renamed,
# config-file only) hashing against a loopback RandomX pool, and benign CPU-
# and memory-heavy programs, each alone in a cgroup made for it, sampled with
# the default thresholds. Prints a table (detected / missed / false positive,
# time to detection from start and from the first share) and a SUMMARY line.
# Exits 1 on a missed miner, a false positive, or a benign workload that did
# not run (a tool missing: it would pass unmeasured otherwise).
#
#   scripts/behaviour-eval.sh            short form: every case, 30 s each
#   scripts/behaviour-eval.sh --full     600 s per case (the issue's 10 minutes)
#   scripts/behaviour-eval.sh --ci       the CI form: four cases, 25 s each at most
#   scripts/behaviour-eval.sh -- ARGS    extra arguments (--busy-percent P, --window-secs S,
#                                        --needs-rhythm, --case PART-OF-A-NAME)
#
# Needs root (cgroups), XMRig in /var/cache/minerguard-test (scripts/install-deps.sh),
# stress-ng, openssl, xz, python3, cc, 7z (p7zip-full). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=30
profile=release
form=()
case "${1:-}" in
--full)
    seconds=600
    shift
    ;;
--ci)
    # Four cases (a miner over TLS, one on a cpulimit-like duty cycle, the
    # two benign ones holding connections), 25 s at most each, on the debug
    # build the test suite made (no release build of the library): ≈90 s.
    seconds=25
    profile=debug
    form=(--ci)
    shift
    ;;
esac
[ "${1:-}" = "--" ] && shift
# --workspace: the features the test suite's build resolved (the whole
# workspace's), so its dependencies are not built again with others.
if [ "$profile" = release ]; then
    cargo build --workspace --release --example behaviour_eval
else
    cargo build --workspace --example behaviour_eval
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"./target/$profile/examples/behaviour_eval" --seconds "$seconds" "${form[@]}" "$@" | tee "$out"
! grep -qE '\| (MISSED|FALSE POSITIVE|DID NOT RUN) \|' "$out"
