"""minerguard: anti-crypto-mining security profiles enforced in the kernel.

Build or load a :class:`Profile`, apply it to a cgroup with an
:class:`Enforcer` (a context manager: leaving it removes everything), and
read :class:`Event` objects; or run one command under a profile with
:func:`run`. A profile's ``seccomp`` rules export as OCI JSON, raw BPF or
PFC text (``Profile.to_oci_json()``, ``to_bpf()``, ``to_pfc()``) and install
with ``Profile.install_seccomp()``; :func:`run` installs them in its command.
An ``Enforcer(instance="name")`` is pinned: its enforcement outlives it,
the next enforcer of that name adopts it, and ``detach()`` or
:func:`remove_instance` ends it (:func:`instances` lists them).
:func:`scan` judges the processes already running in cgroups (started
before any enforcement) and kills what ``deny``/``kill`` rules match;
a :class:`BehaviourDetector`, sampled periodically, finds miners by how
they run (CPU, memory, a connection) whatever their name and bytes.
Errors are subclasses of :class:`Error`.
"""

from minerguard._minerguard import (
    AttachError,
    BehaviourDetector,
    CgroupError,
    Diagnostic,
    Drops,
    Enforcer,
    Error,
    Event,
    EventIterator,
    LoadError,
    PinError,
    PolicyHandle,
    Profile,
    ProfileError,
    RunResult,
    ScopeError,
    SeccompError,
    __version__,
    instances,
    probe,
    remove_instance,
    run,
    scan,
)

__all__ = [
    "AttachError",
    "BehaviourDetector",
    "CgroupError",
    "Diagnostic",
    "Drops",
    "Enforcer",
    "Error",
    "Event",
    "EventIterator",
    "LoadError",
    "PinError",
    "PolicyHandle",
    "Profile",
    "ProfileError",
    "RunResult",
    "ScopeError",
    "SeccompError",
    "__version__",
    "instances",
    "probe",
    "remove_instance",
    "run",
    "scan",
]
