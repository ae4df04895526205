//! Waiting for events without holding the GIL, and without ignoring Ctrl-C.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use pyo3::{exceptions::PyValueError, prelude::*};

/// How long one wait lasts before Python's signal handlers get a turn.
const SLICE: Duration = Duration::from_millis(100);

/// A Python timeout in seconds (None: forever) as a duration.
pub fn timeout(secs: Option<f64>) -> PyResult<Option<Duration>> {
    match secs {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(PyValueError::new_err(format!(
            "timeout must be a finite number of seconds >= 0 or None, not {s}"
        ))),
    }
}

/// The next item of `rx`, waiting at most `limit` (forever when None);
/// None when the time is up or the channel is closed. The GIL is released
/// while waiting; pending signals (KeyboardInterrupt) are raised between
/// slices.
pub fn recv<T: Send>(
    py: Python<'_>,
    rx: &Receiver<T>,
    limit: Option<Duration>,
) -> PyResult<Option<T>> {
    let deadline = limit.map(|d| Instant::now() + d);
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        };
        match py.detach(|| rx.recv_timeout(slice)) {
            Ok(item) => return Ok(Some(item)),
            Err(RecvTimeoutError::Disconnected) => return Ok(None),
            Err(RecvTimeoutError::Timeout) => {}
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}
