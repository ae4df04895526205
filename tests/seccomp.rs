//! Seccomp from the profile: filters built with libseccomp, installed only
//! in child processes (never in the test runner), and their exports.

mod common;

use minerguard::{
    profile::{ArgCmp, ArgOp, SeccompAction, SeccompMatch, SeccompPreset, SyscallRule},
    seccomp::{install_raw, oci},
    Action, Profile, Rule, SeccompFilter, SeccompPolicy,
};

fn policy(filter: SeccompMatch) -> SeccompPolicy {
    let p = Profile::new("sc").rule(Rule::seccomp("filter", Action::Deny, filter));
    SeccompPolicy::compile(&p).unwrap().expect("a seccomp rule")
}

fn calls(rules: &[(&str, SeccompAction)]) -> SeccompMatch {
    SeccompMatch {
        syscalls: rules
            .iter()
            .map(|(n, a)| SyscallRule {
                names: vec![n.to_string()],
                action: *a,
                args: vec![],
            })
            .collect(),
        ..Default::default()
    }
}

/// What a forked child saw: the errno of `ptrace(PTRACE_TRACEME)` and of
/// `getppid()` (0 for success), or the signal that killed it.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Calls { ptrace: i32, getppid: i32 },
    Signal(i32),
}

/// Installs `policy` in a forked child with the async-signal-safe installer
/// (the filter is built before the fork) and makes two syscalls there.
fn in_child(policy: &SeccompPolicy) -> Seen {
    let program = SeccompFilter::new(policy)
        .unwrap()
        .to_sock_filters()
        .unwrap();
    let end = common::fork_in(None, || unsafe {
        if install_raw(&program).is_err() {
            return 99;
        }
        let errno = |rc: libc::c_long| if rc < 0 { *libc::__errno_location() } else { 0 };
        let ptrace = errno(libc::syscall(
            libc::SYS_ptrace,
            libc::PTRACE_TRACEME,
            0,
            0,
            0,
        ));
        let getppid = errno(libc::syscall(libc::SYS_getppid));
        ptrace.min(15) * 16 + getppid.min(15)
    });
    match end {
        common::ChildEnd::Signal(sig) => Seen::Signal(sig),
        common::ChildEnd::Code(99) => panic!("install_raw failed in the child"),
        common::ChildEnd::Code(code) => Seen::Calls {
            ptrace: code / 16,
            getppid: code % 16,
        },
    }
}

#[test]
fn denied_syscall_gets_the_configured_errno_and_others_work() {
    let p = policy(calls(&[(
        "ptrace",
        SeccompAction::Errno(libc::EACCES as u16),
    )]));
    assert_eq!(
        in_child(&p),
        Seen::Calls {
            ptrace: libc::EACCES,
            getppid: 0
        }
    );
    // The same child without a filter: ptrace(TRACEME) succeeds.
    let none = policy(calls(&[("kexec_load", SeccompAction::Errno(1))]));
    assert_eq!(
        in_child(&none),
        Seen::Calls {
            ptrace: 0,
            getppid: 0
        }
    );
}

#[test]
fn kill_process_ends_the_child_with_sigsys() {
    let p = policy(calls(&[("ptrace", SeccompAction::KillProcess)]));
    assert_eq!(in_child(&p), Seen::Signal(libc::SIGSYS));
}

#[test]
fn argument_conditions_select_the_call() {
    let p = policy(SeccompMatch {
        syscalls: vec![SyscallRule {
            names: vec!["ptrace".into()],
            action: SeccompAction::Errno(libc::EPERM as u16),
            args: vec![ArgCmp {
                index: 0,
                op: ArgOp::Eq,
                value: libc::PTRACE_ATTACH as u64,
                mask: None,
            }],
        }],
        ..Default::default()
    });
    // TRACEME is request 0, not ATTACH: allowed.
    assert_eq!(
        in_child(&p),
        Seen::Calls {
            ptrace: 0,
            getppid: 0
        }
    );
}

