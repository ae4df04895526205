//! Checks a parsed profile against the language rules and the kernel limits.
//! Every problem is reported, in document order, with its field path.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use super::{
    matchers::{ArgOp, SeccompAction},
    syscalls, Action, ConnectMatch, Diagnostic, ExecMatch, Profile, Rule, SeccompMatch,
    API_VERSION,
};
use crate::compile::limits;

struct Report(Vec<Diagnostic>);

impl Report {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Diagnostic::new(field, message));
    }
}

/// Every problem in `profile`, in document order.
pub(super) fn check(profile: &Profile) -> Vec<Diagnostic> {
    let mut r = Report(Vec::new());
    if profile.api_version != API_VERSION {
        r.push(
            "apiVersion",
            format!(
                "unsupported apiVersion `{}`, expected `{API_VERSION}`",
                profile.api_version
            ),
        );
    }
    if profile.name.trim().is_empty() {
        r.push("name", "profile name must not be empty");
    }
    if profile.rules.len() > limits::MAX_RULES {
        r.push(
            "rules",
            format!(
                "{} rules; at most {} fit in one profile",
                profile.rules.len(),
                limits::MAX_RULES
            ),
        );
    }
    let mut seen = HashSet::with_capacity(profile.rules.len());
    // Summed in the same walk over the rules.
    let mut totals = Totals::default();
    // One buffer for every rule's `rules[i]` (no allocation per rule).
    let mut at = String::with_capacity(24);
    for (i, rule) in profile.rules.iter().enumerate() {
        at.clear();
        at.push_str("rules[");
        push_decimal(&mut at, i);
        at.push(']');
        let at = at.as_str();
        if rule.name.trim().is_empty() {
            r.push(format!("{at}.name"), "rule name must not be empty");
        } else if !seen.insert(rule.name.as_str()) {
            r.push(
                format!("{at}.name"),
                format!("duplicate rule name `{}`", rule.name),
            );
        }
        check_rule(rule, at, &mut r);
        totals.add(rule);
    }
    totals.check(&mut r);
    r.0
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|d| char::from(*d)));
}

