//! A process's connected TCP sockets, by inode: each one's peer, and its
//! traffic counters (`struct tcp_info`), what the network rhythm is judged
//! on whatever the payload (TLS included). Read two ways:
//! - a process holding a few sockets: each is duplicated through a pidfd
//!   and asked for `TCP_INFO` and its peer, a few syscalls per socket
//!   whatever else the host holds ([`of_process`]);
//! - otherwise (or where duplicating is refused), each connected TCP socket
//!   of its network namespace from sock_diag (`INET_DIAG_INFO`): one dump
//!   per address family walks the kernel's whole established table (shared
//!   by every namespace: 262,144 buckets on the test machine), as reading
//!   `/proc/<pid>/net/tcp` would. Read once per namespace per sample, and
//!   only for a namespace holding an active process ([`Counters`]).

use std::{
    collections::HashMap,
    fs::{self, File},
    io,
    net::{IpAddr, SocketAddr},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{nlas::Nla, ExtensionFlags, InetRequest, SocketId, StateFlags},
    SockDiagMessage,
};
use netlink_sys::Socket;

use crate::sock_diag;

/// One connection's counters since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TcpCounters {
    /// Bytes it sent that the peer acknowledged (`tcpi_bytes_acked`).
    pub bytes_out: u64,
    /// Bytes it received (`tcpi_bytes_received`).
    pub bytes_in: u64,
    /// Segments carrying data it sent (`tcpi_data_segs_out`).
    pub segs_out: u32,
    /// Segments carrying data it received (`tcpi_data_segs_in`).
    pub segs_in: u32,
    /// Milliseconds since it last sent data (`tcpi_last_data_sent`).
    pub since_sent_ms: u32,
    /// Milliseconds since it last received data (`tcpi_last_data_recv`).
    pub since_recv_ms: u32,
}

impl TcpCounters {
    /// How long it has gone without data one way or the other: the longer
    /// of the two times since data was last sent and received.
    pub fn quiet(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.since_sent_ms.max(self.since_recv_ms).into())
    }
}

/// Offsets in `struct tcp_info` (include/uapi/linux/tcp.h; the fields
/// exist since Linux 4.6 and keep their places).
const LAST_DATA_SENT: usize = 44;
const LAST_DATA_RECV: usize = 52;
const BYTES_ACKED: usize = 120;
const BYTES_RECEIVED: usize = 128;
const DATA_SEGS_IN: usize = 152;
const DATA_SEGS_OUT: usize = 156;

/// The counters in a `struct tcp_info` as the kernel sent it; `None` when
/// it is too short to hold them (an older kernel).
pub(crate) fn parse_tcp_info(raw: &[u8]) -> Option<TcpCounters> {
    let u64_at = |at: usize| Some(u64::from_ne_bytes(raw.get(at..at + 8)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_ne_bytes(raw.get(at..at + 4)?.try_into().ok()?));
    Some(TcpCounters {
        bytes_out: u64_at(BYTES_ACKED)?,
        bytes_in: u64_at(BYTES_RECEIVED)?,
        segs_out: u32_at(DATA_SEGS_OUT)?,
        segs_in: u32_at(DATA_SEGS_IN)?,
        since_sent_ms: u32_at(LAST_DATA_SENT)?,
        since_recv_ms: u32_at(LAST_DATA_RECV)?,
    })
}

/// One connected TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpSocket {
    /// Its peer; a v4-mapped IPv6 peer is shown as IPv4.
    pub peer: SocketAddr,
    /// Its counters.
    pub counters: TcpCounters,
}

/// Sockets a process may hold for them to be read one by one
/// ([`of_process`]) rather than by dumping its namespace: about 4 syscalls
/// each, against two walks of the established table.
pub(crate) const MOST_READ_ONE_BY_ONE: usize = 16;

/// Sockets read one by one in one sample, over all processes: past this,
/// one dump per namespace is cheaper (about 6 syscalls a socket against
/// two walks of the established table, ≈1.8 ms on the test machine).
pub(crate) const MOST_READ_ONE_BY_ONE_PER_SAMPLE: usize = 256;

/// Whether a process holding `held` sockets has them read one by one, when
/// `already` were so this sample.
pub(crate) fn read_one_by_one(held: usize, already: usize) -> bool {
    held <= MOST_READ_ONE_BY_ONE && already + held <= MOST_READ_ONE_BY_ONE_PER_SAMPLE
}

