"""minerguard.BehaviourDetector: a process in a cgroup of the test's own is
judged by how it runs. A busy loop is busy but not mining under the
default thresholds (no RandomX-sized memory, no pool connection); under
thresholds it meets, it is found and killed, and a cgroup left out with
`exclude` is not sampled. (Real XMRig is judged in tests/behaviour.rs and
through the C API in tests/capi.rs.)"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import pytest

import minerguard
from conftest import Cgroup, start_in

if TYPE_CHECKING:
    from minerguard._minerguard import BehaviourSample

BUSY = [sys.executable, "-c", "while True: pass"]
# Opens the hugepages sysctl for writing (a reservation attempt; nothing is
# written), then spins.
TUNER = [
    sys.executable,
    "-c",
    "import os\n"
    "try:\n"
    "    os.close(os.open('/proc/sys/vm/nr_hugepages', os.O_WRONLY))\n"
    "except OSError:\n"
    "    pass\n"
    "while True: pass",
]


def profile(thresholds: str) -> minerguard.Profile:
    return minerguard.Profile.from_yaml(
        "apiVersion: minerguard/v1\nname: b\nrules:\n"
        f"  - name: mining\n    action: kill\n    behaviour: {{window_secs: 1{thresholds}}}\n"
    )


def sample_for(
    detector: minerguard.BehaviourDetector, cg: Cgroup, seconds: float, **kw: object
) -> list[BehaviourSample]:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(detector.sample([cg.path], **kw))  # type: ignore[arg-type]
        if samples[-1]["detections"]:
            break
        time.sleep(0.5)
    return samples


def test_a_busy_loop_is_busy_but_not_mining_by_default(cgroup: Cgroup) -> None:
    busy = start_in(cgroup, BUSY)
    try:
        detector = minerguard.BehaviourDetector(profile(""))
        assert detector.rules == ["mining"]
        samples = sample_for(detector, cgroup, 4)
        assert all(not s["detections"] for s in samples), samples
        observed = [o for s in samples for o in s["observations"]]
        assert any(
            o["pid"] == busy.pid and o["signals"] == ["cpu"] and not o["mining"]
            for o in observed
        ), observed
        assert all(s["processes"] == 1 and s["profile"] == "b" for s in samples)
        assert busy.poll() is None
    finally:
        busy.kill()
        busy.wait()


def test_what_meets_the_thresholds_is_killed_and_excluded_cgroups_are_not_sampled(
    cgroup: Cgroup,
) -> None:
    child = make_cgroup_under(cgroup)
    busy = start_in(cgroup, BUSY)
    spared = start_in(child, BUSY)
    try:
        detector = minerguard.BehaviourDetector(
            profile(", anon_mib: 1, needs_connection: false")
        )
        # A dry run reports and kills nothing.
        samples = sample_for(detector, cgroup, 30, dry_run=True, exclude=[child.path])
        [found] = samples[-1]["detections"]
        assert found["output_fields"]["minerguard.outcome"] == "dry-run"
        assert found["output_fields"]["proc.pid"] == busy.pid
        assert busy.poll() is None
        assert all(s["processes"] == 1 for s in samples), "the child is left out"

        # A process is reported once per life: a new detector acts on it.
        detector = minerguard.BehaviourDetector(
            profile(", anon_mib: 1, needs_connection: false")
        )
        samples = sample_for(detector, cgroup, 30, exclude=[child.path])
        [found] = samples[-1]["detections"]
        f = found["output_fields"]
        assert f["minerguard.kind"] == "behaviour"
        assert f["minerguard.outcome"] == "killed"
        assert f["minerguard.behaviour.signals"] == ["cpu", "memory"]
        assert busy.wait(timeout=30) == -9
        assert spared.poll() is None, "the excluded cgroup's process runs on"
    finally:
        for p in (busy, spared):
            p.kill()
            p.wait()
        child.remove()


def test_a_busy_process_that_tried_to_reserve_huge_pages_is_found_by_its_tuning(
    cgroup: Cgroup, enforcer: minerguard.Enforcer
) -> None:
    # The memory signal out of reach: only the tuning attempt can make it.
    prof = profile(", anon_mib: 1048576, needs_connection: false")
    detector = minerguard.BehaviourDetector(prof)
    with pytest.raises(ValueError, match="behaviour rule"):
        detector.count_tuning(enforcer)
    assert enforcer.tuning is not None
    enforcer.apply(prof, cgroup=cgroup.path)
    assert enforcer.tuning is None
    detector.count_tuning(enforcer)
    tuner = start_in(cgroup, TUNER)
    busy = start_in(cgroup, BUSY)
    try:
        samples = sample_for(detector, cgroup, 30)
        [found] = samples[-1]["detections"]
        f = found["output_fields"]
        assert f["proc.pid"] == tuner.pid
        assert f["minerguard.behaviour.signals"] == ["cpu", "tuning"]
        assert f["minerguard.behaviour.tuning.hugepages"] == 1
        assert f["minerguard.behaviour.tuning.counted"] is True
        assert tuner.wait(timeout=30) == -9
        assert busy.poll() is None, "as busy, but it tried nothing"
    finally:
        for p in (tuner, busy):
            p.kill()
            p.wait()


def make_cgroup_under(parent: Cgroup) -> Cgroup:
    path = parent.path / "child"
    path.mkdir()
    return Cgroup(path)


def test_bad_arguments_are_refused(kernel: None) -> None:
    detector = minerguard.BehaviourDetector(profile(""))
    with pytest.raises(ValueError):
        detector.sample([])
    with pytest.raises(minerguard.CgroupError):
        detector.sample(["/proc"])
    with pytest.raises(minerguard.ProfileError):
        minerguard.BehaviourDetector(
            minerguard.Profile.from_yaml(
                "apiVersion: minerguard/v1\nname: b\nrules:\n"
                "  - name: m\n    action: kill\n    behaviour: {window_secs: 0}\n"
            )
        )
