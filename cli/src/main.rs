//! `minerguard`: stop crypto-miners in the kernel, from the command line.
//!
//! ```text
//! minerguard run --profile P [--events FILE] [--backend B] -- CMD ARGS...
//! minerguard watch --profile P [--cgroup PATH]... [--host] [--events FILE] [--scan-every 10m]
//! minerguard learn --cgroup PATH [--duration 60s] [--out FILE]
//! minerguard check [--json] P...
//! minerguard seccomp P [--format oci|bpf|pfc]
//! minerguard probe [--json]
//! minerguard scan [--cgroup PATH]... [--host] [--profile P] [--json] [--dry-run]
//! ```
//!
//! `P` is a profile file (YAML or JSON) or a bundled profile's name
//! (`default`, `container-strict`, `audit`). Exit codes: 0 success, 1
//! problems found (`check`, `probe` without a usable backend, `scan` with
//! findings), 2 usage or
//! input error, 3 the kernel refused to load or attach; `run` exits with its
//! command's status.

mod agent;
mod behaviour_loop;
mod check;
mod learn;
mod pinning;
mod probe;
mod profile_arg;
mod run;
mod scan;
mod scan_loop;
mod seccomp;
mod signals;
mod sink;
mod status;
mod warnings;
mod watch;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use minerguard::{BackendChoice, CgroupStratumJudge, Enforcer, EnforcerOptions};

use profile_arg::ProfileArg;

/// The result of a command: its exit code, or an error to print.
type CliResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Every line the command prints about itself starts with this.
const PREFIX: &str = "minerguard";

/// Exit code for problems found (`check`) or no usable backend (`probe`).
const EXIT_FINDINGS: u8 = 1;
/// Exit code for bad usage or input (a missing or invalid profile, ...).
const EXIT_USAGE: u8 = 2;
/// Exit code for a kernel that refused to load or attach a program.
const EXIT_KERNEL: u8 = 3;

/// `--version`: the release, the commit it is built from, and the
/// backends built in (which one runs is the kernel's say: `probe`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MINERGUARD_GIT_COMMIT"),
    "; backends: lsm, cgroup)"
);

#[derive(Parser)]
#[command(
    name = "minerguard",
    version = VERSION,
    about = "minerguard: stop crypto-miners in the kernel",
    after_help = "Exit codes: 0 success, 1 problems found, 2 usage or input error, 3 kernel refused to load or attach. `run` exits with its command's status."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// How the enforcer loads (run, watch, learn).
#[derive(clap::Args, Clone, Copy)]
pub(crate) struct LoadArgs {
    /// Backend: auto, lsm or cgroup.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
    /// Attach no syscall tracepoints (cgroup backend: no loader-exec and no
    /// TCP Fast Open check; saves the tracing slow path on every syscall
    /// on the host).
    #[arg(long)]
    no_syscall_tracepoints: bool,
    /// What judges Stratum on the cgroup backend: egress (packets read as
    /// they leave, the refused one dropped and its socket destroyed: the
    /// sender's next call fails with ECONNABORTED) or sk-msg (sockets
    /// tracked in a sockhash, the refused send fails with EACCES; costs
    /// more per connection). See `CgroupStratumJudge` in the library's
    /// documentation.
    #[arg(long, default_value = "egress")]
    stratum_judge: CgroupStratumJudge,
}

impl LoadArgs {
    /// A new enforcer with these options (nothing pinned).
    fn enforcer(self) -> CliResult<Enforcer> {
        self.enforcer_as(None)
    }

    /// A new enforcer pinned as `instance` (adopting what an earlier
    /// process of that instance left), or not pinned.
    fn enforcer_as(self, instance: Option<&str>) -> CliResult<Enforcer> {
        let enforcer = Enforcer::with_options(EnforcerOptions {
            instance: instance.map(str::to_string),
            ..self.options()
        })?;
        if self.stratum_judge == CgroupStratumJudge::SkMsg
            && enforcer.backend() == minerguard::BackendKind::Cgroup
        {
            // Operators choose it for kernels without socket destroy; say
            // what it leaves open (docs/threat-model.md).
            eprintln!(
                "{PREFIX}: warning: --stratum-judge sk-msg does not read a send made while its socket is still connecting, nor accepted sockets past its tracking limit; the egress judge (the default) reads both"
            );
        }
        Ok(enforcer)
    }

