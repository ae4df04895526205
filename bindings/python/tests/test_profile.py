"""Profiles from Python: parsing, the builder, validation, errors. These
need no root and touch no kernel."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable

import pytest

import minerguard
from minerguard import Profile, ProfileError

YAML = """\
apiVersion: minerguard/v1
name: demo
mode: enforce
rules:
  - name: miner-binary
    action: deny
    exec: { names: [xmrig, minerd] }
  - name: pool-port
    action: audit
    connect: { ports: [3333, "5000-5010"] }
"""


def test_parse_yaml_json_and_file_round_trip(tmp_path: Path) -> None:
    p = Profile.from_yaml(YAML)
    assert p.name == "demo" and p.mode == "enforce" and len(p) == 2
    assert p.rules[0] == {"name": "miner-binary", "action": "deny", "exec": {"names": ["xmrig", "minerd"]}}
    assert p.rules[1]["connect"]["ports"] == [3333, "5000-5010"]
    assert Profile.from_json(p.to_json()) == p
    assert Profile.from_yaml(p.to_yaml()) == p
    f = tmp_path / "p.yaml"
    f.write_text(YAML)
    assert Profile.from_file(f) == p
    assert Profile.from_file(str(f)) == p
    assert p.to_dict()["apiVersion"] == "minerguard/v1"
    assert "deny exec.names `miner-binary`" in p.summary()
    assert "default" in Profile.bundled_names()
    assert Profile.bundled("default").name == "default"


def test_builder_chains_and_covers_every_matcher_kind() -> None:
    p = Profile("built", mode="audit")
    same = (
        p.deny_exec_names(["xmrig"])
        .deny_ports([3333, "5000-5010"], action="kill")
        .add_rule("miner-2", "audit", exec_names=["cpuminer"], description="for people")
        .add_rule("ports-2", "deny", ports=[4444])
        .add_rule_dict({"name": "pools", "action": "deny", "connect": {"cidrs": ["203.0.113.0/24"]}})
        .add_rule_dict({"name": "stratum", "action": "kill", "stratum": {}})
    )
    assert same is p
    assert [r["name"] for r in p.rules] == [
        "deny-exec-names", "deny-ports", "miner-2", "ports-2", "pools", "stratum",
    ]
    assert p.rules[1] == {"name": "deny-ports", "action": "kill", "connect": {"ports": [3333, "5000-5010"]}}
    assert p.rules[2]["description"] == "for people"
    assert p.validate() == []
    p.check()
    assert Profile.from_yaml(p.to_yaml()) == p
    assert p.mode == "audit"
    p.mode = "enforce"
    p.name = "renamed"
    assert (p.mode, p.name) == ("enforce", "renamed")
    # A default rule name is never reused.
    p.deny_exec_names(["minerd"])
    assert p.rules[-1]["name"] == "deny-exec-names-2"
    assert p.validate() == []


def test_validate_returns_every_problem_with_its_path() -> None:
    p = Profile("")
    p.add_rule("dup", "deny", exec_names=["ok", "a/b"])
    p.add_rule("dup", "deny", ports=[0, "10-5"])
    diags = p.validate()
    assert [d.field for d in diags] == [
        "name",
        "rules[0].exec.names[1]",
        "rules[1].name",
        "rules[1].connect.ports[0]",
        "rules[1].connect.ports[1]",
    ]
    assert all(isinstance(d, minerguard.Diagnostic) and d.message for d in diags)
    with pytest.raises(ProfileError) as info:
        p.check()
    assert [d.field for d in info.value.diagnostics] == [d.field for d in diags]
    assert info.value.field == "name"


def test_port_zero_names_its_field_everywhere() -> None:
    text = "apiVersion: minerguard/v1\nname: x\nrules:\n  - name: r\n    action: deny\n    connect: { ports: [0] }\n"
    with pytest.raises(ProfileError) as info:
        Profile.from_yaml(text)
    assert info.value.field == "rules[0].connect.ports[0]"
    assert "port 0" in str(info.value.message)
    with pytest.raises(ProfileError) as info:
        Profile.from_json(
            json.dumps({
                "apiVersion": "minerguard/v1",
                "name": "x",
                "rules": [{"name": "r", "action": "deny", "connect": {"ports": [0]}}],
            })
        )
    assert info.value.field == "rules[0].connect.ports[0]"
    built = Profile("x").deny_ports([0])
    assert [d.field for d in built.validate()] == ["rules[0].connect.ports[0]"]


def test_syntax_errors_carry_line_and_column() -> None:
    text = "apiVersion: minerguard/v1\nname: x\nrules:\n  - name: r\n    action: deny\n    exec: { nmaes: [a] }\n"
    with pytest.raises(ProfileError) as info:
        Profile.from_yaml(text)
    e = info.value
    assert e.line == 6 and e.column is not None
    assert "nmaes" in str(e) and len(e.diagnostics) == 1
    assert e.diagnostics[0].line == 6
    with pytest.raises(ProfileError):
        Profile.from_json("{not json")


def test_add_rule_dict_errors_name_the_rule_field() -> None:
    p = Profile("x").deny_exec_names(["xmrig"])
    with pytest.raises(ProfileError) as info:
        p.add_rule_dict({"name": "r", "action": "deny", "connect": {"ports": [70000]}})
    assert info.value.field == "rules[1].connect.ports[0]"
    assert "70000" in str(info.value)
    with pytest.raises(ProfileError) as info:
        p.add_rule_dict({"name": "r", "action": "block", "exec": {"names": ["a"]}})
    assert "block" in str(info.value)
    with pytest.raises(ProfileError) as info:
        p.add_rule_dict({"name": "r", "action": "deny", "exec": {"nmaes": ["a"]}})
    assert str(info.value.field).startswith("rules[1]") and "nmaes" in str(info.value)
    with pytest.raises(ProfileError) as info:
        p.deny_ports(["not-a-port"])
    assert info.value.field == "rules[1].connect.ports[0]"
    assert len(p) == 1, "a rejected rule is not added"


def test_missing_file_is_a_profile_error() -> None:
    with pytest.raises(ProfileError) as info:
        Profile.from_file("/nonexistent/minerguard.yaml")
    assert "/nonexistent/minerguard.yaml" in str(info.value)


def test_bad_argument_types_raise_type_error() -> None:
    p: Any = Profile("x")  # Any: these calls are wrong on purpose
    P: Any = Profile
    mg: Any = minerguard
    bad_calls: list[Callable[[], object]] = [
        lambda: P(1),
        lambda: p.deny_ports("3333"),
        lambda: p.deny_ports([True]),
        lambda: p.deny_ports([1.5]),
        lambda: p.deny_exec_names("xmrig"),
        lambda: p.deny_exec_names([1]),
        lambda: P.from_yaml(b"name: x"),
        lambda: P.from_file(3),
        lambda: p.add_rule_dict([1]),
        lambda: p.add_rule_dict({"name": object()}),
        lambda: mg.Enforcer(3),
        lambda: mg.run("p", ["true"]),
        lambda: mg.run(p, "true"),
    ]
    for call in bad_calls:
        with pytest.raises(TypeError):
            call()
    assert len(p) == 0


def test_bad_argument_values_raise_value_error() -> None:
    p: Any = Profile("x")  # Any: these calls are wrong on purpose
    P: Any = Profile
    mg: Any = minerguard
    bad_calls: list[Callable[[], object]] = [
        lambda: P("x", mode="bogus"),
        lambda: p.deny_exec_names(["xmrig"], action="block"),
        lambda: p.add_rule("r", "deny"),
        lambda: p.add_rule("r", "deny", exec_names=["a"], ports=[1]),
        lambda: P.bundled("no-such-profile"),
        lambda: mg.Enforcer("bogus"),
        lambda: mg.run(p, []),
        lambda: mg.run(p, ["true"], timeout=-1),
        lambda: mg.run(p, ["true"], backend="nope"),
    ]
    for call in bad_calls:
        with pytest.raises(ValueError):
            call()
    with pytest.raises(OverflowError):
        p.deny_ports([2**80])
    assert len(p) == 0


def test_exception_classes_form_one_hierarchy() -> None:
    kinds = [
        minerguard.ProfileError,
        minerguard.LoadError,
        minerguard.AttachError,
        minerguard.ScopeError,
        minerguard.CgroupError,
        minerguard.SeccompError,
    ]
    assert issubclass(minerguard.Error, Exception)
    for k in kinds:
        assert issubclass(k, minerguard.Error) and k is not minerguard.Error
        assert k.__module__ == "minerguard"
    assert len(set(kinds)) == len(kinds)


def test_garbage_never_crashes_the_interpreter() -> None:
    rng = random.Random(7)
    alphabet = "apiVersion:name rules-[]{}:,\"'\n\t0123456789xmrig\\\x00é"
    raised = 0
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 80)))
        try:
            Profile.from_yaml(text)
        except ProfileError:
            raised += 1
    assert raised == 400
    junks: list[dict[str, Any]] = [{}, {"name": None}, {"name": "r", "action": "deny", "exec": {"names": "x"}}, {"a": [1, {"b": 2.5}]}]
    for junk in junks:
        with pytest.raises(ProfileError):
            Profile("x").add_rule_dict(junk)
    # Nested non-JSON values surface as Python's own TypeError.
    with pytest.raises(TypeError):
        Profile("x").add_rule_dict({"name": "r", "action": "deny", "exec": {"names": {1, 2}}})
    assert json.loads(Profile("x").to_json())["name"] == "x"


def test_invalid_cidr_names_its_field_and_stratum_builder() -> None:
    p = Profile("x").deny_cidrs(["203.0.113.0/24", "10.0.0.1/8"]).stratum(action="deny")
    diags = p.validate()
    assert [d.field for d in diags] == ["rules[0].connect.cidrs[1]"]
    assert "host bits" in diags[0].message
    with pytest.raises(ProfileError) as info:
        p.check()
    assert info.value.field == "rules[0].connect.cidrs[1]"
    assert p.rules[1]["action"] == "deny"
    assert "stratum" in p.rules[1]
    ok = Profile("y").deny_cidrs(["2001:db8::/32"], action="audit").stratum()
    assert ok.validate() == []
    assert ok.rules[1]["action"] == "kill"
    own = Profile("z").stratum(methods=["my_pool.auth"], signatures=["cn-proto/7", ""])
    assert own.rules[0]["stratum"] == {"methods": ["my_pool.auth"], "signatures": ["cn-proto/7", ""]}
    diags = own.validate()
    assert [d.field for d in diags] == ["rules[0].stratum.signatures[1]"]
    assert "empty" in diags[0].message


def test_kill_container_is_an_action_refused_on_seccomp_rules() -> None:
    p = Profile("kc").deny_exec_names(["xmrig"], action="kill-container")
    p.add_rule("pool", "kill-container", ports=[3333])
    p.add_rule_dict({"name": "stratum", "action": "kill-container", "stratum": {}})
    assert [r["action"] for r in p.rules] == ["kill-container"] * 3
    assert p.validate() == []
    p.check()
    assert "action: kill-container" in p.to_yaml()
    assert Profile.from_yaml(p.to_yaml()) == p
    assert "kill-container exec.names" in p.summary()
    p.add_rule_dict({"name": "sc", "action": "kill-container", "seccomp": {"default": "allow"}})
    assert [d.field for d in p.validate()] == ["rules[3].action"]
    with pytest.raises(ProfileError) as info:
        p.check()
    assert info.value.field == "rules[3].action"
    assert "seccomp" in str(info.value)
    with pytest.raises(ProfileError) as info:
        Profile.from_yaml(
            "apiVersion: minerguard/v1\nname: x\nrules:\n"
            "  - name: r\n    action: kill_container\n    exec: { names: [a] }\n"
        )
    assert info.value.field == "rules[0].action"
    assert "kill-container" in str(info.value), "the error lists the valid actions"
    bad: Any = "kill_container"  # Any: wrong on purpose
    with pytest.raises(ValueError, match="kill-container"):
        Profile("x").deny_exec_names(["xmrig"], action=bad)

