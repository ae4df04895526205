//! Destroying the sockets the egress Stratum judge refused (#25).
//!
//! The judge (bpf/stratum_egress.bpf.c) drops every packet of a socket
//! that sent a mining method, but the socket itself lives on: its bytes
//! stay queued, TCP keeps retrying them, and if the judge were detached
//! before the socket closed (an enforcer stopping), they would leave. So
//! the judge also queues the socket (`mg_refused`) and this module destroys
//! it with sock_diag's `SOCK_DESTROY` (`CONFIG_INET_DIAG_DESTROY`): the
//! kernel aborts it, drops what it had queued, resets the peer and fails
//! the sender's next call with `ECONNABORTED`.
//!
//! sock_diag finds sockets in the network namespace of the netlink socket
//! that asks, so the request is made from the socket's namespace: this
//! process's own first, then those of the processes of the socket's
//! cgroup. The socket's cookie is part of the request, so asking in a
//! namespace that happens to have the same addresses and ports cannot
//! destroy another socket.

use std::{
    collections::HashSet,
    fs::File,
    io::{self, Read},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::{
        fd::{AsRawFd, FromRawFd},
        unix::fs::MetadataExt,
    },
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::{Duration, Instant},
};

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
    SockDiagMessage,
};
use netlink_sys::Socket;

use crate::sock_diag::{self, SOCK_DIAG_BY_FAMILY};

/// sock_diag's destroy request (`SOCK_DESTROY`:
/// include/uapi/linux/sock_diag.h); the crate builds the query only.
const SOCK_DESTROY: u16 = 21;

/// Size of one `struct mg_refused_sock` (bpf/stratum_egress.bpf.c).
const RECORD_LEN: usize = 56;

/// How long a refused socket may wait at the queue's head for its event
/// before the idle drain takes the event as lost: far longer than an event
/// takes from the kernel to the describing thread, even in an emulated
/// guest under load (the thread that reads the ring may be held up while
/// the describing one runs), and short enough that a socket whose event
/// was lost is destroyed soon (its packets are dropped meanwhile).
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(1);

/// At most this many sockets per drain, so that a flood of refusals
/// cannot hold the event thread (the queue holds 4,096).
const PER_DRAIN: usize = 4096;

/// A socket the judge refused, as queued by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefusedSocket {
    /// The socket's cookie (`SO_COOKIE`).
    pub cookie: u64,
    /// The id of the cgroup the socket belongs to.
    pub cgroup_id: u64,
    /// Its own address and port.
    pub local: (IpAddr, u16),
    /// Its peer's address and port.
    pub remote: (IpAddr, u16),
    /// Audited, not refused: its holder is named, it is not destroyed.
    pub audited: bool,
    /// A UDP socket: the judge dropped the datagram that carried the
    /// method, and reads the next one by itself; its holder is named, it
    /// is not destroyed.
    pub udp: bool,
}

/// `mg_refused_sock.flags` (bpf/stratum_egress.bpf.c).
const REFUSED_AUDITED: u16 = 1;
const REFUSED_UDP: u16 = 2;

impl RefusedSocket {
    /// Decodes one queue record; `None` for a record of another layout.
    fn parse(b: &[u8; RECORD_LEN]) -> Option<Self> {
        let u64_at = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u16_at = |i: usize| u16::from_ne_bytes(b[i..i + 2].try_into().expect("2 bytes"));
        let family = u16_at(16);
        let addr = |i: usize| -> Option<IpAddr> {
            let bytes: [u8; 16] = b[i..i + 16].try_into().expect("16 bytes");
            match family {
                2 => Some(IpAddr::V4(Ipv4Addr::new(
                    bytes[0], bytes[1], bytes[2], bytes[3],
                ))),
                10 => Some(IpAddr::V6(Ipv6Addr::from(bytes))),
                _ => None,
            }
        };
        Some(RefusedSocket {
            cookie: u64_at(0),
            cgroup_id: u64_at(8),
            local: (addr(24)?, u16_at(20)),
            remote: (addr(40)?, u16_at(22)),
            audited: u16_at(18) & REFUSED_AUDITED != 0,
            udp: u16_at(18) & REFUSED_UDP != 0,
        })
    }
}

