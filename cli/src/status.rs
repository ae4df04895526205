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
        let on = i
            .cgroup
            .as_ref()
            .map(|c| format!(" on {}", c.display()))
            .unwrap_or_default();
        println!(
            "{}: {} links, {} maps pinned{on}; {process}",
            i.name, i.links, i.maps
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Unpins `instance`, or every instance with `all`.
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
