//! A falcosidekick-compatible webhook: every event's Falco JSON is POSTed,
//! as is, to a URL.
//!
//! falcosidekick's input is Falco's own JSON output (`output`, `priority`,
//! `rule`, `time`, `output_fields`, `source`, `tags`, `hostname`), so the
//! payload handed to [`Webhook::send`] is posted unchanged with
//! `Content-Type: application/json`.
//!
//! Nothing here may slow enforcement: [`Webhook::send`] only puts the
//! payload in a bounded queue and counts a drop when the queue is full; one
//! worker thread does the HTTP, each try bounded by the request timeout,
//! with retries and exponential backoff ([`Retry`]). A payload that still
//! fails after the last try is counted as failed and dropped.
//!
//! Plain `http://` only for now: no TLS stack is built in, and an
//! `https://` URL is refused at [`Webhook::start`] rather than failing on
//! every event later.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use ureq::http::Uri;

/// How long [`Webhook::finish`] (and dropping a [`Webhook`]) keeps
/// delivering what is queued before dropping the rest.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

/// The largest response body read (and thrown away) so the connection can
/// be reused; a longer one is not read to its end.
const RESPONSE_LIMIT: u64 = 64 * 1024;

/// Why a webhook could not be started.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL does not parse.
    #[error("webhook URL `{url}` is not a URL: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// The URL has no scheme, or another one than `http`.
    #[error(
        "webhook URL `{url}`: scheme `{scheme}` is not supported (only http:// for now; \
         no TLS stack is built in)"
    )]
    UnsupportedScheme {
        /// The URL as given.
        url: String,
        /// The scheme found (empty when there is none).
        scheme: String,
    },
    /// The URL names no host.
    #[error("webhook URL `{url}` has no host")]
    MissingHost {
        /// The URL as given.
        url: String,
    },
    /// The URL carries `user:password@`, which would not be sent.
    #[error("webhook URL `{url}`: credentials in the URL are not supported")]
    Credentials {
        /// The URL as given, credentials included.
        url: String,
    },
    /// A queue of no places could never hold a payload.
    #[error("the webhook queue must hold at least one payload")]
    EmptyQueue,
    /// A zero request timeout would fail every try.
    #[error("the webhook request timeout must be above zero")]
    ZeroTimeout,
    /// The worker thread could not be started.
    #[error("starting the webhook thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// When a failed POST is tried again: `retries` more times after the first
/// try, waiting `first_backoff` before the first retry and twice as long
/// before each next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries after the first one.
    pub retries: u32,
    /// The wait before the first retry; each next wait doubles.
    pub first_backoff: Duration,
}

impl Default for Retry {
    /// Three retries after 100 ms, 200 ms and 400 ms (four tries in all).
    fn default() -> Self {
        Retry {
            retries: 3,
            first_backoff: Duration::from_millis(100),
        }
    }
}

/// A webhook's counters, totals since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Payloads the receiver took (a 2xx answer).
    pub delivered: u64,
    /// Payloads given up on: every try failed, or the receiver refused
    /// the payload (a 3xx or 4xx other than 408 and 429, not retried).
    pub failed: u64,
    /// Payloads never tried: the queue was full when sent, or the drain
    /// at [`Webhook::finish`] ran out of time.
    pub dropped: u64,
    /// Payloads waiting in the queue now (not counting one being sent).
    pub queued: u64,
}

/// The counters shared with the worker.
#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// A falcosidekick-compatible webhook output: a bounded queue and a worker
/// thread POSTing each payload.
#[derive(Debug)]
pub struct Webhook {
    /// `None` once finishing: the worker sees the queue disconnected when
    /// it is empty.
    queue: Option<Sender<serde_json::Value>>,
    counters: Arc<Counters>,
    /// The end of the drain, set when finishing.
    deadline: Arc<Mutex<Option<Instant>>>,
    /// Dropped when finishing, which wakes the worker from a backoff wait.
    stop: Option<Sender<()>>,
    worker: Option<JoinHandle<()>>,
}

impl Webhook {
    /// A webhook POSTing to `url` (`http://host[:port][/path]`), each try
    /// bounded by `timeout`, at most `queue` payloads waiting, with the
    /// default [`Retry`].
    pub fn start(url: &str, timeout: Duration, queue: usize) -> Result<Webhook, WebhookError> {
        Webhook::start_with_retry(url, timeout, queue, Retry::default())
    }

