//! Prometheus metrics and the HTTP endpoint serving them, with the health
//! and readiness probes.
//!
//! Metrics (OpenMetrics names; a counter's samples end in `_total`):
//! - `minerguard_events_total{rule,action}`: events, by rule and action;
//! - `minerguard_drops_total{where}`: events lost, `where` = `ring` (the
//!   kernel's ring buffer was full), `channel` (the poller's channel was
//!   full) or `webhook` (the webhook's queue was full);
//! - `minerguard_webhook_deliveries_total{outcome}`: webhook payloads,
//!   `outcome` = `delivered` or `failed`;
//! - `minerguard_refused_sockets_total{outcome}`: TCP sockets the egress
//!   Stratum judge refused, `outcome` = `destroyed` or `not_destroyed`
//!   (cut off by the judge's drops only: see
//!   `minerguard::Enforcer::destroyed_sockets`);
//! - `minerguard_stratum_judge_total{what}`: what the Stratum judges could
//!   not do as usual, `what` = `unread_refused` (sends or connections
//!   refused because they could not be read or followed: clean traffic
//!   refused), `untracked` (accepted sockets the full sk-msg tracking could
//!   not take: they send unjudged) or `own_copies` (lsm threads that found
//!   every spare copy taken). All should stay 0 (see
//!   `minerguard::Enforcer::stratum_unread_refused`, `untracked_sockets`,
//!   `stratum_own_copies`);
//! - `minerguard_scopes`, `minerguard_containers`: gauges;
//! - `minerguard_hook_status{check,status}`: 1 for each check's current
//!   status (a check has one series at a time).
//!
//! Drops and deliveries are totals kept elsewhere (the enforcer, the
//! webhook) and read from there, so they are counters *set from a total*
//! ([`TotalCounter`]), typed `counter`: `rate()` and `increase()` work on
//! them, and a total that goes down (its source restarted) reads as a
//! counter reset, which is what Prometheus expects of a counter.
//! prometheus-client's own `Counter` only increments, and a gauge named
//! `*_total` would lie about its type.
//!
//! [`MetricsServer`] serves `GET /metrics` (OpenMetrics text), `/healthz`
//! (200 `ok` while it runs) and `/readyz` (200 once [`Metrics::set_ready`]
//! said so, 503 before), 404 for any other path.

use std::{
    fmt, io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, MetricType, TypedMetric},
    registry::Registry,
};

/// The `Content-Type` of the OpenMetrics text that
/// [`prometheus_client::encoding::text::encode`] writes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where events are lost, the `where` label of `minerguard_drops_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropSite {
    /// The kernel's ring buffer was full.
    Ring,
    /// The channel from the ring buffer's poller to the sinks was full.
    Channel,
    /// The webhook's queue was full.
    Webhook,
}

impl DropSite {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropSite::Ring => "ring",
            DropSite::Channel => "channel",
            DropSite::Webhook => "webhook",
        }
    }
}

/// A webhook delivery's outcome, the `outcome` label of
/// `minerguard_webhook_deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// The receiver took the payload.
    Delivered,
    /// Every try failed, or the receiver refused it.
    Failed,
}

impl Delivery {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Failed => "failed",
        }
    }
}

/// A counter whose value is a total read from elsewhere (set, not
/// incremented); encoded as an OpenMetrics counter.
#[derive(Debug, Default, Clone)]
pub struct TotalCounter(Arc<AtomicU64>);

impl TotalCounter {
    /// Sets the total.
    pub fn set(&self, total: u64) {
        self.0.store(total, Ordering::Relaxed);
    }

    /// The total.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl TypedMetric for TotalCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for TotalCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    rule: String,
    action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    r#where: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JudgeLabels {
    what: &'static str,
}

/// The Stratum judges' counts of what they could not do as usual
/// ([`Metrics::set_stratum_judge`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JudgeCounts {
    /// `Enforcer::stratum_unread_refused`.
    pub unread_refused: u64,
    /// `Enforcer::untracked_sockets`.
    pub untracked: u64,
    /// `Enforcer::stratum_own_copies`.
    pub own_copies: u64,
}