/// TCP states a connection is counted in (include/net/tcp_states.h):
/// established, and a connect under way, as a scan counts them.
const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_SENT: u8 = 2;

/// The connected TCP sockets among `pid`'s descriptors `fds` (with their
/// inodes), read one by one through a pidfd; `None` when the process
/// cannot be asked so (gone, or duplicating refused): then ask sock_diag.
pub(crate) fn of_process(pid: u32, fds: &[i32], inodes: &[u64]) -> Option<HashMap<u64, TcpSocket>> {
    let pidfd = crate::pidfd::PidFd::open(i32::try_from(pid).ok()?)?;
    let mut out = HashMap::new();
    let mut duplicated = false;
    for (&fd, &inode) in fds.iter().zip(inodes) {
        // A descriptor closed since the listing is skipped.
        let Some(sock) = pidfd.dup(fd) else { continue };
        duplicated = true;
        if let Some(s) = tcp_socket(sock.as_raw_fd()) {
            out.insert(inode, s);
        }
    }
    // Nothing could be duplicated (refused, not closed): not an answer.
    (duplicated || fds.is_empty()).then_some(out)
}

/// A connected TCP socket's peer and counters; `None` for another kind of
/// socket or state.
fn tcp_socket(fd: i32) -> Option<TcpSocket> {
    use crate::pidfd::getsockopt;
    // tcp_info as this kernel fills it (at most its size is written).
    let info: [u8; 256] = getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO)?;
    if !matches!(info[0], TCP_ESTABLISHED | TCP_SYN_SENT) {
        return None;
    }
    let mut addr = std::mem::MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `addr`.
    if unsafe { libc::getpeername(fd, addr.as_mut_ptr().cast(), &mut len) } != 0 {
        // A connect under way has no peer yet: count it, as sock_diag does.
        return Some(TcpSocket {
            peer: SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
            counters: parse_tcp_info(&info).unwrap_or_default(),
        });
    }
    // SAFETY: zero-initialised and filled by the kernel.
    let addr = unsafe { addr.assume_init() };
    let peer = match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says what the storage holds.
            let a = unsafe { *(std::ptr::addr_of!(addr).cast::<libc::sockaddr_in>()) };
            SocketAddr::new(
                IpAddr::V4(u32::from_be(a.sin_addr.s_addr).into()),
                u16::from_be(a.sin_port),
            )
        }
        libc::AF_INET6 => {
            // SAFETY: the family says what the storage holds.
            let a = unsafe { *(std::ptr::addr_of!(addr).cast::<libc::sockaddr_in6>()) };
            let v6 = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
            SocketAddr::new(ip, u16::from_be(a.sin6_port))
        }
        _ => return None,
    };
    Some(TcpSocket {
        peer,
        // An older kernel's shorter tcp_info: zeros.
        counters: parse_tcp_info(&info).unwrap_or_default(),
    })
}

/// The connected TCP sockets of each namespace met in one sample.
#[derive(Default)]
pub(crate) struct Counters {
    by_netns: HashMap<u64, Option<HashMap<u64, TcpSocket>>>,
}

impl Counters {
    /// The connected (established, or connecting) TCP sockets of `pid`'s
    /// network namespace, by inode (asked once per namespace); `None` when
    /// sock_diag could not be asked there (no inet_diag in the kernel, the
    /// namespace gone).
    pub fn of(&mut self, pid: u32) -> Option<&HashMap<u64, TcpSocket>> {
        let netns = fs::metadata(format!("/proc/{pid}/ns/net")).map_or(0, |m| m.ino());
        self.by_netns
            .entry(netns)
            .or_insert_with(|| read_namespace(pid).ok())
            .as_ref()
    }
}

/// Dumps the connected TCP sockets of `pid`'s network namespace.
fn read_namespace(pid: u32) -> io::Result<HashMap<u64, TcpSocket>> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))?;
    let own = fs::metadata("/proc/self/ns/net")?.ino();
    let diag = match ns.metadata()?.ino() == own {
        true => sock_diag::socket()?,
        false => sock_diag::socket_in(&ns)?,
    };
    let mut out = HashMap::new();
    for family in [AF_INET, AF_INET6] {
        dump(&diag, family, &mut out)?;
    }
    Ok(out)
}