    /// As [`Webhook::start`], with its own retry policy.
    pub fn start_with_retry(
        url: &str,
        timeout: Duration,
        queue: usize,
        retry: Retry,
    ) -> Result<Webhook, WebhookError> {
        let uri = validate_url(url)?;
        if queue == 0 {
            return Err(WebhookError::EmptyQueue);
        }
        if timeout.is_zero() {
            return Err(WebhookError::ZeroTimeout);
        }
        let (tx, rx) = crossbeam_channel::bounded(queue);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let counters = Arc::new(Counters::default());
        let deadline = Arc::new(Mutex::new(None));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            // An in-cluster receiver: no proxy from the environment.
            .proxy(None)
            // Statuses are judged here (retry or not), not as errors.
            .http_status_as_error(false)
            // A POST is not redirected; a 3xx is a refusal.
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .user_agent(concat!("minerguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let worker = Worker {
            agent,
            uri,
            timeout,
            retry,
            queue: rx,
            stop: stop_rx,
            counters: Arc::clone(&counters),
            deadline: Arc::clone(&deadline),
        };
        let handle = std::thread::Builder::new()
            .name("mg-webhook".into())
            .spawn(move || worker.run())
            .map_err(WebhookError::Thread)?;
        Ok(Webhook {
            queue: Some(tx),
            counters,
            deadline,
            stop: Some(stop_tx),
            worker: Some(handle),
        })
    }

    /// Queues `payload` (a Falco JSON object) for delivery. Never blocks:
    /// when the queue is full the payload is dropped and counted.
    pub fn send(&self, payload: serde_json::Value) {
        let Some(queue) = &self.queue else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match queue.try_send(payload) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters now.
    pub fn stats(&self) -> WebhookStats {
        WebhookStats {
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            queued: self.queue.as_ref().map_or(0, |q| q.len() as u64),
        }
    }

    /// Stops taking payloads and delivers what is queued for at most
    /// [`DEFAULT_DRAIN`]; the rest is counted as dropped. The final counters.
    pub fn finish(self) -> WebhookStats {
        self.finish_within(DEFAULT_DRAIN)
    }

    /// As [`Webhook::finish`], draining for at most `within`: no try starts
    /// after that deadline, a try started while draining is cut to it, and
    /// no backoff wait goes past it; only the try already under way when
    /// finishing began can end later, bounded by the request timeout.
    pub fn finish_within(mut self, within: Duration) -> WebhookStats {
        self.shut_down(within);
        self.stats()
    }

    fn shut_down(&mut self, within: Duration) {
        let Some(worker) = self.worker.take() else {
            return;
        };
        *lock(&self.deadline) = Some(Instant::now() + within);
        // The worker ends once the queue is empty and disconnected, or at
        // the deadline; a backoff wait is woken by the stop channel.
        self.queue = None;
        self.stop = None;
        // The worker catches nothing that could panic on purpose; a panic
        // there has already been reported on stderr.
        let _ = worker.join();
    }
}

impl Drop for Webhook {
    /// As [`Webhook::finish`]: bounded by [`DEFAULT_DRAIN`].
    fn drop(&mut self) {
        self.shut_down(DEFAULT_DRAIN);
    }
}

fn lock(m: &Mutex<Option<Instant>>) -> std::sync::MutexGuard<'_, Option<Instant>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `url` as a URI ureq can POST to: `http`, a host, a path (`/` when
/// none), the port 80 when none.
fn validate_url(url: &str) -> Result<Uri, WebhookError> {
    let uri: Uri =
        url.parse()
            .map_err(|e: ureq::http::uri::InvalidUri| WebhookError::InvalidUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => {}
        other => {
            return Err(WebhookError::UnsupportedScheme {
                url: url.to_string(),
                scheme: other.unwrap_or_default().to_string(),
            })
        }
    }
    let authority = uri.authority().ok_or_else(|| WebhookError::MissingHost {
        url: url.to_string(),
    })?;
    if authority.as_str().contains('@') {
        return Err(WebhookError::Credentials {
            url: url.to_string(),
        });
    }
    if authority.host().is_empty() {
        return Err(WebhookError::MissingHost {
            url: url.to_string(),
        });
    }
    // The URI parser leaves the port unchecked: `host:` and `host:x` pass.
    let text = authority.as_str();
    let after_host = text.rfind(']').map_or(text, |i| &text[i + 1..]);
    if let Some((_, port)) = after_host.rsplit_once(':') {
        if !matches!(port.parse::<u16>(), Ok(p) if p != 0) {
            return Err(WebhookError::InvalidUrl {
                url: url.to_string(),
                reason: format!("`{port}` is not a port (1-65535)"),
            });
        }
    }
    Ok(uri)
}

/// What one try came to.
enum Outcome {
    Delivered,
    /// Worth another try: no connection, a timeout, 408, 429, 5xx.
    Transient,
    /// Not worth another try: the receiver refused this payload.
    Refused,
}

struct Worker {
    agent: ureq::Agent,
    uri: Uri,
    timeout: Duration,
    retry: Retry,
    queue: Receiver<serde_json::Value>,
    stop: Receiver<()>,
    counters: Arc<Counters>,
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl Worker {
    fn run(self) {
        // Ends when the webhook is finishing and the queue is empty.
        while let Ok(payload) = self.queue.recv() {
            if self.past_deadline() {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                let rest = self.queue.try_iter().count() as u64;
                self.counters.dropped.fetch_add(rest, Ordering::Relaxed);
                continue;
            }
            let counter = if self.deliver(&payload) {
                &self.counters.delivered
            } else {
                &self.counters.failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether `payload` was delivered, after at most 1 + `retries` tries.
    fn deliver(&self, payload: &serde_json::Value) -> bool {
        let body = match serde_json::to_vec(payload) {
            Ok(b) => b,
            // A Value always serializes; nothing to retry if not.
            Err(_) => return false,
        };
        let mut backoff = self.retry.first_backoff;
        for try_no in 0..=self.retry.retries {
            if try_no > 0 {
                if !self.pause(backoff) {
                    return false;
                }
                backoff = backoff.saturating_mul(2);
            }
            let Some(timeout) = self.try_timeout() else {
                return false;
            };
            match self.post(&body, timeout) {
                Outcome::Delivered => return true,
                Outcome::Refused => return false,
                Outcome::Transient => {}
            }
        }
        false
    }

    fn post(&self, body: &[u8], timeout: Duration) -> Outcome {
        let result = self
            .agent
            .post(&self.uri)
            .content_type("application/json")
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(body);
        match result {
            Ok(mut response) => {
                // Read (a bounded amount) so the connection can be reused.
                let _ = response
                    .body_mut()
                    .with_config()
                    .limit(RESPONSE_LIMIT)
                    .read_to_vec();
                let status = response.status().as_u16();
                match status {
                    200..=299 => Outcome::Delivered,
                    408 | 429 | 500..=599 => Outcome::Transient,
                    _ => Outcome::Refused,
                }
            }
            Err(_) => Outcome::Transient,
        }
    }

    fn finishing_deadline(&self) -> Option<Instant> {
        *lock(&self.deadline)
    }

    fn past_deadline(&self) -> bool {
        self.finishing_deadline()
            .is_some_and(|d| Instant::now() >= d)
    }

    /// The request timeout, cut to the drain deadline when finishing;
    /// `None` when the deadline has passed.
    fn try_timeout(&self) -> Option<Duration> {
        match self.finishing_deadline() {
            None => Some(self.timeout),
            Some(d) => {
                let left = d.checked_duration_since(Instant::now())?;
                (!left.is_zero()).then(|| left.min(self.timeout))
            }
        }
    }

    /// Waits `wait` (cut short by finishing); false when the drain
    /// deadline comes first.
    fn pause(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        match self.stop.recv_deadline(until) {
            Err(RecvTimeoutError::Timeout) => return true,
            // Finishing (nothing is ever sent on the stop channel).
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
        }
        let Some(deadline) = self.finishing_deadline() else {
            return true;
        };
        let end = until.min(deadline);
        if let Some(left) = end.checked_duration_since(Instant::now()) {
            std::thread::sleep(left);
        }
        until < deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_urls() {
        for url in [
            "http://127.0.0.1:2801/",
            "http://falcosidekick.falco.svc:2801",
            "http://[::1]:8080/events?x=1",
            "HTTP://example.org/path",
        ] {
            validate_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn refuses_others_by_name() {
        assert!(matches!(
            validate_url("https://example.org/"),
            Err(WebhookError::UnsupportedScheme { scheme, .. }) if scheme == "https"
        ));
        assert!(matches!(
            validate_url("example.org:2801"),
            Err(WebhookError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            validate_url("/just/a/path"),
            Err(WebhookError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            validate_url("http://user:pw@example.org/"),
            Err(WebhookError::Credentials { .. })
        ));
        assert!(matches!(
            validate_url("http://exa mple.org/"),
            Err(WebhookError::InvalidUrl { .. })
        ));
        assert!(matches!(
            validate_url("http://127.0.0.1:notaport/"),
            Err(WebhookError::InvalidUrl { .. })
        ));
        for url in ["http://127.0.0.1:/", "http://[::1]:0/", "http://h:70000/"] {
            assert!(
                matches!(validate_url(url), Err(WebhookError::InvalidUrl { .. })),
                "{url}"
            );
        }
        assert!(matches!(
            validate_url("http:///path"),
            Err(WebhookError::MissingHost { .. } | WebhookError::InvalidUrl { .. })
        ));
        let e = Webhook::start("https://example.org/", Duration::from_secs(1), 8).unwrap_err();
        assert!(e.to_string().contains("only http://"), "{e}");
        assert!(matches!(
            Webhook::start("http://127.0.0.1:1/", Duration::from_secs(1), 0),
            Err(WebhookError::EmptyQueue)
        ));
        assert!(matches!(
            Webhook::start("http://127.0.0.1:1/", Duration::ZERO, 1),
            Err(WebhookError::ZeroTimeout)
        ));
    }
}
