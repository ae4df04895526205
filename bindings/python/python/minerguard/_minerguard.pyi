"""Type stubs for the native module ``minerguard._minerguard``."""

import datetime
import os
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Literal, Optional, TypedDict, Union

from typing_extensions import Self

__version__: str

Action = Literal["deny", "kill", "kill-container", "audit"]
ModeName = Literal["enforce", "audit"]
Port = Union[int, str]
StrPath = Union[str, "os.PathLike[str]"]

class Error(Exception):
    """Base class of every minerguard error."""

class ProfileError(Error):
    """A profile could not be read, parsed or validated."""

    diagnostics: list[Diagnostic]
    field: Optional[str]
    line: Optional[int]
    column: Optional[int]
    message: Optional[str]

class LoadError(Error):
    """A BPF object could not be loaded, or the kernel lacks a feature."""

class AttachError(Error):
    """A program could not be attached, or a BPF map could not be written."""

class ScopeError(Error):
    """A scope or policy handle was invalid."""

class CgroupError(Error):
    """A cgroup could not be found, created or used."""

class SeccompError(Error):
    """A seccomp filter could not be built, exported or installed."""

class PinError(Error):
    """A pinned enforcer instance could not be used: a bad name, no such
    instance, one another process holds, or a bpffs failure."""

class Diagnostic:
    """One problem in a profile."""

    @property
    def field(self) -> str: ...
    @property
    def line(self) -> Optional[int]: ...
    @property
    def column(self) -> Optional[int]: ...
    @property
    def message(self) -> str: ...

