//! A process held to a duty cycle, as `cpulimit` holds one.

use std::time::Duration;

/// Stops and continues `pid` every `period` (as `cpulimit` does) until
/// dropped; continues it then.
pub struct DutyCycle {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DutyCycle {
    /// Starts the cycle (running first, stopped after `period`).
    pub fn start(pid: u32, period: Duration) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let pid = pid as libc::pid_t;
        let thread = std::thread::spawn(move || {
            let mut on = true;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(period);
                on = !on;
                // SAFETY: a signal to the caller's own child, not reaped
                // while this runs (the caller drops the cycle first).
                unsafe { libc::kill(pid, if on { libc::SIGCONT } else { libc::SIGSTOP }) };
            }
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        });
        DutyCycle {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DutyCycle {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
