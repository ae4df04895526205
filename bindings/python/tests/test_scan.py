"""minerguard.scan(): processes started before the scan, in a cgroup of the
test's own, are found by rule and killed (or, with dry_run, left alone)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import minerguard
from conftest import Cgroup, start_in


@pytest.fixture
def shm_copy() -> Iterator[Path]:
    """A copy of sleep in /dev/shm (container-strict's scratch dirs)."""
    path = Path(f"/dev/shm/mg-pytest-scan-{os.getpid()}")
    shutil.copy2(shutil.which("sleep") or "/usr/bin/sleep", path)
    yield path
    path.unlink(missing_ok=True)


def test_scan_finds_kills_and_dry_runs(cgroup: Cgroup, shm_copy: Path) -> None:
    miner = start_in(cgroup, [str(shm_copy), "600"])
    benign = start_in(cgroup, ["sleep", "600"])
    try:
        profile = minerguard.Profile.bundled("container-strict")
        report = minerguard.scan(profile, [cgroup.path], dry_run=True)
        assert report["scanned"] == 2
        [finding] = report["findings"]
        assert finding["rule"] == "scratch-dir-exec"
        assert finding["output_fields"]["minerguard.kind"] == "scan"
        assert finding["output_fields"]["minerguard.outcome"] == "dry-run"
        assert finding["output_fields"]["proc.pid"] == miner.pid
        assert miner.poll() is None, "a dry run kills nothing"

        # A cgroup left out with its descendants (here the whole scope).
        report = minerguard.scan(profile, [cgroup.path], exclude=[cgroup.path])
        assert report["scanned"] == 0 and not report["findings"]
        assert miner.poll() is None

        report = minerguard.scan(profile, [str(cgroup.path)])
        [finding] = report["findings"]
        assert finding["output_fields"]["minerguard.outcome"] == "killed"
        assert miner.wait(timeout=30) == -9
        assert benign.poll() is None
    finally:
        for p in (miner, benign):
            p.kill()
            p.wait()


def test_scan_of_a_path_that_is_no_cgroup_raises(kernel: None) -> None:
    profile = minerguard.Profile.bundled("default")
    with pytest.raises(minerguard.CgroupError):
        minerguard.scan(profile, ["/proc"])
    with pytest.raises(ValueError):
        minerguard.scan(profile, [])