class Profile:
    """A security profile: named rules, each one matcher and an action."""

    def __init__(self, name: str, mode: str = "enforce") -> None:
        """`mode`: "enforce" or "audit" (ValueError otherwise)."""
    @staticmethod
    def from_yaml(text: str) -> Profile: ...
    @staticmethod
    def from_json(text: str) -> Profile: ...
    @staticmethod
    def from_file(path: StrPath) -> Profile: ...
    @staticmethod
    def bundled(name: str) -> Profile: ...
    @staticmethod
    def bundled_names() -> list[str]: ...
    name: str
    @property
    def mode(self) -> ModeName: ...
    @mode.setter
    def mode(self, value: str) -> None: ...
    @property
    def rules(self) -> list[dict[str, Any]]: ...
    def deny_exec_names(
        self, names: Sequence[str], *, name: Optional[str] = None, action: str = "deny"
    ) -> Self: ...
    def deny_ports(
        self, ports: Sequence[Port], *, name: Optional[str] = None, action: str = "deny"
    ) -> Self: ...
    def deny_cidrs(
        self, cidrs: Sequence[str], *, name: Optional[str] = None, action: str = "deny"
    ) -> Self: ...
    def stratum(
        self,
        *,
        name: Optional[str] = None,
        action: str = "kill",
        methods: Optional[Sequence[str]] = None,
        signatures: Optional[Sequence[str]] = None,
    ) -> Self: ...
    def add_rule(
        self,
        name: str,
        action: str,
        *,
        exec_names: Optional[Sequence[str]] = None,
        ports: Optional[Sequence[Port]] = None,
        description: Optional[str] = None,
    ) -> Self: ...
    def add_rule_dict(self, rule: dict[str, Any]) -> Self: ...
    def validate(self) -> list[Diagnostic]:
        """Every problem (empty list when valid); never raises for them."""
    def check(self) -> None:
        """Raises ProfileError when the profile is invalid."""
    def to_yaml(self) -> str: ...
    def to_json(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...
    def has_seccomp(self) -> bool:
        """Whether the profile has a `seccomp` rule (ProfileError if invalid)."""
    def to_oci_json(self) -> str:
        """The seccomp filter as OCI `linux.seccomp` JSON text.

        ValueError without a seccomp rule, ProfileError for an invalid
        profile, SeccompError when OCI cannot express an action (notify)."""
    def to_bpf(self) -> bytes:
        """The seccomp filter as raw BPF (`struct sock_filter` array)."""
    def to_pfc(self) -> str:
        """The seccomp filter as libseccomp PFC text."""
    def install_seccomp(self) -> None:
        """Installs the seccomp filter in this process (irreversible)."""
    def summary(self) -> str: ...
    def __len__(self) -> int: ...
    def __copy__(self) -> Profile: ...

class PolicyHandle:
    """Names one applied profile."""

    @property
    def id(self) -> int: ...
    @property
    def scope(self) -> str: ...
    def __hash__(self) -> int: ...

class Drops:
    """Events lost so far."""

    @property
    def ring(self) -> int: ...
    @property
    def channel(self) -> int: ...
    @property
    def total(self) -> int: ...

class Event:
    """One enforcement decision."""

    @property
    def time(self) -> float: ...
    @property
    def datetime(self) -> datetime.datetime: ...
    @property
    def pid(self) -> int: ...
    @property
    def tgid(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def comm(self) -> str: ...
    @property
    def ppid(self) -> int: ...
    @property
    def pname(self) -> str: ...
    @property
    def cmdline(self) -> str: ...
    @property
    def cmdline_truncated(self) -> bool: ...
    @property
    def proc_source(self) -> Literal["kernel", "proc"]: ...
    @property
    def pattern(self) -> Optional[str]: ...
    @property
    def cgroup_id(self) -> int: ...
    @property
    def profile(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def action(self) -> Action: ...
    @property
    def requested(self) -> Action: ...
    @property
    def killed_cgroup(self) -> Optional[str]: ...
    @property
    def kill_error(self) -> Optional[str]: ...
    @property
    def degraded(self) -> bool: ...
    @property
    def kind(self) -> Literal["exec", "connect", "stratum", "open", "scope"]: ...
    @property
    def path(self) -> Optional[str]: ...
    @property
    def moved_pid(self) -> Optional[int]: ...
    @property
    def addr(self) -> Optional[str]: ...
    @property
    def port(self) -> Optional[int]: ...
    @property
    def protocol(self) -> Optional[str]: ...
    @property
    def signature(self) -> Optional[str]: ...
    @property
    def method(self) -> Optional[str]: ...
    def to_json(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...

class EventIterator(Iterator[Event]):
    """Events until a silence of `timeout` seconds or the enforcer closes."""

    def __iter__(self) -> EventIterator: ...
    def __next__(self) -> Event: ...

class Enforcer:
    """Loads the BPF programs once and enforces profiles on scopes."""

    def __init__(
        self,
        backend: str = "auto",
        *,
        event_capacity: int = 65536,
        require_all_rules: bool = False,
        syscall_tracepoints: bool = True,
        instance: Optional[str] = None,
        stratum_judge: Literal["egress", "sk-msg"] = "egress",
    ) -> None:
        """`instance`: pin the enforcement under that name (it outlives
        `close()`), or adopt the existing instance of that name.
        `stratum_judge`: what judges Stratum on the cgroup backend."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def backend(self) -> Literal["lsm", "cgroup"]: ...
    @property
    def instance(self) -> Optional[str]: ...
    def unadopted(self) -> list[str]:
        """Scopes an earlier enforcer of the instance left, not applied again."""
    def release_unadopted(self) -> Settled:
        """Ends the unadopted scopes and links; what it ended."""
    def detach(self) -> None:
        """Ends the enforcement (a pinned instance too) and closes the enforcer."""
    def apply(
        self, profile: Profile, *, cgroup: Optional[StrPath] = None, host: bool = False
    ) -> PolicyHandle: ...
    def update(self, handle: PolicyHandle, profile: Profile) -> None: ...
    def remove(self, handle: PolicyHandle) -> None: ...
    def unenforced(self, handle: PolicyHandle) -> list[tuple[str, str]]: ...
    def follow_cgroups(self) -> list[tuple[Literal["gone", "recreated"], int, str]]: ...
    def learn(
        self,
        *,
        cgroup: StrPath,
        duration: float,
        name: str = "learned",
        action: Action = "deny",
    ) -> Profile: ...
    def self_test_events(self, handle: PolicyHandle, count: int) -> int: ...
    @property
    def loader_exec(self) -> Optional[str]: ...
    @property
    def fast_open(self) -> Optional[str]: ...
    @property
    def lsm_stratum(self) -> Optional[str]: ...
    @property
    def stratum_sk_msg(self) -> Optional[str]: ...
    @property
    def stratum_backstop(self) -> Optional[str]: ...
    @property
    def tuning(self) -> Optional[str]: ...
    @property
    def stratum_errno(self) -> int: ...
    @property
    def released_sockets(self) -> int: ...
    @property
    def destroyed_sockets(self) -> tuple[int, int]:
        """(destroyed, not_destroyed) by the egress Stratum judge."""
    def handles(self) -> list[PolicyHandle]: ...
    def effective_action(
        self, kind: str, requested: str
    ) -> Action: ...
    @property
    def drops(self) -> Drops: ...
    def events(self, timeout: Optional[float] = None) -> EventIterator: ...
    def next_event(self, timeout: Optional[float] = None) -> Optional[Event]: ...

class Settled(TypedDict):
    dropped: list[str]
    released_links: int

class ScopeStatus(TypedDict):
    scope: str
    cgroup_id: int
    present: bool
    profile: str
    policy_id: int
    since: int

class LinkStatus(TypedDict):
    name: str
    id: Optional[int]
    program_id: Optional[int]

class JudgeStatus(TypedDict):
    unread_refused: int
    untracked: int
    own_copies: int

class Instance(TypedDict):
    name: str
    pid: Optional[int]
    alive: bool
    backend: Optional[str]
    scopes: list[ScopeStatus]
    links: list[LinkStatus]
    maps: int
    ring_drops: int
    stratum_judge: JudgeStatus

class Unjudged(TypedDict):
    rule: str
    reason: str

class ScanReport(TypedDict):
    profile: str
    scanned: int
    vanished: int
    elapsed_ms: float
    findings: list[dict[str, Any]]
    unjudged: list[Unjudged]

class Observation(TypedDict):
    pid: int
    comm: str
    rule: str
    mining: bool
    signals: list[str]
    values: dict[str, Any]

class BehaviourSample(TypedDict):
    profile: str
    processes: int
    detections: list[dict[str, Any]]
    observations: list[Observation]

class BehaviourDetector:
    """A profile's `behaviour` rules judging a scope's processes by how they run."""

    def __init__(self, profile: Profile) -> None: ...
    @property
    def rules(self) -> list[str]: ...
    def count_tuning(self, enforcer: Enforcer) -> None:
        """Judge with the tuning attempts `enforcer` counts (apply a profile with a behaviour rule first)."""
    def sample(
        self,
        cgroups: Sequence[StrPath],
        *,
        dry_run: bool = False,
        exclude: Sequence[StrPath] = (),
    ) -> BehaviourSample:
        """One sample of the cgroups' processes; acts on those found mining."""

class RunResult:
    """How a `run()` ended."""

    @property
    def returncode(self) -> int: ...
    @property
    def signal(self) -> Optional[int]: ...
    @property
    def events(self) -> list[Event]: ...
    @property
    def timed_out(self) -> bool: ...
    @property
    def spawn_error(self) -> Optional[str]: ...
    @property
    def backend(self) -> Literal["lsm", "cgroup"]: ...
    @property
    def drops(self) -> Drops: ...

class Feature(TypedDict):
    available: bool
    detail: str

class ProbeReport(TypedDict):
    kernel: str
    euid: int
    btf: Feature
    lsm_list: Optional[list[str]]
    bpf_lsm: Feature
    cgroup2: Feature
    cgroup2_mount: Optional[str]
    cgroup_bpf: Feature
    cgroup_signal: Feature
    skmsg_signal: Feature
    exec_tracepoint: Feature
    tracefs: Feature
    sockops: Feature
    backend: Optional[Literal["lsm", "cgroup"]]
    missing: list[str]

def probe() -> ProbeReport: ...
def run(
    profile: Profile,
    argv: Sequence[str],
    *,
    backend: str = "auto",
    timeout: Optional[float] = None,
    cwd: Optional[StrPath] = None,
    settle: float = 0.2,
) -> RunResult:
    """Runs argv in a fresh cgroup under the profile (and its seccomp filter)."""
def instances() -> list[Instance]:
    """Every pinned enforcer instance."""
def remove_instance(name: str) -> None:
    """Ends pinned instance `name` (PinError if missing, invalid or held)."""
def scan(
    profile: Profile,
    cgroups: Sequence[StrPath],
    *,
    dry_run: bool = False,
    exclude: Sequence[StrPath] = (),
) -> ScanReport:
    """Judges the processes already running in the cgroups; kills what deny/kill rules match."""
