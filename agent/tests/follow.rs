//! Following container cgroups with inotify on the real cgroupfs (mkdir and
//! rmdir of cgroups must reach the follower, or the agent would only see a
//! container on its safety-net walk). Works in a test cgroup it makes.

mod support;

use std::time::{Duration, Instant};

use minerguard::cgroup::OwnedCgroup;
use minerguard_agent::follow::Follower;
use support::*;

/// Whether the follower reports a change within a liveness deadline.
fn reports_change(f: &mut Follower) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if f.changed().expect("inotify read") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn cgroupfs_reports_pods_and_containers_made_and_removed() {
    if !can_run(module_path!(), &[]) {
        return;
    }
    let root = OwnedCgroup::create_in_root("minerguard-follow").expect("create test cgroup");
    let root_path = root.cgroup().path().to_path_buf();
    let mut f = Follower::new(&root_path).expect("inotify on cgroupfs");
    assert!(!f.changed().unwrap(), "nothing happened yet");

    let qos = root_path.join("besteffort");
    std::fs::create_dir(&qos).unwrap();
    assert!(reports_change(&mut f), "a QoS cgroup made");
    let pod = qos.join("pod-follow");
    std::fs::create_dir(&pod).unwrap();
    assert!(reports_change(&mut f), "a pod cgroup made under a new one");
    let container = pod.join(format!("cri-containerd-{}.scope", "ef".repeat(32)));
    std::fs::create_dir(&container).unwrap();
    assert!(reports_change(&mut f), "a container cgroup made");
    assert_eq!(f.watched(), 3, "root, QoS and pod; not the container");

    std::fs::remove_dir(&container).unwrap();
    assert!(reports_change(&mut f), "a container cgroup removed");
    std::fs::remove_dir(&pod).unwrap();
    std::fs::remove_dir(&qos).unwrap();
    assert!(reports_change(&mut f));
}
