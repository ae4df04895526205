"""minerguard: anti-crypto-mining security profiles enforced in the kernel.

Build or load a :class:`Profile`, apply it to a cgroup with an
:class:`Enforcer` (a context manager: leaving it removes everything), and
read :class:`Event` objects; or run one command under a profile with
:func:`run`. Errors are subclasses of :class:`Error`.

Seccomp export (``to_oci_json()``/``to_bpf()``) is not bound yet: it waits
for the library's seccomp support.
"""

from minerguard._minerguard import (
    AttachError,
    CgroupError,
    Diagnostic,
    Drops,
    Enforcer,
    Error,
    Event,
    EventIterator,
    LoadError,
    PolicyHandle,
    Profile,
    ProfileError,
    RunResult,
    ScopeError,
    __version__,
    probe,
    run,
)

__all__ = [
    "AttachError",
    "CgroupError",
    "Diagnostic",
    "Drops",
    "Enforcer",
    "Error",
    "Event",
    "EventIterator",
    "LoadError",
    "PolicyHandle",
    "Profile",
    "ProfileError",
    "RunResult",
    "ScopeError",
    "__version__",
    "probe",
    "run",
]
