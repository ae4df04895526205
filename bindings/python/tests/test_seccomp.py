"""Seccomp from Python: exports of a profile's seccomp filter, and the filter
installed in a child process (a `python -c` subprocess, or the command of
`run()`), never in the pytest process itself."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap

import pytest

import minerguard
from minerguard import Profile

from conftest import backend

# ptrace(PTRACE_TRACEME): exits with its errno, or 0 when it succeeds.
PTRACE_PERL = ["perl", "-e", "my $r = syscall(101, 0, 0, 0, 0); exit($r == -1 ? $!+0 : 0)"]

NO_PTRACE = """\
apiVersion: minerguard/v1
name: py-seccomp
rules:
  - name: no-ptrace
    action: deny
    seccomp:
      syscalls:
        - names: [ptrace]
          action: { errno: 13 }
"""


def seccomp_profile() -> Profile:
    return Profile.from_yaml(NO_PTRACE)


def plain_profile() -> Profile:
    return Profile("py-plain").deny_exec_names(["xmrig"])


def test_oci_json_has_the_runtime_fields() -> None:
    p = seccomp_profile()
    assert p.has_seccomp() and not plain_profile().has_seccomp()
    text = p.to_oci_json()
    oci = json.loads(text)
    assert oci["defaultAction"] == "SCMP_ACT_ALLOW"
    assert oci["architectures"] == ["SCMP_ARCH_X86_64"]
    assert oci["syscalls"] == [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
    assert text == p.to_oci_json(), "deterministic"


def test_bpf_is_whole_sock_filter_instructions() -> None:
    bpf = seccomp_profile().to_bpf()
    assert isinstance(bpf, bytes)
    assert len(bpf) > 0 and len(bpf) % 8 == 0
    # The first instruction loads seccomp_data.arch: BPF_LD|BPF_W|BPF_ABS, k=4.
    assert int.from_bytes(bpf[0:2], sys.byteorder) == 0x20
    assert int.from_bytes(bpf[4:8], sys.byteorder) == 4


def test_pfc_names_the_syscall() -> None:
    pfc = seccomp_profile().to_pfc()
    assert "ptrace" in pfc and "ERRNO(13)" in pfc


def test_audit_mode_turns_actions_into_log() -> None:
    p = seccomp_profile()
    p.mode = "audit"
    assert json.loads(p.to_oci_json())["syscalls"][0]["action"] == "SCMP_ACT_LOG"


def test_seccomp_rules_from_the_builder_and_the_miner_preset() -> None:
    p = Profile("built").add_rule_dict(
        {"name": "miner", "action": "deny", "seccomp": {"preset": "miner"}}
    )
    names = {n for s in json.loads(p.to_oci_json())["syscalls"] for n in s["names"]}
    assert {"ptrace", "bpf", "perf_event_open", "kexec_load", "personality"} <= names


def test_export_errors() -> None:
    plain = plain_profile()
    for export in (plain.to_oci_json, plain.to_bpf, plain.to_pfc):
        with pytest.raises(ValueError, match="has no seccomp rule") as info:
            export()
        assert not isinstance(info.value, minerguard.Error)

    conflicting = (
        Profile("conflict")
        .add_rule_dict({"name": "a", "action": "deny", "seccomp": {"default": "allow"}})
        .add_rule_dict({"name": "b", "action": "deny", "seccomp": {"default": "kill_process"}})
    )
    with pytest.raises(minerguard.ProfileError) as perr:
        conflicting.to_bpf()
    assert perr.value.field == "rules[1].seccomp.default"
    with pytest.raises(minerguard.ProfileError):
        conflicting.has_seccomp()

    notify = Profile("notify").add_rule_dict(
        {
            "name": "n",
            "action": "deny",
            "seccomp": {"syscalls": [{"names": ["ptrace"], "action": "notify"}]},
        }
    )
    with pytest.raises(minerguard.SeccompError, match="notify"):
        notify.to_oci_json()
    assert len(notify.to_bpf()) % 8 == 0, "BPF can express notify"


_CHILD = textwrap.dedent(
    """
    import ctypes, os, sys
    import minerguard

    libc = ctypes.CDLL(None, use_errno=True)
    PR_GET_SECCOMP = 21

    try:
        minerguard.Profile("plain").deny_exec_names(["xmrig"]).install_seccomp()
        sys.exit(20)
    except ValueError as e:
        if "no seccomp rule" not in str(e):
            sys.exit(21)
    if libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != 0:
        sys.exit(22)  # the failed call installed something

    minerguard.Profile.from_yaml(sys.argv[1]).install_seccomp()
    if libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != 2:
        sys.exit(23)  # not in filter mode
    rc = libc.syscall(101, 0, 0, 0, 0)
    if rc != -1 or ctypes.get_errno() != 13:
        sys.exit(24)
    if os.getppid() <= 0:
        sys.exit(25)
    print("filtered", flush=True)
    """
)


def test_install_seccomp_in_a_child_denies_only_the_named_call() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, NO_PTRACE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, "filtered\n"), proc.stderr


def test_the_test_process_has_no_filter() -> None:
    with open("/proc/self/status") as f:
        mode = next(line for line in f if line.startswith("Seccomp:"))
    assert mode.split()[1] == "0"


def test_perl_probe_works_without_a_filter() -> None:
    assert subprocess.run(PTRACE_PERL, timeout=30, check=False).returncode == 0


def test_run_installs_the_filter_in_the_command(kernel: None) -> None:
    denied = minerguard.run(seccomp_profile(), PTRACE_PERL, backend=backend())
    assert (denied.returncode, denied.signal, denied.spawn_error) == (errno.EACCES, None, None)
    assert denied.events == []

    allowed = minerguard.run(plain_profile(), PTRACE_PERL, backend=backend())
    assert (allowed.returncode, allowed.signal) == (0, None)

    # Both layers at once: the BPF rules still apply to the command.
    both = seccomp_profile().deny_exec_names(["xmrig"])
    assert minerguard.run(both, PTRACE_PERL, backend=backend()).returncode == errno.EACCES
