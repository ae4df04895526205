//! The standalone enforcer: a thin command-line shell over the library.
//!
//! ```text
//! enforcer run --profile P [--events FILE] -- CMD ARGS...
//! enforcer watch --profile P [--cgroup PATH]... [--host] [--events FILE]
//! enforcer check P...
//! enforcer probe [--json]
//! ```

use std::{
    fs::File,
    io::{self, Write},
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use clap::{Parser, Subcommand};
use minerguard::{
    cgroup::{join_cgroup_raw, OwnedCgroup},
    falco_json, probe, Action, BackendChoice, BackendKind, Enforcer, EnforcerOptions, Event,
    KernelPolicy, LearnProgress, Profile, RuleKind, Scope, SeccompFilter, SeccompPolicy,
};

#[derive(Parser)]
#[command(
    name = "enforcer",
    version,
    about = "minerguard: stop crypto-miners in the kernel"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// How the enforcer loads (run, watch, learn).
#[derive(clap::Args, Clone, Copy)]
struct LoadArgs {
    /// Backend: auto, lsm or cgroup.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
    /// Attach no syscall tracepoints (cgroup backend: no loader-exec and no
    /// TCP Fast Open check; saves the tracing slow path on every syscall
    /// on the host).
    #[arg(long)]
    no_syscall_tracepoints: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run CMD in a fresh cgroup under the profile; exit with its status.
    Run {
        /// Profile file (YAML or JSON).
        #[arg(long)]
        profile: PathBuf,
        /// Write events (JSON lines) here instead of stderr.
        #[arg(long)]
        events: Option<PathBuf>,
        #[command(flatten)]
        load: LoadArgs,
        /// No status lines, only events.
        #[arg(long, short)]
        quiet: bool,
        /// The command and its arguments.
        #[arg(required = true, last = true)]
        cmd: Vec<String>,
    },
    /// Enforce on cgroups (or the host) until SIGINT/SIGTERM; SIGHUP reloads.
    Watch {
        /// Profile file (YAML or JSON).
        #[arg(long)]
        profile: PathBuf,
        /// cgroup v2 directory to enforce on (repeatable).
        #[arg(long = "cgroup")]
        cgroups: Vec<PathBuf>,
        /// Enforce on the whole host.
        #[arg(long)]
        host: bool,
        /// Write events (JSON lines) here instead of stdout.
        #[arg(long)]
        events: Option<PathBuf>,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Record what a cgroup executes (nothing is refused meanwhile), then
    /// write an `exec.allow_only` profile listing it.
    Learn {
        /// cgroup v2 directory to learn from.
        #[arg(long)]
        cgroup: PathBuf,
        /// How long to learn: `90`, `90s`, `5m`, `1h`.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: Duration,
        /// Write the profile here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Name of the written profile.
        #[arg(long, default_value = "learned")]
        name: String,
        /// Action of the written rule for anything not learned.
        #[arg(long, default_value = "deny", value_parser = ["deny", "kill", "audit"])]
        action: String,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Validate profiles; print every error, compiler style.
    Check {
        /// Profile files.
        #[arg(required = true)]
        profiles: Vec<PathBuf>,
    },
    /// Print the profile's seccomp filter: OCI `linux.seccomp` JSON, raw BPF
    /// (binary `sock_filter` array) or libseccomp PFC text.
    Seccomp {
        /// Profile file (YAML or JSON).
        profile: PathBuf,
        /// Output format.
        #[arg(long, default_value = "oci", value_parser = ["oci", "bpf", "pfc"])]
        format: String,
    },
    /// Report what this kernel supports and which backend would be used.
    Probe {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // Signals are taken synchronously (sigwait) by whoever needs them; block
    // them before any thread starts so every thread inherits the mask.
    block_signals();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run {
            profile,
            events,
            load,
            quiet,
            cmd,
        } => run(&profile, events.as_deref(), load, quiet, &cmd),
        Cmd::Watch {
            profile,
            cgroups,
            host,
            events,
            load,
        } => watch(&profile, &cgroups, host, events.as_deref(), load),
        Cmd::Learn {
            cgroup,
            duration,
            out,
            name,
            action,
            load,
        } => learn(&cgroup, duration, out.as_deref(), &name, &action, load),
        Cmd::Check { profiles } => Ok(check(&profiles)),
        Cmd::Seccomp { profile, format } => print_seccomp(&profile, &format),
        Cmd::Probe { json } => Ok(print_probe(json)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("enforcer: error: {e}");
            ExitCode::from(2)
        }
    }
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// How often `watch` resolves `connect.domains` again.
const DOMAIN_REFRESH: Duration = Duration::from_secs(300);

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local value.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn block_signals() {
    let set = signal_set();
    // SAFETY: changes this thread's mask only.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Waits up to `timeout` for SIGINT, SIGTERM or SIGHUP; `None` on timeout.
fn wait_signal_for(timeout: Duration) -> Option<i32> {
    let set = signal_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: sigtimedwait on a set that is blocked in all threads.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Waits for SIGINT, SIGTERM or SIGHUP (blocked in every thread).
fn wait_signal() -> i32 {
    let set = signal_set();
    let mut sig = 0;
    // SAFETY: sigwait on a set that is blocked in all threads.
    unsafe { libc::sigwait(&set, &mut sig) };
    sig
}

fn load_profile(path: &Path) -> AnyResult<Profile> {
    Ok(Profile::from_file(path)?)
}

fn new_enforcer(load: LoadArgs) -> AnyResult<Enforcer> {
    Ok(Enforcer::with_options(EnforcerOptions {
        backend: load.backend,
        syscall_tracepoints: !load.no_syscall_tracepoints,
        ..Default::default()
    })?)
}

/// Writes each event as a JSON line to `out` until the channel closes or
/// `stop` is seen.
fn spawn_event_writer(
    enforcer: &Enforcer,
    mut out: Box<dyn Write + Send>,
    stop: Arc<Mutex<bool>>,
) -> JoinHandle<()> {
    let rx = enforcer.events();
    std::thread::spawn(move || loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(ev) => write_event(&mut out, &ev),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if *stop.lock().unwrap() {
                    // Nothing more arrived for a poll interval: drained.
                    let _ = out.flush();
                    return;
                }
            }
            Err(_) => return,
        }
    })
}

fn write_event(out: &mut dyn Write, ev: &Event) {
    let _ = writeln!(out, "{}", falco_json(ev));
    let _ = out.flush();
}

fn event_sink(
    path: Option<&Path>,
    default: Box<dyn Write + Send>,
) -> AnyResult<Box<dyn Write + Send>> {
    Ok(match path {
        Some(p) => Box::new(File::create(p).map_err(|e| format!("creating {}: {e}", p.display()))?),
        None => default,
    })
}

fn run(
    profile_path: &Path,
    events: Option<&Path>,
    load: LoadArgs,
    quiet: bool,
    cmd: &[String],
) -> AnyResult<ExitCode> {
    let profile = load_profile(profile_path)?;
    let mut enforcer = new_enforcer(load)?;
    let cgroup = OwnedCgroup::create_in_root("minerguard-run")?;
    let handle = enforcer.apply(&profile, Scope::Cgroup(cgroup.cgroup().path().into()))?;
    if !quiet {
        eprintln!(
            "minerguard: profile `{}` enforced by the {} backend on {}",
            profile.name,
            enforcer.backend(),
            cgroup.cgroup().path().display()
        );
        warn_unenforced(&enforcer, handle, &profile, true);
    }
    let stop = Arc::new(Mutex::new(false));
    let writer = spawn_event_writer(
        &enforcer,
        event_sink(events, Box::new(io::stderr()))?,
        stop.clone(),
    );

    // The profile's seccomp part, built here: between fork and exec only
    // async-signal-safe calls may run, so the child just installs the bytes.
    let seccomp = match SeccompPolicy::compile(&profile)? {
        Some(policy) => Some(SeccompFilter::new(&policy)?.to_sock_filters()?),
        None => None,
    };
    if let (Some(filter), false) = (&seccomp, quiet) {
        eprintln!(
            "minerguard: seccomp filter of {} instructions installed in the command",
            filter.len()
        );
    }
    let procs = cgroup.procs_file()?;
    let mut command = Command::new(&cmd[0]);
    command.args(&cmd[1..]);
    // SAFETY: the closure only makes async-signal-safe calls (sigprocmask,
    // write, prctl, seccomp) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let set = signal_set();
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            join_cgroup_raw(&procs)?;
            match &seccomp {
                Some(filter) => minerguard::seccomp::install_raw(filter),
                None => Ok(()),
            }
        });
    }
    let status = match command.spawn() {
        Ok(mut child) => {
            let pid = child.id() as i32;
            // Forward Ctrl-C / SIGTERM to the command; we clean up after it.
            std::thread::spawn(move || loop {
                let sig = wait_signal();
                // SAFETY: plain syscall.
                unsafe { libc::kill(pid, sig) };
            });
            Some(child.wait()?)
        }
        Err(e) => {
            eprintln!("enforcer: cannot run `{}`: {e}", cmd[0]);
            None
        }
    };

    *stop.lock().unwrap() = true;
    let _ = writer.join();
    let drops = enforcer.drops();
    enforcer.remove(handle)?;
    drop(enforcer);
    cgroup.remove()?;
    if !quiet && (drops.ring > 0 || drops.channel > 0) {
        eprintln!(
            "minerguard: {} events lost (ring buffer full: {}, channel full: {})",
            drops.ring + drops.channel,
            drops.ring,
            drops.channel
        );
    }
    Ok(match status {
        None => ExitCode::from(127),
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => ExitCode::from(c as u8),
            (None, Some(sig)) => ExitCode::from(128 + sig as u8),
            _ => ExitCode::from(1),
        },
    })
}