impl JudgeCounts {
    fn labelled(self) -> [(&'static str, u64); 3] {
        [
            ("unread_refused", self.unread_refused),
            ("untracked", self.untracked),
            ("own_copies", self.own_copies),
        ]
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    check: String,
    status: String,
}

/// The agent's metrics, in one registry, and whether it is ready.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events: Family<EventLabels, Counter>,
    drops: Family<DropLabels, TotalCounter>,
    deliveries: Family<DeliveryLabels, TotalCounter>,
    refused_sockets: Family<DeliveryLabels, TotalCounter>,
    stratum_judge: Family<JudgeLabels, TotalCounter>,
    scopes: Gauge,
    containers: Gauge,
    hook_status: Family<HookLabels, Gauge>,
    /// Held while the hook statuses are replaced and while encoding, so a
    /// scrape never sees them half replaced.
    hook_swap: Mutex<()>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric registered; the drop and delivery series exist from
    /// the start (at 0), so their rates are defined before the first loss.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let events = Family::<EventLabels, Counter>::default();
        let drops = Family::<DropLabels, TotalCounter>::default();
        let deliveries = Family::<DeliveryLabels, TotalCounter>::default();
        let refused_sockets = Family::<DeliveryLabels, TotalCounter>::default();
        let stratum_judge = Family::<JudgeLabels, TotalCounter>::default();
        let scopes = Gauge::default();
        let containers = Gauge::default();
        let hook_status = Family::<HookLabels, Gauge>::default();
        // Counter names are registered without `_total`: the encoder adds it.
        registry.register(
            "minerguard_events",
            "Events reported, by rule and action",
            events.clone(),
        );
        registry.register(
            "minerguard_drops",
            "Events lost, by where (ring: kernel ring buffer full; channel: poller channel full; webhook: webhook queue full)",
            drops.clone(),
        );
        registry.register(
            "minerguard_webhook_deliveries",
            "Webhook payloads, by outcome (delivered, failed after every try)",
            deliveries.clone(),
        );
        registry.register(
            "minerguard_refused_sockets",
            "TCP sockets the egress Stratum judge refused, by outcome (destroyed; not_destroyed: cut off by the judge's drops only)",
            refused_sockets.clone(),
        );
        registry.register(
            "minerguard_stratum_judge",
            "What the Stratum judges could not do as usual, by what (unread_refused: refused because not readable or followable; untracked: accepted sockets sent unjudged; own_copies: lsm threads past the spare copies); all should stay 0",
            stratum_judge.clone(),
        );
        registry.register("minerguard_scopes", "Scopes applied", scopes.clone());
        registry.register(
            "minerguard_containers",
            "Containers known to the agent",
            containers.clone(),
        );
        registry.register(
            "minerguard_hook_status",
            "1 for each check's current status (probe results)",
            hook_status.clone(),
        );
        for site in [DropSite::Ring, DropSite::Channel, DropSite::Webhook] {
            drop(drops.get_or_create(&DropLabels {
                r#where: site.as_str(),
            }));
        }
        for outcome in [Delivery::Delivered, Delivery::Failed] {
            drop(deliveries.get_or_create(&DeliveryLabels {
                outcome: outcome.as_str(),
            }));
        }
        for outcome in ["destroyed", "not_destroyed"] {
            drop(refused_sockets.get_or_create(&DeliveryLabels { outcome }));
        }
        for (what, _) in JudgeCounts::default().labelled() {
            drop(stratum_judge.get_or_create(&JudgeLabels { what }));
        }
        Metrics {
            registry,
            events,
            drops,
            deliveries,
            refused_sockets,
            stratum_judge,
            scopes,
            containers,
            hook_status,
            hook_swap: Mutex::new(()),
            ready: AtomicBool::new(false),
        }
    }

    /// One event of `rule` with `action` (`deny`, `kill`, `kill-container`, `audit`).
    pub fn event(&self, rule: &str, action: &str) {
        self.events
            .get_or_create(&EventLabels {
                rule: rule.to_string(),
                action: action.to_string(),
            })
            .inc();
    }

    /// The total of events lost at `site`, as its source counts it.
    pub fn set_drops(&self, site: DropSite, total: u64) {
        self.drops
            .get_or_create(&DropLabels {
                r#where: site.as_str(),
            })
            .set(total);
    }

