//! `execve()` overhead of the exec hook (`tp_btf/sched_process_exec` on the
//! cgroup backend) against an unhooked baseline measured in the same run.
//!
//! A worker forked into a fresh bench cgroup spawns a tiny static binary
//! (built here from a one-line C file with `cc -static -O2`; `/bin/true` if
//! no static libc is installed) with `posix_spawn` (vfork-style clone +
//! execve) and waits for it, N times; the figure is the median latency of
//! one spawn + exec + exit + wait (medians, because this machine is shared
//! and a mean mostly measures preemption). Configurations: no enforcer loaded
//! (`unhooked`), the bundled `default` profile on the bench cgroup, and
//! `container-strict` (which adds the `exec.dirs` walk up the executed
//! file's directories and the memfd check).
//!
//! The binary lives in /var/cache/minerguard-bench, not under /tmp (nor the
//! target dir, which may be under /tmp), because `container-strict` kills
//! anything executed from /tmp, /var/tmp or /dev/shm.
//!
//! Goal: `default` within 3 % of unhooked. As in every kernel bench, the
//! quoted ratio is the interleaved `SUMMARY` printed after criterion's runs.

mod common;

use std::{ffi::CString, path::PathBuf, process::Command};

use common::*;
use criterion::{BenchmarkId, Throughput};

const OP_SPAWN: u64 = 0;
const OP_CHECK: u64 = 1;

/// Builds the static binary to exec; falls back to /bin/true.
fn target_binary() -> PathBuf {
    // Not under the target dir: a checkout may itself live in /tmp, which
    // container-strict's scratch-dir rule covers.
    let dir = PathBuf::from("/var/cache/minerguard-bench");
    std::fs::create_dir_all(&dir).expect("create bench tmp dir");
    let src = dir.join("exit0.c");
    let bin = dir.join("exit0-static");
    std::fs::write(&src, "int main(void) { return 0; }\n").expect("write exit0.c");
    let built = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if built {
        bin
    } else {
        eprintln!("exec: `cc -static` failed (no static libc?); measuring /bin/true instead");
        PathBuf::from("/bin/true")
    }
}

fn main() {
    require_root("exec");
    let program = target_binary();
    println!("exec: measuring {}", program.display());
    let path = CString::new(program.to_str().unwrap()).unwrap();
    let arg0 = CString::new("exit0").unwrap();

    let cgroup = bench_cgroup();
    let mut lat = Latencies::with_capacity(LATENCY_CAPACITY);
    let worker = Worker::spawn(&cgroup, move |op, n| unsafe {
        let argv = [arg0.as_ptr() as *mut libc::c_char, std::ptr::null_mut()];
        let envp = [std::ptr::null_mut::<libc::c_char>()];
        let spawn = || {
            let mut pid = 0;
            let rc = libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                argv.as_ptr(),
                envp.as_ptr(),
            );
            if rc != 0 {
                return -1;
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            status
        };
        match op {
            OP_SPAWN => {
                lat.clear();
                for _ in 0..n {
                    let t0 = now_ns();
                    spawn();
                    lat.push(now_ns() - t0);
                }
                lat.median()
            }
            OP_CHECK => spawn() as u64,
            _ => u64::MAX,
        }
    });
    let mut switch = Switch::new(&cgroup);
    let configs = Config::standard();
    let check = |w: &Worker| assert_eq!(w.run(OP_CHECK, 1), 0, "the binary runs and exits 0");

    let mut c = criterion();
    {
        let mut group = c.benchmark_group("exec/static");
        group.throughput(Throughput::Elements(1));
        for config in &configs {
            switch.set(config);
            check(&worker);
            group.bench_function(BenchmarkId::from_parameter(config.name()), |b| {
                b.iter_custom(|iters| total(worker.run(OP_SPAWN, iters), iters))
            });
        }
        group.finish();
    }
    switch.set(&Config::Unhooked);

    if benchmarking() {
        let n = 2_000;
        interleaved(
            "exec/static",
            &mut switch,
            &configs,
            summary_rounds(),
            |_| {
                check(&worker);
                worker.run(OP_SPAWN, n / 10);
                worker.run(OP_SPAWN, n) as f64
            },
        );
    }
    c.final_summary();
    drop(worker);
    cgroup.remove().expect("remove the bench cgroup");
}
