//! `minerguard learn`: the allow-only profile of what a cgroup ran.

use std::{path::Path, process::ExitCode, time::Duration};

use minerguard::{Action, LearnProgress, Scope};

use crate::{CliResult, LoadArgs, PREFIX};

/// Learns what `cgroup` executes for `duration` and writes the
/// `exec.allow_only` profile to `out` (stdout without it).
pub fn learn(
    cgroup: &Path,
    duration: Duration,
    out: Option<&Path>,
    name: &str,
    action: &str,
    load: LoadArgs,
) -> CliResult<ExitCode> {
    // clap accepts only action names.
    let action = Action::from_name(action).unwrap_or(Action::Deny);
    // Signals stay unblocked: nothing is refused while learning, so Ctrl-C
    // may simply end the command (the kernel detaches what it attached).
    let mut enforcer = load.enforcer()?;
    let kind = enforcer.backend();
    let learner = enforcer.learn(Scope::Cgroup(cgroup.to_path_buf()), duration, |p| match p {
        LearnProgress::Started => eprintln!(
            "{PREFIX}: learning what {} executes for {:?} ({kind} backend; nothing is refused meanwhile)",
            cgroup.display(),
            duration,
        ),
        LearnProgress::Learned(p) => eprintln!("{PREFIX}: learned {}", p.display()),
    })?;
    for path in learner.unresolved() {
        eprintln!(
            "{PREFIX}: warning: `{path}` exited before its path could be resolved; not listed"
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
                "{PREFIX}: {count} programs learned; profile written to {}",
                path.display()
            );
        }
        None => {
            print!("{yaml}");
            eprintln!("{PREFIX}: {count} programs learned");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `90`, `90s`, `1500ms`, `5m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_every_unit_and_refuse_the_rest() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0s").unwrap_err().contains("above zero"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("not a duration"));
    }
}
