//! Connected sockets, by inode, from `/proc/<pid>/net/{tcp,tcp6,udp,udp6}`.
//!
//! Why /proc and not NETLINK_SOCK_DIAG: the tables under `/proc/<pid>/net`
//! are those of the process's own network namespace, readable from here
//! with no `setns` (a container's netns included), and a scan reads each
//! namespace's tables once however many processes share it. sock_diag
//! answers only for the caller's namespace, so it would need a thread
//! moved into every namespace. What it costs is in BENCHMARKS.md (`scan`).

use std::{
    collections::HashMap,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::fs::MetadataExt,
};

use crate::events::Protocol;

/// A connected socket's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    /// Destination; a v4-mapped IPv6 destination is shown as IPv4.
    pub addr: SocketAddr,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// TCP states worth judging: established, and a connect under way.
const TCP_ESTABLISHED: u8 = 0x01;
const TCP_SYN_SENT: u8 = 0x02;

/// The connected sockets of each network namespace met so far.
#[derive(Default)]
pub(crate) struct Namespaces {
    by_netns: HashMap<u64, HashMap<u64, Peer>>,
}

impl Namespaces {
    /// The connected sockets of `pid`'s network namespace, by inode (read
    /// once per namespace).
    pub fn sockets_of(&mut self, pid: u32) -> Option<&HashMap<u64, Peer>> {
        let netns = fs::metadata(format!("/proc/{pid}/ns/net")).ok()?.ino();
        let table = self.by_netns.entry(netns).or_insert_with(|| {
            let mut table = HashMap::new();
            for (file, protocol) in [
                ("tcp", Protocol::Tcp),
                ("tcp6", Protocol::Tcp),
                ("udp", Protocol::Udp),
                ("udp6", Protocol::Udp),
            ] {
                // A kernel without IPv6 has no tcp6: nothing to add.
                if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
                    parse_table(&text, protocol, &mut table);
                }
            }
            table
        });
        Some(table)
    }
}

/// Adds the connected sockets of one `/proc/net/{tcp,udp}[6]` table.
fn parse_table(text: &str, protocol: Protocol, out: &mut HashMap<u64, Peer>) {
    for line in text.lines().skip(1) {
        // sl local rem st tx:rx tr:tm retrnsmt uid timeout inode ...
        let cols: Vec<&str> = line.split_whitespace().take(10).collect();
        if cols.len() < 10 {
            continue;
        }
        let Ok(state) = u8::from_str_radix(cols[3], 16) else {
            continue;
        };
        // A connected UDP socket shows as "established" too.
        let connected = match protocol {
            Protocol::Tcp => state == TCP_ESTABLISHED || state == TCP_SYN_SENT,
            _ => state == TCP_ESTABLISHED,
        };
        if !connected {
            continue;
        }
        let (Some(addr), Ok(inode)) = (parse_addr(cols[2]), cols[9].parse::<u64>()) else {
            continue;
        };
        if inode != 0 {
            out.insert(inode, Peer { addr, protocol });
        }
    }
}

/// `0100007F:0D05` (IPv4) or 32 hex digits `:PORT` (IPv6): each 32-bit
/// word of the address in host byte order, the port in hex.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(b);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_v6_and_mapped_peers() {
        #[cfg(target_endian = "little")]
        {
            assert_eq!(
                parse_addr("0100007F:0D05"),
                Some("127.0.0.1:3333".parse().unwrap())
            );
            assert_eq!(
                parse_addr("0000000000000000FFFF00000100007F:115C"),
                Some("127.0.0.1:4444".parse().unwrap())
            );
            assert_eq!(
                parse_addr("B80D0120000000000000000001000000:0D05"),
                Some("[2001:db8::1]:3333".parse().unwrap())
            );
        }
        assert_eq!(parse_addr("nonsense"), None);
    }

    #[test]
    fn keeps_only_connected_sockets() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1\n\
   1: 0100007F:C000 0100007F:0D05 01 00000000:00000000 00:00000000 00000000     0        0 222 1\n\
   2: 0100007F:C001 0100007F:0D05 06 00000000:00000000 00:00000000 00000000     0        0 0 1\n";
        let mut out = HashMap::new();
        parse_table(table, Protocol::Tcp, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[&222].addr.port(), 3333);
    }

    #[test]
    fn reads_a_real_connection_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let inode = fs::metadata(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&client)
        ))
        .unwrap()
        .ino();
        let mut ns = Namespaces::default();
        let sockets = ns.sockets_of(std::process::id()).unwrap();
        assert_eq!(sockets[&inode].addr, listener.local_addr().unwrap());
    }
}