fn watch(
    profile_path: &Path,
    cgroups: &[PathBuf],
    host: bool,
    events: Option<&Path>,
    load: LoadArgs,
) -> AnyResult<ExitCode> {
    let mut scopes: Vec<Scope> = cgroups.iter().cloned().map(Scope::Cgroup).collect();
    if host {
        scopes.push(Scope::Host);
    }
    if scopes.is_empty() {
        return Err("nothing to watch: give --cgroup PATH (repeatable) or --host".into());
    }
    let mut profile = load_profile(profile_path)?;
    let mut enforcer = new_enforcer(load)?;
    let mut handles = Vec::new();
    for scope in &scopes {
        // On error, dropping the enforcer removes what was applied so far.
        let handle = enforcer.apply(&profile, scope.clone())?;
        handles.push(handle);
        eprintln!(
            "minerguard: profile `{}` enforced by the {} backend on {scope}",
            profile.name,
            enforcer.backend()
        );
        warn_unenforced(&enforcer, handle, &profile, false);
    }
    let stop = Arc::new(Mutex::new(false));
    let writer = spawn_event_writer(
        &enforcer,
        event_sink(events, Box::new(io::stdout()))?,
        stop.clone(),
    );
    // SIGHUP reloads; SIGINT or SIGTERM ends the loop; every few minutes
    // `connect.domains` are resolved again.
    loop {
        match wait_signal_for(DOMAIN_REFRESH) {
            None => {
                match enforcer.refresh_domains() {
                    Ok(0) => {}
                    Ok(n) => eprintln!("minerguard: domains re-resolved; {n} scopes updated"),
                    Err(e) => eprintln!("minerguard: refreshing domains failed: {e}"),
                }
                continue;
            }
            Some(libc::SIGHUP) => {}
            Some(_) => break,
        }
        let new = match load_profile(profile_path) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("minerguard: reload failed, previous profile kept:\n{e}");
                continue;
            }
        };
        match handles.iter().try_for_each(|h| enforcer.update(*h, &new)) {
            Ok(()) => {
                profile = new;
                eprintln!("minerguard: reloaded profile `{}`", profile.name);
                // The new profile may need hooks the old one did not load.
                if let Some(handle) = handles.first() {
                    warn_unenforced(&enforcer, *handle, &profile, false);
                }
            }
            Err(e) => eprintln!("minerguard: reload failed: {e}"),
        }
    }
    eprintln!("minerguard: stopping; detaching");
    for h in handles {
        enforcer.remove(h)?;
    }
    *stop.lock().unwrap() = true;
    let _ = writer.join();
    Ok(ExitCode::SUCCESS)
}