/// What one drain of the queue did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drained {
    /// Sockets destroyed.
    pub destroyed: u64,
    /// Sockets not found in any namespace tried (closed meanwhile, or their
    /// namespace has no process left to enter it by).
    pub not_found: u64,
    /// Sockets the kernel would not destroy (e.g. a kernel built without
    /// `CONFIG_INET_DIAG_DESTROY`); the judge still drops their packets
    /// while it is attached.
    pub failed: u64,
}

/// The judge's queue of refused sockets, and what was done with them.
/// Emptied by the event thread after each poll and by the enforcer before
/// it detaches the judge (the kernel hands each record out once).
pub(crate) struct RefusedSockets {
    queue: MapHandle,
    destroyed: AtomicU64,
    not_destroyed: AtomicU64,
    /// The cgroup v2 mount, opened at the first refusal: reading the mount
    /// table for each was most of the time a refused socket's event took
    /// (≈80 µs of ≈95 in the events bench).
    mount: OnceLock<File>,
}

impl RefusedSockets {
    /// The queue map `mg_refused`.
    pub fn new(queue: MapHandle) -> Self {
        warm_up();
        RefusedSockets {
            queue,
            destroyed: AtomicU64::new(0),
            not_destroyed: AtomicU64::new(0),
            mount: OnceLock::new(),
        }
    }

    /// Sockets destroyed so far, and sockets that could not be (not found
    /// or refused by the kernel).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.destroyed.load(Ordering::Relaxed),
            self.not_destroyed.load(Ordering::Relaxed),
        )
    }

    /// Destroys every socket queued so far (up to [`PER_DRAIN`]).
    pub fn destroy_queued(&self) -> Drained {
        self.destroy_until(|_| false, &mut |_| {})
    }

    /// The describing thread's drain while idle: destroys the queued
    /// sockets once the same socket has been at the queue's head for
    /// [`STALE_AFTER`] (`seen`: that cookie, and since when). A socket
    /// whose event is read takes its record then
    /// ([`Self::destroy_for_event`]); draining sooner could take it between
    /// the kernel's queueing and its event, which would then name no
    /// process. What waits that long had its event lost (a full ring
    /// buffer).
    pub fn destroy_stale(&self, seen: &mut Option<(u64, Instant)>) {
        let head = self
            .queue
            .lookup(&[], MapFlags::ANY)
            .ok()
            .flatten()
            .and_then(|r| Some(u64::from_ne_bytes(r.get(..8)?.try_into().ok()?)));
        *seen = match (head, *seen) {
            (Some(cookie), Some((at_head, since))) if cookie == at_head => {
                if since.elapsed() < STALE_AFTER {
                    return;
                }
                self.destroy_queued();
                None
            }
            (Some(cookie), _) => Some((cookie, Instant::now())),
            (None, _) => None,
        };
    }

    /// For an event of the judge (which names no process: the packet may
    /// leave from another task): destroys the queued sockets up to the one
    /// of `cgroup_id` talking to `remote`, and calls `holder` with that
    /// one's owner (the process holding it, if one of its cgroup still
    /// does) before it is destroyed: the process may exit as soon as its
    /// socket fails, and must be described (or killed) first. The judge
    /// queues a socket before it writes the event, so the socket is there
    /// by the time the event is read; sockets queued before it (their
    /// events lost) are destroyed on the way.
    pub fn destroy_for_event(
        &self,
        cgroup_id: u64,
        remote: (IpAddr, u16),
        holder: &mut dyn FnMut(Owner),
    ) {
        self.destroy_until(
            |socket| socket.cgroup_id == cgroup_id && same_peer(socket.remote, remote),
            holder,
        );
    }

    /// Takes sockets off the queue and destroys them, until `last` says a
    /// socket is the one sought (its holder goes to `holder` first) or the
    /// queue is empty (at most [`PER_DRAIN`]).
    fn destroy_until(
        &self,
        last: impl Fn(&RefusedSocket) -> bool,
        holder: &mut dyn FnMut(Owner),
    ) -> Drained {
        let mut drained = Drained::default();
        let mut record = [0u8; RECORD_LEN];
        for _ in 0..PER_DRAIN {
            if !matches!(
                self.queue.lookup_into_and_delete(&[], &mut record),
                Ok(true)
            ) {
                break;
            }
            let Some(socket) = RefusedSocket::parse(&record) else {
                drained.failed += 1;
                continue;
            };
            let sought = last(&socket);
            let mut no_one = |_| {};
            let pids = self.cgroup_pids(socket.cgroup_id).unwrap_or_default();
            let destroyed = handle(
                &socket,
                &pids,
                if sought { &mut *holder } else { &mut no_one },
            );
            if let Some(destroyed) = &destroyed {
                drained.count(destroyed);
            }
            if sought {
                break;
            }
        }
        self.destroyed
            .fetch_add(drained.destroyed, Ordering::Relaxed);
        self.not_destroyed
            .fetch_add(drained.not_found + drained.failed, Ordering::Relaxed);
        drained
    }
}