/// Adds the connected TCP sockets of `family` with their counters.
fn dump(diag: &Socket, family: u8, out: &mut HashMap<u64, TcpSocket>) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut message = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::INFO,
            // As a scan counts them: established, and a connect under way.
            states: StateFlags::ESTABLISHED | StateFlags::SYN_SENT,
            socket_id: match family {
                AF_INET => SocketId::new_v4(),
                _ => SocketId::new_v6(),
            },
        })
        .into(),
    );
    message.finalize();
    message.header.message_type = sock_diag::SOCK_DIAG_BY_FAMILY;
    let mut request = vec![0; message.buffer_len()];
    message.serialize(&mut request);
    diag.send(&request, 0)?;
    // The kernel fills the answer as it is read: never wait for more.
    diag.set_non_blocking(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match diag.recv(&mut &mut buf[..], 0) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut at = 0;
        while at < n {
            let reply = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[at..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = reply.header.length as usize;
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    let counters = r.nlas.iter().find_map(|nla| match nla {
                        Nla::TcpInfo(raw) => parse_tcp_info(raw),
                        _ => None,
                    });
                    let id = &r.header.socket_id;
                    let ip = match id.destination_address {
                        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                        v4 => v4,
                    };
                    if r.header.inode != 0 {
                        out.insert(
                            u64::from(r.header.inode),
                            TcpSocket {
                                peer: SocketAddr::new(ip, id.destination_port),
                                // An older kernel's shorter tcp_info: zeros.
                                counters: counters.unwrap_or_default(),
                            },
                        );
                    }
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            at += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
        os::unix::fs::MetadataExt,
    };

    use super::*;

    #[test]
    fn a_loopback_connection_shows_what_it_carried() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[7u8; 1000]).unwrap();
        let mut got = [0u8; 1000];
        server.read_exact(&mut got).unwrap();
        server.write_all(b"ok").unwrap();
        let mut ok = [0u8; 2];
        client.read_exact(&mut ok).unwrap();
        let inode = {
            use std::os::fd::AsRawFd;
            fs::metadata(format!("/proc/self/fd/{}", client.as_raw_fd()))
                .unwrap()
                .ino()
        };
        let mut counters = Counters::default();
        let dumped = counters.of(std::process::id()).unwrap()[&inode];
        // Asked one by one (through a pidfd on this process), the same.
        let fd = {
            use std::os::fd::AsRawFd;
            client.as_raw_fd()
        };
        let own = of_process(std::process::id(), &[fd, 0], &[inode, 1]).unwrap();
        assert_eq!(own.len(), 1, "stdin is no TCP socket: {own:?}");
        for s in [dumped, own[&inode]] {
            assert_eq!(s.peer, server.local_addr().unwrap());
            let c = s.counters;
            // bytes_acked counts the SYN's sequence number on some kernels:
            // the rhythm uses differences only.
            assert!((1000..=1001).contains(&c.bytes_out), "{c:?}");
            assert_eq!(c.bytes_in, 2, "{c:?}");
            assert!(c.segs_out >= 1 && c.segs_in >= 1, "{c:?}");
            // Data went both ways just now.
            assert!(c.quiet() < std::time::Duration::from_secs(5), "{c:?}");
        }
        // A listener is no connection.
        let l = {
            use std::os::fd::AsRawFd;
            listener.as_raw_fd()
        };
        assert!(of_process(std::process::id(), &[l], &[9])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn many_sockets_are_dumped_not_read_one_by_one() {
        assert!(read_one_by_one(1, 0));
        assert!(read_one_by_one(16, 240));
        assert!(!read_one_by_one(17, 0), "a process with many sockets");
        assert!(!read_one_by_one(1, 256), "a sample that read many already");
    }

    #[test]
    fn a_short_tcp_info_is_not_read() {
        assert_eq!(parse_tcp_info(&[0u8; 100]), None);
        let mut raw = vec![0u8; 232];
        raw[BYTES_ACKED..BYTES_ACKED + 8].copy_from_slice(&5u64.to_ne_bytes());
        raw[DATA_SEGS_IN..DATA_SEGS_IN + 4].copy_from_slice(&3u32.to_ne_bytes());
        raw[LAST_DATA_SENT..LAST_DATA_SENT + 4].copy_from_slice(&1500u32.to_ne_bytes());
        raw[LAST_DATA_RECV..LAST_DATA_RECV + 4].copy_from_slice(&700_000u32.to_ne_bytes());
        let c = parse_tcp_info(&raw).unwrap();
        assert_eq!(
            (c.bytes_out, c.bytes_in, c.segs_in, c.segs_out),
            (5, 0, 3, 0)
        );
        assert_eq!(c.quiet(), std::time::Duration::from_secs(700));
    }
}
