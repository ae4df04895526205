//! Error types: one family per layer, gathered in [`Error`].

use std::path::PathBuf;

pub use crate::profile::{Diagnostic, ProfileError};

/// Any minerguard failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The profile could not be read, parsed or validated.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// A BPF object could not be opened or loaded, or the kernel lacks a feature.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A program could not be attached, or a map could not be written.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// A scope or policy handle was invalid.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// A cgroup could not be found, created or used.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// A seccomp filter could not be built, installed or exported.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// Pinned state (an enforcer instance) could not be used.
    #[error(transparent)]
    Pin(#[from] crate::pin::PinError),
}

impl Error {
    /// Whether this process ran out of file descriptors (see
    /// [`LoadError::DescriptorLimit`]): its own state, not the kernel's
    /// answer, so nothing treats it as a check the kernel refused.
    pub fn is_descriptor_limit(&self) -> bool {
        matches!(self, Error::Load(LoadError::DescriptorLimit { .. }))
    }
}

/// Loading BPF objects into the kernel.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// libbpf refused to open or load an object.
    #[error("loading BPF object `{object}` failed: {source}")]
    Object {
        /// Which object (`exec_tp`, `net_cgroup`, ...).
        object: &'static str,
        /// What libbpf reported.
        #[source]
        source: libbpf_rs::Error,
    },
    /// A program or map could not be made because this process has used up
    /// its file descriptors (each BPF map, program and link is one).
    #[error(
        "{during} failed: this process used up its file descriptors (RLIMIT_NOFILE \
         {soft_limit}); an enforcer holds a few hundred: raise the soft limit (`ulimit -n`, \
         systemd's LimitNOFILE=, or minerguard::raise_open_file_limit) ({source})"
    )]
    DescriptorLimit {
        /// What was being done (`loading BPF object `stratum``, ...).
        during: String,
        /// The soft RLIMIT_NOFILE.
        soft_limit: u64,
        /// What libbpf reported.
        #[source]
        source: libbpf_rs::Error,
    },
    /// The kernel lacks something the requested backend needs.
    #[error("{what} is not available on this kernel: {fix}")]
    Unsupported {
        /// The missing feature.
        what: String,
        /// How to get it.
        fix: String,
    },
    /// Running as a user that may not load BPF programs.
    #[error("loading BPF programs needs root (CAP_BPF and CAP_SYS_ADMIN); running as uid {uid}")]
    NotPrivileged {
        /// The effective uid.
        uid: u32,
    },
}

/// Attaching programs and writing policy into maps.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// A program could not be attached to its hook or cgroup.
    #[error("attaching `{program}` to {target} failed: {source}")]
    Program {
        /// Program name.
        program: &'static str,
        /// Where it was being attached.
        target: String,
        /// What the kernel reported.
        #[source]
        source: libbpf_rs::Error,
    },
    /// A map update or delete failed (map full, or kernel error).
    #[error("writing BPF map `{map}` failed: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What the kernel reported.
        #[source]
        source: libbpf_rs::Error,
    },
    /// The event poller thread could not be started.
    #[error("starting the event poller failed: {0}")]
    Poller(String),
    /// tracefs (needed to find classic tracepoints) could not be mounted.
    #[error("mounting tracefs at {path} failed: {source}")]
    Tracefs {
        /// Mount point.
        path: std::path::PathBuf,
        /// What mount(2) reported.
        #[source]
        source: std::io::Error,
    },
}

/// Scopes and policy handles.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// The scope already has a policy; use `update`.
    #[error(
        "scope {scope} already has a policy applied (handle {handle}); use update() to replace it"
    )]
    AlreadyApplied {
        /// The scope, as text.
        scope: String,
        /// The existing handle's id.
        handle: u64,
    },
    /// The handle does not belong to this enforcer or was removed.
    #[error("policy handle {0} is unknown (removed already, or from another enforcer)")]
    UnknownHandle(u64),
    /// Too many scopes or policies for the kernel maps.
    #[error("too many {what}: at most {max}")]
    Capacity {
        /// What ran out.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The profile has rules this backend cannot enforce, and the enforcer
    /// was asked to refuse such profiles.
    #[error("the {backend} backend cannot enforce {}", rules.join(", "))]
    Unenforceable {
        /// The backend.
        backend: String,
        /// `rule (matcher)` for each rule it cannot enforce.
        rules: Vec<String>,
    },
    /// The cgroup sits deeper than the BPF scope walk looks.
    #[error("cgroup {path} is at depth {level}; scopes must be at depth < {max}")]
    TooDeep {
        /// The cgroup.
        path: PathBuf,
        /// Its depth below the cgroup v2 root.
        level: u32,
        /// The bound.
        max: u32,
    },
}

/// cgroup v2 discovery and management.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup2 filesystem in /proc/self/mountinfo.
    #[error("no cgroup v2 filesystem is mounted (none in /proc/self/mountinfo); mount one with `mount -t cgroup2 none /sys/fs/cgroup`")]
    NoCgroup2Mount,
    /// The path is not a directory of the cgroup v2 hierarchy.
    #[error("{path} is not a cgroup v2 directory under {mount}")]
    NotCgroup2 {
        /// The path given.
        path: PathBuf,
        /// The cgroup v2 mount.
        mount: PathBuf,
    },
    /// A filesystem operation on a cgroup failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand for results with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
