//! Device rules: opens of the MSR device (`/dev/cpu/*/msr`, char 202:*),
//! which miners write to gain hash rate.

use minerguard::{Action, Profile, Rule, Target};

use crate::common::*;

/// errno of open(2) on `path` from a child in `cgroup` (0: opened).
fn open_in(cgroup: Option<&minerguard::cgroup::OwnedCgroup>, path: &std::path::Path) -> i32 {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    match fork_in(cgroup, || unsafe {
        if libc::open(c.as_ptr(), libc::O_RDONLY) >= 0 {
            0
        } else {
            *libc::__errno_location()
        }
    }) {
        ChildEnd::Code(c) => c,
        ChildEnd::Signal(s) => -s,
    }
}

#[test]
fn msr_device_opens_are_refused() {
    require_kernel!();
    let dir = TempDir::new("msr");
    // A node for CPU 0's MSR device (char 202:0), wherever the test likes.
    let node = dir.path().join("msr0");
    let c = std::ffi::CString::new(node.to_str().unwrap()).unwrap();
    assert_eq!(
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(202, 0)) },
        0
    );
    let null = std::path::Path::new("/dev/null");
    let scoped =
        Scoped::apply(&Profile::new("msr").rule(Rule::open_msr("msr-access", Action::Deny)));
    let (cg, enforcer, h) = (scoped.cgroup(), scoped.enforcer(), scoped.handle());
    assert!(
        enforcer.unenforced(h).unwrap().is_empty(),
        "open.msr is enforced here"
    );
    assert_eq!(open_in(Some(cg), &node), libc::EPERM);
    assert_ne!(
        open_in(None, &node),
        libc::EPERM,
        "outside the scope the device cgroup allows it"
    );
    assert_eq!(open_in(Some(cg), null), 0, "other devices still open");
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "msr-access").expect("event");
    assert_eq!(
        ev.target,
        Target::Device {
            major: 202,
            minor: 0
        }
    );
    assert!(ev.pid > 0 && ev.cgroup_id == cg.cgroup().id(), "{ev:?}");
}
