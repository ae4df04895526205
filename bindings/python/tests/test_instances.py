"""Pinned enforcer instances from Python: an `Enforcer(instance=...)` keeps
enforcing after it is closed or deleted, the next enforcer of that name
adopts it, and `detach()` ends it. Every test works in a cgroup it creates
and pins instances named after this process, removed after the test even
when it fails."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pytest

import minerguard
from minerguard import Enforcer, PinError, Profile

from conftest import Cgroup, backend, fake_miner, run_in

if TYPE_CHECKING:
    from minerguard._minerguard import Instance  # a TypedDict of the stubs

_counter = itertools.count()


class Pinned:
    """An instance name for one test, and the enforcers opened with it."""

    def __init__(self) -> None:
        self.name = f"py-{os.getpid()}-{next(_counter)}"
        self.opened: list[Enforcer] = []

    def open(self) -> Enforcer:
        enf = Enforcer(backend(), instance=self.name)
        self.opened.append(enf)
        return enf

    def status(self) -> Optional[Instance]:
        return next((i for i in minerguard.instances() if i["name"] == self.name), None)

    def cleanup(self) -> None:
        for enf in self.opened:
            enf.close()
        self.opened.clear()
        try:
            minerguard.remove_instance(self.name)
        except PinError:
            pass  # ended by the test, as it should be


@pytest.fixture
def pinned(kernel: None) -> Iterator[Pinned]:
    p = Pinned()
    try:
        yield p
    finally:
        p.cleanup()
        assert p.status() is None, f"instance {p.name} left pinned"


def exec_profile() -> Profile:
    return Profile("py-pinned").add_rule("miner-binary", "deny", exec_names=["xmrig"])


def test_a_pinned_instance_survives_close_and_del_and_is_adopted_by_name(
    cgroup: Cgroup, pinned: Pinned, tmp_path: Path
) -> None:
    miner = fake_miner(tmp_path)

    def runs(tag: str) -> bool:
        marker = tmp_path / tag
        run_in(cgroup, [str(miner), str(marker)])
        return marker.exists()

    assert pinned.status() is None
    enf = pinned.open()
    assert enf.instance == pinned.name
    assert pinned.name in repr(enf)
    assert enf.unadopted() == []
    enf.apply(exec_profile(), cgroup=cgroup.path)
    assert not runs("first"), "the miner ran under the first enforcer"

    # Closed, the enforcer leaves its enforcement pinned.
    enf.close()
    assert enf.closed and enf.instance == pinned.name
    assert not runs("after-close"), "the miner ran once the enforcer was closed"
    status = pinned.status()
    assert status is not None, "instances() does not list the instance"
    assert status["pid"] == os.getpid() and status["alive"] is True
    assert status["backend"] == enf.backend
    assert status["links"] and status["maps"] > 0
    # Nothing was refused unread or passed untracked.
    assert status["stratum_judge"] == {"unread_refused": 0, "untracked": 0, "own_copies": 0}
    [scope] = status["scopes"]
    assert scope["scope"] == str(cgroup.path)
    assert scope["cgroup_id"] == cgroup.id and scope["present"] is True
    assert scope["profile"] == "py-pinned"

    # Opened again by name, then deleted: the scope stays enforced.
    again = pinned.open()
    assert again.unadopted() == [str(cgroup.path)]
    pinned.opened.remove(again)
    del again  # the last reference: the enforcer goes, its instance stays
    assert not runs("after-del"), "the miner ran once the enforcer was deleted"

    # Adopted: applied again, nothing is dropped, the policy is kept.
    adopter = pinned.open()  # PinError here if `del` had not let go
    assert adopter.unadopted() == [str(cgroup.path)]
    adopter.apply(exec_profile(), cgroup=cgroup.path)
    assert adopter.unadopted() == []
    settled = adopter.release_unadopted()
    assert settled["dropped"] == [] and isinstance(settled["released_links"], int)
    assert not runs("adopted"), "the miner ran in the adopted scope"
    after = pinned.status()
    assert after is not None and after["scopes"][0]["policy_id"] == scope["policy_id"]

    # Detach ends the instance and closes the enforcer.
    adopter.detach()
    assert adopter.closed
    assert pinned.status() is None, "the detached instance is still listed"
    assert runs("detached"), "the miner must run once the instance is detached"
    with pytest.raises(ValueError, match="closed"):
        adopter.detach()
    with pytest.raises(ValueError, match="closed"):
        adopter.unadopted()
    with pytest.raises(ValueError, match="closed"):
        adopter.apply(exec_profile(), cgroup=cgroup.path)
    with pytest.raises(PinError, match="no pinned instance"):
        minerguard.remove_instance(pinned.name)


def test_an_instance_has_one_live_enforcer_and_an_unadopted_scope_can_be_dropped(
    cgroup: Cgroup, pinned: Pinned, tmp_path: Path
) -> None:
    miner = fake_miner(tmp_path)
    enf = pinned.open()
    enf.apply(exec_profile(), cgroup=cgroup.path)
    with pytest.raises(PinError, match="in use"):
        Enforcer(backend(), instance=pinned.name)
    with pytest.raises(PinError, match="in use"):
        minerguard.remove_instance(pinned.name)
    enf.close()

    # The next enforcer does not apply the scope again: releasing drops it.
    successor = pinned.open()
    settled = successor.release_unadopted()
    assert settled["dropped"] == [str(cgroup.path)]
    assert successor.unadopted() == []
    marker = tmp_path / "dropped"
    assert run_in(cgroup, [str(miner), str(marker)]) == 0 and marker.exists()
    status = pinned.status()
    assert status is not None and status["scopes"] == []
    successor.close()
    minerguard.remove_instance(pinned.name)
    assert pinned.status() is None


def test_bad_instance_names_raise_pin_error() -> None:
    assert issubclass(PinError, minerguard.Error)
    for bad in ["a/b", "", "..", "a.b", "x y", "x" * 65]:
        # Refused before the kernel is touched: no root needed.
        with pytest.raises(PinError, match=re.escape(f"`{bad}`")):
            Enforcer(backend(), instance=bad)
        with pytest.raises(PinError, match=re.escape(f"`{bad}`")):
            minerguard.remove_instance(bad)
    with pytest.raises(PinError, match="no pinned instance `py-missing-"):
        minerguard.remove_instance(f"py-missing-{os.getpid()}")
    wrong: Any = 42  # wrong on purpose
    with pytest.raises(TypeError):
        Enforcer(backend(), instance=wrong)
    with pytest.raises(TypeError):
        minerguard.remove_instance(wrong)


def test_an_unpinned_enforcer_has_no_instance_and_detach_closes_it(kernel: None) -> None:
    enf = Enforcer(backend())
    assert enf.instance is None
    assert enf.unadopted() == []
    assert enf.release_unadopted() == {"dropped": [], "released_links": 0}
    enf.detach()
    assert enf.closed
    enf.close()  # idempotent after detach
    with pytest.raises(ValueError, match="closed"):
        enf.release_unadopted()
