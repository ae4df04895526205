//! minerguard: compiles anti-crypto-mining security profiles into in-kernel
//! BPF enforcement and streams what it enforced.
//!
//! ```no_run
//! use minerguard::{Enforcer, Profile, Scope};
//!
//! let profile = Profile::from_file("profiles/default.yaml")?;
//! let mut enforcer = Enforcer::new()?;
//! let handle = enforcer.apply(&profile, Scope::Cgroup("my-container".into()))?;
//! for event in enforcer.events().iter().take(1) {
//!     println!("{}", minerguard::falco_json(&event));
//! }
//! enforcer.remove(handle)?;
//! # Ok::<(), minerguard::Error>(())
//! ```
#![warn(missing_docs)]

mod backend;
pub mod behaviour;
pub mod capi;
pub mod cgroup;
pub mod cgroup_kill;
pub mod compile;
mod descriptors;
mod enforcer;
pub mod error;
pub mod events;
pub mod learn;
mod mountinfo;
mod parallel;
mod pidfd;
pub mod pin;
pub mod profile;
pub mod scan;
pub mod seccomp;
mod sock_diag;

pub use backend::checks::{CheckStatus, Checks};
pub use backend::probe;
pub use backend::probe::{probe, ProbeReport};
pub use backend::{BackendChoice, BackendKind};
pub use compile::{KernelPolicy, RuleKind, SeccompPolicy};
pub use descriptors::{cgroup_failure, out_of_descriptors, raise_open_file_limit};
pub use enforcer::{
    CgroupStratumJudge, Enforcer, EnforcerOptions, PolicyHandle, Scope, ScopeChange, Settled,
    UnenforcedRule,
};
pub use error::{Error, Result};
pub use events::{
    falco_json, CgroupKill, Drops, Event, ProcSource, Target, CMDLINE_CAPACITY, OVERLONG_ARGV,
};
pub use learn::{ExecLearner, LearnProgress};
pub use profile::{Action, Matcher, MatcherKind, Mode, Profile, Rule, ValidProfile};
pub use seccomp::{SeccompError, SeccompFilter};