#[test]
fn the_miner_preset_refuses_ptrace_and_personality_changes() {
    let p = policy(SeccompMatch {
        preset: Some(SeccompPreset::Miner),
        ..Default::default()
    });
    assert_eq!(
        in_child(&p),
        Seen::Calls {
            ptrace: libc::EPERM,
            getppid: 0
        }
    );
    let names: Vec<&str> = p.entries.iter().map(|e| e.syscall.as_str()).collect();
    for n in [
        "bpf",
        "perf_event_open",
        "finit_module",
        "kexec_file_load",
        "personality",
        "process_vm_writev",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
}

#[test]
fn a_default_action_applies_to_unnamed_calls() {
    let p = policy(SeccompMatch {
        default: Some(SeccompAction::Errno(libc::E2BIG as u16)),
        syscalls: vec![SyscallRule {
            names: ["getppid", "exit", "exit_group"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            action: SeccompAction::Allow,
            args: vec![],
        }],
        preset: None,
    });
    assert_eq!(
        in_child(&p),
        Seen::Calls {
            ptrace: libc::E2BIG,
            getppid: 0
        }
    );
}

#[test]
fn exports_bpf_pfc_and_oci() {
    let p = Profile::bundled("container-strict").unwrap();
    let policy = SeccompPolicy::compile(&p).unwrap().unwrap();
    let filter = SeccompFilter::new(&policy).unwrap();
    let bpf = filter.to_bpf().unwrap();
    assert!(!bpf.is_empty() && bpf.len() % 8 == 0);
    assert_eq!(filter.to_sock_filters().unwrap().len(), bpf.len() / 8);
    let pfc = filter.to_pfc().unwrap();
    assert!(pfc.contains("ptrace") && pfc.contains("ERRNO(1)"), "{pfc}");

    let json = oci::to_oci(&policy).unwrap();
    // The runtime-spec fields, checked one by one (config-linux.md, Seccomp).
    assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW");
    assert_eq!(
        json["architectures"],
        serde_json::json!(["SCMP_ARCH_X86_64"])
    );
    let syscalls = json["syscalls"].as_array().unwrap();
    assert!(!syscalls.is_empty());
    for s in syscalls {
        let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(
            keys.iter()
                .all(|k| ["names", "action", "errnoRet", "args"].contains(k)),
            "{keys:?}"
        );
        assert!(s["names"].as_array().unwrap().iter().all(|n| n.is_string()));
        assert!(s["action"].as_str().unwrap().starts_with("SCMP_ACT_"));
        for a in s["args"].as_array().into_iter().flatten() {
            assert!(a["index"].as_u64().unwrap() <= 5);
            assert!(a["value"].is_u64() && a["valueTwo"].is_u64());
            assert!(a["op"].as_str().unwrap().starts_with("SCMP_CMP_"));
        }
    }
    let personality = syscalls
        .iter()
        .find(|s| s["names"][0] == "personality")
        .unwrap();
    assert_eq!(personality["args"][0]["op"], "SCMP_CMP_NE");

    // Round trip: OCI JSON back to a policy gives the same filter, byte for byte.
    let back = oci::from_oci(&json).unwrap();
    assert_eq!(SeccompFilter::new(&back).unwrap().to_bpf().unwrap(), bpf);
}

#[test]
fn oci_errors_name_the_field() {
    let bad = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["nosuchcall"], "action": "SCMP_ACT_ERRNO"}]});
    let e = oci::from_oci(&bad).unwrap_err().to_string();
    assert!(
        e.contains("syscalls[0].names[0]") && e.contains("nosuchcall"),
        "{e}"
    );
    let notify = policy(calls(&[("ptrace", SeccompAction::Notify)]));
    assert!(oci::to_oci(&notify)
        .unwrap_err()
        .to_string()
        .contains("listenerPath"));
}
