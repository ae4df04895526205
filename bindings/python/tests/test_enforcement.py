"""Enforcement from Python on the real kernel. Every test works in cgroups
it creates and removes (under the cgroup v2 mount from /proc/self/mountinfo),
never the host; network only on loopback."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import minerguard
from minerguard import Enforcer, Profile

from conftest import (
    Cgroup,
    backend,
    cgroup2_mount,
    connect_in,
    fake_miner,
    make_cgroup,
    port_of,
    run_in,
)

REPO = Path(__file__).resolve().parents[3]


def exec_profile(action: str = "deny") -> Profile:
    return Profile("py-exec").add_rule("miner-binary", action, exec_names=["xmrig"])


def denied_exec(enf: Enforcer, requested: str = "deny") -> int | str:
    """What a denied exec looks like with this backend."""
    outcomes: dict[str, int | str] = {"kill": -9, "kill-container": -9, "deny": "EPERM", "audit": 0}
    return outcomes[enf.effective_action("exec", requested)]


def wait_for(enf: Enforcer, rule: str, timeout: float = 3.0) -> minerguard.Event:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ev = enf.next_event(left)
        if ev is not None and ev.rule == rule:
            return ev
    raise AssertionError(f"no event of rule {rule!r} within {timeout}s")


def test_denied_exec_inside_scope_only(cgroup: Cgroup, enforcer: Enforcer, tmp_path: Path) -> None:
    miner = fake_miner(tmp_path)
    handle = enforcer.apply(exec_profile(), cgroup=cgroup.path)
    assert handle.scope == f"cgroup {cgroup.path}"
    assert enforcer.unenforced(handle) == []

    inside = tmp_path / "ran-inside"
    assert run_in(cgroup, [str(miner), str(inside)]) == denied_exec(enforcer)
    assert not inside.exists(), "the miner ran inside the scope"

    ev = wait_for(enforcer, "miner-binary")
    assert ev.kind == "exec" and ev.path == str(miner)
    assert ev.profile == "py-exec"
    assert ev.requested == "deny"
    assert ev.action == enforcer.effective_action("exec", "deny")
    assert ev.degraded == (ev.action != "deny")
    assert ev.cgroup_id == cgroup.id
    assert ev.pid > 0 and ev.tgid == ev.pid and ev.uid == 0
    if ev.action == "kill":
        assert ev.comm == "xmrig", "killed after the exec: the task has the new name"
    else:
        assert ev.comm and ev.comm != "xmrig", "refused before the exec: the caller's name"
    # Who did it: the caller (this test process, or the child it forked).
    assert ev.ppid > 0 and ev.pname and ev.cmdline.startswith(ev.comm)
    assert ev.proc_source == "kernel" and ev.pattern is None
    if ev.action == "kill":
        assert ev.cmdline == f"xmrig {inside}", "after the exec: the new argv"
    assert abs(ev.time - time.time()) < 60
    assert ev.datetime.tzinfo is not None and abs(ev.datetime.timestamp() - ev.time) < 1e-3
    assert ev.addr is None and ev.port is None and ev.protocol is None
    d = ev.to_dict()
    assert d["rule"] == "miner-binary" and d["source"] == "minerguard"
    assert d["action"] == ev.action
    assert d["output_fields"]["proc.exepath"] == str(miner)
    assert d["output_fields"]["proc.pid"] == ev.tgid
    assert d["output_fields"]["proc.ppid"] == ev.ppid
    assert d["output_fields"]["proc.cmdline"] == ev.cmdline
    assert d["output_fields"]["cgroup.id"] == cgroup.id
    assert json.loads(ev.to_json()) == d
    assert "miner-binary" in repr(ev)

    outside = tmp_path / "ran-outside"
    assert run_in(None, [str(miner), str(outside)]) == 0
    assert outside.exists(), "the same file must run outside the scope"

    enforcer.remove(handle)
    after = tmp_path / "ran-after-remove"
    assert run_in(cgroup, [str(miner), str(after)]) == 0
    assert after.exists(), "the miner must run once the profile is removed"
    assert enforcer.handles() == []


def test_kill_container_kills_the_containers_processes_only(
    cgroup: Cgroup, enforcer: Enforcer, tmp_path: Path
) -> None:
    miner = fake_miner(tmp_path)
    (cgroup.path / "ctr").mkdir()
    (cgroup.path / "next-door").mkdir()
    container, neighbour = Cgroup(cgroup.path / "ctr"), Cgroup(cgroup.path / "next-door")
    sleepers: list[subprocess.Popen[bytes]] = []
    try:
        for c in (container, container, neighbour):
            fd = os.open(c.procs, os.O_WRONLY | os.O_CLOEXEC)

            def join(fd: int = fd) -> None:
                os.write(fd, b"0")

            try:
                sleepers.append(subprocess.Popen(["sleep", "600"], preexec_fn=join))
            finally:
                os.close(fd)
        enforcer.apply(exec_profile("kill-container"), cgroup=cgroup.path)
        marker = tmp_path / "ran"
        assert run_in(container, [str(miner), str(marker)]) == denied_exec(enforcer, "kill-container")
        assert not marker.exists(), "the miner ran"

        ev = wait_for(enforcer, "miner-binary")
        assert (ev.action, ev.requested) == ("kill-container", "kill-container")
        assert ev.cgroup_id == container.id
        assert ev.killed_cgroup == str(container.path) and ev.kill_error is None
        d = ev.to_dict()
        assert d["priority"] == "Critical"
        assert d["output_fields"]["minerguard.killed.cgroup"] == str(container.path)
        assert sleepers[0].wait(timeout=10) == -9 and sleepers[1].wait(timeout=10) == -9
        time.sleep(0.3)
        assert sleepers[2].poll() is None, "a process of the neighbouring cgroup was killed"
    finally:
        for proc in sleepers:
            proc.kill()
            proc.wait()
        container.remove()
        neighbour.remove()


def test_learn_then_allow_only_and_self_test_events(
    cgroup: Cgroup, enforcer: Enforcer, tmp_path: Path
) -> None:
    app = fake_miner(tmp_path, "app")
    newcomer = fake_miner(tmp_path, "newcomer")
    marker = tmp_path / "marker"

    def workload() -> None:
        time.sleep(0.7)  # learning has started by then
        assert run_in(cgroup, [str(app), str(marker)]) == 0

    t = threading.Thread(target=workload)
    t.start()
    learned = enforcer.learn(cgroup=cgroup.path, duration=2.0, name="app-only")
    t.join()
    assert enforcer.handles() == [], "learning left its profile applied"
    text = learned.to_yaml()
    assert "allow-learned" in text and str(app) in text, text

    handle = enforcer.apply(learned, cgroup=cgroup.path)
    marker.unlink()
    assert run_in(cgroup, [str(app), str(marker)]) == 0 and marker.exists()
    marker.unlink()
    assert run_in(cgroup, [str(newcomer), str(marker)]) == denied_exec(enforcer)
    assert not marker.exists()
    assert wait_for(enforcer, "allow-learned").path == str(newcomer)

    # The event path end to end, without a syscall per event.
    while enforcer.next_event(0.2) is not None:
        pass
    assert enforcer.self_test_events(handle, 50) == 50
    got = [enforcer.next_event(2.0) for _ in range(50)]
    assert all(ev is not None and ev.path == "minerguard-self-test" for ev in got)
    assert all(ev is not None and ev.rule == "allow-learned" for ev in got)
    # Loaded with the first profile that needs them: none so far has a
    # stratum rule, nor (on the cgroup backend) exec rules judging files.
    assert enforcer.fast_open is not None and "not loaded yet" in enforcer.fast_open
    assert enforcer.stratum_sk_msg is not None and "not loaded yet" in enforcer.stratum_sk_msg
    if enforcer.backend == "lsm":
        assert enforcer.loader_exec is None
    else:
        assert enforcer.loader_exec is not None and "not loaded yet" in enforcer.loader_exec
    with pytest.raises(ValueError, match="duration"):
        enforcer.learn(cgroup=cgroup.path, duration=0)


def test_a_scope_follows_its_cgroup_created_again(
    cgroup: Cgroup, enforcer: Enforcer, tmp_path: Path
) -> None:
    miner = fake_miner(tmp_path)
    handle = enforcer.apply(exec_profile(), cgroup=cgroup.path)
    assert enforcer.follow_cgroups() == []
    # A restarted container: the cgroup goes, a new one comes at its path.
    cgroup.path.rmdir()
    assert enforcer.follow_cgroups() == [("gone", handle.id, str(cgroup.path))]
    assert enforcer.follow_cgroups() == [], "said once"
    cgroup.path.mkdir()
    assert enforcer.follow_cgroups() == [("recreated", handle.id, str(cgroup.path))]
    inside = tmp_path / "ran-inside"
    assert run_in(cgroup, [str(miner), str(inside)]) == denied_exec(enforcer)
    assert not inside.exists(), "the miner ran in the new cgroup"
    enforcer.remove(handle)


def test_denied_connect_inside_scope_only(
    cgroup: Cgroup, enforcer: Enforcer, listener: socket.socket
) -> None:
    port = port_of(listener)
    other = socket.create_server(("127.0.0.1", 0))
    try:
        handle = enforcer.apply(Profile("py-net").deny_ports([port], name="pool-port"), cgroup=str(cgroup.path))
        assert connect_in(cgroup, port) == errno.EPERM
        ev = wait_for(enforcer, "pool-port")
        assert (ev.kind, ev.addr, ev.port, ev.protocol) == ("connect", "127.0.0.1", port, "tcp")
        assert (ev.action, ev.requested, ev.profile) == ("deny", "deny", "py-net")
        assert ev.cgroup_id == cgroup.id and ev.path is None
        assert ev.to_dict()["output_fields"]["fd.sport"] == port

        assert connect_in(cgroup, port_of(other)) == 0, "other ports still connect"
        assert connect_in(None, port) == 0, "outside the scope the port connects"
        enforcer.remove(handle)
        assert connect_in(cgroup, port) == 0, "after remove the port connects"
    finally:
        other.close()


_SEND = """
import select, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
try:
    s.sendall(sys.argv[2].encode())
