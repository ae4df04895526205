#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and the integration
# tests that enforce in this machine's kernel (root needed; each test works in
# a cgroup it creates). Run as root on Debian 12 after scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test (unit, doc and kernel integration tests; backend: ${MINERGUARD_TEST_BACKEND:-auto})"
cargo test --all-targets
cargo test --doc