impl RefusedSockets {
    /// The processes of cgroup `id` (see [`cgroup_pids`]).
    fn cgroup_pids(&self, id: u64) -> io::Result<Vec<u32>> {
        cgroup_pids(&self.mount, id)
    }
}

impl Drained {
    fn count(&mut self, destroyed: &io::Result<()>) {
        match destroyed {
            Ok(()) => self.destroyed += 1,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.not_found += 1,
            Err(_) => self.failed += 1,
        }
    }
}

/// Whether two peers are the same, an IPv4-mapped IPv6 address equal to
/// its IPv4 address (the event shows the unmapped form).
fn same_peer(a: (IpAddr, u16), b: (IpAddr, u16)) -> bool {
    let plain = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.1 == b.1 && plain(a.0) == plain(b.0)
}

/// The process that holds a refused socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    /// Its process id (in this process's pid namespace).
    pub tgid: u32,
    /// The socket's owner uid, as sock_diag reports it.
    pub uid: u32,
}

/// Finds the namespace `socket` is in, hands its holder (if found) to
/// `holder`, then destroys it unless it was only audited or is a UDP
/// socket. Returns whether it was destroyed (`None` when it was not to be).
fn handle(
    socket: &RefusedSocket,
    pids: &[u32],
    holder: &mut dyn FnMut(Owner),
) -> Option<io::Result<()>> {
    let destroy = !socket.audited && !socket.udp;
    let destroyed = in_its_namespace(pids, |diag| {
        let (inode, uid) = request_inode(diag, socket)?;
        if let Some(tgid) = holder_of(inode, pids) {
            holder(Owner { tgid, uid });
        }
        match destroy {
            true => request_destroy(diag, socket),
            false => Ok(()),
        }
    });
    destroy.then_some(destroyed)
}

/// The first of `pids` with a descriptor on the socket of `inode`.
fn holder_of(inode: u32, pids: &[u32]) -> Option<u32> {
    let want = format!("socket:[{inode}]");
    pids.iter().copied().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str())
            })
        })
    })
}

