//! `minerguard status` and `minerguard remove`: the pinned instances.

use std::process::ExitCode;

use minerguard::pin;

use crate::{CliResult, PREFIX};

/// Prints every pinned instance (JSON with `json`).
pub fn print(json: bool) -> CliResult<ExitCode> {
    let instances = pin::instances()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&instances)?);
        return Ok(ExitCode::SUCCESS);
    }
    if instances.is_empty() {
        println!("no pinned instances under {}", pin::PIN_ROOT);
    }
    for i in &instances {
        let process = match (i.pid, i.alive) {
            (Some(pid), true) => format!("pid {pid} running"),
            (Some(pid), false) => format!("pid {pid} gone (the kernel still enforces)"),
            (None, _) => "no process recorded".into(),
        };
        println!(
            "{}: {} backend; {process}; {} links and {} maps pinned; {} events lost to a full ring buffer",
            i.name,
            i.backend.as_deref().unwrap_or("unknown"),
            i.links.len(),
            i.maps,
            i.ring_drops
        );
        let j = i.stratum_judge;
        if j != Default::default() {
            println!(
                "  stratum judge: {} refused unread (clean traffic refused), {} accepted sockets sent untracked, {} threads past the spare copies",
                j.unread_refused, j.untracked, j.own_copies
            );
        }
        for s in &i.scopes {
            let present = if s.present { "" } else { " (cgroup gone)" };
            println!(
                "  {}{present}: profile `{}`, policy {}, cgroup id {}, since {}",
                s.scope,
                s.profile,
                s.policy_id,
                s.cgroup_id,
                since(s.since)
            );
        }
        for l in &i.links {
            let ids = match (l.id, l.program_id) {
                (Some(id), Some(prog)) => format!("link id {id}, program id {prog}"),
                _ => "not a readable link".into(),
            };
            println!("  link {}: {ids}", l.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn since(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Ends `instance`, or every instance with `all`: its programs detach and
/// its maps and pins go.
pub fn remove(instance: Option<&str>, all: bool) -> CliResult<ExitCode> {
    let names: Vec<String> = match (instance, all) {
        (Some(name), _) => vec![name.to_string()],
        (None, _) => pin::instances()?.into_iter().map(|i| i.name).collect(),
    };
    for name in names {
        pin::remove(&name)?;
        eprintln!("{PREFIX}: removed pinned instance `{name}`");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn since_is_an_iso_date() {
        assert_eq!(super::since(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::since(1_764_892_800), "2025-12-05T00:00:00Z");
        assert_eq!(super::since(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }
}