/// `90`, `90s`, `1500ms`, `5m`, `1h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 90s, 5m, 1h)"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (ms, s, m or h)"
            ))
        }
    };
    if ms == 0 {
        return Err("the duration must be above zero".into());
    }
    Ok(Duration::from_millis(ms))
}

/// `enforcer learn`: the allow-only profile of what the cgroup ran.
fn learn(
    cgroup: &Path,
    duration: Duration,
    out: Option<&Path>,
    name: &str,
    action: &str,
    load: LoadArgs,
) -> AnyResult<ExitCode> {
    let action = match action {
        "kill" => Action::Kill,
        "audit" => Action::Audit,
        _ => Action::Deny,
    };
    let mut enforcer = new_enforcer(load)?;
    let kind = enforcer.backend();
    let learner = enforcer.learn(Scope::Cgroup(cgroup.to_path_buf()), duration, |p| match p {
        LearnProgress::Started => eprintln!(
            "minerguard: learning what {} executes for {:?} ({kind} backend; nothing is refused meanwhile)",
            cgroup.display(),
            duration,
        ),
        LearnProgress::Learned(p) => eprintln!("minerguard: learned {}", p.display()),
    })?;
    for path in learner.unresolved() {
        eprintln!(
            "minerguard: warning: `{path}` exited before its path could be resolved; not listed"
        );
    }
    let count = learner.learned().count();
    if count == 0 {
        return Err(format!(
            "nothing was executed in {} while learning; no profile written",
            cgroup.display()
        )
        .into());
    }
    let yaml = learner.allow_only_profile(name, action).to_yaml();
    match out {
        Some(path) => {
            std::fs::write(path, &yaml).map_err(|e| format!("writing {}: {e}", path.display()))?;
            eprintln!(
                "minerguard: {count} programs learned; profile written to {}",
                path.display()
            );
        }
        None => {
            print!("{yaml}");
            eprintln!("minerguard: {count} programs learned");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `enforcer seccomp`: the profile's filter in the chosen format on stdout.
fn print_seccomp(path: &Path, format: &str) -> AnyResult<ExitCode> {
    let profile = load_profile(path)?;
    let Some(policy) = SeccompPolicy::compile(&profile)? else {
        return Err(format!("profile `{}` has no seccomp rule", profile.name).into());
    };
    let mut out = io::stdout().lock();
    match format {
        "oci" => {
            let json = minerguard::seccomp::oci::to_oci(&policy)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
        }
        "bpf" => out.write_all(&SeccompFilter::new(&policy)?.to_bpf()?)?,
        _ => out.write_all(SeccompFilter::new(&policy)?.to_pfc()?.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Says which rules of the applied profile this backend leaves unenforced.
///
/// `seccomp_installed`: the command gets the seccomp filter (`run`), so
/// seccomp rules are enforced even though no BPF backend carries them.
fn warn_unenforced(
    enforcer: &Enforcer,
    handle: minerguard::PolicyHandle,
    profile: &Profile,
    seccomp_installed: bool,
) {
    for rule in &profile.rules {
        if rule
            .stratum
            .as_ref()
            .is_some_and(|s| !s.signatures.is_empty())
        {
            eprintln!(
                "minerguard: warning: rule `{}`: extra stratum.signatures are not matched in the kernel in this release (the built-in signatures are)",
                rule.name
            );
        }
    }
    for domain in enforcer.unresolved_domains(handle).unwrap_or_default() {
        eprintln!("minerguard: warning: domain `{domain}` resolved to no address; not enforced until it does");
    }
    // The optional checks load with the first profile that needs them: only
    // a profile with such rules (as compiled: e.g. exec.files that exist)
    // has anything to warn about.
    let compiled = KernelPolicy::compile(profile).and_then(|mut p| p.resolve_inodes().map(|()| p));
    let (has_stratum, judges_files) = compiled
        .map(|p| (p.stratum.is_some(), p.judges_mapped_files()))
        .unwrap_or((false, false));
    if has_stratum {
        if let Err(why) = enforcer.fast_open() {
            eprintln!("minerguard: warning: TCP Fast Open payloads are not judged for Stratum on this kernel: {why}");
        }
        if enforcer.backend() == minerguard::BackendKind::Lsm {
            if let Err(why) = enforcer.lsm_stratum() {
                eprintln!("minerguard: warning: the sleepable socket_sendmsg hook does not judge Stratum ({why}): Stratum sends are refused by the sk_msg program (EACCES) instead");
            }
        }
    }
    if judges_files {
        if let Err(why) = enforcer.loader_exec() {
            eprintln!("minerguard: warning: executable mappings (loader exec, `ld.so ./miner`) are not judged on this kernel: {why}");
        }
    }
    let gaps = enforcer.unenforced(handle).unwrap_or_default();
    for gap in gaps
        .iter()
        .filter(|g| !(seccomp_installed && g.matcher == minerguard::MatcherKind::Seccomp))
    {
        eprintln!(
            "minerguard: warning: rule `{}` ({}) is not enforced by the {} backend in this release",
            gap.rule,
            gap.matcher,
            enforcer.backend()
        );
    }
}

fn check(paths: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for path in paths {
        let checked = Profile::from_file(path).and_then(|p| {
            KernelPolicy::compile(&p)?;
            SeccompPolicy::compile(&p)?;
            Ok(p)
        });
        match checked {
            Ok(p) => println!("{}: ok: {}", path.display(), summary(&p)),
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// One line: what a valid profile enforces.
fn summary(p: &Profile) -> String {
    let mode = match p.mode {
        minerguard::Mode::Audit => "audit",
        minerguard::Mode::Enforce => "enforce",
    };
    let rules: Vec<String> = p
        .rules
        .iter()
        .map(|r| {
            let m = r.matcher_kind().map(|m| m.as_str()).unwrap_or("?");
            format!("{} {m} `{}`", r.action, r.name)
        })
        .collect();
    format!(
        "profile `{}` ({mode} mode), {} rules: {}",
        p.name,
        p.rules.len(),
        rules.join("; ")
    )
}

fn print_probe(json: bool) -> ExitCode {
    let report = probe();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
        return ExitCode::SUCCESS;
    }
    println!("kernel {} (euid {})", report.kernel, report.euid);
    let line = |name: &str, f: &minerguard::probe::Feature| {
        println!(
            "  {:<16} {:<4} {}",
            name,
            if f.available { "yes" } else { "no" },
            f.detail
        )
    };
    line("BTF", &report.btf);
    line("BPF LSM", &report.bpf_lsm);
    line("cgroup v2", &report.cgroup2);
    line("cgroup-BPF", &report.cgroup_bpf);
    line("cgroup signal", &report.cgroup_signal);
    line("exec tracepoint", &report.exec_tracepoint);
    line("sockops", &report.sockops);
    line("tracefs", &report.tracefs);
    match report.backend {
        Some(kind) => {
            println!("backend: {kind}");
            let supported: Vec<&str> = minerguard::MatcherKind::ALL
                .iter()
                .filter(|m| kind.supports(**m))
                .map(|m| m.as_str())
                .collect();
            let missing: Vec<&str> = minerguard::MatcherKind::ALL
                .iter()
                .filter(|m| !kind.supports(**m))
                .map(|m| m.as_str())
                .collect();
            println!("enforced matchers: {}", supported.join(", "));
            println!("not enforced yet:  {}", missing.join(", "));
            println!("rule semantics on this kernel:");
            for rule in [RuleKind::Exec, RuleKind::Connect] {
                let per: Vec<String> = [Action::Deny, Action::Kill, Action::Audit]
                    .iter()
                    .map(|a| format!("{a} -> {}", semantics(kind, rule, *a, &report)))
                    .collect();
                println!("  {:<8} {}", rule.as_str(), per.join(", "));
            }
            ExitCode::SUCCESS
        }
        None => {
            println!("backend: none usable");
            for m in report.missing() {
                println!("  missing: {m}");
            }
            ExitCode::from(1)
        }
    }
}

fn semantics(
    kind: BackendKind,
    rule: RuleKind,
    requested: Action,
    report: &minerguard::ProbeReport,
) -> String {
    let action = kind.effective(rule, requested);
    let how = match (kind, rule, action) {
        (_, _, Action::Audit) => "allowed, reported",
        (BackendKind::Cgroup, RuleKind::Exec, _) => "SIGKILL before the first instruction",
        (BackendKind::Cgroup, RuleKind::Connect, Action::Kill)
            if !report.cgroup_signal.available =>
        {
            "EPERM, then SIGKILL from userspace"
        }
        (_, _, Action::Kill) => "EPERM and SIGKILL in-kernel",
        (_, _, Action::Deny) => "EPERM",
    };
    format!("{action} ({how})")
}