/// Runs `ask` with a sock_diag socket of each candidate namespace in turn
/// (this process's, then those of `pids`, the processes of the socket's
/// cgroup) until it finds the socket there (does not fail with ENOENT).
fn in_its_namespace<T>(
    pids: &[u32],
    mut ask: impl FnMut(&Socket) -> io::Result<T>,
) -> io::Result<T> {
    let not_found = || io::Error::from_raw_os_error(libc::ENOENT);
    match ask(&sock_diag::socket()?) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        other => return other,
    }
    let mut tried = HashSet::new();
    if let Ok(own) = std::fs::metadata("/proc/self/ns/net") {
        tried.insert(own.ino());
    }
    for pid in pids {
        let Ok(ns) = File::open(format!("/proc/{pid}/ns/net")) else {
            continue; // exited meanwhile
        };
        let Ok(meta) = ns.metadata() else { continue };
        if !tried.insert(meta.ino()) {
            continue;
        }
        match ask(&crate::sock_diag::socket_in(&ns)?) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            other => return other,
        }
    }
    Err(not_found())
}

/// Sends one `SOCK_DESTROY` for `socket` and reads the kernel's answer.
fn request_destroy(diag: &Socket, socket: &RefusedSocket) -> io::Result<()> {
    match ask(diag, socket, SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK)? {
        NetlinkPayload::Error(e) if e.code.is_some() => Err(e.to_io()),
        NetlinkPayload::Error(_) => Ok(()),
        other => Err(unexpected(other)),
    }
}

/// Asks sock_diag about a socket that does not exist, once per family, so
/// that the kernel loads its inet_diag and tcp_diag modules now (the first
/// request of a boot does: in an emulated guest that took seconds) rather
/// than when the first refused socket is to be destroyed.
fn warm_up() {
    let Ok(diag) = sock_diag::socket() else {
        return;
    };
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        for udp in [false, true] {
            let nobody = RefusedSocket {
                cookie: 0,
                cgroup_id: 0,
                local: (ip, 0),
                remote: (ip, 0),
                audited: true,
                udp,
            };
            let _ = request_inode(&diag, &nobody);
        }
    }
}

/// The inode and owner uid of `socket`, as sock_diag reports them.
fn request_inode(diag: &Socket, socket: &RefusedSocket) -> io::Result<(u32, u32)> {
    match ask(diag, socket, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST)? {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
            Ok((r.header.inode, r.header.uid))
        }
        NetlinkPayload::Error(e) if e.code.is_some() => Err(e.to_io()),
        other => Err(unexpected(other)),
    }
}

fn unexpected(answer: NetlinkPayload<SockDiagMessage>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected sock_diag answer: {answer:?}"),
    )
}

/// Sends one request of `kind` about exactly `socket` (its addresses,
/// ports and cookie) and returns the kernel's first answer.
fn ask(
    diag: &Socket,
    socket: &RefusedSocket,
    kind: u16,
    flags: u16,
) -> io::Result<NetlinkPayload<SockDiagMessage>> {
    let family = match socket.local.0 {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    };
    // udp_diag looks a socket up as the receiver of a datagram from the
    // request's source to its destination (net/ipv4/udp_diag.c swaps
    // them "for historical reasons"): the peer goes first. An unconnected
    // socket matches any peer.
    let (protocol, source, destination) = match socket.udp {
        false => (IPPROTO_TCP, socket.local, socket.remote),
        true => (IPPROTO_UDP, socket.remote, socket.local),
    };
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut message = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: SocketId {
                source_port: source.1,
                destination_port: destination.1,
                source_address: source.0,
                destination_address: destination.0,
                interface_id: 0,
                // The kernel compares it as two host-order u32 halves,
                // low half first: the u64's native bytes on little-endian.
                cookie: cookie_bytes(socket.cookie),
            },
        })
        .into(),
    );
    message.finalize();
    // finalize() sets the type of a query; a destroy has the same body.
    message.header.message_type = kind;
    let mut out = vec![0; message.buffer_len()];
    message.serialize(&mut out);
    diag.send(&out, 0)?;
    // The kernel answers within the send: never wait for it.
    diag.set_non_blocking(true)?;
    let mut answer = vec![0u8; 4096];
    let n = diag.recv(&mut &mut answer[..], 0)?;
    let reply = NetlinkMessage::<SockDiagMessage>::deserialize(&answer[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(reply.payload)
}

/// The cookie as sock_diag's `idiag_cookie[2]` (host-order u32 halves, low
/// first).
fn cookie_bytes(cookie: u64) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&(cookie as u32).to_ne_bytes());
    b[4..].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
    b
}