except OSError as e:
    sys.exit(e.errno)
# The egress judge lets the refused send succeed and destroys the socket:
# wait (argv[4] seconds at most) for the error that tells the sender.
if select.select([s], [], [], float(sys.argv[4]))[0]:
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        sys.exit(err)
time.sleep(float(sys.argv[3]))
"""


def _stratum_is_refused_and_clean_sockets_go_untouched(
    cgroup: Cgroup, enforcer: Enforcer, listener: socket.socket, judge: str
) -> None:
    port = port_of(listener)
    enforcer.apply(
        Profile("py-stratum").add_rule_dict({"name": "stratum-protocol", "action": "deny", "stratum": {}}),
        cgroup=str(cgroup.path),
    )
    lsm = enforcer.backend == "lsm"
    egress = not lsm and judge == "egress"
    if egress:
        assert enforcer.stratum_errno == errno.ECONNABORTED
        assert enforcer.stratum_sk_msg is not None and "egress judge" in enforcer.stratum_sk_msg
        assert enforcer.fast_open is not None and "egress judge" in enforcer.fast_open
    else:
        assert enforcer.stratum_errno == (errno.EPERM if lsm else errno.EACCES)
        assert enforcer.fast_open is None
    assert (enforcer.lsm_stratum is None) == lsm, enforcer.lsm_stratum
    # The egress judge stands behind the lsm hook only.
    assert (enforcer.stratum_backstop is None) == lsm, enforcer.stratum_backstop
    if enforcer.backend == "cgroup" and not egress:
        assert enforcer.stratum_sk_msg is None
    subscribe = '{"id": 1, "method": "mining.subscribe", "params": []}\n'
    sent = run_in(cgroup, [sys.executable, "-c", _SEND, str(port), subscribe, "0", "5"])
    assert sent == enforcer.stratum_errno
    ev = wait_for(enforcer, "stratum-protocol")
    assert (ev.kind, ev.port, ev.signature, ev.method) == ("stratum", port, "stratum-v1", "mining.")
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(5)
        got = b""
        try:
            while chunk := conn.recv(4096):
                got += chunk
        except ConnectionResetError:
            pass
        assert b"mining.subscribe" not in got, got
    assert enforcer.destroyed_sockets == ((1, 0) if egress else (0, 0))
    # A clean client that stays connected: past the reader's budget (4096
    # bytes) the sk_msg path releases its socket; the egress judge tracks
    # none.
    assert enforcer.released_sockets == 0
    upload = "POST /upload HTTP/1.1\r\nContent-Length: 4040\r\n\r\n"
    upload += "x" * (4096 - len(upload))
    assert run_in(cgroup, [sys.executable, "-c", _SEND, str(port), upload, "0.5", "0"]) == 0
    assert enforcer.released_sockets == (0 if egress else 1)


def test_stratum_send_is_refused_and_clean_sockets_go_untouched(
    cgroup: Cgroup, enforcer: Enforcer, listener: socket.socket
) -> None:
    _stratum_is_refused_and_clean_sockets_go_untouched(cgroup, enforcer, listener, "egress")


def test_the_sk_msg_stratum_judge_can_be_chosen(cgroup: Cgroup, kernel: None, listener: socket.socket) -> None:
    with Enforcer(backend(), stratum_judge="sk-msg") as enf:
        _stratum_is_refused_and_clean_sockets_go_untouched(cgroup, enf, listener, "sk-msg")


def test_an_unknown_stratum_judge_is_named() -> None:
    with pytest.raises(ValueError, match="stratum_judge: unknown Stratum judge `nope`"):
        Enforcer(stratum_judge="nope")  # type: ignore[arg-type]


def test_update_swaps_profile_and_context_exit_removes_everything(
    cgroup: Cgroup, kernel: None, listener: socket.socket, tmp_path: Path
) -> None:
    miner = fake_miner(tmp_path)
    port = port_of(listener)
    with Enforcer(backend()) as enf:
        handle = enf.apply(exec_profile(), cgroup=cgroup.path)
        assert connect_in(cgroup, port) == 0
        enf.update(handle, Profile("py-net").deny_ports([port]))
        assert connect_in(cgroup, port) == errno.EPERM
        marker = tmp_path / "after-update"
        assert run_in(cgroup, [str(miner), str(marker)]) == 0 and marker.exists()
        enf.update(handle, exec_profile())
    # Leaving the block dropped the enforcer: nothing is enforced any more.
    assert enf.closed
    marker = tmp_path / "after-exit"
    assert run_in(cgroup, [str(miner), str(marker)]) == 0 and marker.exists()
    assert connect_in(cgroup, port) == 0
    with pytest.raises(ValueError, match="closed"):
        enf.apply(exec_profile(), cgroup=cgroup.path)
    # Events queued before the close are still readable; then the stream
    # ends at once (it does not wait for the timeout, or forever).
    start = time.monotonic()
    leftover = list(enf.events(timeout=10))
    assert {e.rule for e in leftover} <= {"deny-ports"}
    assert enf.next_event() is None
    assert time.monotonic() - start < 2
    enf.close()  # idempotent


def test_run_returns_status_and_events(kernel: None, tmp_path: Path) -> None:
    miner = fake_miner(tmp_path)
    marker = tmp_path / "marker"
    before = set(cgroup2_mount().iterdir())
    result = minerguard.run(exec_profile(), [str(miner), str(marker)], backend=backend())
    assert not marker.exists()
    assert [e.rule for e in result.events] == ["miner-binary"]
    ev = result.events[0]
    assert ev.kind == "exec" and ev.path == str(miner) and ev.requested == "deny"
    if result.backend == "cgroup":
        assert (result.returncode, result.signal, result.spawn_error) == (-9, 9, None)
        assert ev.action == "kill"
    else:
        assert (result.returncode, result.signal) == (126, None) and result.spawn_error
        assert ev.action == "deny"
    assert not result.timed_out and result.drops.total == 0

    ok = minerguard.run(exec_profile(), ["sh", "-c", "exit 3"])
    assert (ok.returncode, ok.signal, ok.events) == (3, None, [])
    slow = minerguard.run(exec_profile(), ["sleep", "30"], timeout=0.3)
    assert slow.timed_out and slow.returncode == -9
    with pytest.raises(FileNotFoundError):
        minerguard.run(exec_profile(), [str(tmp_path / "no-such-program")])
    with pytest.raises(minerguard.ProfileError):
        minerguard.run(Profile("bad").deny_ports([0]), ["true"])
    # Every run removed its cgroup.
    assert set(cgroup2_mount().iterdir()) == before


def test_example_script_runs_a_command_under_a_profile(kernel: None, tmp_path: Path) -> None:
    miner = fake_miner(tmp_path)
    marker = tmp_path / "marker"
    events = tmp_path / "events.jsonl"
    script = REPO / "examples" / "python" / "run_under_profile.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--events", str(events), "--", str(miner), str(marker)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode in (137, 126), proc.stderr
    assert not marker.exists()
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [line["rule"] for line in lines] == ["miner-binary"]
    assert lines[0]["output_fields"]["proc.exepath"] == str(miner)


def test_events_iterator_stops_after_silence(enforcer: Enforcer, cgroup: Cgroup, tmp_path: Path) -> None:
    enforcer.apply(exec_profile(), cgroup=cgroup.path)
    start = time.monotonic()
    assert list(enforcer.events(timeout=0.3)) == []
    elapsed = time.monotonic() - start
    assert 0.29 <= elapsed < 2.0, elapsed
    assert enforcer.next_event(0.0) is None
    miner = fake_miner(tmp_path)
    for i in range(3):
        run_in(cgroup, [str(miner), str(tmp_path / f"m{i}")])
    got = [ev.rule for ev in enforcer.events(timeout=1.0)]
    assert got == ["miner-binary"] * 3
    drops = enforcer.drops
    assert (drops.ring, drops.channel, drops.total) == (0, 0, 0)


def _count_for(seconds: float) -> int:
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += 1
    return n


def test_event_wait_releases_the_gil(enforcer: Enforcer, cgroup: Cgroup) -> None:
    enforcer.apply(exec_profile(), cgroup=cgroup.path)
    window = 0.5
    baseline = _count_for(window)

    for how in ("next_event", "iterator"):
        started = threading.Event()
        result: list[object] = []

        def wait() -> None:
            started.set()
            if how == "next_event":
                result.append(enforcer.next_event(timeout=window * 3))
            else:
                result.extend(enforcer.events(timeout=window * 3))

        t = threading.Thread(target=wait)
        t.start()
        started.wait()
        time.sleep(0.05)  # the waiter is now inside the native wait
        during = _count_for(window)
        assert t.is_alive(), "the waiter must still be blocked while we count"
        t.join()
        ratio = during / baseline
        print(f"GIL test ({how}): {baseline} counts alone, {during} while a thread waits ({ratio:.2f})")
        assert ratio > 0.3, f"{how}: counting slowed to {ratio:.2f} of baseline: GIL held while waiting?"
        assert result in ([None], [])


def test_every_error_kind_is_raised(kernel: None, cgroup: Cgroup) -> None:
    with Enforcer(backend()) as enf, Enforcer(backend()) as other:
        # CgroupError: missing cgroup, and a directory that is no cgroup.
        with pytest.raises(minerguard.CgroupError, match="nonexistent"):
            enf.apply(exec_profile(), cgroup="/nonexistent-minerguard-cgroup")
        with pytest.raises(minerguard.CgroupError):
            enf.apply(exec_profile(), cgroup="/tmp")
        # ProfileError at apply, with the field path.
        with pytest.raises(minerguard.ProfileError) as info:
            enf.apply(Profile("bad").deny_ports([0]), cgroup=cgroup.path)
        assert info.value.field == "rules[0].connect.ports[0]"
        # ScopeError: applied twice, removed twice, a handle of another enforcer.
        h = enf.apply(exec_profile(), cgroup=cgroup.path)
        with pytest.raises(minerguard.ScopeError, match="already"):
            enf.apply(exec_profile(), cgroup=cgroup.path)
        with pytest.raises(minerguard.ScopeError, match="another enforcer"):
            other.remove(h)
        enf.remove(h)
        with pytest.raises(minerguard.ScopeError, match="unknown"):
            enf.remove(h)
        with pytest.raises(minerguard.ScopeError):
            enf.update(h, exec_profile())
        # Bad arguments.
        with pytest.raises(ValueError):
            enf.apply(exec_profile())
        with pytest.raises(ValueError):
            enf.apply(exec_profile(), cgroup=cgroup.path, host=True)
        wrong: Any = enf  # the calls below are wrong on purpose
        with pytest.raises(TypeError):
            wrong.apply("profile", cgroup=cgroup.path)
        with pytest.raises(TypeError):
            wrong.remove(1)
        with pytest.raises(TypeError):
            wrong.apply(exec_profile(), cgroup=42)
        with pytest.raises(ValueError):
            enf.next_event(-1)
        with pytest.raises(ValueError):
            enf.events(float("nan"))
        with pytest.raises(ValueError):
            enf.effective_action("exec", "block")

    # LoadError: the lsm backend where the kernel refuses BPF-LSM.
    if minerguard.probe()["bpf_lsm"]["available"]:
        with Enforcer("lsm") as lsm:
            assert lsm.backend == "lsm"
    else:
        with pytest.raises(minerguard.LoadError, match="lsm"):
            Enforcer("lsm")


def _low_port_listener() -> socket.socket:
    """A loopback listener on a port below 32769 (outside the ephemeral range)."""
    for port in range(23000, 23100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(4)
            return s
        except OSError:
            s.close()
    raise RuntimeError("no free loopback port in 23000-23099")


def test_full_kernel_map_is_an_attach_error_and_leaves_others_intact(kernel: None) -> None:
    # Each profile may hold half the port map (room for an atomic update);
    # a third one cannot fit.
    big = Profile("big").deny_ports(["1-32768"])
    assert big.validate() == []
    cgroups = [make_cgroup() for _ in range(3)]
    try:
        with Enforcer(backend()) as enf:
            enf.apply(big, cgroup=cgroups[0].path)
            second = enf.apply(big, cgroup=cgroups[1].path)
            with pytest.raises(minerguard.AttachError, match="mg_ports"):
                enf.apply(big, cgroup=cgroups[2].path)
            assert len(enf.handles()) == 2, "the failed apply left nothing behind"
            low = _low_port_listener()
            try:
                port = port_of(low)
                assert connect_in(cgroups[0], port) == errno.EPERM, "first scope still enforced"
                assert connect_in(cgroups[2], port) == 0, "nothing of the failed apply remains"
                enf.remove(second)
                small = enf.apply(Profile("small").deny_ports([port]), cgroup=cgroups[2].path)
                assert connect_in(cgroups[2], port) == errno.EPERM
                enf.remove(small)
                assert connect_in(cgroups[2], port) == 0
            finally:
                low.close()
    finally:
        for cg in cgroups:
            cg.remove()


def test_probe_reports_this_kernel(kernel: None) -> None:
    report = minerguard.probe()
    assert report["euid"] == os.geteuid() == 0
    assert report["kernel"] == os.uname().release
    assert report["backend"] in ("cgroup", "lsm")
    assert report["cgroup2_mount"] == str(cgroup2_mount())
    assert report["cgroup_bpf"]["available"] is True
    assert isinstance(report["missing"], list)
    with Enforcer(backend()) as enf:
        assert enf.backend == report["backend"] or backend() != "auto"
