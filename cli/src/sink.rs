//! Where events go: JSON lines (Falco's shape) to a stream or a file.

use std::{
    fs::OpenOptions,
    io::Write,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use minerguard::{falco_json, Enforcer, Event};

use crate::CliResult;

/// An event stream's destination.
pub type Sink = Box<dyn Write + Send>;

/// `path` opened for appending (created when missing): a restarted command
/// must never lose the alerts an earlier one wrote. `default` without a path.
pub fn open(path: Option<&Path>, default: Sink) -> CliResult<Sink> {
    Ok(match path {
        Some(p) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("opening {} for events: {e}", p.display()))?,
        ),
        None => default,
    })
}

/// The thread writing the enforcer's events; [`Writer::finish`] drains it.
pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Writes each event of `enforcer` as a JSON line to `out` until the
    /// channel closes or [`Writer::finish`] is called.
    pub fn spawn(enforcer: &Enforcer, mut out: Sink) -> Writer {
        let rx = enforcer.events();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(ev) => write_event(&mut out, &ev),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if stopping.load(Ordering::Relaxed) {
                        // Nothing more arrived for a poll interval: drained.
                        let _ = out.flush();
                        return;
                    }
                }
                Err(_) => return,
            }
        });
        Writer { stop, thread }
    }

    /// Waits until the events queued so far are written, then ends.
    pub fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn write_event(out: &mut dyn Write, ev: &Event) {
    let _ = writeln!(out, "{}", falco_json(ev));
    let _ = out.flush();
}
