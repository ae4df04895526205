//! The network rhythm: a miner holds one long-lived connection to its pool
//! (or a proxy) and exchanges little on it (jobs one way, shares the
//! other), over and over, whatever it is wrapped in. Judged from each
//! connection's counters ([`super::connections`]) since the detector first
//! saw it, not from its payload, and from how long it has now gone without
//! data either way: a pool sends a job per block, a miner a share every
//! few tens of seconds at the pool's difficulty, while a connection kept
//! open and unused (an idle database pool's) goes quiet for many minutes.

use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::connections::TcpCounters;

/// What a process's TCP connections showed at one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RhythmSignal {
    /// Connections held at least a window that carried data both ways, at
    /// most the allowed bytes a second, and have not gone quiet either way
    /// longer than allowed: pool-shaped.
    pub steady: u32,
    /// Connections held at least a window, whatever they carried.
    pub long_lived: u32,
    /// The quietest long-lived connection's bytes a second (both ways)
    /// since it was first seen; `None` without a long-lived one.
    pub bytes_per_sec: Option<u64>,
    /// The data segments it exchanged since then (both ways).
    pub data_segments: u32,
    /// How long it has been seen.
    pub age: Duration,
    /// How long it has gone without data one way or the other (the longer
    /// of `tcpi_last_data_sent` and `tcpi_last_data_recv`), now.
    pub quiet: Duration,
    /// Its peer.
    pub peer: Option<SocketAddr>,
    /// The counters could not be read (sock_diag refused): a rule that
    /// needs the rhythm takes any connection instead, rather than stop
    /// detecting.
    pub unknown: bool,
}

/// One connection of a process, as read in a sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Connection {
    /// Socket inode: its identity while it lives.
    pub inode: u64,
    /// The peer.
    pub peer: SocketAddr,
    /// Its counters now.
    pub counters: TcpCounters,
}

/// When each connection of one process was first seen, and its counters
/// then.
#[derive(Debug, Default)]
pub(crate) struct FirstSeen {
    by_inode: HashMap<u64, (Instant, TcpCounters)>,
}

impl FirstSeen {
    /// Remembers when each of `connections` was first seen (now, if not
    /// before), and forgets those that are gone.
    pub fn observe(&mut self, now: Instant, connections: &[Connection]) {
        self.by_inode
            .retain(|inode, _| connections.iter().any(|c| c.inode == *inode));
        for c in connections {
            self.by_inode.entry(c.inode).or_insert((now, c.counters));
        }
    }

    /// The rhythm of `connections` at `now` (a connection is long-lived
    /// once seen `window` ago; steady if it carried data both ways at most
    /// `max_bytes_per_sec` and has gone at most `max_quiet` without data
    /// either way); forgets the connections that are gone.
    pub fn judge(
        &mut self,
        now: Instant,
        connections: &[Connection],
        window: Duration,
        max_bytes_per_sec: u64,
        max_quiet: Duration,
    ) -> RhythmSignal {
        self.observe(now, connections);
        let mut signal = RhythmSignal::default();
        for c in connections {
            let Some(&(since, then)) = self.by_inode.get(&c.inode) else {
                continue;
            };
            let age = now.saturating_duration_since(since);
            if age < window || age.is_zero() {
                continue;
            }
            signal.long_lived += 1;
            let bytes = (c.counters.bytes_out.saturating_sub(then.bytes_out))
                .saturating_add(c.counters.bytes_in.saturating_sub(then.bytes_in));
            let rate = (u128::from(bytes) * 1_000_000_000 / age.as_nanos()) as u64;
            let (out, into) = (
                c.counters.segs_out.saturating_sub(then.segs_out),
                c.counters.segs_in.saturating_sub(then.segs_in),
            );
            let quiet = c.counters.quiet();
            if out > 0 && into > 0 && rate <= max_bytes_per_sec && quiet <= max_quiet {
                signal.steady += 1;
            }
            if signal
                .bytes_per_sec
                .map_or(true, |quietest| rate < quietest)
            {
                signal.bytes_per_sec = Some(rate);
                signal.data_segments = out.saturating_add(into);
                signal.age = age;
                signal.quiet = quiet;
                signal.peer = Some(c.peer);
            }
        }
        signal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default most quiet time.
    const QUIET: Duration = Duration::from_secs(600);

    fn conn(inode: u64, bytes_out: u64, bytes_in: u64, segs: u32) -> Connection {
        Connection {
            inode,
            peer: "192.0.2.7:3333".parse().unwrap(),
            counters: TcpCounters {
                bytes_out,
                bytes_in,
                segs_out: segs,
                segs_in: segs,
                since_sent_ms: 1_000,
                since_recv_ms: 2_000,
            },
        }
    }

    #[test]
    fn a_quiet_two_way_connection_held_a_window_is_steady() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut seen = FirstSeen::default();
        // First sight: nothing long-lived yet.
        let s = seen.judge(
            t0,
            &[conn(1, 100, 100, 1), conn(2, 0, 0, 0)],
            w,
            4096,
            QUIET,
        );
        assert_eq!((s.long_lived, s.steady, s.bytes_per_sec), (0, 0, None));
        // 10 s on: #1 carried 2,000 bytes both ways (200 B/s), #2 50 MB.
        let later = t0 + w;
        let s = seen.judge(
            later,
            &[
                conn(1, 1100, 1100, 21),
                conn(2, 25_000_000, 25_000_000, 9000),
            ],
            w,
            4096,
            QUIET,
        );
        assert_eq!((s.long_lived, s.steady), (2, 1), "{s:?}");
        assert_eq!(s.bytes_per_sec, Some(200));
        assert_eq!((s.data_segments, s.age), (40, w));
        assert_eq!(s.quiet, Duration::from_secs(2), "the longer of the two");
        // A stricter limit: none steady.
        assert_eq!(
            seen.judge(later, &[conn(1, 1100, 1100, 21)], w, 100, QUIET)
                .steady,
            0
        );
    }

    #[test]
    fn a_connection_gone_quiet_longer_than_allowed_is_not_steady() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut seen = FirstSeen::default();
        seen.judge(t0, &[conn(1, 100, 100, 1)], w, 4096, QUIET);
        // Carried a little both ways since, but nothing received for 11 min:
        // kept open and unused, as an idle database pool's connection is.
        let mut dormant = conn(1, 1100, 1100, 21);
        dormant.counters.since_recv_ms = 660_000;
        let s = seen.judge(t0 + w, &[dormant], w, 4096, QUIET);
        assert_eq!((s.long_lived, s.steady), (1, 0), "{s:?}");
        assert_eq!(s.quiet, Duration::from_secs(660));
        // A looser rule takes it.
        let s = seen.judge(t0 + w, &[dormant], w, 4096, Duration::from_secs(900));
        assert_eq!(s.steady, 1);
    }

    #[test]
    fn a_one_way_or_new_connection_is_not_steady_and_gone_ones_are_forgotten() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut seen = FirstSeen::default();
        seen.judge(t0, &[conn(1, 0, 0, 0)], w, 4096, QUIET);
        // Sent only (no data segment in).
        let mut one_way = conn(1, 500, 0, 0);
        one_way.counters.segs_out = 5;
        let s = seen.judge(t0 + w, &[one_way], w, 4096, QUIET);
        assert_eq!((s.long_lived, s.steady), (1, 0));
        // #1 closed, #3 new: forgotten, and not yet long-lived.
        let s = seen.judge(t0 + w * 2, &[conn(3, 10, 10, 1)], w, 4096, QUIET);
        assert_eq!((s.long_lived, seen.by_inode.len()), (0, 1));
    }
}
