# Sourced by the guest script scripts/vm-test.sh writes: runs one test
# binary inside the VM under a time limit. A binary still running after the
# limit is stopped, and its log gets the kernel stacks of its threads and
# child processes (what each one waits on) and the TCP sockets, so a hang
# names itself and the binaries after it still run.

# run_one BACKEND BINARY LOG LIMIT_SECONDS [TEST_ARG...] (BACKEND: lsm,
# cgroup, or lsm-own: lsm with MINERGUARD_TEST_OWN_COPIES=1); returns the
# binary's status (137 when it was stopped). The TEST_ARGs go to the test
# binary as they are: test-name filters and libtest options such as
# `--skip FILTER` (scripts/vm-test.sh passes MINERGUARD_VM_FILTER, and
# MINERGUARD_VM_CGROUP_SKIP as --skip options to the cgroup-backend runs).
run_one() {
    local backend=$1 bin=$2 log=$3 limit=$4 start pid own=
    shift 4
    start=$(date +%s)
    # lsm-own: the lsm backend with every Stratum send read in a copy of
    # its thread's own (MINERGUARD_TEST_OWN_COPIES, src/backend/lsm_stratum.rs).
    if [ "$backend" = lsm-own ]; then
        backend=lsm own=1
    fi
    # --report-time (libtest's, unstable: RUSTC_BOOTSTRAP lets the stable
    # harness take it) puts each test's time in the log: where the
    # emulated guest's minutes go.
    MINERGUARD_TEST_OWN_COPIES=$own MINERGUARD_TEST_BACKEND=$backend RUSTC_BOOTSTRAP=1 "$bin" "$@" \
        -Z unstable-options --report-time >"$log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 2
        if [ $(($(date +%s) - start)) -ge "$limit" ]; then
            {
                echo "vm-test: stopped after $limit s; kernel stacks of its tasks:"
                stacks_of "$bin"
                echo "--- TCP sockets"
                ss -tanp 2>/dev/null | head -n 60
            } >>"$log"
            pkill -KILL -f "$bin"
            break
        fi
    done
    wait "$pid"
}

# Kernel stacks of every thread of every process whose command line names
# $1 (the test binary, and the children it forked).
stacks_of() {
    local p t
    for p in $(pgrep -f "$1"); do
        for t in /proc/"$p"/task/*; do
            echo "--- $t $(cat "$t"/comm 2>/dev/null) wchan=$(cat "$t"/wchan 2>/dev/null)"
            cat "$t"/stack 2>/dev/null
        done
    done
}
