//! What one sample reads of one process, from /proc only: per-thread time
//! on a CPU and waiting for one (`task/<tid>/schedstat`, nanoseconds; where
//! the kernel has no schedstat, `task/<tid>/stat` utime + stime and no wait)
//! on every sample,
//! and its memory (`status`: RssAnon, HugetlbPages) only when its CPU use
//! already looks like mining; `smaps_rollup`'s AnonHugePages, which no
//! signal uses, only for a process found mining (it walks every page table
//! of the process: 14 % of a sample's CPU when it was read for every busy
//! process).

use std::fs;

/// One thread's scheduler times, in nanoseconds since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ThreadTimes {
    /// Thread id.
    pub tid: u32,
    /// Time on a CPU.
    pub run_ns: u64,
    /// Time runnable but waiting for a CPU (other work, or its cgroup's
    /// CPU limit): a spinning thread on a busy host is running or waiting.
    pub wait_ns: u64,
    /// Times it blocked of its own accord (`voluntary_ctxt_switches`), read
    /// only while it was active (see [`voluntary_switches`]).
    pub sleeps: Option<u64>,
}

/// Per-thread CPU time of one process at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    /// `comm`.
    pub comm: String,
    /// Start time (clock ticks since boot): with the pid, its identity.
    pub start_time: u64,
    /// Its threads, by thread id.
    pub threads: Vec<ThreadTimes>,
}

/// A process's memory, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Anonymous resident memory (`RssAnon`).
    pub anon_kib: u64,
    /// Of which transparent huge pages (`AnonHugePages`): read only for a
    /// process found mining (for its event), else `None`.
    pub anon_huge_kib: Option<u64>,
    /// hugetlbfs pages mapped (`HugetlbPages`: `MAP_HUGETLB`).
    pub hugetlb_kib: u64,
}

/// What a sample takes from a `stat` file.
struct Stat {
    comm: String,
    start_time: u64,
    /// utime + stime, in clock ticks.
    ticks: u64,
    /// `num_threads` (0 where absent).
    threads: u64,
}

/// The fields a sample uses from a `stat` file's text.
fn parse_stat(text: &str) -> Option<Stat> {
    // comm may hold spaces and parentheses: it ends at the last `)`.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    // After the comm: state is field 3; utime 14, stime 15, num_threads
    // 20, starttime 22.
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        comm,
        start_time: field(22)?,
        ticks: field(14)? + field(15)?,
        threads: field(20).unwrap_or(0),
    })
}

/// (run, wait) from a `schedstat` file's text.
fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some((f.next()??, f.next()??))
}

/// `pid`'s threads and their times (`hz`: clock ticks a second, for the
/// `stat` fallback); `None` once it has exited.
pub(crate) fn cpu_times(pid: u32, hz: u64) -> Option<CpuTimes> {
    let stat = parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let thread_times = |tid: u32| {
        let dir = format!("/proc/{pid}/task/{tid}");
        match fs::read_to_string(format!("{dir}/schedstat")) {
            Ok(text) => parse_schedstat(&text),
            Err(_) => fs::read_to_string(format!("{dir}/stat"))
                .ok()
                .and_then(|t| parse_stat(&t))
                .map(|s| (s.ticks.saturating_mul(1_000_000_000 / hz.max(1)), 0)),
        }
        .map(|(run_ns, wait_ns)| ThreadTimes {
            tid,
            run_ns,
            wait_ns,
            sleeps: None,
        })
    };
    let mut threads = Vec::new();
    if stat.threads == 1 {
        // Most processes have one thread: no listing of `task/` (a
        // directory read and a lookup per entry). A thread started since
        // `stat` was read is listed next sample.
        threads.extend(thread_times(pid));
    } else {
        for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
            // A thread that exited between the listing and the read is
            // skipped.
            if let Some(t) = (entry.file_name().to_str())
                .and_then(|s| s.parse().ok())
                .and_then(thread_times)
            {
                threads.push(t);
            }
        }
    }
    threads.sort_unstable_by_key(|t| t.tid);
    Some(CpuTimes {
        comm: stat.comm,
        start_time: stat.start_time,
        threads,
    })
}

/// The number after `key:` in a `/proc` key-value file (`kB` values in KiB).
fn kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| {
        l.strip_prefix(key)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How many times thread `tid` of `pid` blocked of its own accord
/// (`voluntary_ctxt_switches` of `task/<tid>/status`). A stop (SIGSTOP,
/// `cpulimit`) is one; preemption is not. Read only for threads that were
/// active since the last sample: an idle scope costs nothing more. For the
/// main thread (`tid == pid`) the process's memory comes from the same
/// read (`status` is the main thread's): a busy process's memory is then
/// not read again (each `status` read sums the process's memory).
pub(crate) fn voluntary_switches(pid: u32, tid: u32) -> (Option<u64>, Option<Memory>) {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")) else {
        return (None, None);
    };
    let memory = (tid == pid).then(|| memory_of(&status));
    (kib(&status, "voluntary_ctxt_switches"), memory)
}

/// The memory figures of a `status` file's text.
fn memory_of(status: &str) -> Memory {
    Memory {
        anon_kib: kib(status, "RssAnon").unwrap_or(0),
        anon_huge_kib: None,
        hugetlb_kib: kib(status, "HugetlbPages").unwrap_or(0),
    }
}

/// `pid`'s memory but its transparent huge pages; `None` once it has
/// exited.
pub(crate) fn memory(pid: u32) -> Option<Memory> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(memory_of(&status))
}

/// `pid`'s transparent huge pages in anonymous memory (`AnonHugePages` of
/// `smaps_rollup`, which walks every page table of the process: read for a
/// detection only); `None` when unreadable.
pub(crate) fn anon_huge_kib(pid: u32) -> Option<u64> {
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kib(&rollup, "AnonHugePages")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_last_parenthesis() {
        // comm `a) (b` with the fields of a real line after it.
        let line = "42 (a) (b) R 1 42 42 0 -1 4194560 100 0 0 0 700 55 0 0 20 0 3 0 123456 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            (s.comm.as_str(), s.start_time, s.ticks, s.threads),
            ("a) (b", 123456, 755, 3)
        );
    }

    #[test]
    fn a_one_thread_process_is_read_without_listing_its_threads() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let got = cpu_times(child.id(), 100);
        let _ = child.kill();
        let _ = child.wait();
        let threads: Vec<u32> = got.unwrap().threads.iter().map(|t| t.tid).collect();
        assert_eq!(threads, [child.id()]);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let cpu = cpu_times(me, 100).unwrap();
        let main = cpu.threads.iter().find(|t| t.tid == me).unwrap();
        assert!(main.run_ns > 0, "{cpu:?}");
        assert_eq!(
            parse_schedstat("258053501 525447626 783\n"),
            Some((258053501, 525447626))
        );
        let mem = memory(me).unwrap();
        assert!(mem.anon_kib > 0, "{mem:?}");
        assert_eq!(
            kib("HugetlbPages:\t    2048 kB\n", "HugetlbPages"),
            Some(2048)
        );
        assert_eq!(kib("RssAnonX:\t 1 kB\n", "RssAnon"), None);
        // This thread has blocked (at least on reading its own files); the
        // main thread's read brings the process's memory.
        let (switches, with) = voluntary_switches(me, me);
        assert!(switches.is_some_and(|n| n > 0));
        assert!(with.is_some_and(|m| m.anon_kib > 0), "{with:?}");
        assert_eq!(voluntary_switches(me, u32::MAX), (None, None));
    }
}
