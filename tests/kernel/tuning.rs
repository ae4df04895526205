//! The behaviour detector's tuning signal (#24): a profile with a
//! `behaviour` rule loads the open tracepoints that count, per process in a
//! scope, opens for writing of the files a miner writes to tune the host.
//! Nothing here writes any of them: the child only opens (the attempt is
//! what counts, as a container's refused write is), and the host's
//! `vm.nr_hugepages` is checked unchanged.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use minerguard::{behaviour::TuningSignal, profile::BehaviourMatch, Action, Profile, Rule};

use crate::common::*;

/// A child (python3) that opens, in order: the hugepages sysctl for
/// writing through openat, openat2 and the legacy open syscall (x86-64),
/// and for reading (not counted); the msr module's `allow_writes` and CPU
/// 0's MSR device for writing (either may be missing: the attempt counts
/// all the same); `nmi_watchdog` by a relative path; a file named
/// `nr_overcommit_hugepages` made by creat() in `dir`, and one at the end
/// of a path longer than a read chunk (`dir`/aaa…/nr_hugepages), and
/// `dir`/cpu/12/msr (the name is what counts); files whose names only look
/// alike (`dir`/9/msr is not under `cpu/`). Every descriptor is closed unwritten.
/// Prints `ready` and sleeps until killed.
const TUNER: &str = r#"
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
d = sys.argv[1]
def attempt(path, flags):
    try:
        os.close(os.open(path, flags))
    except OSError:
        pass
hp = "/proc/sys/vm/nr_hugepages"
attempt(hp, os.O_WRONLY)
class How(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]
how = How(os.O_WRONLY, 0, 0)
fd = libc.syscall(437, -100, hp.encode(), ctypes.byref(how), ctypes.sizeof(how))
if fd >= 0:
    os.close(fd)
if os.uname().machine == "x86_64":
    fd = libc.syscall(2, hp.encode(), os.O_RDWR)
    if fd >= 0:
        os.close(fd)
attempt(hp, os.O_RDONLY)
attempt("/sys/module/msr/parameters/allow_writes", os.O_WRONLY)
attempt("/dev/cpu/0/msr", os.O_WRONLY)
os.chdir("/proc/sys/kernel")
attempt("nmi_watchdog", os.O_WRONLY)
fd = libc.creat(os.path.join(d, "nr_overcommit_hugepages").encode(), 0o600)
if fd >= 0:
    os.close(fd)
deep = os.path.join(d, "a" * 250)
os.makedirs(deep, exist_ok=True)
attempt(os.path.join(deep, "nr_hugepages"), os.O_WRONLY | os.O_CREAT)
for name in ("hugepages", "xnr_hugepages", "msr", "nr_hugepages.bak"):
    attempt(os.path.join(d, name), os.O_WRONLY | os.O_CREAT)
for sub in ("9", "cpu/12"):
    os.makedirs(os.path.join(d, sub), exist_ok=True)
    attempt(os.path.join(d, sub, "msr"), os.O_WRONLY | os.O_CREAT)
print("ready", flush=True)
time.sleep(120)
"#;

/// Starts [`TUNER`] in `cgroup` (or outside any test cgroup); returns it
/// once it has made every attempt.
fn tuner(cgroup: Option<&minerguard::cgroup::OwnedCgroup>, dir: &TempDir) -> ChildGuard {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", TUNER])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = spawn_in(cgroup, &mut cmd).expect("start python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the tuner made its attempts");
    ChildGuard::new(child)
}

fn nr_hugepages() -> String {
    std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap()
}

#[test]
fn opens_for_writing_of_tuning_files_are_counted_per_process_in_the_scope() {
    require_kernel!();
    let before = nr_hugepages();
    let profile = Profile::new("tuning").rule(Rule::behaviour(
        "mining-behaviour",
        Action::Audit,
        BehaviourMatch::default(),
    ));
    let scoped = Scoped::apply(&profile);
    let enforcer = scoped.enforcer();
    enforcer.tuning().expect("the tuning counter is loaded");
    let counts = enforcer.tuning_counts().expect("a handle on the counts");
    let (inside_dir, outside_dir) = (TempDir::new("tuning-in"), TempDir::new("tuning-out"));
    let inside = tuner(Some(scoped.cgroup()), &inside_dir);
    let outside = tuner(None, &outside_dir);

    let legacy_open = u32::from(std::env::consts::ARCH == "x86_64");
    let got = counts.of_pid(inside.id()).expect("the tuner is alive");
    assert_eq!(
        got,
        TuningSignal {
            // openat, openat2, open (x86-64), and the deep path; the
            // creat()ed nr_overcommit_hugepages. Not the read.
            hugepages: 4 + legacy_open,
            // /dev/cpu/0/msr and `dir`/cpu/12/msr.
            msr: 2,
            msr_allow_writes: 1,
            nmi_watchdog: 1,
            counted: true,
        },
        "every attempt of the scoped process, none of the look-alikes"
    );
    assert_eq!(
        counts.of_pid(outside.id()).expect("alive").attempts(),
        0,
        "a process outside every scope is not counted"
    );
    assert_eq!(nr_hugepages(), before, "nothing was written");

    // A profile without a behaviour rule, or whose behaviour rule does not
    // count tuning, loads no counter.
    let plain = Scoped::apply(
        &Profile::new("plain")
            .rule(Rule::exec_names("no-xmrig", Action::Deny, ["xmrig"]))
            .rule(Rule::behaviour(
                "no-tuning",
                Action::Audit,
                BehaviourMatch {
                    count_tuning: Some(false),
                    ..Default::default()
                },
            )),
    );
    let why = plain.enforcer().tuning().unwrap_err();
    assert!(why.contains("count_tuning"), "{why}");
    assert!(plain.enforcer().tuning_counts().is_none());
}

#[test]
fn a_restarted_instance_reads_the_counts_its_adopted_programs_write() {
    require_kernel!();
    let instance = InstanceName::new("test-tuning-restart");
    let name = instance.0.clone();
    let options = || minerguard::EnforcerOptions {
        backend: backend_choice(),
        instance: Some(name.clone()),
        ..Default::default()
    };
    let profile = Profile::new("tuning").rule(Rule::behaviour(
        "mining-behaviour",
        Action::Audit,
        BehaviourMatch::default(),
    ));
    let cg = test_cgroup();
    let dir = TempDir::new("tuning-restart");
    let mut first = minerguard::Enforcer::with_options(options()).expect("enforcer");
    first.apply(&profile, scope_of(&cg)).expect("apply");
    let before = tuner(Some(&cg), &dir);
    // Pinned: dropping it leaves its programs counting.
    drop(first);
    let mut second = minerguard::Enforcer::with_options(options()).expect("adopts the instance");
    second.apply(&profile, scope_of(&cg)).expect("apply again");
    second.release_unadopted().expect("settle");
    let counts = second.tuning_counts().expect("counted");
    // What the first counted is still there, and the programs running now
    // (adopted as they were) count into the map read here.
    let after = tuner(Some(&cg), &TempDir::new("tuning-restart-2"));
    for (what, child) in [("before the restart", &before), ("after it", &after)] {
        let got = counts.of_pid(child.id()).expect("alive");
        assert!(got.hugepages >= 4 && got.msr == 2, "{what}: {got:?}");
    }
    second.detach().expect("detach");
}
