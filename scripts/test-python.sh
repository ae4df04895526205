#!/usr/bin/env bash
# The Python bindings (bindings/python): lints of the pyo3 crate, the abi3
# wheel built with maturin and installed into a venv, pytest (the kernel
# tests need root: each works in a cgroup it creates and removes; without
# root they fail unless MINERGUARD_ALLOW_SKIP=1), and mypy --strict on the
# stubs, the tests and examples/python. Fails on any failure.
#
# Needs python3 (3.9+) with venv, and cargo; installs maturin, pytest and
# mypy from PyPI into the venv (MINERGUARD_PY_VENV, default
# bindings/python/target/venv). Everything it writes stays under
# bindings/python/target/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/bindings/python
VENV=${MINERGUARD_PY_VENV:-$PY/target/venv}
export PYTHONDONTWRITEBYTECODE=1

step() { printf '\n== %s\n' "$*"; }

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    step "installing python3-venv (Debian ships venv separately)"
    apt-get update -qq && apt-get install -y -qq python3-venv
fi
if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV"
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check 'maturin>=1.9,<2' 'pytest>=7' 'mypy>=1.8'

cd "$PY"
# scripts/test.sh has linted the whole workspace, this crate included.
if [ "${MINERGUARD_PY_LINTED:-0}" = 1 ]; then
    step "fmt and clippy: done by scripts/test.sh for the whole workspace"
else
    step "cargo fmt --check (bindings/python)"
    cargo fmt -- --check
    step "cargo clippy -D warnings (bindings/python)"
    cargo clippy --all-targets -- -D warnings
fi

step "maturin build (abi3 wheel; debug: the tests need no optimised build, and it reuses what cargo test built)"
rm -rf target/wheels
# `--compatibility linux`: the module links the system's libelf, so it is a
# plain linux wheel for this machine, not a manylinux one.
"$VENV/bin/maturin" build --compatibility linux -i "$VENV/bin/python" -o target/wheels
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps target/wheels/minerguard-*.whl

step "pytest (bindings/python/tests)"
"$VENV/bin/python" -m pytest -v -rs -p no:cacheprovider tests

step "mypy --strict (stubs, tests, examples/python)"
MYPY=("$VENV/bin/mypy" --strict --cache-dir "$PY/target/mypy-cache")
"${MYPY[@]}" -p minerguard
"${MYPY[@]}" tests
"${MYPY[@]}" "$ROOT"/examples/python/*.py
