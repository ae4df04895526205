//! What an applied profile leaves unenforced on this kernel, said once.

use minerguard::{BackendKind, Enforcer, KernelPolicy, MatcherKind, PolicyHandle, ValidProfile};

use crate::PREFIX;

/// Says which rules of the applied profile this backend leaves unenforced.
///
/// `behaviour_sampled`: the behaviour detector runs (`watch`), so
/// behaviour rules are judged though no BPF backend carries them.
/// `seccomp_installed`: the command gets the seccomp filter (`run`), so
/// seccomp rules are enforced even though no BPF backend carries them.
pub fn unenforced(
    enforcer: &Enforcer,
    handle: PolicyHandle,
    profile: &ValidProfile<'_>,
    behaviour_sampled: bool,
    seccomp_installed: bool,
) {
    for domain in enforcer.unresolved_domains(handle).unwrap_or_default() {
        eprintln!("{PREFIX}: warning: domain `{domain}` resolved to no address; not enforced until it does");
    }
    // The optional checks load with the first profile that needs them: only
    // a profile with such rules (as compiled: e.g. exec.files that exist)
    // has anything to warn about.
    let compiled =
        KernelPolicy::from_valid(profile).and_then(|mut p| p.resolve_inodes().map(|()| p));
    let (has_stratum, judges_files) = compiled
        .map(|p| (p.stratum.is_some(), p.judges_mapped_files()))
        .unwrap_or((false, false));
    let checks = enforcer.checks();
    if has_stratum {
        if !checks.fast_open.is_covered() {
            eprintln!(
                "{PREFIX}: warning: TCP Fast Open payloads are not judged for Stratum on this kernel: {}",
                checks.fast_open
            );
        }
        if enforcer.backend() == BackendKind::Lsm && !checks.lsm_stratum.is_active() {
            eprintln!(
                "{PREFIX}: warning: the sleepable socket_sendmsg hook does not judge Stratum ({}): Stratum sends are refused by the sk_msg program (EACCES) instead",
                checks.lsm_stratum
            );
        }
    }
    if judges_files && !checks.loader_exec.is_covered() {
        eprintln!(
            "{PREFIX}: warning: executable mappings (loader exec, `ld.so ./miner`) are not judged on this kernel: {}",
            checks.loader_exec
        );
    }
    let gaps = enforcer.unenforced(handle).unwrap_or_default();
    for gap in gaps
        .iter()
        .filter(|g| !(seccomp_installed && g.matcher == MatcherKind::Seccomp))
        .filter(|g| !(behaviour_sampled && g.matcher == MatcherKind::Behaviour))
    {
        if gap.matcher == MatcherKind::Behaviour {
            eprintln!(
                "{PREFIX}: warning: rule `{}` (behaviour) is judged only by `minerguard watch`'s behaviour detector, which is not running here",
                gap.rule
            );
            continue;
        }
        eprintln!(
            "{PREFIX}: warning: rule `{}` ({}) is not enforced by the {} backend in this release",
            gap.rule,
            gap.matcher,
            enforcer.backend()
        );
    }
}
