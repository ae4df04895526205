#!/usr/bin/env bash
# Builds the profile-parser fuzz target (fuzz/fuzz_targets/profile_parse.rs)
# with cargo-fuzz and runs it for a bounded time; fails on any crash, panic,
# timeout or out-of-memory the fuzzer reports.
#
#   bash scripts/fuzz.sh                      # 30 s
#   MINERGUARD_FUZZ_SECONDS=300 bash scripts/fuzz.sh
#   MINERGUARD_FUZZ_SECONDS=0 bash scripts/fuzz.sh   # build only
#
# Needs what scripts/install-deps.sh installs (the target links the whole
# root crate: its build.rs compiles the BPF programs with clang, and it links
# libbpf, libelf, zlib, libseccomp) and cargo; installs cargo-fuzz from
# crates.io when it is missing. Build artifacts go to fuzz/target.
#
# Works on a stable toolchain. cargo-fuzz builds with `-Zsanitizer=...`,
# which only nightly accepts; RUSTC_BOOTSTRAP=1 makes
# stable rustc accept them (the sanitizer runtimes, e.g.
# librustc-stable_rt.asan.a, ship with the stable x86_64-unknown-linux-gnu
# standard library). MINERGUARD_FUZZ_SANITIZER picks the sanitizer
# (address by default, which also checks the unsafe code the parser runs in
# unsafe-libyaml; `none` if a toolchain lacks the ASAN runtime, or for about
# five times the executions per second: panics are still found). Without
# RUSTC_BOOTSTRAP, stable fails with "the option `Z` is only accepted on the
# nightly compiler".
#
# The fuzzer runs on a scratch copy of fuzz/corpus/profile_parse (the
# committed seeds), so the inputs it discovers do not end up in the tree;
# crashing inputs are written to fuzz/artifacts/profile_parse/ (ignored by
# git) and printed base64-encoded.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${MINERGUARD_FUZZ_SECONDS:-30}"
sanitizer="${MINERGUARD_FUZZ_SANITIZER:-address}"
target=profile_parse

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
# Same flags for build and run, so `run` does not rebuild.
flags=(--sanitizer "$sanitizer")

echo "fuzz: cargo fuzz build ${flags[*]} $target"
cargo fuzz build "${flags[@]}" "$target"

if [ "$seconds" = 0 ]; then
    echo "fuzz: built only (MINERGUARD_FUZZ_SECONDS=0)"
    exit 0
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/corpus"
cp fuzz/corpus/"$target"/* "$scratch/corpus/"
# cargo-fuzz's default -artifact_prefix: crash-*, timeout-*, oom-*, ...
artifacts="fuzz/artifacts/$target"
mkdir -p "$artifacts"
touch "$scratch/.start"

echo "fuzz: running $target for ${seconds}s"
# The dictionary holds the language's keys and values, so mutations make
# profiles rather than YAML noise. -max_total_time bounds the run; -timeout makes an input that takes longer
# than 10 s a failure; -rss_limit_mb keeps a runaway allocation a failure
# rather than a problem for the machine. libFuzzer exits non-zero on any
# finding, and `cargo fuzz run` passes that on.
status=0
cargo fuzz run "${flags[@]}" "$target" "$scratch/corpus" -- \
    -dict=fuzz/"$target".dict -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 || status=$?

new="$(find "$artifacts" -type f -newer "$scratch/.start")"
if [ "$status" != 0 ] || [ -n "$new" ]; then
    echo "fuzz: FAILED (exit status $status); inputs it saved (base64):" >&2
    for f in $new; do
        echo "  $f: $(base64 -w0 "$f")" >&2
    done
    echo "fuzz: replay one with: RUSTC_BOOTSTRAP=1 cargo fuzz run ${flags[*]} $target FILE" >&2
    exit 1
fi
echo "fuzz: ok (no crash in ${seconds}s)"
