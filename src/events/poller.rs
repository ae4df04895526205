//! The ring-buffer poller thread: decodes kernel records into [`Event`]s and
//! hands them to consumers through a bounded crossbeam channel. Events that
//! need a slow lookup first (the egress Stratum judge's, whose process is
//! the refused socket's holder) go through a second, describing thread, so
//! that a burst of them does not hold up the ring buffer; the order stays
//! the kernel's.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, OnceLock,
    },
    thread::JoinHandle,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use libbpf_rs::{MapHandle, RingBufferBuilder};

use super::{
    record::{
        RawEvent, CMDLINE_LEN, KIND_CONNECT, KIND_DEVICE, KIND_ESCAPE, KIND_EXEC, KIND_STRATUM,
        PROC_CMDLINE, PROC_PARENT,
    },
    registry::Registry,
    CgroupKill, Event, InlineStr, ProcSource, Protocol, StratumSignature, Target,
};
use crate::{
    backend::{maps::action_from_code, RefusedSockets, SocketWork},
    cgroup_kill,
    compile::RuleKind,
    error::AttachError,
    profile::Action,
};

/// How long one poll waits; bounds how late a stop request is noticed.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Running poller; stopped and joined on drop.
pub(crate) struct Poller {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    receiver: Receiver<Event>,
    /// Hands the Stratum judge's socket work to the thread once it exists.
    sockets_tx: Sender<SocketWork>,
    /// Flush requests: the thread reads the ring buffer dry, then answers.
    flush_tx: Sender<Sender<()>>,
}

/// What the poller thread and its owner share.
#[derive(Default)]
struct Shared {
    /// The egress judge's refused sockets, set by the owner when the judge
    /// loads: before it is attached, so before any of its events (which
    /// name no process: the refused socket's holder does).
    refused: OnceLock<Arc<RefusedSockets>>,
    /// Set to end the thread.
    stop: AtomicBool,
    /// Events dropped because the channel was full.
    channel_drops: AtomicU64,
    /// Judged sockets taken out of the Stratum send path.
    released: AtomicU64,
    /// Events handed to the describing thread and not yet delivered.
    describing: std::sync::atomic::AtomicUsize,
}

/// What the poller needs to turn records into events.
pub(crate) struct Decoder {
    pub registry: Arc<Registry>,
    /// Wall clock minus boot clock, in ns, measured at start.
    pub boot_to_wall_ns: i128,
}

