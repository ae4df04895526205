//! `minerguard agent`: the node agent (see the `minerguard-agent` crate).
//! Runs until SIGINT or SIGTERM (enforcement stays pinned: a restarted
//! agent adopts it); SIGHUP, or a change of the configuration file (a
//! ConfigMap's `..data` swap included), reloads it.

use std::{io, path::Path, process::ExitCode, time::Duration};

use minerguard_agent::{agent::Agent, config::AgentConfig, enrich::Enricher};

use crate::{signals, sink, CliResult, LoadArgs, PREFIX};

/// How often containers and the configuration file are looked at.
const TICK: Duration = Duration::from_millis(100);

/// Runs the agent on `config_path`.
pub fn agent(config_path: &Path, load: LoadArgs) -> CliResult<ExitCode> {
    let config = AgentConfig::load(config_path)?;
    let mut outs = Vec::new();
    if config.outputs.stdout {
        outs.push(sink::Sink::Stream(Box::new(io::stdout())));
    }
    if let Some(file) = &config.outputs.file {
        outs.push(sink::Sink::open(
            Some(file),
            config.outputs.file_max_size,
            Box::new(io::stdout()),
        )?);
    }
    signals::block();
    let source = None;
    let (mut agent, notes) = Agent::start(config_path, config, source, load.options())?;
    for note in notes {
        eprintln!("{PREFIX}: {note}");
    }
    let enricher = Enricher::new(agent.directory());
    let writer = sink::Writer::spawn_with(agent.enforcer(), outs, move |ev| {
        enricher.json(ev).to_string()
    });
    let (containers, bound) = agent.counts();
    eprintln!(
        "{PREFIX}: agent ready: {containers} containers under {}, {bound} bound; enforcement pinned as instance `{}`",
        agent.root().display(),
        agent.enforcer().instance().unwrap_or("?")
    );
    // SIGHUP or a quiet tick: look again; SIGINT or SIGTERM: stop.
    while let None | Some(libc::SIGHUP) = signals::wait_for(TICK) {
        for note in agent.tick() {
            eprintln!("{PREFIX}: {note}");
        }
    }
    eprintln!(
        "{PREFIX}: stopping; enforcement stays pinned as instance `{}` (a restarted agent adopts it; `minerguard remove` ends it)",
        agent.enforcer().instance().unwrap_or("?")
    );
    drop(agent);
    writer.finish();
    Ok(ExitCode::SUCCESS)
}
