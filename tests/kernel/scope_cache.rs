//! The cgroup programs' scope cache (#25, `bpf/include/scope_cache.h`):
//! each CPU remembers the nearest scope its last run found, for one
//! generation of the scopes. These tests run every child on one CPU, so
//! that a run finds the entry the run before it left, and check that a
//! scope applied, updated or removed is seen at the next connect or packet
//! (the generation moved on), and that where scopes nest the entry is used
//! only by the cgroup it was found for.

use minerguard::{
    cgroup::OwnedCgroup, Action, BackendChoice, CgroupStratumJudge, Enforcer, EnforcerOptions,
    Profile, Rule,
};

use crate::{common::*, port_profile};

/// Runs the calling thread (and every child it forks from now on) on one
/// CPU until dropped, when its earlier CPUs are given back.
struct OneCpu {
    before: libc::cpu_set_t,
}

impl OneCpu {
    fn pin() -> Self {
        // SAFETY: cpu_set_t is plain data; the calls get valid pointers.
        unsafe {
            let mut before: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            assert_eq!(
                libc::sched_getaffinity(0, size, &mut before),
                0,
                "sched_getaffinity"
            );
            let cpu = (0..libc::CPU_SETSIZE as usize)
                .find(|&c| libc::CPU_ISSET(c, &before))
                .expect("some CPU is allowed");
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            assert_eq!(
                libc::sched_setaffinity(0, size, &one),
                0,
                "sched_setaffinity"
            );
            OneCpu { before }
        }
    }
}

impl Drop for OneCpu {
    fn drop(&mut self) {
        // SAFETY: restores the mask read in `pin`.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.before);
        }
    }
}

/// A profile denying connections to each of `ports`.
fn ports_profile(name: &str, ports: &[u16]) -> Profile {
    Profile::new(name).rule(Rule::connect_ports("ports", Action::Deny, ports.to_vec()))
}

#[test]
fn a_scope_applied_updated_or_removed_inside_a_cached_one_is_seen_at_once() {
    require_kernel!();
    let _cpu = OneCpu::pin();
    let (a, b) = (listener(false), listener(false));
    let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let parent = test_cgroup();
    let child = child_cgroup(&parent);
    let mut enforcer = enforcer();
    enforcer
        .apply(&port_profile(Action::Deny, pa.port()), scope_of(&parent))
        .unwrap();
    // One scope: every cgroup below it has its policy, from the cache
    // after the first connect.
    for _ in 0..3 {
        assert_eq!(
            connect_in(Some(&child), pa, false),
            ConnectOutcome::Errno(libc::EPERM)
        );
        assert_eq!(
            connect_in(Some(&child), pb, false),
            ConnectOutcome::Connected
        );
    }
    // A scope inside it: the child's own policy at the next connect, and
    // the parent keeps its own, one after the other on this CPU.
    let inner = enforcer
        .apply(&ports_profile("inner", &[pb.port()]), scope_of(&child))
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            connect_in(Some(&parent), pa, false),
            ConnectOutcome::Errno(libc::EPERM)
        );
        assert_eq!(
            connect_in(Some(&parent), pb, false),
            ConnectOutcome::Connected
        );
        assert_eq!(
            connect_in(Some(&child), pa, false),
            ConnectOutcome::Connected
        );
        assert_eq!(
            connect_in(Some(&child), pb, false),
            ConnectOutcome::Errno(libc::EPERM)
        );
    }
    // Its update (the child asked last: its entry is the one to go).
    enforcer
        .update(
            inner,
            &ports_profile("inner-updated", &[pa.port(), pb.port()]),
        )
        .unwrap();
    assert_eq!(
        connect_in(Some(&child), pa, false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    assert_eq!(
        connect_in(Some(&parent), pb, false),
        ConnectOutcome::Connected
    );
    assert_eq!(
        connect_in(Some(&child), pb, false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    // Its removal hands the child back to the parent's policy.
    enforcer.remove(inner).unwrap();
    for _ in 0..2 {
        assert_eq!(
            connect_in(Some(&child), pb, false),
            ConnectOutcome::Connected
        );
        assert_eq!(
            connect_in(Some(&child), pa, false),
            ConnectOutcome::Errno(libc::EPERM)
        );
    }
}

/// Sends an XMRig login from `cgroup` to a fresh fake pool: whether the
/// client's sends all went out, and the mining methods the pool got.
fn login_from(cgroup: &OwnedCgroup) -> (StreamOutcome, Vec<String>) {
    const XMRIG_LOGIN: &[u8] = b"{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\",\"params\":{\"login\":\"wallet\",\"pass\":\"x\"}}\n";
    let pool = FakePool::start();
    let out = send_stream_in(
        Some(cgroup),
        pool.addr(),
        &[],
        XMRIG_LOGIN,
        Chunks::Whole,
        SendVia::Send,
    );
    pool.wait_closed(1);
    (out, pool.mining_methods())
}

#[test]
fn the_egress_judge_finds_each_packets_own_scope_where_scopes_nest() {
    require_kernel!();
    let _cpu = OneCpu::pin();
    let parent = test_cgroup();
    let child = child_cgroup(&parent);
    let mut enforcer = Enforcer::with_options(EnforcerOptions {
        backend: BackendChoice::Cgroup,
        cgroup_stratum_judge: CgroupStratumJudge::Egress,
        ..Default::default()
    })
    .expect("enforcer loads");
    let stratum = Profile::new("stratum").rule(Rule::stratum(
        "stratum-protocol",
        Action::Deny,
        Vec::<String>::new(),
    ));
    enforcer.apply(&stratum, scope_of(&parent)).unwrap();
    // Flat: the child's packets have the parent's scope.
    let (out, got) = login_from(&child);
    assert!(got.is_empty(), "the pool got {got:?} ({out:?})");
    // The child becomes a scope of its own without a stratum rule: its
    // logins pass, the parent's are still refused, turn by turn on this
    // CPU (the egress program runs at the parent's cgroup for both).
    enforcer
        .apply(&ports_profile("no-stratum", &[9]), scope_of(&child))
        .unwrap();
    for round in 0..3 {
        let (out, got) = login_from(&child);
        assert_eq!(out, StreamOutcome::AllSent, "round {round}");
        assert_eq!(
            got,
            ["login"],
            "round {round}: the child's own scope has no stratum rule"
        );
        let (out, got) = login_from(&parent);
        assert!(
            got.is_empty(),
            "round {round}: the pool got {got:?} from the parent ({out:?})"
        );
    }
}
