#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, the integration tests
# that enforce in this machine's kernel (root needed; each test works in a
# cgroup it creates), the C API (C programs built against the checked-in
# header) and the Python bindings (pytest, mypy), and the kernel integration
# tests again with the lsm backend in a VM whose kernel has BPF LSM (Debian
# 12's 6.1 kernel, then its 6.12 one for what changed in 6.5). Run as root on
# Debian 12 after
# scripts/install-deps.sh. MINERGUARD_SKIP_VM=1 leaves out the VM suite.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
# Each step says when it starts (seconds into the run): where the time goes.
step() { printf '\n== [%ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings (the whole workspace: library, cli, Python bindings)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (unit, doc and kernel integration tests of the library and the CLI; backend: ${MINERGUARD_TEST_BACKEND:-auto})"
# The test binaries of `cargo test --workspace`, two at a time
# (scripts/run-test-binaries.py: the behaviour binary alone, then the CLI's
# beside all the others), each test's time in the log. The CLI's tests
# (cli/tests) run the `minerguard` binary cargo builds for them. Four
# threads a binary on two cores: the kernel and CLI tests spend most of
# their time waiting (processes, RCU grace periods, loopback pools); each
# works in cgroups of its own. One after another, the binaries took 350 s
# (CLI 136 s, kernel 91 s, behaviour 82 s).
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-4}
python3 scripts/run-test-binaries.py
cargo test --workspace --doc

step "the cgroup backend's other Stratum judge: the Stratum tests of the kernel binary under sk-msg"
# The egress judge is the default (#25); `--stratum-judge sk-msg` stays
# supported, so its path is checked too (≈40 s). The kernel binary of the
# build above (`cargo test --test kernel` would build everything again with
# other features).
MINERGUARD_TEST_STRATUM_JUDGE=sk-msg python3 scripts/run-test-binaries.py --only kernel -- \
    stratum:: stratum_evasions::

step "cargo install --path cli (the minerguard binary installs)"
cargo install --quiet --locked --debug --path cli --root target/install-check --target-dir target
target/install-check/bin/minerguard --version

step "benches, once each in test mode (they must keep working; figures: BENCHMARKS.md)"
# --workspace: the same features as the tests' build above, so the
# dependencies are not built again with other ones.
cargo test --workspace --bench '*'
# The egress cost programs of #25 (benches/bpf/egress_cost.bpf.c, run by
# bench-apps.sh and prog-costs.sh) still build, load and run.
bash scripts/prog-costs.sh --request --egress egress_lookup 200

step "behaviour detector evaluation, CI form (scripts/behaviour-eval.sh --ci: four cases, ≈90 s)"
# Real XMRig over TLS and on a cpulimit-like duty cycle must be detected, the
# two benign cases holding connections must not be (the whole set, 30 s or
# 10 min a case: BENCHMARKS.md).
bash scripts/behaviour-eval.sh --ci

step "fuzz the profile parser (scripts/fuzz.sh, 30 s)"
bash scripts/fuzz.sh

step "Kubernetes deployment: manifests against the schemas, kustomize, Containerfile (scripts/validate-manifests.sh)"
bash scripts/validate-manifests.sh

step "Python bindings (scripts/test-python.sh)"
MINERGUARD_PY_LINTED=1 bash scripts/test-python.sh

if [ "${MINERGUARD_SKIP_VM:-0}" = 1 ]; then
    echo "SKIPPED the lsm VM suite (MINERGUARD_SKIP_VM=1)"
else
    step "lsm backend inside a VM with BPF LSM, Linux 6.1 (scripts/vm-test.sh)"
    bash scripts/vm-test.sh
    # From 6.5 on sendfile/splice reach the lsm hook, which then judges
    # Stratum alone (no sk_msg, no sockops): the Stratum tests of the
    # kernel binary (which programs load, each way a send can go, each kind
    # of socket), and the exec path view and scope guard, whose lsm
    # programs 6.12's verifier checks differently: a test of each guard
    # and three of the path view (each loads them; their other cases run
    # on 6.1 and natively, and one of them took 105 s here). Of
    # stratum_evasions only the one that needs the egress judge behind the
    # hook (attached beside no sk_msg program here, ≈20 s): the others vary
    # the bytes, not the path, and the bytes meet the same socket_sendmsg
    # program on 6.1 (the run above); nor the
    # own-copy run, whose path this run's load verifies and whose
    # enforcement the 6.1 run proves. The binary is the one built above
    # (vm-test.sh reuses the build of the whole suite).
    step "lsm backend inside a VM with BPF LSM, Linux 6.12: Stratum (scripts/vm-test.sh)"
    MINERGUARD_VM_KERNEL=6.12 MINERGUARD_VM_TESTS="kernel" MINERGUARD_VM_CGROUP_TESTS="" \
        MINERGUARD_VM_OWN_FILTER="" \
        MINERGUARD_VM_FILTER="stratum:: path_view::a_script_in_a_scratch_dir path_view::drift_refuses path_view::a_path_too_deep scope_escape::a_task_moving_itself_out scope_escape::a_clone_into_another_cgroup stratum_evasions::a_buffer_rewritten_while_a_receive" \
        bash scripts/vm-test.sh
fi
step "done"
