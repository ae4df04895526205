#!/usr/bin/env bash
# Installs what building and testing minerguard needs on Debian 12 (as root).
# Idempotent: installs only what is missing.
set -euo pipefail

need_apt=()
for pkg in clang llvm libelf-dev zlib1g-dev pkg-config make; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
    echo "install-deps: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "install-deps: cargo not found: install a Rust toolchain (1.80 or newer) with rustup" >&2
    exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true
echo "install-deps: ok ($(clang --version | head -1); $(cargo --version))"