impl Decoder {
    pub fn new(registry: Arc<Registry>) -> Self {
        Decoder {
            registry,
            boot_to_wall_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME),
        }
    }

    /// The event for a kernel record; `None` for records we cannot name
    /// (unknown policy or kind: never produced by our programs).
    pub fn decode(&self, raw: &RawEvent) -> Option<Event> {
        let names = self.registry.lookup(raw.policy_id)?;
        let rule = names.rules.get(raw.rule_idx as usize)?;
        let target = match raw.kind {
            KIND_EXEC => Target::Exec {
                path: InlineStr::from_c_bytes(&raw.path),
            },
            KIND_CONNECT => Target::Connect {
                addr: socket_addr(raw),
                protocol: Protocol::from_ip_proto(raw.protocol),
            },
            KIND_DEVICE => Target::Device {
                major: u32::from_ne_bytes([raw.addr[0], raw.addr[1], raw.addr[2], raw.addr[3]]),
                minor: u32::from_ne_bytes([raw.addr[4], raw.addr[5], raw.addr[6], raw.addr[7]]),
            },
            KIND_ESCAPE => Target::ScopeEscape {
                moved: u32::from_ne_bytes([raw.addr[0], raw.addr[1], raw.addr[2], raw.addr[3]]),
                cgroup_id: u64::from_ne_bytes(raw.addr[8..16].try_into().ok()?),
                cgroup: InlineStr::from_c_bytes(&raw.path),
            },
            KIND_STRATUM => Target::Stratum {
                addr: socket_addr(raw),
                // Only the lsm datagram judge says UDP; the others leave
                // 0 or say TCP (MPTCP included: its number does not fit).
                protocol: if raw.protocol == 17 {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
                signature: StratumSignature::from_id(raw.path[0])?,
                method: match StratumSignature::from_id(raw.path[0])? {
                    // The kernel names a signature by 1 + its index.
                    StratumSignature::Signature => names
                        .signature(raw.path[1])
                        .map_or(InlineStr::from_c_bytes(&[]), |s| {
                            InlineStr::from_c_bytes(s.as_bytes())
                        }),
                    _ => InlineStr::from_c_bytes(&raw.path[1..]),
                },
            },
            _ => return None,
        };
        let domain = match &target {
            Target::Connect { addr, .. } | Target::Stratum { addr, .. } => {
                names.domains.get(&addr.ip()).cloned()
            }
            Target::Exec { .. } | Target::Device { .. } | Target::ScopeEscape { .. } => None,
        };
        // exec.cmdline: the matched pattern's id, flagged at addr[4].
        let pattern = match raw.kind {
            KIND_EXEC if raw.addr[4] == 1 => {
                names.pattern(u32::from_ne_bytes(raw.addr[..4].try_into().ok()?))
            }
            _ => None,
        };
        let comm = InlineStr::from_c_bytes(&raw.comm);
        let argv = &raw.cmdline[..(raw.args_len as usize).min(CMDLINE_LEN)];
        let (cmdline, cut) = InlineStr::command_line(&comm, argv);
        let wall = raw.boot_ns as i128 + self.boot_to_wall_ns;
        let time = UNIX_EPOCH + Duration::from_nanos(wall.clamp(0, u64::MAX as i128) as u64);
        let (mut action, mut requested) = (
            action_from_code(raw.action)?,
            action_from_code(raw.requested)?,
        );
        if rule.action == Action::KillContainer {
            // The kernel knows `kill-container` as `kill`; the registry
            // knows what the rule asked for.
            for a in [&mut action, &mut requested] {
                if *a == Action::Kill {
                    *a = Action::KillContainer;
                }
            }
        }
        Some(Event {
            time,
            pid: raw.pid,
            tgid: raw.tgid,
            uid: raw.uid,
            cgroup_id: raw.cgroup_id,
            comm,
            ppid: raw.ppid,
            pname: InlineStr::from_c_bytes(&raw.pname),
            cmdline,
            cmdline_truncated: cut || raw.args_len as usize > CMDLINE_LEN,
            proc_source: if raw.proc_src & (PROC_PARENT | PROC_CMDLINE)
                == PROC_PARENT | PROC_CMDLINE
            {
                ProcSource::Kernel
            } else {
                ProcSource::Proc
            },
            profile: names.profile.clone(),
            rule: rule.name.clone(),
            action,
            requested,
            target,
            domain,
            pattern,
            cgroup_kill: None,
        })
    }

    /// What a `kill-container` event does to the cgroup the task was in:
    /// found by id under the scope of the event's policy, and killed
    /// ([`crate::cgroup_kill`]). `fresh`: written since this enforcer
    /// started; an older event (a pinned ring buffer's backlog) is not
    /// acted on, as its cgroup may hold other processes by now.
    fn kill_cgroup_of(&self, policy_id: u32, cgroup_id: u64, fresh: bool) -> CgroupKill {
        let not_killed = |cgroup, reason: String| CgroupKill::NotKilled { cgroup, reason };
        if !fresh {
            return not_killed(
                None,
                "written before this enforcer started: not acted on".into(),
            );
        }
        let Some(names) = self.registry.lookup(policy_id) else {
            return not_killed(None, format!("policy {policy_id} is unknown"));
        };
        match cgroup_kill::find_cgroup(&names.scope, cgroup_id) {
            Err(e) => not_killed(None, e.to_string()),
            Ok(cgroup) => match cgroup_kill::kill_cgroup(&cgroup) {
                Ok(method) => CgroupKill::Killed { cgroup, method },
                Err(e) => not_killed(Some(cgroup), e.to_string()),
            },
        }
    }
}

