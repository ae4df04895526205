//! The outputs over loopback: the webhook against a small tiny_http
//! receiver (or against nobody), the metrics endpoint read with ureq.
//! Only liveness deadlines: nothing here asserts how fast anything is.

use std::{
    net::{SocketAddr, TcpListener},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant, UNIX_EPOCH},
};

use crossbeam_channel::{Receiver, Sender};
use minerguard::{events::InlineStr, falco_json, Action, Event, ProcSource, Target};
use minerguard_agent::{
    metrics::{Delivery, DropSite, JudgeCounts, Metrics, MetricsServer, OPENMETRICS_CONTENT_TYPE},
    webhook::{Retry, Webhook, WebhookStats},
};
use serde_json::Value;

/// How long anything may take before the test is declared stuck.
const LIVENESS: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds; panics naming `what` after [`LIVENESS`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + LIVENESS;
    while !cond() {
        assert!(Instant::now() < end, "stuck waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A Falco payload as the CLI's sink makes it.
fn payload(rule: &str) -> Value {
    let ev = Event {
        time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        pid: 4242,
        tgid: 4242,
        uid: 1000,
        cgroup_id: 77,
        comm: InlineStr::from_c_bytes(b"xmrig"),
        ppid: 1,
        pname: InlineStr::from_c_bytes(b"containerd-shim"),
        cmdline: InlineStr::from_c_bytes(b"xmrig -o pool:3333"),
        cmdline_truncated: false,
        proc_source: ProcSource::Kernel,
        profile: Arc::from("default"),
        rule: Arc::from(rule),
        action: Action::Deny,
        requested: Action::Deny,
        target: Target::Exec {
            path: InlineStr::from_c_bytes(b"/tmp/xmrig"),
        },
        domain: None,
        pattern: None,
        cgroup_kill: None,
    };
    serde_json::from_str(&falco_json(&ev)).unwrap()
}

/// One request as the receiver saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    url: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// A loopback HTTP receiver answering every request with `status`, after
/// a message on `gate` when there is one.
struct Sink {
    addr: SocketAddr,
    seen: Receiver<Seen>,
    stop: Arc<AtomicBool>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start(status: u16, gate: Option<Receiver<()>>) -> Sink {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let (tx, seen) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
            move || receive(&server, &stop, &tx, status, gate.as_ref())
        });
        Sink {
            addr,
            seen,
            stop,
            server,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn next(&self) -> Seen {
        self.seen
            .recv_timeout(LIVENESS)
            .expect("the receiver got no request")
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn receive(
    server: &tiny_http::Server,
    stop: &AtomicBool,
    seen: &Sender<Seen>,
    status: u16,
    gate: Option<&Receiver<()>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(Some(mut rq)) = server.recv_timeout(Duration::from_millis(50)) else {
            continue;
        };
        let mut body = Vec::new();
        rq.as_reader().read_to_end(&mut body).unwrap();
        let content_type = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Content-Type"))
            .map(|h| h.value.to_string());
        let _ = seen.send(Seen {
            method: rq.method().to_string(),
            url: rq.url().to_string(),
            content_type,
            body,
        });
        if let Some(gate) = gate {
            // Held until the test opens the gate (or it is dropped).
            let _ = gate.recv_timeout(LIVENESS);
        }
        let _ = rq.respond(tiny_http::Response::empty(status));
    }
}

/// A loopback port nobody listens on.
fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Runs `f` on a thread and returns its result, failing the test if it
/// does not come back within [`LIVENESS`].
fn within_liveness<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIVENESS).expect("did not return in time")
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn webhook_posts_the_falco_json_as_is() {
    let sink = Sink::start(200, None);
    let hook = Webhook::start(&sink.url("/falco"), 10 * SECOND, 16).unwrap();
    let sent = payload("miner-binary");
    hook.send(sent.clone());
    let seen = sink.next();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.url, "/falco");
    assert_eq!(seen.content_type.as_deref(), Some("application/json"));
    assert_eq!(seen.body, serde_json::to_vec(&sent).unwrap());
    let got: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(got, sent);
    for key in [
        "output",
        "priority",
        "rule",
        "time",
        "output_fields",
        "source",
        "tags",
    ] {
        assert!(got.get(key).is_some(), "no `{key}` in {got}");
    }
    assert_eq!(got["rule"], "miner-binary");
    wait_until("the delivery to be counted", || hook.stats().delivered == 1);
    let stats = within_liveness(move || hook.finish());
    assert_eq!(
        stats,
        WebhookStats {
            delivered: 1,
            failed: 0,
            dropped: 0,
            queued: 0,
        }
    );
}

#[test]
fn webhook_counts_failures_after_the_retries_when_nobody_listens() {
    let url = format!("http://{}/", dead_port());
    let hook = Webhook::start(&url, 5 * SECOND, 16).unwrap();
    // send() only queues: it comes back whatever the receiver does.
    for _ in 0..3 {
        hook.send(payload("miner-pool-port"));
    }
    wait_until("three failures", || hook.stats().failed == 3);
    let stats = within_liveness(move || hook.finish());
    assert_eq!(stats.failed, 3);
    assert_eq!(stats.delivered, 0);
    assert_eq!(stats.dropped, 0);
}

#[test]
fn webhook_retries_a_server_error_then_gives_up() {
    let sink = Sink::start(503, None);
    let retry = Retry {
        retries: 2,
        first_backoff: Duration::from_millis(10),
    };
    let hook = Webhook::start_with_retry(&sink.url("/"), 10 * SECOND, 4, retry).unwrap();
    let sent = payload("stratum-protocol");
    hook.send(sent.clone());
    for _ in 0..3 {
        let seen = sink.next();
        assert_eq!(seen.body, serde_json::to_vec(&sent).unwrap());
    }
    wait_until("the failure", || hook.stats().failed == 1);
    let stats = within_liveness(move || hook.finish());
    assert_eq!((stats.delivered, stats.failed), (0, 1));
    // No fourth try.
    assert!(sink.seen.try_recv().is_err());
}

#[test]
fn webhook_does_not_retry_a_refusal() {
    let sink = Sink::start(400, None);
    let hook = Webhook::start(&sink.url("/"), 10 * SECOND, 4).unwrap();
    hook.send(payload("miner-binary"));
    sink.next();
    wait_until("the failure", || hook.stats().failed == 1);
    let stats = within_liveness(move || hook.finish());
    assert_eq!((stats.delivered, stats.failed), (0, 1));
    assert!(sink.seen.try_recv().is_err(), "a 400 was tried again");
}

#[test]
fn webhook_drops_what_a_full_queue_cannot_hold() {
    let (open, gate) = crossbeam_channel::unbounded();
    let sink = Sink::start(200, Some(gate));
    let hook = Webhook::start(&sink.url("/"), LIVENESS, 1).unwrap();
    hook.send(payload("first"));
    // The worker is now held in its POST of the first payload.
    sink.next();
    hook.send(payload("second"));
    for n in 0..3 {
        hook.send(payload(&format!("dropped-{n}")));
    }
    let stats = hook.stats();
    assert_eq!(stats.queued, 1);
    assert_eq!(stats.dropped, 3);
    // Let both held payloads through.
    open.send(()).unwrap();
    open.send(()).unwrap();
    let second = sink.next();
    let got: Value = serde_json::from_slice(&second.body).unwrap();
    assert_eq!(got["rule"], "second");
    wait_until("two deliveries", || hook.stats().delivered == 2);
    let stats = within_liveness(move || hook.finish());
    assert_eq!(
        stats,
        WebhookStats {
            delivered: 2,
            failed: 0,
            dropped: 3,
            queued: 0,
        }
    );
}

#[test]
fn webhook_finish_is_bounded_and_counts_what_it_left() {
    let url = format!("http://{}/", dead_port());
    // A backoff far beyond the liveness deadline: only finishing ends it.
    let retry = Retry {
        retries: 3,
        first_backoff: 10 * LIVENESS,
    };
    let hook = Webhook::start_with_retry(&url, 5 * SECOND, 8, retry).unwrap();
    for _ in 0..3 {
        hook.send(payload("miner-binary"));
    }
    // The worker holds the first payload (trying or waiting to retry).
    wait_until("the worker to take one", || hook.stats().queued == 2);
    let stats = within_liveness(move || hook.finish_within(Duration::ZERO));
    assert_eq!(
        stats,
        WebhookStats {
            delivered: 0,
            failed: 1,
            dropped: 2,
            queued: 0,
        }
    );
}

/// A GET with ureq: (status, content type, body).
fn get(addr: SocketAddr, path: &str) -> (u16, Option<String>, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(LIVENESS))
        .build()
        .into();
    let mut resp = agent.get(format!("http://{addr}{path}")).call().unwrap();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.body_mut().read_to_string().unwrap();
    (resp.status().as_u16(), ct, body)
}

#[test]
fn metrics_endpoint_serves_metrics_and_probes() {
    let metrics = Arc::new(Metrics::new());
    let server =
        MetricsServer::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&metrics)).unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    metrics.event("miner-binary", "deny");
    metrics.event("miner-binary", "deny");
    metrics.event("miner-pool-port", "audit");
    metrics.set_drops(DropSite::Ring, 5);
    metrics.set_drops(DropSite::Webhook, 2);
    metrics.set_deliveries(Delivery::Delivered, 40);
    metrics.set_deliveries(Delivery::Failed, 1);
    metrics.set_refused_sockets(7, 1);
    metrics.set_stratum_judge(JudgeCounts {
        unread_refused: 4,
        untracked: 0,
        own_copies: 9,
    });
    metrics.set_scopes(3);
    metrics.set_containers(12);
    metrics.set_hook_status([("lsm", "ok"), ("cgroup_connect", "ok")]);
    metrics.set_hook_status([("lsm", "missing")]);

    let (status, ct, text) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(ct.as_deref(), Some(OPENMETRICS_CONTENT_TYPE));
    for line in [
        "# TYPE minerguard_events counter",
        r#"minerguard_events_total{rule="miner-binary",action="deny"} 2"#,
        r#"minerguard_events_total{rule="miner-pool-port",action="audit"} 1"#,
        "# TYPE minerguard_drops counter",
        r#"minerguard_drops_total{where="ring"} 5"#,
        r#"minerguard_drops_total{where="channel"} 0"#,
        r#"minerguard_drops_total{where="webhook"} 2"#,
        r#"minerguard_webhook_deliveries_total{outcome="delivered"} 40"#,
        r#"minerguard_webhook_deliveries_total{outcome="failed"} 1"#,
        "# TYPE minerguard_refused_sockets counter",
        r#"minerguard_refused_sockets_total{outcome="destroyed"} 7"#,
        r#"minerguard_refused_sockets_total{outcome="not_destroyed"} 1"#,
        "# TYPE minerguard_stratum_judge counter",
        r#"minerguard_stratum_judge_total{what="unread_refused"} 4"#,
        r#"minerguard_stratum_judge_total{what="untracked"} 0"#,
        r#"minerguard_stratum_judge_total{what="own_copies"} 9"#,
        "minerguard_scopes 3",
        "minerguard_containers 12",
        r#"minerguard_hook_status{check="lsm",status="missing"} 1"#,
        "# EOF",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line `{line}` in:\n{text}"
        );
    }
    // The earlier statuses are gone.
    assert!(!text.contains(r#"status="ok""#), "{text}");

    let (status, _, body) = get(addr, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(get(addr, "/readyz").0, 503);
    metrics.set_ready(true);
    assert_eq!(get(addr, "/readyz").0, 200);
    metrics.set_ready(false);
    assert_eq!(get(addr, "/readyz").0, 503);
    assert_eq!(get(addr, "/nope").0, 404);
    assert_eq!(get(addr, "/metrics/extra").0, 404);
    assert_eq!(get(addr, "/metrics?name[]=x").0, 200);

    within_liveness(move || server.stop());
    // The listening socket goes with the server (tiny_http's accept thread
    // closes it as it ends).
    wait_until("the port to be closed", || {
        std::net::TcpStream::connect(addr).is_err()
    });
}

#[test]
fn metrics_server_reports_a_taken_port() {
    let first =
        MetricsServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(Metrics::new())).unwrap();
    let e = MetricsServer::start(first.local_addr(), Arc::new(Metrics::new())).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    first.stop();
}

#[test]
fn outputs_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Webhook>();
    shared::<Metrics>();
    shared::<MetricsServer>();
}