    /// The total of webhook payloads with `outcome`, as the webhook counts
    /// it.
    pub fn set_deliveries(&self, outcome: Delivery, total: u64) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                outcome: outcome.as_str(),
            })
            .set(total);
    }

    /// The totals of refused sockets the egress Stratum judge destroyed and
    /// could not destroy, as the enforcer counts them.
    pub fn set_refused_sockets(&self, destroyed: u64, not_destroyed: u64) {
        for (outcome, total) in [("destroyed", destroyed), ("not_destroyed", not_destroyed)] {
            self.refused_sockets
                .get_or_create(&DeliveryLabels { outcome })
                .set(total);
        }
    }

    /// The Stratum judges' totals.
    pub fn set_stratum_judge(&self, counts: JudgeCounts) {
        for (what, total) in counts.labelled() {
            self.stratum_judge
                .get_or_create(&JudgeLabels { what })
                .set(total);
        }
    }

    /// The number of scopes applied.
    pub fn set_scopes(&self, n: u64) {
        self.scopes.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The number of containers known.
    pub fn set_containers(&self, n: u64) {
        self.containers.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The hooks' statuses, as (check, status) pairs: each pair's series
    /// is 1, and the series of earlier statuses are removed.
    pub fn set_hook_status<I, C, S>(&self, statuses: I)
    where
        I: IntoIterator<Item = (C, S)>,
        C: Into<String>,
        S: Into<String>,
    {
        let _swap = self.hook_swap.lock().unwrap_or_else(|e| e.into_inner());
        self.hook_status.clear();
        for (check, status) in statuses {
            self.hook_status
                .get_or_create(&HookLabels {
                    check: check.into(),
                    status: status.into(),
                })
                .set(1);
        }
    }

    /// Whether the agent is ready (`/readyz` answers 200).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether [`Metrics::set_ready`] last said ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The exposition in OpenMetrics text ([`OPENMETRICS_CONTENT_TYPE`]),
    /// `# EOF` included.
    pub fn encode(&self) -> String {
        let _swap = self.hook_swap.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        // Writing to a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// How long the server thread waits for a request before looking at its
/// stop flag again.
const POLL: Duration = Duration::from_millis(200);

/// The HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, on a thread of
/// its own.
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsServer")
            .field("local_addr", &self.local_addr)
            .field("running", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Listens on `listen` (port 0: any free port, see
    /// [`MetricsServer::local_addr`]) and serves `metrics`.
    pub fn start(listen: SocketAddr, metrics: Arc<Metrics>) -> Result<MetricsServer, io::Error> {
        let server = tiny_http::Server::http(listen).map_err(|e| {
            // Keep the kind of a bind error (address in use, permission).
            let kind = e
                .downcast_ref::<io::Error>()
                .map_or(io::ErrorKind::Other, io::Error::kind);
            io::Error::new(kind, format!("listening on {listen}: {e}"))
        })?;
        let local_addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("the metrics server has no IP address"))?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("mg-metrics".into())
            .spawn({
                let server = Arc::clone(&server);
                let stop = Arc::clone(&stop);
                move || serve(&server, &stop, &metrics)
            })?;
        Ok(MetricsServer {
            local_addr,
            stop,
            server,
            thread: Some(thread),
        })
    }

    /// The address listened on (the port chosen when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and waits for the serving thread; the listening socket
    /// is closed as the server goes (by tiny_http's accept thread, right
    /// after).
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::Relaxed);
        self.server.unblock();
        // A panic in the thread has already been reported on stderr.
        let _ = thread.join();
    }
}

impl Drop for MetricsServer {
    /// As [`MetricsServer::stop`].
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn serve(server: &tiny_http::Server, stop: &AtomicBool, metrics: &Metrics) {
    while !stop.load(Ordering::Relaxed) {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => respond(request, metrics),
            Ok(None) => {}
            // An accept error (e.g. out of file descriptors): wait, go on.
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    // Names and values here are constants, always valid.
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|()| unreachable!("invalid header {name}: {value}"))
}

fn respond(request: tiny_http::Request, metrics: &Metrics) {
    use tiny_http::{Method, Response};
    let path = request.url().split('?').next().unwrap_or_default();
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
    let response = if !known {
        Response::from_string("not found\n").with_status_code(404)
    } else if !matches!(request.method(), Method::Get | Method::Head) {
        Response::from_string("method not allowed\n")
            .with_status_code(405)
            .with_header(header("Allow", "GET, HEAD"))
    } else {
        match path {
            "/metrics" => Response::from_string(metrics.encode())
                .with_header(header("Content-Type", OPENMETRICS_CONTENT_TYPE)),
            "/healthz" => Response::from_string("ok"),
            _ if metrics.is_ready() => Response::from_string("ready\n"),
            _ => Response::from_string("not ready\n").with_status_code(503),
        }
    };
    // The client may have gone; nothing to do about it.
    let _ = request.respond(response);
}