fn socket_addr(raw: &RawEvent) -> SocketAddr {
    // The kernel stores addresses in network byte order.
    let ip = if raw.family == 10 {
        IpAddr::V6(Ipv6Addr::from(raw.addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(
            raw.addr[0],
            raw.addr[1],
            raw.addr[2],
            raw.addr[3],
        ))
    };
    SocketAddr::new(ip, raw.port)
}

/// The command name of `pid` from /proc, or empty when it is gone. The path
/// is built on the stack: decoding stays free of allocations.
fn proc_comm(pid: u32) -> InlineStr<16> {
    use std::io::Write as _;
    let mut path = [0u8; 32];
    let len = {
        let mut w = &mut path[..];
        let _ = write!(w, "/proc/{pid}/comm");
        32 - w.len()
    };
    let mut buf = [0u8; 16];
    let n = std::str::from_utf8(&path[..len])
        .ok()
        .and_then(|p| std::fs::File::open(p).ok())
        .and_then(|mut f| std::io::Read::read(&mut f, &mut buf).ok())
        .unwrap_or(0);
    let name = buf[..n].strip_suffix(b"\n").unwrap_or(&buf[..n]);
    InlineStr::from_c_bytes(name)
}

/// Fills in from /proc what the kernel could not read (`proc_src` lacks
/// the bit): the parent from `/proc/<tgid>/stat`, argv from
/// `/proc/<tgid>/cmdline`. Best effort: a process already gone leaves the
/// fields as they are (0, empty).
fn complete_from_proc(ev: &mut Event, proc_src: u8) {
    if proc_src & PROC_PARENT == 0 {
        if let Some(ppid) = proc_ppid(ev.tgid) {
            ev.ppid = ppid;
            ev.pname = proc_comm(ppid);
        }
    }
    if proc_src & PROC_CMDLINE == 0 {
        let mut argv = [0u8; CMDLINE_LEN + 1];
        let n = read_proc(ev.tgid, "cmdline", &mut argv);
        let (cmdline, cut) = InlineStr::command_line(&ev.comm, &argv[..n.min(CMDLINE_LEN)]);
        ev.cmdline = cmdline;
        ev.cmdline_truncated = cut || n > CMDLINE_LEN;
    }
}

/// Up to `buf.len()` bytes of `/proc/<pid>/<file>` (0 when it cannot be
/// read); the path is built on the stack, so nothing is allocated.
fn read_proc(pid: u32, file: &str, buf: &mut [u8]) -> usize {
    use std::io::{Read as _, Write as _};
    let mut path = [0u8; 48];
    let len = {
        let mut w = &mut path[..];
        let _ = write!(w, "/proc/{pid}/{file}");
        48 - w.len()
    };
    let Some(mut f) = std::str::from_utf8(&path[..len])
        .ok()
        .and_then(|p| std::fs::File::open(p).ok())
    else {
        return 0;
    };
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// The parent's pid from `/proc/<pid>/stat` (the field after the state,
/// which follows the last `)`: comm may hold spaces and parentheses).
fn proc_ppid(pid: u32) -> Option<u32> {
    let mut buf = [0u8; 512];
    let n = read_proc(pid, "stat", &mut buf);
    parse_stat_ppid(&buf[..n])
}

fn parse_stat_ppid(stat: &[u8]) -> Option<u32> {
    let close = stat.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    rest.split_ascii_whitespace().nth(1)?.parse().ok()
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Poller {
    /// Starts the thread on `events` (the ring buffer map).
    ///
    /// `kill_from_userspace`: rule kinds whose `kill` the kernel programs
    /// could not carry out; the poller sends the SIGKILL on receipt. The
    /// cgroup of a `kill-container` event is killed here on receipt too.
    /// The Stratum judge's sockets are released or destroyed once
    /// [`Self::take_socket_work`] hands over their queue.
    pub fn start(
        events: MapHandle,
        decoder: Decoder,
        capacity: usize,
        kill_from_userspace: Vec<RuleKind>,
    ) -> Result<Self, AttachError> {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        // At most two judges need work (the sk_msg verdict's `Release`
        // and an egress judge's `Destroy`; today one of the two at a time).
        let (sockets_tx, sockets) = crossbeam_channel::bounded(2);
        let (flush_tx, flush_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("minerguard-events".into())
                .spawn(move || {
                    run(
                        events,
                        decoder,
                        tx,
                        shared,
                        kill_from_userspace,
                        Requests {
                            sockets,
                            flush: flush_rx,
                        },
                        ready_tx,
                    )
                })
                .map_err(|e| AttachError::Poller(e.to_string()))?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Poller {
                shared,
                thread: Some(thread),
                receiver: rx,
                sockets_tx,
                flush_tx,
            }),
            Ok(Err(msg)) => {
                let _ = thread.join();
                Err(AttachError::Poller(msg))
            }
            Err(_) => {
                let _ = thread.join();
                Err(AttachError::Poller("poller thread exited at start".into()))
            }
        }
    }

    /// A receiver of the event stream (all receivers share one queue).
    pub fn receiver(&self) -> Receiver<Event> {
        self.receiver.clone()
    }

    /// Events dropped because the channel was full.
    pub fn channel_drops(&self) -> u64 {
        self.shared.channel_drops.load(Ordering::Relaxed)
    }

    /// From now on, does `work` between polls: takes judged sockets out of
    /// the Stratum send path, or destroys refused ones (the Stratum
    /// programs are loaded with the first policy that has a stratum rule;
    /// called then, once for each judge that needs work).
    pub fn take_socket_work(&self, work: SocketWork) {
        if let SocketWork::Destroy(queue) = &work {
            let _ = self.shared.refused.set(queue.clone());
        }
        // Room for every judge, each handed over once: only fails if the
        // thread is gone.
        let _ = self.sockets_tx.try_send(work);
    }

    /// Judged sockets taken out of the Stratum send path so far.
    pub fn released_sockets(&self) -> u64 {
        self.shared.released.load(Ordering::Relaxed)
    }

    /// Waits (at most `timeout`) until every record the kernel wrote before
    /// this call is decoded and in the channel; false if the thread did not
    /// answer in time. Without it, a consumer that stops once the channel
    /// has been quiet for a while may stop before a late record was read
    /// (a loaded machine can keep the thread from running for that long).
    pub fn flush(&self, timeout: Duration) -> bool {
        let (reply, done) = crossbeam_channel::bounded(1);
        if self.flush_tx.send(reply).is_err() {
            return false;
        }
        done.recv_timeout(timeout).is_ok()
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the owner asks of the thread between polls.
struct Requests {
    /// The Stratum judge's socket work, handed over once it exists.
    sockets: Receiver<SocketWork>,
    /// Flushes: read the ring buffer dry, then answer.
    flush: Receiver<Sender<()>>,
}

/// Events waiting for the describing thread. The egress judge's events
/// name no process: the refused socket's holder is looked up from
/// userspace (sock_diag, /proc), which takes tens of µs. A burst of them
/// waits here instead of in the kernel's ring buffer, which would drop
/// what does not fit (and with it the `kill` those events carry). Full, it
/// holds the ring thread back. 4,096: more than the 1 MiB ring buffer holds.
const DESCRIBE_QUEUE: usize = 4096;

/// An event the ring-buffer thread decoded, for the describing thread.
struct Pending {
    ev: Event,
    /// What the kernel read of the process (`PROC_*` bits).
    proc_src: u8,
    /// The record's policy (for a `kill-container` event's scope).
    policy_id: u32,
    /// Written since this poller started (see `run`).
    fresh: bool,
}

/// What the ring-buffer thread hands the describing thread, in order.
// Not boxed: the channel's slots are allocated once, a box would be an
// allocation per event (the event path makes none).
#[allow(clippy::large_enum_variant)]
enum Work {
    Event(Pending),
    /// Answer once everything handed over before it is delivered.
    Flush(Sender<()>),
}

/// The ring-buffer thread: decodes each record, and delivers it itself
/// when it needs no lookup and nothing is waiting for the describing thread
/// (started here, joined before this returns); otherwise it queues it there.
/// Either way events reach the channel in the order the kernel wrote them.
fn run(
    events: MapHandle,
    decoder: Decoder,
    tx: Sender<Event>,
    shared: Arc<Shared>,
    kill_from_userspace: Vec<RuleKind>,
    requests: Requests,
    ready: Sender<Result<(), String>>,
) {
    let decoder = Arc::new(decoder);
    let (work_tx, work_rx) = crossbeam_channel::bounded::<Work>(DESCRIBE_QUEUE);
    let describer = {
        let (decoder, shared, tx) = (decoder.clone(), shared.clone(), tx.clone());
        let kill_from_userspace = kill_from_userspace.clone();
        let sockets = requests.sockets;
        std::thread::Builder::new()
            .name("minerguard-describe".into())
            .spawn(move || describe(work_rx, &decoder, tx, &shared, kill_from_userspace, sockets))
    };
    let describer = match describer {
        Ok(t) => t,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    // Events written before this poller started were kept by a pinned ring
    // buffer while nobody read it: delivered, but their process is not
    // killed from here (it may be long gone, and its pid reused).
    let started = SystemTime::now();
    let to_describer = work_tx.clone();
    let ring_shared = shared.clone();
    let deliver = move |data: &[u8]| -> i32 {
        let Some(raw) = RawEvent::read(data) else {
            return 0;
        };
        let Some(ev) = decoder.decode(&raw) else {
            return 0;
        };
        let fresh = ev.time >= started;
        // Nothing waiting (nothing queued, nor being described): this one
        // cannot overtake an earlier event.
        if !needs_holder(&ev, &ring_shared) && ring_shared.describing.load(Ordering::Acquire) == 0 {
            let mut ev = ev;
            describe_one(
                &mut ev,
                raw.proc_src,
                raw.policy_id,
                fresh,
                &decoder,
                &ring_shared,
                &kill_from_userspace,
            );
            send(&tx, ev, &ring_shared);
            return 0;
        }
        let pending = Pending {
            ev,
            proc_src: raw.proc_src,
            policy_id: raw.policy_id,
            fresh,
        };
        ring_shared.describing.fetch_add(1, Ordering::AcqRel);
        // Fails only once the describing thread is gone (it outlives this
        // closure).
        let _ = to_describer.send(Work::Event(pending));
        0
    };
    let mut builder = RingBufferBuilder::new();
    let built = match builder.add(&events, deliver) {
        Ok(_) => builder.build(),
        Err(e) => Err(e),
    };
    let ring = match built {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            drop(work_tx);
            let _ = describer.join();
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while !shared.stop.load(Ordering::Relaxed) {
        // Errors here are EINTR; anything else would repeat, so keep polling.
        // A refusal's event wakes the poll.
        let _ = ring.poll(POLL_INTERVAL);
        // A request may have come in while poll was delivering: read again
        // so that everything written before the request is handed on, and
        // answered once the describing thread has delivered it.
        while let Ok(reply) = requests.flush.try_recv() {
            let _ = ring.consume();
            let _ = work_tx.send(Work::Flush(reply));
        }
    }
    // Deliver what is already queued before the thread ends.
    let _ = ring.consume();
    drop(ring);
    drop(work_tx);
    let _ = describer.join();
}

/// The describing thread: completes and delivers the events queued for it
/// (see [`describe_one`]) in order. Between them it does the Stratum
/// judge's socket work (releasing judged sockets, destroying refused ones
/// whose event was lost) once nothing is queued: a refused socket's record
/// is taken with its event, never before it.
fn describe(
    work: Receiver<Work>,
    decoder: &Decoder,
    tx: Sender<Event>,
    shared: &Shared,
    kill_from_userspace: Vec<RuleKind>,
    socket_work: Receiver<SocketWork>,
) {
    let mut sockets = Vec::new();
    let mut stale_head = None;
    let mut last_socket_work = std::time::Instant::now();
    loop {
        match work.recv_timeout(POLL_INTERVAL) {
            Ok(Work::Event(Pending {
                mut ev,
                proc_src,
                policy_id,
                fresh,
            })) => {
                describe_one(
                    &mut ev,
                    proc_src,
                    policy_id,
                    fresh,
                    decoder,
                    shared,
                    &kill_from_userspace,
                );
                send(&tx, ev, shared);
                shared.describing.fetch_sub(1, Ordering::AcqRel);
            }
            Ok(Work::Flush(reply)) => {
                let _ = reply.send(());
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if !work.is_empty() || last_socket_work.elapsed() < POLL_INTERVAL {
            continue;
        }
        last_socket_work = std::time::Instant::now();
        sockets.extend(socket_work.try_iter());
        for work in &sockets {
            match work {
                SocketWork::Release(judged) => {
                    shared
                        .released
                        .fetch_add(judged.release(), Ordering::Relaxed);
                }
                SocketWork::Destroy(refused) => {
                    refused.destroy_stale(&mut stale_head);
                }
            }
        }
    }
}

/// Whether `ev` is the egress judge's (it names no process, and the
/// refused socket's holder is to be looked up).
fn needs_holder(ev: &Event, shared: &Shared) -> bool {
    ev.tgid == 0 && matches!(ev.target, Target::Stratum { .. }) && shared.refused.get().is_some()
}

/// Hands `ev` to the consumers; a full channel drops it (counted).
fn send(tx: &Sender<Event>, ev: Event, shared: &Shared) {
    match tx.try_send(ev) {
        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(_)) => {
            shared.channel_drops.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Completes one event and carries out what userspace does for it: names
/// the holder of an egress-judge event's socket (and destroys the socket),
/// fills in from /proc what the kernel could not read, and sends the kills
/// the kernel could not.
/// `proc_src`, `policy_id`, `fresh`: see [`Pending`].
fn describe_one(
    ev: &mut Event,
    proc_src: u8,
    policy_id: u32,
    fresh: bool,
    decoder: &Decoder,
    shared: &Shared,
    kill_from_userspace: &[RuleKind],
) {
    // The egress Stratum judge names no process (a packet may leave
    // from another task): the refused socket's holder is the one. It is
    // described, and killed for `kill`, before its socket is destroyed
    // (it may exit as soon as the socket fails).
    let mut described = false;
    // The same test the ring thread queued it by, so the two cannot drift.
    let holder = match (&ev.target, shared.refused.get()) {
        (Target::Stratum { addr, .. }, Some(queue)) if needs_holder(ev, shared) => {
            Some((queue, (addr.ip(), addr.port())))
        }
        _ => None,
    };
    if let Some((queue, peer)) = holder {
        queue.destroy_for_event(ev.cgroup_id, peer, &mut |owner| {
            ev.tgid = owner.tgid;
            ev.pid = owner.tgid;
            ev.uid = owner.uid;
            ev.comm = proc_comm(owner.tgid);
            complete_from_proc(ev, proc_src);
            described = true;
            if fresh && ev.action.kills() && owner.tgid > 1 {
                // SAFETY: plain syscall.
                unsafe { libc::kill(owner.tgid as i32, libc::SIGKILL) };
            }
        });
    }
    if !described && ev.comm.is_empty() {
        // Program types that may not read comm (sk_msg on older kernels):
        // ask /proc while the task is still there (before any kill).
        ev.comm = proc_comm(ev.tgid);
    }
    if !described && ev.proc_source == ProcSource::Proc {
        // Likewise for the parent and argv (program types that may not
        // read the task here).
        complete_from_proc(ev, proc_src);
    }
    // tgid 0 (an event that names no process) would be kill(0): this
    // process group.
    if fresh && ev.action.kills() && ev.tgid > 1 && kill_from_userspace.contains(&ev.target.kind())
    {
        // SAFETY: plain syscall; the kernel already refused the operation.
        unsafe { libc::kill(ev.tgid as i32, libc::SIGKILL) };
    }
    // A scoped task moved (or cloned) another process out of its scope:
    // the kernel killed the task that did it; the process that left is
    // killed here (no helper signals another task on every kernel).
    if let Target::ScopeEscape { moved, .. } = ev.target {
        if fresh && ev.action.kills() && moved != ev.tgid && moved > 1 {
            // SAFETY: plain syscall.
            unsafe { libc::kill(moved as i32, libc::SIGKILL) };
        }
    }
    if ev.action == Action::KillContainer {
        ev.cgroup_kill = Some(decoder.kill_cgroup_of(policy_id, ev.cgroup_id, fresh));
    }
}

/// Seconds since the epoch of `t`, for formatting.
pub(crate) fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_describe_queue_stays_small() {
        // Its slots are allocated up front: DESCRIBE_QUEUE of them.
        let bytes = DESCRIBE_QUEUE * std::mem::size_of::<Work>();
        assert!(bytes <= 8 << 20, "{bytes} bytes");
    }

    #[test]
    fn ppid_is_read_past_the_last_parenthesis() {
        assert_eq!(parse_stat_ppid(b"42 (a) b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parse_stat_ppid(b"42 (sh) R 1 42"), Some(1));
        assert_eq!(parse_stat_ppid(b""), None);
    }

    #[test]
    fn a_child_is_described_from_proc() {
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = child.id();
        let ppid = proc_ppid(pid);
        let mut argv = [0u8; CMDLINE_LEN + 1];
        // spawn() returns once exec closed the error pipe, which is before
        // the kernel sets up the new argv: wait for it to appear.
        let mut n = 0;
        for _ in 0..10_000 {
            n = read_proc(pid, "cmdline", &mut argv);
            if n > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(ppid, Some(std::process::id()));
        let (cmdline, cut) =
            InlineStr::<{ crate::events::CMDLINE_CAPACITY }>::command_line("sleep", &argv[..n]);
        assert_eq!((cmdline.as_str(), cut), ("sleep 600", false));
    }
}
