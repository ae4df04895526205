"""Shared fixtures: root/backend gate, test cgroups, commands and connects
run inside a cgroup, loopback listeners, fake miners.

Kernel tests fail loudly when they cannot run (not root, no backend) unless
MINERGUARD_ALLOW_SKIP=1 is set; then they skip with the reason.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Optional

import pytest

import minerguard

_counter = itertools.count()


def cgroup2_mount() -> Path:
    """The cgroup v2 mount point, from /proc/self/mountinfo."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            before, _, after = line.partition(" - ")
            if after.split()[:1] == ["cgroup2"]:
                raw = before.split()[4]
                # mountinfo escapes spaces and friends as \ooo.
                return Path(raw.encode().decode("unicode_escape"))
    raise RuntimeError("no cgroup2 mount in /proc/self/mountinfo")


def backend() -> str:
    """The backend under test (MINERGUARD_TEST_BACKEND, default auto)."""
    return os.environ.get("MINERGUARD_TEST_BACKEND", "auto")


@functools.lru_cache(maxsize=1)
def _kernel_unavailable() -> Optional[str]:
    euid = os.geteuid()
    if euid != 0:
        return f"needs root (euid is {euid})"
    report = minerguard.probe()
    if backend() == "lsm" and not report["bpf_lsm"]["available"]:
        return "needs BPF LSM: " + report["bpf_lsm"]["detail"]
    if report["backend"] is None:
        return "no usable backend: " + "; ".join(report["missing"])
    return None


@pytest.fixture
def kernel() -> None:
    """Requires root and a usable backend (see the module docstring)."""
    reason = _kernel_unavailable()
    if reason is None:
        return
    if os.environ.get("MINERGUARD_ALLOW_SKIP") == "1":
        pytest.skip(f"{reason} (MINERGUARD_ALLOW_SKIP=1)")
    pytest.fail(f"{reason}; set MINERGUARD_ALLOW_SKIP=1 to skip", pytrace=False)


class Cgroup:
    """A cgroup v2 directory this test created."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.id = path.stat().st_ino  # the kernel cgroup id

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def remove(self) -> None:
        if not self.path.exists():
            return
        try:
            (self.path / "cgroup.kill").write_text("1")
        except OSError:
            pass
        deadline = time.monotonic() + 5
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


def start_in(cg: Cgroup, argv: list[str]) -> subprocess.Popen[bytes]:
    """Starts argv as a process of `cg` (it joins before it execs)."""
    fd = os.open(cg.procs, os.O_WRONLY | os.O_CLOEXEC)
    try:
        return subprocess.Popen(argv, preexec_fn=lambda: os.write(fd, b"0") and None)
    finally:
        os.close(fd)


def make_cgroup() -> Cgroup:
    path = cgroup2_mount() / f"minerguard-pytest-{os.getpid()}-{next(_counter)}"
    path.mkdir()
    return Cgroup(path)


@pytest.fixture
def cgroup(kernel: None) -> Iterator[Cgroup]:
    """A fresh cgroup under the cgroup v2 root, killed and removed after."""
    cg = make_cgroup()
    try:
        yield cg
    finally:
        cg.remove()
        assert not cg.path.exists()


@pytest.fixture
def enforcer(kernel: None) -> Iterator[minerguard.Enforcer]:
    with minerguard.Enforcer(backend()) as enf:
        yield enf


def _joiner(cg: Optional[Cgroup]) -> Optional[tuple[Callable[[], None], int]]:
    if cg is None:
        return None
    fd = os.open(cg.procs, os.O_WRONLY | os.O_CLOEXEC)

    def join() -> None:
        os.write(fd, b"0")

    return join, fd


def run_in(cg: Optional[Cgroup], argv: list[str]) -> int | str:
    """Runs argv inside cg (or unmoved when None). Returns the returncode
    (negative: killed by that signal) or "EPERM" when execve was refused."""
    joiner = _joiner(cg)
    try:
        proc = subprocess.run(
            argv,
            preexec_fn=joiner[0] if joiner else None,
            timeout=30,
            check=False,
        )
        return proc.returncode
    except PermissionError:
        return "EPERM"
    finally:
        if joiner:
            os.close(joiner[1])


_CONNECT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError as e:
    sys.exit(e.errno)
sys.exit(0)
"""


def connect_in(cg: Optional[Cgroup], port: int) -> int:
    """connect()s to 127.0.0.1:port from a child in cg; 0 or the errno."""
    rc = run_in(cg, [sys.executable, "-c", _CONNECT, str(port)])
    assert isinstance(rc, int) and rc >= 0, f"connect child died: {rc}"
    return rc


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener on a loopback port the OS picked."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s
    s.close()


def port_of(s: socket.socket) -> int:
    return int(s.getsockname()[1])


def fake_miner(directory: Path, name: str = "xmrig") -> Path:
    """A copy of /usr/bin/touch with a miner's name."""
    path = directory / name
    shutil.copy2(shutil.which("touch") or "/usr/bin/touch", path)
    return path
