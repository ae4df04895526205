//! Enforcement on the real kernel, one module per feature: every test makes
//! its own cgroup, applies a profile there only, and checks what the kernel
//! did (and that the same operation still works outside the scope and after
//! removal).
//!
//! - `exec`: miner names, files (by inode), directories, memfd and deleted
//!   files, scripts, command lines.
//! - `exec_rules`: exec rules a miner would try to walk around: allow-lists
//!   and learn mode, no new exec after start, loader exec and executable
//!   mappings, execveat, refused interpreters, syscall tracepoints turned off.
//! - `identity`: who did it: parent, command line, the matched pattern.
//! - `connect`: ports, CIDRs, UDP, another network namespace, `kill`.
//! - `stratum`: the Stratum signature on a socket's first bytes, whatever
//!   call sends them (sendfile and TCP Fast Open too), and which sockets are
//!   tracked.
//! - `stratum_egress`: the cgroup backend's egress judge (#25): the pool
//!   gets the bytes before a mining method and nothing of it.
//! - `stratum_evasions`: the Stratum judge against what real pools accept
//!   (BOM, junk lines, key order, escapes, case, batches, other mining
//!   methods, SOCKS/HTTP CONNECT/WebSocket tunnels, real XMRig through
//!   SOCKS5), and clean traffic passing byte for byte.
//! - `kill_container`: `kill-container` kills the caught task's cgroup (its
//!   container) and nothing beside it; backlog events kill nothing.
//! - `domains`: domains resolved to addresses, refreshed.
//! - `device`: MSR device opens.
//! - `tuning`: the behaviour detector's tuning signal: opens for writing of
//!   `nr_hugepages`, MSR devices, `allow_writes`, `nmi_watchdog`, counted
//!   per process in a scope.
//! - `lifecycle`: scopes and nesting, update, remove, failed apply, audit
//!   mode, handles, self-test events, drop counters, probe, rules a backend
//!   cannot enforce.
//! - `workloads`: each bundled profile lets ordinary programs run (HTTP on
//!   8080, a redis client, shell pipelines, JSON-RPC that is not mining).
//!
//! The backend under test is MINERGUARD_TEST_BACKEND (auto by default); the
//! same tests run natively (cgroup backend) and in the VM (lsm backend;
//! scripts/vm-test.sh runs them there with the cgroup backend too, except
//! `exec_rules`).

#[path = "../common/mod.rs"]
mod common;

/// Returns from the test (skipped) or panics when the kernel tests cannot
/// run here: see [`common::kernel_tests_enabled`].
macro_rules! require_kernel {
    () => {
        if !crate::common::kernel_tests_enabled(module_path!()) {
            return;
        }
    };
}

mod connect;
mod containers;
mod device;
mod domains;
mod exec;
mod exec_rules;
mod identity;
mod kill_container;
mod lifecycle;
mod path_view;
mod scope_cache;
mod scope_escape;
mod stratum;
mod stratum_egress;
mod stratum_evasions;
mod tuning;
mod workloads;

use minerguard::{Action, Profile, Rule};

/// One rule, `pool-port`, on `port`.
fn port_profile(action: Action, port: u16) -> Profile {
    Profile::new("test-ports").rule(Rule::connect_ports("pool-port", action, [port]))
}

/// One rule, `miner-binary`, on the name `xmrig`.
fn exec_profile(action: Action) -> Profile {
    Profile::new("test-exec").rule(Rule::exec_names("miner-binary", action, ["xmrig"]))
}

/// A loopback TCP listener on a given address (any 127/8 address works).
fn listener_on(addr: &str) -> std::net::TcpListener {
    std::net::TcpListener::bind(addr).expect("bind loopback")
}