    /// The enforcer options these arguments ask for.
    fn options(self) -> EnforcerOptions {
        EnforcerOptions {
            backend: self.backend,
            syscall_tracepoints: !self.no_syscall_tracepoints,
            cgroup_stratum_judge: self.stratum_judge,
            ..Default::default()
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run CMD in a fresh cgroup under the profile; exit with its status.
    Run {
        /// Profile file (YAML or JSON) or bundled profile name.
        #[arg(long)]
        profile: ProfileArg,
        /// Append events (JSON lines) to this file instead of stderr.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Rotate the events file before it passes this size (`10M`, `1G`;
        /// FILE.1 … FILE.5 are kept).
        #[arg(long, requires = "events", value_parser = sink::parse_size)]
        events_max_size: Option<u64>,
        #[command(flatten)]
        load: LoadArgs,
        /// No status lines, only events.
        #[arg(long, short)]
        quiet: bool,
        /// The command and its arguments.
        #[arg(required = true, last = true)]
        cmd: Vec<String>,
    },
    /// Enforce on cgroups (or the host); SIGHUP reloads. Pinned: see
    /// `--instance`.
    Watch(watch::WatchArgs),
    /// Record what a cgroup executes (nothing is refused meanwhile), then
    /// write an `exec.allow_only` profile listing it.
    Learn {
        /// cgroup v2 directory to learn from.
        #[arg(long)]
        cgroup: PathBuf,
        /// How long to learn: `90`, `90s`, `5m`, `1h`.
        #[arg(long, default_value = "60s", value_parser = learn::parse_duration)]
        duration: Duration,
        /// Write the profile here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Name of the written profile.
        #[arg(long, default_value = "learned")]
        name: String,
        /// Action of the written rule for anything not learned.
        #[arg(long, default_value = "deny", value_parser = ["deny", "kill", "kill-container", "audit"])]
        action: String,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Validate profiles; print every problem, compiler style
    /// (file:line:column). Exit 0 when clean, 1 with problems, 2 when a
    /// file cannot be read.
    Check {
        /// Print the diagnostics as JSON (one document on stdout).
        #[arg(long)]
        json: bool,
        /// Profile files or bundled profile names.
        #[arg(required = true)]
        profiles: Vec<ProfileArg>,
    },
    /// Print the profile's seccomp filter: OCI `linux.seccomp` JSON, raw BPF
    /// (binary `sock_filter` array) or libseccomp PFC text.
    Seccomp {
        /// Profile file (YAML or JSON) or bundled profile name.
        profile: ProfileArg,
        /// Output format.
        #[arg(long, default_value = "oci", value_parser = ["oci", "bpf", "pfc"])]
        format: String,
    },
    /// The node agent: a baseline profile on every pod of this node, a
    /// binding's profile on each matching container, events that say which
    /// container and pod did what.
    Agent {
        /// The AgentConfig file (YAML).
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// List the pinned instances: scopes, profiles, policy ids, links,
    /// maps, events lost, whether their process still runs.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// End pinned enforcement: unpin an instance (or all) so its programs
    /// detach.
    Remove {
        /// The instance to remove.
        #[arg(long, conflicts_with_all = ["all", "stale"], required_unless_present_any = ["all", "stale"])]
        instance: Option<String>,
        /// Every instance.
        #[arg(long, conflicts_with = "stale")]
        all: bool,
        /// Every instance whose process is gone and whose cgroups are gone
        /// too (and dead `run`s whose cgroup is empty).
        #[arg(long)]
        stale: bool,
    },
    /// Judge the processes already running in cgroups by a profile's
    /// rules; kill what `deny`/`kill` rules match, report what `audit`
    /// rules match. Exit 0 when nothing is found, 1 with findings.
    Scan(scan::ScanArgs),
    /// Report what this kernel supports and which backend would be used.
    Probe {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // An enforcer holds a few hundred descriptors (the agent one per
    // node, tests and `watch` more); the usual soft limit of 1,024 is
    // too close. Failing to raise it is not fatal: loading says so if
    // the limit is reached.
    let _ = minerguard::raise_open_file_limit();
    let result = match cli.command {
        Cmd::Run {
            profile,
            events,
            events_max_size,
            load,
            quiet,
            cmd,
        } => run::run(
            &profile,
            events.as_deref(),
            events_max_size,
            load,
            quiet,
            &cmd,
        ),
        Cmd::Watch(args) => watch::watch(&args),
        Cmd::Agent { config, load } => agent::agent(&config, load),
        Cmd::Status { json } => status::print(json),
        Cmd::Remove {
            instance,
            all,
            stale,
        } => {
            if stale {
                crate::pinning::clean_stale();
                Ok(std::process::ExitCode::SUCCESS)
            } else {
                status::remove(instance.as_deref(), all)
            }
        }
        Cmd::Learn {
            cgroup,
            duration,
            out,
            name,
            action,
            load,
        } => learn::learn(&cgroup, duration, out.as_deref(), &name, &action, load),
        Cmd::Check { json, profiles } => Ok(check::check(&profiles, json)),
        Cmd::Seccomp { profile, format } => seccomp::print(&profile, &format),
        Cmd::Probe { json } => Ok(probe::print(json)),
        Cmd::Scan(args) => scan::scan(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{PREFIX}: error: {e}");
            ExitCode::from(exit_code_of(e.as_ref()))
        }
    }
}

/// [`EXIT_KERNEL`] when the kernel refused a program or an attachment,
/// [`EXIT_USAGE`] for everything else.
fn exit_code_of(e: &(dyn std::error::Error + 'static)) -> u8 {
    let lib =
        e.downcast_ref::<minerguard::Error>().or_else(|| match e
            .downcast_ref::<minerguard_agent::agent::AgentError>()
        {
            Some(minerguard_agent::agent::AgentError::Enforce(lib)) => Some(lib),
            _ => None,
        });
    match lib {
        Some(minerguard::Error::Load(_) | minerguard::Error::Attach(_)) => EXIT_KERNEL,
        _ => EXIT_USAGE,
    }
}
