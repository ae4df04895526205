//! Seccomp from the same profile: a [`SeccompPolicy`]
//! compiled with libseccomp into a filter that can be installed in the
//! calling process, or exported as raw BPF, libseccomp PFC text, or the OCI
//! runtime spec's `linux.seccomp` JSON (what runc, crun and youki take).
//!
//! Architectures: the filter is for the native x86_64 ABI. System calls made
//! through another ABI (i386 `int 0x80`, x32) hit the bad-architecture
//! action, which kills the process: a miner cannot slip past the filter by
//! switching ABI.

mod export;
pub mod oci;

use std::os::fd::AsFd;

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

use crate::{
    compile::SeccompPolicy,
    profile::{ArgCmp, ArgOp, SeccompAction},
};

/// Filters with more rules than this use libseccomp's binary-tree layout
/// (fewer comparisons per syscall for large filters).
const BINARY_TREE_FROM: usize = 32;

/// Seccomp failures.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// libseccomp refused a step.
    #[error("seccomp: {what}: {message}")]
    Libseccomp {
        /// The step.
        what: String,
        /// libseccomp's message.
        message: String,
    },
    /// The action cannot be expressed in the requested output.
    #[error("seccomp: {0}")]
    Unsupported(String),
    /// OCI JSON that does not describe a filter we can read.
    #[error("seccomp OCI JSON: {field}: {message}")]
    OciJson {
        /// Field path in the JSON.
        field: String,
        /// The problem.
        message: String,
    },
    /// Reading an export back failed.
    #[error("seccomp export: {0}")]
    Io(#[from] std::io::Error),
}

fn scmp(what: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.into();
    move |e| SeccompError::Libseccomp {
        what,
        message: e.to_string(),
    }
}

/// A libseccomp filter built from a [`SeccompPolicy`].
#[derive(Debug)]
pub struct SeccompFilter {
    ctx: ScmpFilterContext,
}

impl SeccompFilter {
    /// Builds the filter. Entries whose action equals the default are left
    /// out (libseccomp refuses them, and they change nothing).
    pub fn new(policy: &SeccompPolicy) -> Result<Self, SeccompError> {
        let mut ctx = ScmpFilterContext::new(scmp_action(policy.default))
            .map_err(scmp("creating the filter"))?;
        // Kill the process; kernels before 4.14 (and tools that hide the
        // seccomp syscall, such as valgrind) only know killing the thread.
        if ctx.set_act_badarch(ScmpAction::KillProcess).is_err() {
            ctx.set_act_badarch(ScmpAction::KillThread)
                .map_err(scmp("setting the bad-architecture action"))?;
        }
        ctx.set_ctl_nnp(true)
            .map_err(scmp("setting no_new_privs"))?;
        if policy.entries.len() > BINARY_TREE_FROM {
            ctx.set_ctl_optimize(2)
                .map_err(scmp("choosing the binary-tree layout"))?;
        }
        for e in policy.entries.iter().filter(|e| e.action != policy.default) {
            let syscall = ScmpSyscall::from(e.number as i32);
            let what = || format!("rule for `{}`", e.syscall);
            if e.args.is_empty() {
                ctx.add_rule(scmp_action(e.action), syscall)
                    .map_err(scmp(what()))?;
            } else {
                let conds: Vec<ScmpArgCompare> = e.args.iter().map(arg_compare).collect();
                ctx.add_rule_conditional(scmp_action(e.action), syscall, &conds)
                    .map_err(scmp(what()))?;
            }
        }
        Ok(SeccompFilter { ctx })
    }

    /// Installs the filter in the calling process (all its threads), with
    /// `no_new_privs`. Irreversible: tests do this in a spawned child only.
    pub fn install(&mut self) -> Result<(), SeccompError> {
        self.ctx
            .set_ctl_tsync(true)
            .map_err(scmp("synchronising threads"))?;
        self.ctx.load().map_err(scmp("loading the filter"))
    }

    /// The filter as raw classic BPF (`struct sock_filter` array, 8 bytes
    /// per instruction, native endian), as `seccomp(2)` takes it.
    pub fn to_bpf(&self) -> Result<Vec<u8>, SeccompError> {
        export::to_bytes(|fd| {
            self.ctx
                .export_bpf(fd.as_fd())
                .map_err(scmp("exporting BPF"))
        })
    }

    /// The filter as `sock_filter` instructions.
    pub fn to_sock_filters(&self) -> Result<Vec<SockFilter>, SeccompError> {
        Ok(self
            .to_bpf()?
            .chunks_exact(8)
            .map(|c| SockFilter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect())
    }

    /// The filter as libseccomp's human-readable PFC text.
    pub fn to_pfc(&self) -> Result<String, SeccompError> {
        let bytes = export::to_bytes(|fd| {
            self.ctx
                .export_pfc(fd.as_fd())
                .map_err(scmp("exporting PFC"))
        })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// One classic BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

fn scmp_action(a: SeccompAction) -> ScmpAction {
    match a {
        SeccompAction::Allow => ScmpAction::Allow,
        SeccompAction::Log => ScmpAction::Log,
        SeccompAction::Errno(n) => ScmpAction::Errno(i32::from(n)),
        SeccompAction::KillProcess => ScmpAction::KillProcess,
        SeccompAction::KillThread => ScmpAction::KillThread,
        SeccompAction::Trap => ScmpAction::Trap,
        SeccompAction::Trace(n) => ScmpAction::Trace(n),
        SeccompAction::Notify => ScmpAction::Notify,
    }
}

fn arg_compare(a: &ArgCmp) -> ScmpArgCompare {
    let op = match a.op {
        ArgOp::Eq => ScmpCompareOp::Equal,
        ArgOp::Ne => ScmpCompareOp::NotEqual,
        ArgOp::Lt => ScmpCompareOp::Less,
        ArgOp::Le => ScmpCompareOp::LessOrEqual,
        ArgOp::Gt => ScmpCompareOp::Greater,
        ArgOp::Ge => ScmpCompareOp::GreaterEqual,
        ArgOp::MaskedEq => ScmpCompareOp::MaskedEqual(a.mask.unwrap_or(u64::MAX)),
    };
    ScmpArgCompare::new(u32::from(a.index), op, a.value)
}

/// Installs a classic BPF seccomp program in the calling thread, with
/// `no_new_privs`, using only two system calls: async-signal-safe, so it can
/// run between fork and exec (`CommandExt::pre_exec`), where libseccomp (which
/// allocates) must not. Build `program` beforehand with
/// [`SeccompFilter::to_sock_filters`].
pub fn install_raw(program: &[SockFilter]) -> std::io::Result<()> {
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const SockFilter,
    }
    let len = u16::try_from(program.len())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = SockFprog {
        len,
        filter: program.as_ptr(),
    };
    // SAFETY: plain syscalls; `prog` points at `program`, alive for the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let rc = libc::syscall(
            libc::SYS_seccomp,
            1, /* SECCOMP_SET_MODE_FILTER */
            0,
            &prog as *const SockFprog,
        );
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