/// The processes of the cgroup with id `id`, found by file handle
/// (a cgroup's id is its kernfs node id, which cgroupfs takes as handle)
/// under the cgroup v2 mount `mount` (opened here the first time).
fn cgroup_pids(mount: &OnceLock<File>, id: u64) -> io::Result<Vec<u32>> {
    /// `struct file_handle` with an 8-byte `f_handle`.
    #[repr(C)]
    struct KernfsHandle {
        handle_bytes: u32,
        handle_type: i32,
        id: u64,
    }
    /// FILEID_KERNFS (include/linux/exportfs.h).
    const FILEID_KERNFS: i32 = 0xfe;
    let mount = match mount.get() {
        Some(mount) => mount,
        None => {
            let path = crate::cgroup::cgroup2_mount().map_err(io::Error::other)?;
            let _ = mount.set(File::open(path)?);
            mount.get().expect("just set")
        }
    };
    let mut handle = KernfsHandle {
        handle_bytes: 8,
        handle_type: FILEID_KERNFS,
        id,
    };
    // SAFETY: `handle` is a file_handle with handle_bytes of payload
    // following its header; the returned descriptor is owned below.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            (&mut handle as *mut KernfsHandle).cast(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned to us and is not owned elsewhere.
    let dir = unsafe { File::from_raw_fd(fd) };
    // SAFETY: a NUL-terminated name relative to a directory we hold.
    let procs = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c"cgroup.procs".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if procs < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: procs was just returned to us and is not owned elsewhere.
    let mut procs = unsafe { File::from_raw_fd(procs) };
    let mut text = String::new();
    procs.read_to_string(&mut text)?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_decodes_in_the_kernels_layout() {
        let mut b = [0u8; RECORD_LEN];
        b[0..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_ne_bytes());
        b[8..16].copy_from_slice(&42u64.to_ne_bytes());
        b[16..18].copy_from_slice(&2u16.to_ne_bytes());
        b[18..20].copy_from_slice(&1u16.to_ne_bytes());
        b[20..22].copy_from_slice(&40000u16.to_ne_bytes());
        b[22..24].copy_from_slice(&3333u16.to_ne_bytes());
        b[24..28].copy_from_slice(&[127, 0, 0, 1]);
        b[40..44].copy_from_slice(&[127, 0, 0, 2]);
        let s = RefusedSocket::parse(&b).expect("parses");
        assert_eq!(s.cookie, 0x1122_3344_5566_7788);
        assert_eq!(s.cgroup_id, 42);
        assert_eq!(s.local, ("127.0.0.1".parse().unwrap(), 40000));
        assert_eq!(s.remote, ("127.0.0.2".parse().unwrap(), 3333));
        assert!(s.audited);
        assert!(!s.udp);
        b[18..20].copy_from_slice(&2u16.to_ne_bytes());
        let s = RefusedSocket::parse(&b).expect("parses");
        assert!(s.udp && !s.audited);
        b[16..18].copy_from_slice(&7u16.to_ne_bytes());
        assert_eq!(RefusedSocket::parse(&b), None, "unknown family");
    }

    #[test]
    fn a_mapped_peer_is_its_ipv4_address() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(same_peer((mapped, 3333), (v4, 3333)));
        assert!(!same_peer((mapped, 3333), (v4, 3334)));
        assert!(!same_peer(("::1".parse().unwrap(), 3333), (v4, 3333)));
    }

    #[test]
    fn the_cookie_is_sent_as_two_host_order_halves() {
        let b = cookie_bytes(0x0000_0001_0000_0002);
        assert_eq!(u32::from_ne_bytes(b[..4].try_into().unwrap()), 2);
        assert_eq!(u32::from_ne_bytes(b[4..].try_into().unwrap()), 1);
    }
}
