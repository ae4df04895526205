#!/usr/bin/env python3
"""Runs the workspace's test binaries, two at a time where that is safe.

`cargo test --workspace` runs its test binaries one after another. Most of
ours spend their time waiting (child processes, RCU grace periods as maps
and links go, loopback pools), so on two cores the CLI's binary and the
library's kernel binary can run side by side; the behaviour detector's
binary runs alone first, because its tests time a real miner hashing on
every core and judge it by the CPU it gets.

    python3 scripts/run-test-binaries.py [--only NAME...] [-- TEST_ARG...]

Builds with `cargo test --workspace --no-run` (the same build as `cargo
test --workspace`), then runs each binary from its package's directory, as
cargo does, with libtest's per-test times (`--report-time`). Each binary's
output is printed whole when it ends, with its time. Exits 1 when any
binary failed (every binary still runs). Doc tests are not run here
(`cargo test --workspace --doc`). `--only NAME...` runs only the test
targets named (e.g. `kernel`) from that same build: `cargo test --workspace
--test kernel` would resolve other features and build everything again.

Environment: RUST_TEST_THREADS and the tests' own variables pass through.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

# Run before the others, alone: its tests need the CPU to themselves.
ALONE = ["behaviour"]
# Each its own lane beside the lane of every other binary.
OWN_LANE = ["cli"]
# Longest first in the shared lane, so that the lanes end close together.
FIRST_IN_SHARED_LANE = ["kernel", "capi"]


def test_binaries():
    """(target name, executable, package directory) of every test binary."""
    build = subprocess.run(
        ["cargo", "test", "--workspace", "--no-run", "--message-format=json-render-diagnostics"],
        stdout=subprocess.PIPE,
        check=False,
    )
    if build.returncode != 0:
        sys.exit(f"run-test-binaries: the build failed (cargo exit {build.returncode}; its errors are above)")
    found = []
    for line in build.stdout.decode().splitlines():
        try:
            m = json.loads(line)
        except json.JSONDecodeError:
            continue
        if m.get("reason") != "compiler-artifact" or not m.get("executable"):
            continue
        if not m.get("profile", {}).get("test"):
            continue
        name = m["target"]["name"]
        pkg_dir = os.path.dirname(m["manifest_path"])
        found.append((name, m["executable"], pkg_dir))
    if not found:
        sys.exit("run-test-binaries: cargo built no test binary")
    return found


class Results:
    """What each binary did, printed as binaries end (one at a time)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rows = []

    def report(self, name, exe, rc, seconds, log):
        with self.lock:
            sys.stdout.write(f"\n--- {name} ({os.path.basename(exe)}): ")
            sys.stdout.write(f"{'ok' if rc == 0 else f'FAILED (exit {rc})'} in {seconds:.1f} s\n")
            sys.stdout.write(log)
            sys.stdout.flush()
            self.rows.append((name, rc, seconds))


def run(binary, args, results):
    name, exe, pkg_dir = binary
    env = dict(os.environ)
    # libtest takes --report-time only where unstable options are allowed;
    # this lets the stable harness take it (the build is done already).
    env["RUSTC_BOOTSTRAP"] = "1"
    start = time.monotonic()
    with tempfile.TemporaryFile() as out:
        rc = subprocess.call(
            [exe, *args, "-Z", "unstable-options", "--report-time"],
            cwd=pkg_dir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.seek(0)
        log = out.read().decode(errors="replace")
    results.report(name, exe, rc, time.monotonic() - start, log)


def run_lane(lane, args, results):
    for binary in lane:
        run(binary, args, results)


def main():
    argv = sys.argv[1:]
    only = []
    if argv and argv[0] == "--only":
        argv = argv[1:]
        while argv and argv[0] != "--":
            only.append(argv.pop(0))
        if not only:
            sys.exit("run-test-binaries: --only needs a test target's name")
    if argv and argv[0] == "--":
        argv = argv[1:]
    binaries = test_binaries()
    if only:
        missing = set(only) - {b[0] for b in binaries}
        if missing:
            sys.exit(f"run-test-binaries: no test target named {' '.join(sorted(missing))}")
        binaries = [b for b in binaries if b[0] in only]
    alone = [b for b in binaries if b[0] in ALONE]
    own = [[b] for b in binaries if b[0] in OWN_LANE]
    rest = [b for b in binaries if b[0] not in ALONE and b[0] not in OWN_LANE]
    rest.sort(key=lambda b: (FIRST_IN_SHARED_LANE + [b[0]]).index(b[0]))
    results = Results()
    started = time.monotonic()
    run_lane(alone, argv, results)
    lanes = [threading.Thread(target=run_lane, args=(lane, argv, results)) for lane in own + [rest]]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()
    print(f"\nrun-test-binaries: {len(results.rows)} binaries in {time.monotonic() - started:.0f} s")
    for name, rc, seconds in sorted(results.rows, key=lambda r: -r[2]):
        print(f"  {seconds:7.1f} s  {'ok' if rc == 0 else 'FAILED'}  {name}")
    failed = [name for name, rc, _ in results.rows if rc != 0]
    if failed:
        print(f"run-test-binaries: failed: {' '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