fn check_rule(rule: &Rule, at: &str, r: &mut Report) {
    let sections = [
        ("exec", rule.exec.is_some()),
        ("connect", rule.connect.is_some()),
        ("stratum", rule.stratum.is_some()),
        ("open", rule.open.is_some()),
        ("scope", rule.scope.is_some()),
        ("seccomp", rule.seccomp.is_some()),
        ("behaviour", rule.behaviour.is_some()),
    ];
    let mut present = sections.iter().filter(|(_, p)| *p).map(|(n, _)| *n);
    let (first, more) = (present.next(), present.next().is_some());
    let kinds = match rule.matcher_kind() {
        Some(_) if !more => 1,
        _ => rule.matcher_kinds().len(),
    };
    match (first, more, kinds) {
        (None, _, _) => r.push(
            at,
            "a rule needs exactly one matcher (`exec`, `connect`, `stratum`, `open`, `scope`, `seccomp` or `behaviour`), found none",
        ),
        (Some(section), false, 0) => r.push(
            format!("{at}.{section}"),
            format!("empty matcher: `{section}` sets no key (see PROFILES.md for its keys)"),
        ),
        (Some(_), false, 1) => {}
        _ => r.push(
            at,
            format!(
                "a rule needs exactly one matcher, found {}",
                rule.matcher_kinds()
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
    if let Some(exec) = &rule.exec {
        check_exec(exec, at, r);
    }
    if let Some(connect) = &rule.connect {
        check_connect(connect, at, r);
    }
    if let Some(stratum) = &rule.stratum {
        if stratum.methods.len() > limits::MAX_METHODS {
            r.push(
                format!("{at}.stratum.methods"),
                format!(
                    "{} methods; the kernel holds at most {} per profile",
                    stratum.methods.len(),
                    limits::MAX_METHODS
                ),
            );
        }
        for (j, method) in stratum.methods.iter().enumerate() {
            if let Err(why) = check_method(method) {
                r.push(format!("{at}.stratum.methods[{j}]"), why);
            }
        }
        for (j, sig) in stratum.signatures.iter().enumerate() {
            let field = format!("{at}.stratum.signatures[{j}]");
            if sig.is_empty() {
                r.push(field, "signature must not be empty");
            } else if sig.len() > limits::MAX_PATTERN_BYTES {
                r.push(
                    field,
                    format!(
                        "signature is {} bytes; the kernel matcher holds at most {}",
                        sig.len(),
                        limits::MAX_PATTERN_BYTES
                    ),
                );
            }
        }
    }
    if let Some(open) = &rule.open {
        if !open.msr {
            r.push(format!("{at}.open"), "empty matcher: set `msr: true`");
        }
    }
    if let Some(scope) = &rule.scope {
        if !scope.escape {
            r.push(format!("{at}.scope"), "empty matcher: set `escape: true`");
        }
    }
    if let Some(seccomp) = &rule.seccomp {
        if rule.action == Action::KillContainer {
            r.push(
                format!("{at}.action"),
                "`kill-container` is not available on a seccomp rule: the filter acts inside the process and sends minerguard no event to kill the cgroup on; use `kill` (the filter's `kill_process` actions kill the process) or put `kill-container` on an exec, connect, stratum, open or scope rule",
            );
        }
        check_seccomp(seccomp, &format!("{at}.seccomp"), r);
    }
    if let Some(behaviour) = &rule.behaviour {
        check_behaviour(behaviour, &format!("{at}.behaviour"), r);
    }
}

/// Each threshold of a `behaviour` matcher within its documented range.
fn check_behaviour(b: &crate::profile::BehaviourMatch, at: &str, r: &mut Report) {
    let ranges = [
        ("window_secs", b.window_secs, 1, 3600),
        ("busy_percent", b.busy_percent, 1, 100),
        ("busy_threads", b.busy_threads, 1, 4096),
        ("anon_mib", b.anon_mib, 1, 1 << 20),
        ("throttled_window_secs", b.throttled_window_secs, 1, 3600),
        ("throttled_percent", b.throttled_percent, 0, 100),
        ("throttled_max_sleeps", b.throttled_max_sleeps, 0, 1_000_000),
        (
            "rhythm_max_bytes_per_sec",
            b.rhythm_max_bytes_per_sec,
            1,
            1 << 30,
        ),
        ("rhythm_max_quiet_secs", b.rhythm_max_quiet_secs, 1, 86_400),
    ];
    for (key, value, min, max) in ranges {
        if let Some(v) = value.filter(|v| !(min..=max).contains(v)) {
            r.push(
                format!("{at}.{key}"),
                format!("{key} is {v}; it must be {min}-{max}"),
            );
        }
    }
}

/// Checks each item of `at.key`; the field path is only formatted for a
/// problem (a 10,000-rule profile validates without building 10,000s of
/// strings).
fn each<'a>(
    items: &'a [String],
    at: &str,
    key: &str,
    r: &mut Report,
    problem: impl Fn(&'a str) -> Option<String>,
) {
    for (j, item) in items.iter().enumerate() {
        if let Some(p) = problem(item) {
            r.push(format!("{at}.{key}[{j}]"), p);
        }
    }
}

fn check_exec(exec: &ExecMatch, at: &str, r: &mut Report) {
    each(&exec.names, at, "exec.names", r, basename_problem);
    each(&exec.path_prefixes, at, "exec.path_prefixes", r, |p| {
        path_entry_problem(p).or_else(|| {
            // Matched in the kernel on whole path components, so a
            // prefix must name a whole directory.
            (!p.ends_with('/')).then(|| {
                format!("`{p}` must end with `/`: path prefixes name directories (e.g. `/tmp/`)")
            })
        })
    });
    each(&exec.files, at, "exec.files", r, |p| {
        absolute_problem(p, limits::MAX_PATH_BYTES)
    });
    each(&exec.dirs, at, "exec.dirs", r, path_entry_problem);
    each(
        &exec.allow_only,
        at,
        "exec.allow_only",
        r,
        path_entry_problem,
    );
    each(&exec.cmdline, at, "exec.cmdline", r, |s| {
        if s.len() < 4 {
            Some(format!(
                "`{s}` is {} bytes; cmdline substrings need at least 4 (the kernel indexes them by their first 4)",
                s.len()
            ))
        } else if s.len() > limits::MAX_PATTERN_BYTES {
            Some(format!(
                "substring is {} bytes; the kernel matcher holds at most {}",
                s.len(),
                limits::MAX_PATTERN_BYTES
            ))
        } else {
            None
        }
    });
}

fn check_connect(connect: &ConnectMatch, at: &str, r: &mut Report) {
    for (j, p) in connect.ports.iter().enumerate() {
        let field = || format!("{at}.connect.ports[{j}]");
        if p.first == 0 {
            r.push(field(), "port 0 is not a destination port (valid: 1-65535)");
        } else if p.first > p.last {
            r.push(
                field(),
                format!("range {p} is empty: the first port is above the last"),
            );
        }
    }
    each(&connect.cidrs, at, "connect.cidrs", r, cidr_problem);
    each(&connect.domains, at, "connect.domains", r, domain_problem);
}

fn check_seccomp(seccomp: &SeccompMatch, at: &str, r: &mut Report) {
    if seccomp.syscalls.is_empty() && seccomp.default.is_none() && seccomp.preset.is_none() {
        r.push(
            at,
            "empty matcher: set `default`, a `preset` or list `syscalls`",
        );
    }
    for action in seccomp.default.iter() {
        if let Some(p) = seccomp_action_problem(action) {
            r.push(format!("{at}.default"), p);
        }
    }
    // The first rule naming a syscall without arguments decides it; a later
    // argument-free rule with another action contradicts it.
    let mut decided: HashMap<&str, (usize, SeccompAction)> = HashMap::new();
    for (j, rule) in seccomp.syscalls.iter().enumerate() {
        let rat = format!("{at}.syscalls[{j}]");
        if rule.names.is_empty() {
            r.push(format!("{rat}.names"), "list at least one syscall");
        }
        if let Some(p) = seccomp_action_problem(&rule.action) {
            r.push(format!("{rat}.action"), p);
        }
        for (k, name) in rule.names.iter().enumerate() {
            let field = format!("{rat}.names[{k}]");
            if syscalls::number(name).is_none() {
                r.push(field, format!("unknown x86_64 syscall `{name}`"));
            } else if rule.args.is_empty() {
                match decided.get(name.as_str()) {
                    Some((first, action)) if *action != rule.action => r.push(
                        field,
                        format!(
                            "conflicting rules: `{name}` is already {action:?} in {at}.syscalls[{first}]"
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        decided.insert(name, (j, rule.action));
                    }
                }
            }
        }
        for (k, arg) in rule.args.iter().enumerate() {
            let field = format!("{rat}.args[{k}]");
            if arg.index > 5 {
                r.push(
                    format!("{field}.index"),
                    format!("argument index {} (valid: 0-5)", arg.index),
                );
            }
            match (arg.op, arg.mask) {
                (ArgOp::MaskedEq, None) => {
                    r.push(format!("{field}.mask"), "`masked_eq` needs a `mask`")
                }
                (op, Some(_)) if op != ArgOp::MaskedEq => r.push(
                    format!("{field}.mask"),
                    "`mask` only goes with `op: masked_eq`",
                ),
                _ => {}
            }
        }
    }
}

fn seccomp_action_problem(a: &SeccompAction) -> Option<String> {
    match a {
        SeccompAction::Errno(n) if *n > 4095 => Some(format!("errno {n} (valid: 0-4095)")),
        _ => None,
    }
}

/// Entries of the size-limited kernel maps, summed over the profile.
#[derive(Default)]
struct Totals {
    names: usize,
    paths: usize,
    ports: usize,
    cidrs: usize,
    domains: usize,
    /// Every stratum rule's signatures, each once (as compiled).
    signatures: Vec<String>,
}

impl Totals {
    fn add(&mut self, rule: &Rule) {
        if let Some(e) = &rule.exec {
            self.names += e.names.len();
            self.paths += e.dirs.len() + e.path_prefixes.len() + e.allow_only.len();
        }
        if let Some(c) = &rule.connect {
            self.ports += c.ports.iter().map(|p| p.len()).sum::<usize>();
            self.cidrs += c.cidrs.len();
            self.domains += c.domains.len();
        }
        if let Some(s) = &rule.stratum {
            for sig in &s.signatures {
                if !self.signatures.contains(sig) {
                    self.signatures.push(sig.clone());
                }
            }
        }
    }

    fn check(&self, r: &mut Report) {
        let limits = [
            ("exec names", self.names, limits::MAX_EXEC_NAMES),
            (
                "exec.dirs, path_prefixes and allow_only paths",
                self.paths,
                limits::MAX_PATH_ENTRIES,
            ),
            (
                "ports (ranges counted port by port)",
                self.ports,
                limits::MAX_PORTS,
            ),
            ("CIDRs", self.cidrs, limits::MAX_CIDRS),
            ("domains", self.domains, limits::MAX_DOMAINS),
        ];
        for (what, n, max) in limits {
            if n > max {
                r.push(
                    "rules",
                    format!("{n} {what} in all; the kernel maps hold {max}"),
                );
            }
        }
        self.check_signatures(r);
    }

    /// The signatures' automaton fits the kernel's map (each signature's
    /// own problems are reported with it).
    fn check_signatures(&self, r: &mut Report) {
        use crate::compile::signatures;
        if self.signatures.is_empty()
            || self
                .signatures
                .iter()
                .any(|s| s.is_empty() || s.len() > limits::MAX_PATTERN_BYTES)
        {
            return;
        }
        let sigs: Vec<&[u8]> = self.signatures.iter().map(|s| s.as_bytes()).collect();
        match signatures::steps(&sigs) {
            Err(e) => r.push("rules", format!("stratum.signatures: {e}")),
            Ok(steps) if steps.len() > limits::MAX_SIGNATURE_STEPS => r.push(
                "rules",
                format!(
                    "stratum.signatures: {} signatures ({} bytes) compile to {} kernel steps; at most {} (fewer or shorter signatures, or fewer distinct first bytes)",
                    sigs.len(),
                    sigs.iter().map(|s| s.len()).sum::<usize>(),
                    steps.len(),
                    limits::MAX_SIGNATURE_STEPS
                ),
            ),
            Ok(_) => {}
        }
    }
}

fn basename_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("basename must not be empty".into())
    } else if name.contains('/') {
        Some(format!("`{name}` contains `/`: exec.names matches basenames only (use exec.path_prefixes or exec.files for paths)"))
    } else if name.contains('\0') {
        Some("basename contains a NUL byte".into())
    } else if name == "." || name == ".." {
        Some(format!("`{name}` is not a file name"))
    } else if name.len() > limits::MAX_NAME_BYTES {
        Some(format!(
            "`{name}` is {} bytes; the kernel map key holds at most {}",
            name.len(),
            limits::MAX_NAME_BYTES
        ))
    } else {
        None
    }
}

fn absolute_problem(path: &str, max: usize) -> Option<String> {
    if !path.starts_with('/') {
        Some(format!("`{path}` is not an absolute path"))
    } else if path.contains('\0') {
        Some("path contains a NUL byte".into())
    } else if path.len() > max {
        Some(format!("path is {} bytes; at most {max}", path.len()))
    } else {
        None
    }
}

/// A path matched in the kernel on the path from the task's root
/// (exec.dirs, exec.path_prefixes, exec.allow_only): absolute, with no
/// component the kernel's path never has (`.`, `..`, an empty one), and
/// short enough for a key of the path map.
fn path_entry_problem(path: &str) -> Option<String> {
    if let Some(p) = absolute_problem(path, limits::MAX_PATH_BYTES) {
        return Some(p);
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed
        .split('/')
        .skip(1)
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Some(format!(
            "`{path}` has an empty, `.` or `..` component: write the path as the kernel sees it (e.g. `/usr/bin`)"
        ));
    }
    let max = limits::MAX_PATH_ENTRY_BYTES;
    (trimmed.len() > max).then(|| {
        format!(
            "path is {} bytes without its trailing `/`; directory and allow-list paths may have at most {max}",
            trimmed.len()
        )
    })
}

fn cidr_problem(cidr: &str) -> Option<String> {
    let Some((ip, len)) = crate::compile::parse_cidr(cidr) else {
        return Some(match cidr.split_once('/') {
            Some((a, _)) if a.parse::<IpAddr>().is_ok() => {
                let bits = if a.contains(':') { 128 } else { 32 };
                format!("`{cidr}`: prefix length must be 0-{bits}")
            }
            _ => format!("`{cidr}` is not an IPv4 or IPv6 network (e.g. 203.0.113.0/24)"),
        });
    };
    let (raw, bits): (u128, u32) = match ip {
        IpAddr::V4(v4) => (u32::from(v4).into(), 32),
        IpAddr::V6(v6) => (v6.into(), 128),
    };
    let host_bits = bits - u32::from(len);
    let host_mask = if host_bits == 0 {
        0
    } else {
        (1u128 << host_bits) - 1
    };
    if raw & host_mask != 0 {
        return Some(format!(
            "`{cidr}` has host bits set below the /{len} prefix; write the network address"
        ));
    }
    None
}

fn domain_problem(domain: &str) -> Option<String> {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    if d.starts_with("*.") {
        return Some(format!(
            "`{domain}`: wildcards cannot be resolved; list the names"
        ));
    }
    if d.is_empty() || d.len() > 253 {
        return Some(format!(
            "`{domain}` is not a domain name (1-253 characters)"
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if d.split('.').all(label_ok) {
        None
    } else {
        Some(format!("`{domain}` is not a valid domain name"))
    }
}

/// A `stratum.methods` entry: a JSON-RPC method name the kernel reader can
/// hold (MG_METHOD_LEN - 1 bytes of printable ASCII), or `word.*`.
fn check_method(method: &str) -> Result<(), String> {
    let max = limits::MAX_METHOD_BYTES;
    if method.is_empty() {
        return Err("method must not be empty".into());
    }
    if method.len() > max {
        return Err(format!(
            "method is {} bytes; the kernel reader holds at most {max}",
            method.len()
        ));
    }
    if let Some(bad) = method
        .chars()
        .find(|c| !c.is_ascii_graphic() || *c == '"' || *c == '\\')
    {
        return Err(format!(
            "method has {bad:?}: only printable ASCII without quotes or backslashes"
        ));
    }
    if let Some(star) = method.find('*') {
        let stem = &method[..star];
        let is_prefix = star == method.len() - 1
            && stem.ends_with('.')
            && stem.len() > 1
            && stem.matches('.').count() == 1;
        if !is_prefix {
            return Err("`*` only ends a prefix of one word and a dot (`mining.*`)".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratum_methods() {
        for ok in ["mining.*", "login", "eth_submitLogin", &"m".repeat(31)] {
            assert_eq!(check_method(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            (&"m".repeat(32)[..], "at most 31"),
            ("a\"b", "printable ASCII"),
            ("mining .x", "printable ASCII"),
            ("mining*", "`*` only"),
            ("a.b.*", "`*` only"),
            ("*", "`*` only"),
            ("min*ing.", "`*` only"),
        ] {
            let err = check_method(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn stratum_signatures_must_fit_the_kernel_automaton() {
        use crate::profile::{Profile, Rule};
        let problems = |sigs: Vec<String>| -> Vec<String> {
            let p = Profile::new("p").rule(Rule::stratum("s", Action::Deny, sigs));
            check(&p).into_iter().map(|d| d.to_string()).collect()
        };
        assert!(problems(vec!["cn-proto/7".into(), "nicehash".into()]).is_empty());
        // Each problem once, with its field.
        let empty = problems(vec!["x".into(), String::new()]);
        assert_eq!(empty.len(), 1, "{empty:?}");
        assert!(empty[0].contains("signatures[1]"), "{empty:?}");
        let many = problems((0..256).map(|i| format!("sig-{i:03}")).collect());
        assert_eq!(many.len(), 1, "{many:?}");
        assert!(many[0].contains("256 signatures; at most 255"), "{many:?}");
        // 200 signatures of 40 bytes, each starting with its own byte: every
        // state needs a step for each of 200 first bytes.
        let wide = problems(
            (0..200u8)
                .map(|i| {
                    format!(
                        "{}{}",
                        char::from(b'0' + i % 75),
                        "x".repeat(39) + &i.to_string()
                    )
                })
                .collect(),
        );
        assert_eq!(wide.len(), 1, "{wide:?}");
        assert!(wide[0].contains("kernel steps; at most 8192"), "{wide:?}");
    }

    #[test]
    fn cidrs() {
        assert_eq!(cidr_problem("203.0.113.0/24"), None);
        assert_eq!(cidr_problem("2001:db8::/32"), None);
        assert_eq!(cidr_problem("10.1.2.3"), None);
        assert_eq!(cidr_problem("0.0.0.0/0"), None);
        assert!(cidr_problem("10.0.0.1/8").unwrap().contains("host bits"));
        assert!(cidr_problem("10.0.0.0/33").unwrap().contains("0-32"));
        assert!(cidr_problem("nope/8").unwrap().contains("not an IPv4"));
        assert!(cidr_problem("2001:db8::1/32")
            .unwrap()
            .contains("host bits"));
    }

    #[test]
    fn domains() {
        assert_eq!(domain_problem("pool.supportxmr.com"), None);
        assert_eq!(domain_problem("xmr-eu1.nanopool.org."), None);
        assert!(domain_problem("*.nicehash.com").is_some());
        assert!(domain_problem("bad..name").is_some());
        assert!(domain_problem("-x.com").is_some());
        assert!(domain_problem("a b.com").is_some());
    }
}
