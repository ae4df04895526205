//! Profile → [`KernelPolicy`] (the exact map entries every backend writes)
//! and → [`SeccompPolicy`].
//!
//! Pure and deterministic (same profile, same entries, in the same order), and
//! independent of the running kernel, so it is unit-tested without root.

mod domains;
mod seccomp;
pub mod signatures;
mod strongest;

use std::{collections::BTreeMap, net::IpAddr, os::unix::fs::MetadataExt, sync::Arc};

pub use domains::DomainResolution;
pub use seccomp::{SeccompEntry, SeccompPolicy};
use strongest::Strongest;

use crate::events::StratumSignature;

use crate::profile::{
    Action, Diagnostic, Matcher, MatcherKind, Mode, Profile, ProfileError, ValidProfile,
};

/// Sizes of the kernel maps (bpf/include/maps.h and event.h); profiles are
/// validated against them so an apply never fails half-way on a full map.
/// The kernel's figures come from its BTF (`backend::abi`), not copies.
pub mod limits {
    use crate::backend::abi;

    /// Longest exec basename, in bytes (MG_NAME_LEN - 1 for the NUL).
    pub const MAX_NAME_BYTES: usize = abi::NAME_LEN - 1;
    /// Rules in one profile (far above any hand-written one; keeps a
    /// generated profile's compile and apply within milliseconds).
    pub const MAX_RULES: usize = 16384;
    /// Entries of the shared `mg_exec_names` map; one profile may use half,
    /// so an update can write its new entries before dropping the old ones.
    pub const MAX_EXEC_NAMES: usize = abi::EXEC_NAMES_ENTRIES / 2;
    /// Entries of the shared `mg_ports` map, halved as above.
    pub const MAX_PORTS: usize = abi::PORTS_ENTRIES / 2;
    /// CIDRs in one profile (the tries' size).
    pub const MAX_CIDRS: usize = abi::CIDRS_ENTRIES;
    /// Domains in one profile.
    pub const MAX_DOMAINS: usize = 4096;
    /// Longest path in path matchers (MG_PATH_LEN - 1).
    pub const MAX_PATH_BYTES: usize = abi::PATH_LEN - 1;
    /// Longest exec.dirs / path_prefixes / allow_only path without its
    /// trailing `/` (MG_PREFIX_LEN - 1: the kernel compares whole keys).
    pub const MAX_PATH_ENTRY_BYTES: usize = abi::PREFIX_LEN - 1;
    /// exec.dirs, path_prefixes and allow_only paths of one profile: a
    /// quarter of `mg_exec_paths`, as each may add a host alias and an
    /// update writes its entries before dropping the old ones.
    pub const MAX_PATH_ENTRIES: usize = abi::PATHS_ENTRIES / 4;
    /// Longest `stratum.methods` entry (MG_METHOD_LEN - 1 for the NUL).
    pub const MAX_METHOD_BYTES: usize = abi::METHOD_LEN - 1;
    /// Mining methods of one profile, halved as the exec names are.
    pub const MAX_METHODS: usize = abi::METHODS_ENTRIES / 2;
    /// Longest byte pattern (cmdline substring, Stratum signature).
    pub const MAX_PATTERN_BYTES: usize = abi::PATTERN_LEN;
    /// `stratum.signatures` of one profile (an event numbers them in a
    /// byte).
    pub const MAX_SIGNATURES: usize = super::signatures::MAX_SIGNATURES;
    /// Steps of one profile's signature automaton (about one per signature
    /// byte per distinct first byte of all its signatures): half of
    /// `mg_stratum_sigs`, as an update writes its new steps before
    /// dropping the old ones.
    pub const MAX_SIGNATURE_STEPS: usize = abi::SIGS_ENTRIES / 2;
    /// exec.cmdline substrings that may share their first 4 bytes
    /// (MG_BUCKET_SIZE).
    pub const MAX_PATTERNS_PER_PREFIX: usize = abi::BUCKET_SIZE;
    /// Bytes of a new program's argv searched for exec.cmdline substrings
    /// (MG_ARGV_MAX, 256 KiB). In a scope with cmdline rules, an argv longer
    /// than this is matched as the strongest cmdline rule.
    pub const MAX_CMDLINE_ARGV_BYTES: usize = abi::ARGV_MAX;
}

/// What kind of operation a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// Program execution.
    Exec,
    /// Outbound connection.
    Connect,
    /// The first bytes a socket sends.
    Stratum,
    /// File opens.
    Open,
    /// System calls, through seccomp.
    Seccomp,
    /// A task leaving its scope (cgroup moves, clones into a cgroup).
    Scope,
    /// Mining behaviour, judged by sampling the scope's processes
    /// ([`crate::behaviour`]), not by a BPF program.
    Behaviour,
}

impl RuleKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Exec => "exec",
            RuleKind::Connect => "connect",
            RuleKind::Stratum => "stratum",
            RuleKind::Open => "open",
            RuleKind::Seccomp => "seccomp",
            RuleKind::Scope => "scope",
            RuleKind::Behaviour => "behaviour",
        }
    }

    /// The operation a matcher kind belongs to.
    pub fn of(m: MatcherKind) -> Self {
        use MatcherKind::*;
        match m {
            ExecNames | ExecPathPrefixes | ExecFiles | ExecDirs | ExecMemfd | ExecDrift
            | ExecCmdline | ExecAllowOnly | ExecNoNewExec => RuleKind::Exec,
            ConnectPorts | ConnectCidrs | ConnectDomains => RuleKind::Connect,
            Stratum => RuleKind::Stratum,
            OpenMsr => RuleKind::Open,
            ScopeEscape => RuleKind::Scope,
            Seccomp => RuleKind::Seccomp,
            Behaviour => RuleKind::Behaviour,
        }
    }
}

/// A rule as the kernel sees it: its index in the profile and effective action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRef {
    /// Index into [`KernelPolicy::rules`].
    pub rule_idx: u32,
    /// The action after the profile mode is applied.
    pub action: Action,
}

/// Userspace facts about one rule, for naming it in events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledRule {
    /// Rule name.
    pub name: Arc<str>,
    /// What it matches.
    pub kind: RuleKind,
    /// Its matcher.
    pub matcher: MatcherKind,
    /// Effective action.
    pub action: Action,
}

/// A compiled profile: the map entries for one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPolicy {
    /// Profile name.
    pub profile: Arc<str>,
    /// Rules in profile order.
    pub rules: Vec<CompiledRule>,
    /// `exec.names` entries: basename → rule.
    pub exec_names: BTreeMap<String, RuleRef>,
    /// `connect.ports` entries: port → rule.
    pub ports: BTreeMap<u16, RuleRef>,
    /// `connect.cidrs` IPv4 entries: (network, prefix length) → rule.
    pub cidrs4: BTreeMap<([u8; 4], u8), RuleRef>,
    /// `connect.cidrs` IPv6 entries: (network, prefix length) → rule.
    pub cidrs6: BTreeMap<([u8; 16], u8), RuleRef>,
    /// The `stratum` rule (the strongest, earliest among equals).
    pub stratum: Option<RuleRef>,
    /// The mining methods the stratum rules refuse (every stratum rule's
    /// list, lower case), with the family each is reported as.
    pub stratum_methods: BTreeMap<String, StratumSignature>,
    /// The byte strings the stratum rules look for (every stratum rule's
    /// `signatures`, each once, in profile order): numbered by position in
    /// the kernel's automaton and its events.
    pub stratum_signatures: Vec<String>,
    /// The `exec.memfd` rule (the strongest, earliest among equals).
    pub memfd: Option<RuleRef>,
    /// The `exec.drift` rule (the strongest, earliest among equals).
    pub drift: Option<RuleRef>,
    /// The `scope.escape` rule (the strongest, earliest among equals).
    pub escape: Option<RuleRef>,
    /// The `open.msr` rule (the strongest, earliest among equals).
    pub msr: Option<RuleRef>,
    /// `exec.cmdline` substrings → rule. ASCII lower case: the kernel
    /// lowercases argv before it searches, so matching ignores ASCII case
    /// (XMRig takes `STRATUM+TCP://` as well).
    pub cmdline: BTreeMap<String, RuleRef>,
    /// `exec.files` paths → rule (resolved to inodes at apply).
    pub exec_files: BTreeMap<String, RuleRef>,
    /// `exec.dirs` and `exec.path_prefixes` directories → rule, matched in
    /// the kernel on the path from the executing task's root (a container's
    /// `/tmp` for a task in it).
    pub exec_dirs: BTreeMap<String, RuleRef>,
    /// `connect.domains` → rule (resolved to addresses at apply).
    pub domains: BTreeMap<String, RuleRef>,
    /// The `exec.allow_only` rule (the strongest, earliest among equals):
    /// what an exec no allow entry covers matches.
    pub allow_only: Option<RuleRef>,
    /// `exec.allow_only` entries (the union of every such rule): path →
    /// whether it is a prefix (a directory, written with a trailing `/`).
    pub exec_allow: BTreeMap<String, bool>,
    /// The `exec.no_new_exec` rule (the strongest, earliest among equals).
    pub no_new_exec: Option<RuleRef>,
    /// Resolved domain addresses → their domain, filled by
    /// [`KernelPolicy::resolve_domains`] (their entries are in `cidrs4/6`).
    pub domain_addresses: BTreeMap<IpAddr, Arc<str>>,
    /// The (device, inode) entries of `exec_files`, filled by
    /// [`KernelPolicy::resolve_inodes`] (empty after `compile`, which does
    /// not touch the filesystem).
    pub inodes: Vec<InodeEntry>,
    /// Host aliases of `exec_dirs` and `exec_allow` paths (the path → where
    /// it leads on this host, when a symlink makes that differ, e.g. `/bin`
    /// → `/usr/bin`), filled by [`KernelPolicy::resolve_inodes`]: the
    /// kernel sees the resolved path, so both are entries.
    pub path_aliases: BTreeMap<String, String>,
    /// Whether a `behaviour` rule counts tuning attempts (the open
    /// tracepoints of bpf/tuning_tp.bpf.c are then loaded).
    pub count_tuning: bool,
}

/// What an entry of the kernel's path map (`mg_exec_paths`) stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathKind {
    /// `exec.dirs` / `exec.path_prefixes`: anything under the directory.
    Dir,
    /// `exec.allow_only`: the file itself is allowed.
    AllowFile,
    /// `exec.allow_only` prefix: anything under the directory is allowed.
    AllowDir,
}

/// One entry of the kernel's path map: a path from the task's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathEntry {
    /// The path, absolute, without a trailing `/` (`/` itself is `/`).
    pub path: String,
    /// What the entry stands for.
    pub kind: PathKind,
    /// The rule.
    pub rule: RuleRef,
}

/// An `exec.files` file resolved for the kernel's inode map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InodeEntry {
    /// Device, in the kernel's encoding (`major << 20 | minor`).
    pub dev: u32,
    /// Inode number.
    pub ino: u64,
    /// The rule.
    pub rule: RuleRef,
}

impl KernelPolicy {
    /// Validates and compiles `profile` (see [`KernelPolicy::from_valid`]).
    pub fn compile(profile: &Profile) -> Result<Self, ProfileError> {
        if profile.rules.len() >= PARALLEL_VALIDATION_RULES {
            // Validated on a second thread while this one builds the
            // entries; they are only used when the profile is valid.
            let (valid, policy) = crate::parallel::on_two_threads(
                || profile.validate().map(|_| ()),
                || Self::build(profile),
            );
            valid?;
            return policy.checked();
        }
        Self::from_valid(&profile.validate()?)
    }

    /// Compiles a validated profile into map entries; it is not validated
    /// again. Fails only on what the entries themselves show: too many
    /// cmdline patterns sharing a prefix, or rules that can never fire.
    ///
    /// When two rules match the same key, the stronger action wins
    /// (kill-container > kill > deny > audit), and the earlier rule among equals.
    pub fn from_valid(profile: &ValidProfile<'_>) -> Result<Self, ProfileError> {
        Self::build(profile.profile()).checked()
    }

    /// The checks only the built entries can make.
    fn checked(self) -> Result<Self, ProfileError> {
        let crowded = self.crowded_cmdline_prefixes();
        if !crowded.is_empty() {
            return Err(ProfileError::Invalid {
                file: None,
                diagnostics: crowded,
            });
        }
        let dead = self.rules_that_never_fire();
        if !dead.is_empty() {
            return Err(ProfileError::Invalid {
                file: None,
                diagnostics: dead,
            });
        }
        Ok(self)
    }

    /// The entries of `profile`, which may not have been validated yet:
    /// nothing here panics or grows without bound on a bad rule (it is
    /// skipped; validation reports it).
    fn build(profile: &Profile) -> Self {
        let effective = |a: Action| match profile.mode {
            Mode::Audit => Action::Audit,
            Mode::Enforce => a,
        };
        let mut policy = KernelPolicy {
            profile: profile.name.as_str().into(),
            rules: Vec::with_capacity(profile.rules.len()),
            exec_names: BTreeMap::new(),
            ports: BTreeMap::new(),
            cidrs4: BTreeMap::new(),
            cidrs6: BTreeMap::new(),
            stratum: None,
            stratum_methods: BTreeMap::new(),
            stratum_signatures: Vec::new(),
            memfd: None,
            drift: None,
            escape: None,
            msr: None,
            cmdline: BTreeMap::new(),
            exec_files: BTreeMap::new(),
            exec_dirs: BTreeMap::new(),
            domains: BTreeMap::new(),
            domain_addresses: BTreeMap::new(),
            inodes: Vec::new(),
            path_aliases: BTreeMap::new(),
            allow_only: None,
            exec_allow: BTreeMap::new(),
            no_new_exec: None,
            count_tuning: false,
        };
        let mut exec_names = Strongest::new();
        let mut ports = Strongest::new();
        let mut cidrs4 = Strongest::new();
        let mut cidrs6 = Strongest::new();
        for (i, rule) in profile.rules.iter().enumerate() {
            let r = RuleRef {
                rule_idx: i as u32,
                action: effective(rule.action),
            };
            let Some(matcher) = rule.matcher() else {
                continue;
            };
            // No `_` arm: a new matcher does not build until it is
            // compiled here.
            match matcher {
                Matcher::ExecNames(names) => {
                    for name in names {
                        exec_names.push(name.clone(), r);
                    }
                }
                Matcher::ConnectPorts(specs) => {
                    for port in specs.iter().flat_map(|p| p.ports()) {
                        // A range expands port by port: stop past the
                        // limit validation enforces.
                        if ports.len() > limits::MAX_PORTS {
                            break;
                        }
                        ports.push(port, r);
                    }
                }
                Matcher::ConnectCidrs(cidrs) => {
                    for cidr in cidrs {
                        match parse_cidr(cidr) {
                            Some((IpAddr::V4(a), len)) => cidrs4.push((a.octets(), len), r),
                            Some((IpAddr::V6(a), len)) => cidrs6.push((a.octets(), len), r),
                            None => {}
                        }
                    }
                }
                // One switch each: the strongest rule (the earlier among
                // equals) holds it.
                Matcher::Stratum(m) => {
                    keep_strongest(&mut policy.stratum, r);
                    for method in m.effective_methods() {
                        let method = method.to_ascii_lowercase();
                        let family = stratum_family(&method);
                        policy.stratum_methods.insert(method, family);
                    }
                    for sig in &m.signatures {
                        if !policy.stratum_signatures.contains(sig) {
                            policy.stratum_signatures.push(sig.clone());
                        }
                    }
                }
                Matcher::ExecMemfd => keep_strongest(&mut policy.memfd, r),
                Matcher::ExecDrift => keep_strongest(&mut policy.drift, r),
                Matcher::ScopeEscape => keep_strongest(&mut policy.escape, r),
                Matcher::OpenMsr => keep_strongest(&mut policy.msr, r),
                Matcher::ExecNoNewExec => keep_strongest(&mut policy.no_new_exec, r),
                Matcher::ExecAllowOnly(allowed) => {
                    keep_strongest(&mut policy.allow_only, r);
                    for p in allowed {
                        let is_prefix = p.ends_with('/');
                        let path = if is_prefix {
                            normalize_dir(p)
                        } else {
                            p.clone()
                        };
                        policy.exec_allow.insert(path, is_prefix);
                    }
                }
                Matcher::ExecCmdline(patterns) => {
                    for c in patterns {
                        insert_strongest(&mut policy.cmdline, c.to_ascii_lowercase(), r);
                    }
                }
                Matcher::ConnectDomains(domains) => {
                    for d in domains {
                        let d = d.trim_end_matches('.').to_ascii_lowercase();
                        insert_strongest(&mut policy.domains, d, r);
                    }
                }
                Matcher::ExecFiles(files) => {
                    for f in files {
                        insert_strongest(&mut policy.exec_files, f.clone(), r);
                    }
                }
                Matcher::ExecDirs(dirs) | Matcher::ExecPathPrefixes(dirs) => {
                    for d in dirs {
                        insert_strongest(&mut policy.exec_dirs, normalize_dir(d), r);
                    }
                }
                // Not a kernel map entry: the seccomp compiler builds the
                // filter (SeccompPolicy); the rule is kept below so events
                // and reports can name it.
                Matcher::Seccomp(_) => {}
                // Not a kernel map entry either: the behaviour detector
                // samples the scope (crate::behaviour). Its tuning signal
                // needs the kernel's counter loaded.
                Matcher::Behaviour(b) => {
                    policy.count_tuning |= crate::behaviour::Thresholds::from(b).count_tuning;
                }
            }
            let matcher = matcher.kind();
            policy.rules.push(CompiledRule {
                name: rule.name.as_str().into(),
                kind: RuleKind::of(matcher),
                matcher,
                action: r.action,
            });
        }
        policy.exec_names = exec_names.into_map();
        policy.ports = ports.into_map();
        policy.cidrs4 = cidrs4.into_map();
        policy.cidrs6 = cidrs6.into_map();
        policy
    }

    /// `exec.cmdline` patterns grouped by their first 4 bytes, in pattern
    /// order (ids are positions in `cmdline`): the kernel's prefix buckets.
    pub fn cmdline_buckets(&self) -> BTreeMap<[u8; 4], Vec<u32>> {
        let mut buckets: BTreeMap<[u8; 4], Vec<u32>> = BTreeMap::new();
        for (id, pattern) in self.cmdline.keys().enumerate() {
            let b = pattern.as_bytes();
            buckets
                .entry([b[0], b[1], b[2], b[3]])
                .or_default()
                .push(id as u32);
        }
        buckets
    }

    /// The strongest `exec.cmdline` rule (earliest among equals): what an
    /// argv longer than the kernel searches (`MG_ARGV_MAX`) is matched as,
    /// so that padding argv past the bound does not let a pattern through.
    pub fn strongest_cmdline(&self) -> Option<RuleRef> {
        self.cmdline
            .values()
            .copied()
            .max_by(|a, b| (a.action.cmp(&b.action)).then_with(|| b.rule_idx.cmp(&a.rule_idx)))
    }

    /// More patterns share a 4-byte prefix than a kernel bucket holds.
    fn crowded_cmdline_prefixes(&self) -> Vec<Diagnostic> {
        self.cmdline_buckets()
            .iter()
            .filter(|(_, ids)| ids.len() > limits::MAX_PATTERNS_PER_PREFIX)
            .map(|(prefix, ids)| {
                Diagnostic::new(
                    "rules",
                    format!(
                        "{} exec.cmdline substrings start with `{}`; at most {} may share their first 4 bytes",
                        ids.len(),
                        String::from_utf8_lossy(prefix),
                        limits::MAX_PATTERNS_PER_PREFIX
                    ),
                )
            })
            .collect()
    }

    /// Rules whose every entry is taken by another rule with an equal or
    /// stronger action (earlier among equals): they can never fire.
    fn rules_that_never_fire(&self) -> Vec<Diagnostic> {
        let mut owns = vec![false; self.rules.len()];
        let owners = self.exec_names.values().chain(self.ports.values());
        for r in owners
            .chain(self.cidrs4.values())
            .chain(self.cidrs6.values())
        {
            owns[r.rule_idx as usize] = true;
        }
        self.rules
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                matches!(
                    r.matcher,
                    MatcherKind::ExecNames | MatcherKind::ConnectPorts | MatcherKind::ConnectCidrs
                ) && !owns[*i]
            })
            .map(|(i, r)| {
                Diagnostic::new(
                    format!("rules[{i}]"),
                    format!(
                        "rule `{}` can never fire: every {} it lists is matched by another rule with an equal or stronger action",
                        r.name,
                        match r.matcher {
                            MatcherKind::ExecNames => "name",
                            MatcherKind::ConnectPorts => "port",
                            _ => "network",
                        }
                    ),
                )
            })
            .collect()
    }

    /// Rules whose matcher kind is not in `supported`.
    pub fn rules_outside(&self, supported: &[MatcherKind]) -> Vec<&CompiledRule> {
        self.rules
            .iter()
            .filter(|r| !supported.contains(&r.matcher))
            .collect()
    }

    /// Resolves `exec.files` to (device, inode) through the filesystem,
    /// following symlinks, and finds the host aliases of the `exec.dirs`,
    /// `exec.path_prefixes` and `exec.allow_only` paths
    /// ([`KernelPolicy::path_aliases`]). A missing file named by
    /// `exec.files` is an error (a rule naming a file that is not there is
    /// most likely wrong). Directory and allow-list paths need not exist on
    /// the host: they are matched on the path from the executing task's root,
    /// which for a container is the container's own tree; where they exist,
    /// a file where a directory is meant (and the reverse) is reported.
    pub fn resolve_inodes(&mut self) -> Result<(), ProfileError> {
        let mut problems = Vec::new();
        self.path_aliases.clear();
        let allow_rule = self.allow_only;
        let allow = allow_rule
            .iter()
            .flat_map(|r| self.exec_allow.iter().map(move |(p, pre)| (p, *r, *pre)));
        let paths = (self.exec_dirs.iter().map(|(p, r)| (p, *r, true))).chain(allow);
        for (path, rule, is_dir) in paths {
            let field = if self.exec_allow.contains_key(path) && Some(rule) == allow_rule {
                "exec.allow_only"
            } else {
                "exec"
            };
            let at = format!("rules[{}].{field}", rule.rule_idx);
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            if is_dir && !meta.is_dir() {
                problems.push(Diagnostic::new(at, format!("`{path}` is not a directory")));
                continue;
            }
            if !is_dir && meta.is_dir() {
                problems.push(Diagnostic::new(
                    at,
                    format!(
                        "`{path}` is a directory: write `{path}/` to allow everything under it"
                    ),
                ));
                continue;
            }
            if let Ok(real) = std::fs::canonicalize(path) {
                let real = real.to_string_lossy().into_owned();
                if real != *path && real.len() <= limits::MAX_PATH_ENTRY_BYTES {
                    self.path_aliases.insert(path.clone(), real);
                }
            }
        }
        if self.exec_files.is_empty() {
            // Nothing to resolve: skip reading the mount table.
            self.inodes.clear();
            return finish(problems);
        }
        let mut entries = Vec::new();
        // The kernel sees the superblock's device, which stat() does not
        // always report (overlayfs gives the upper layer's): take it from
        // the mount that holds the path.
        let mounts = match crate::mountinfo::read() {
            Ok(mounts) => mounts,
            Err(e) => {
                // Without it an overlayfs file would get stat()'s device
                // and never match: refuse rather than enforce that.
                let rules: std::collections::BTreeSet<_> =
                    self.exec_files.values().map(|r| r.rule_idx).collect();
                for idx in rules {
                    problems.push(Diagnostic::new(
                        format!("rules[{idx}].exec.files"),
                        format!("cannot read /proc/self/mountinfo to find the files' devices: {e}"),
                    ));
                }
                return finish(problems);
            }
        };
        let dev_of = |path: &str, st_dev: u64| {
            std::fs::canonicalize(path)
                .ok()
                .and_then(|p| crate::mountinfo::mount_of(&mounts, &p).map(|m| m.kernel_dev))
                .unwrap_or_else(|| kernel_dev(st_dev))
        };
        for (path, rule) in &self.exec_files {
            let at = format!("rules[{}].exec.files", rule.rule_idx);
            match std::fs::metadata(path) {
                Ok(meta) => entries.push(InodeEntry {
                    dev: dev_of(path, meta.dev()),
                    ino: meta.ino(),
                    rule: *rule,
                }),
                Err(e) => {
                    problems.push(Diagnostic::new(at, format!("cannot resolve `{path}`: {e}")))
                }
            }
        }
        // Two paths may name one inode (hard links, symlinks): strongest wins.
        entries.sort_by_key(|e| {
            (
                e.dev,
                e.ino,
                std::cmp::Reverse(e.rule.action),
                e.rule.rule_idx,
            )
        });
        entries.dedup_by_key(|e| (e.dev, e.ino));
        self.inodes = entries;
        finish(problems)
    }

    /// The kernel's path entries: every `exec.dirs` / `exec.path_prefixes`
    /// directory and, with an `exec.allow_only` rule, every allow-list path,
    /// each also under its host alias ([`KernelPolicy::path_aliases`]). The
    /// strongest rule wins where two name one path.
    pub fn path_entries(&self) -> Vec<PathEntry> {
        let mut out: BTreeMap<(String, PathKind), RuleRef> = BTreeMap::new();
        let mut add = |path: &str, kind: PathKind, rule: RuleRef| {
            let names =
                std::iter::once(path).chain(self.path_aliases.get(path).map(|a| a.as_str()));
            for name in names {
                out.entry((name.to_string(), kind))
                    .and_modify(|r| {
                        if (rule.action, std::cmp::Reverse(rule.rule_idx))
                            > (r.action, std::cmp::Reverse(r.rule_idx))
                        {
                            *r = rule;
                        }
                    })
                    .or_insert(rule);
            }
        };
        for (path, rule) in &self.exec_dirs {
            add(path, PathKind::Dir, *rule);
        }
        if let Some(rule) = self.allow_only {
            for (path, is_prefix) in &self.exec_allow {
                let kind = if *is_prefix {
                    PathKind::AllowDir
                } else {
                    PathKind::AllowFile
                };
                add(path, kind, rule);
            }
        }
        out.into_iter()
            .map(|((path, kind), rule)| PathEntry { path, kind, rule })
            .collect()
    }

    /// The rule an exec matches when its path cannot be built in the kernel
    /// (nested deeper or longer than the walk goes): the strongest
    /// `exec.dirs` / `exec.path_prefixes` rule, the earliest among equals.
    pub fn deep_path_rule(&self) -> Option<RuleRef> {
        self.exec_dirs
            .values()
            .copied()
            .max_by_key(|r| (r.action, std::cmp::Reverse(r.rule_idx)))
    }

    /// Whether an executable mapping of a file can match (loader exec:
    /// mappings are judged by the rules that judge an exec of the same file
    /// by itself: names, resolved files, directories, fileless; not the
    /// allow-list). Call after [`KernelPolicy::resolve_inodes`].
    pub fn judges_mapped_files(&self) -> bool {
        !self.exec_names.is_empty()
            || self.memfd.is_some()
            || self.drift.is_some()
            || !self.inodes.is_empty()
            || !self.exec_dirs.is_empty()
    }

    /// Whether any rule of this kind is present.
    pub fn has(&self, kind: RuleKind) -> bool {
        self.rules.iter().any(|r| r.kind == kind)
    }
}

/// From this many rules on, validation runs on a second thread while the
/// entries are built (each takes about a millisecond per 10,000 rules; a
/// thread costs ~50 µs).
const PARALLEL_VALIDATION_RULES: usize = 2048;

/// A directory path without trailing slashes (`/tmp/` and `/tmp` are one).
fn normalize_dir(d: &str) -> String {
    let t = d.trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.into()
    }
}

/// `Ok` when nothing was reported, else every problem at once.
fn finish(problems: Vec<Diagnostic>) -> Result<(), ProfileError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ProfileError::Invalid {
            file: None,
            diagnostics: problems,
        })
    }
}

/// userspace `st_dev` → the kernel's `s_dev` (`major << 20 | minor`).
fn kernel_dev(st_dev: u64) -> u32 {
    let (major, minor) = (libc::major(st_dev), libc::minor(st_dev));
    (major << 20) | (minor & 0xfffff)
}

/// `a.b.c.d/n`, `x::y/n` or a bare address (full-length prefix).
pub(crate) fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.parse::<u8>().ok().filter(|l| *l <= bits)?,
        None => bits,
    };
    Some((ip, len))
}

/// Sets a profile-wide switch to `r` unless a rule at least as strong
/// holds it already (kill-container > kill > deny > audit; the earlier among equals).
fn keep_strongest(slot: &mut Option<RuleRef>, r: RuleRef) {
    if slot.map_or(true, |s| r.action > s.action) {
        *slot = Some(r);
    }
}

fn insert_strongest<K: Ord>(map: &mut BTreeMap<K, RuleRef>, key: K, r: RuleRef) {
    let entry = map.entry(key).or_insert(r);
    if r.action > entry.action {
        *entry = r;
    }
}

/// The family a mining method is reported as (by the built-in lists'
/// sources, see `indicators::STRATUM_METHODS`).
fn stratum_family(method: &str) -> StratumSignature {
    match method {
        m if m.starts_with("mining.") => StratumSignature::V1,
        "login" | "submit" | "getjob" | "keepalived" => StratumSignature::Login,
        m if m.starts_with("eth_") => StratumSignature::EthProxy,
        "getblocktemplate" | "submitblock" => StratumSignature::Solo,
        _ => StratumSignature::Custom,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Rule;

    #[test]
    fn stratum_methods_are_the_built_in_list_or_the_rules_own_in_lower_case() {
        use crate::profile::StratumMatch;
        let k = KernelPolicy::compile(&Profile::new("t").rule(Rule::stratum(
            "s",
            Action::Deny,
            Vec::<String>::new(),
        )))
        .unwrap();
        assert_eq!(k.stratum_methods["mining.*"], StratumSignature::V1);
        assert_eq!(k.stratum_methods["login"], StratumSignature::Login);
        assert_eq!(
            k.stratum_methods["eth_submitlogin"],
            StratumSignature::EthProxy
        );
        assert_eq!(
            k.stratum_methods["getblocktemplate"],
            StratumSignature::Solo
        );
        let own = Rule {
            stratum: Some(StratumMatch {
                methods: vec!["My_Pool.Auth".into(), "mining.*".into()],
                ..Default::default()
            }),
            ..Rule::with("own", Action::Kill)
        };
        let k = KernelPolicy::compile(&Profile::new("t").rule(own)).unwrap();
        assert_eq!(
            k.stratum_methods.keys().collect::<Vec<_>>(),
            vec!["mining.*", "my_pool.auth"]
        );
        assert_eq!(k.stratum_methods["my_pool.auth"], StratumSignature::Custom);
    }

    #[test]
    fn stratum_signatures_are_every_rules_each_once_in_profile_order() {
        let p = Profile::new("t")
            .rule(Rule::stratum(
                "a",
                Action::Audit,
                ["cn-proto/7", "Nicehash"],
            ))
            .rule(Rule::stratum("b", Action::Deny, ["nicehash", "cn-proto/7"]));
        let k = KernelPolicy::compile(&p).unwrap();
        // Bytes as written: no case folding, unlike methods.
        assert_eq!(k.stratum_signatures, ["cn-proto/7", "Nicehash", "nicehash"]);
        let none = Profile::new("t").rule(Rule::stratum("a", Action::Deny, Vec::<String>::new()));
        assert!(KernelPolicy::compile(&none)
            .unwrap()
            .stratum_signatures
            .is_empty());
    }

    #[test]
    fn cmdline_patterns_are_lower_case_and_the_strongest_rule_is_known() {
        let p = Profile::new("t")
            .rule(Rule::exec_cmdline("a", Action::Audit, ["--Donate-Level"]))
            .rule(Rule::exec_cmdline("b", Action::Deny, ["STRATUM+TCP://"]))
            .rule(Rule::exec_cmdline(
                "c",
                Action::Kill,
                ["stratum+tcp://", "x.Y.z"],
            ))
            .rule(Rule::exec_cmdline("d", Action::Kill, ["--coin=XMR"]));
        let k = KernelPolicy::compile(&p).unwrap();
        assert_eq!(
            k.cmdline.keys().collect::<Vec<_>>(),
            ["--coin=xmr", "--donate-level", "stratum+tcp://", "x.y.z"]
        );
        assert_eq!(
            k.strongest_cmdline(),
            Some(RuleRef {
                rule_idx: 2,
                action: Action::Kill
            })
        );
        // The same pattern in another case is one key: the stronger rule's.
        assert_eq!(k.cmdline["stratum+tcp://"].rule_idx, 2);
        let none = KernelPolicy::compile(&Profile::new("t").rule(Rule::exec_names(
            "n",
            Action::Deny,
            ["xmrig"],
        )))
        .unwrap();
        assert_eq!(none.strongest_cmdline(), None);
    }

    #[test]
    fn stronger_action_wins_on_shared_keys() {
        let p = Profile::new("t")
            .rule(Rule::connect_ports("a", Action::Audit, [3333, 4444]))
            .rule(Rule::connect_ports("b", Action::Kill, [3333]))
            .rule(Rule::connect_ports("c", Action::Deny, [3333, 5555]));
        let k = KernelPolicy::compile(&p).unwrap();
        assert_eq!(
            k.ports[&3333],
            RuleRef {
                rule_idx: 1,
                action: Action::Kill
            }
        );
        assert_eq!(k.ports[&4444].rule_idx, 0);
    }

    #[test]
    fn audit_mode_turns_everything_into_audit() {
        let p = Profile::new("t")
            .with_mode(Mode::Audit)
            .rule(Rule::exec_names("m", Action::Kill, ["xmrig"]));
        let k = KernelPolicy::compile(&p).unwrap();
        assert_eq!(k.exec_names["xmrig"].action, Action::Audit);
        assert_eq!(k.rules[0].action, Action::Audit);
    }

    #[test]
    fn compile_is_deterministic() {
        let p = Profile::new("t")
            .rule(Rule::exec_names("m", Action::Deny, ["b", "a", "c"]))
            .rule(Rule::connect_ports("p", Action::Deny, [9, 1, 5]));
        assert_eq!(
            KernelPolicy::compile(&p).unwrap(),
            KernelPolicy::compile(&p).unwrap()
        );
        let k = KernelPolicy::compile(&p).unwrap();
        assert_eq!(k.exec_names.keys().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    }

    #[test]
    fn allow_lists_merge_and_no_new_exec_compiles_from_yaml() {
        let p = Profile::from_yaml(
            "apiVersion: minerguard/v1\nname: t\nrules:\n  - name: a\n    action: deny\n    exec: { allow_only: [/usr/bin/, /bin/sh] }\n  - name: b\n    action: kill\n    exec: { allow_only: [/opt/app] }\n  - name: c\n    action: deny\n    exec: { no_new_exec: true }\n",
        )
        .unwrap();
        let k = KernelPolicy::compile(&p).unwrap();
        assert_eq!(k.allow_only.unwrap().rule_idx, 1, "the strongest action");
        let allow: Vec<(&str, bool)> = k.exec_allow.iter().map(|(p, d)| (p.as_str(), *d)).collect();
        assert_eq!(
            allow,
            [("/bin/sh", false), ("/opt/app", false), ("/usr/bin", true)]
        );
        assert_eq!(k.no_new_exec.unwrap().rule_idx, 2);
        assert_eq!(k.rules[2].matcher, MatcherKind::ExecNoNewExec);
    }

    #[test]
    fn an_allow_listed_directory_without_a_slash_is_an_error() {
        let p = Profile::new("t").rule(Rule::exec_allow_only("a", Action::Deny, ["/usr"]));
        let mut k = KernelPolicy::compile(&p).unwrap();
        let e = k.resolve_inodes().unwrap_err().to_string();
        assert!(
            e.contains("rules[0].exec.allow_only") && e.contains("`/usr/`"),
            "{e}"
        );
    }

    #[test]
    fn a_large_invalid_profile_is_refused_with_every_problem() {
        // Large enough to be validated on a second thread while the
        // entries are built from the unvalidated rules.
        let mut p = Profile::new("big");
        for i in 0..PARALLEL_VALIDATION_RULES + 10 {
            p = p.rule(Rule::connect_ports(
                format!("r{i}"),
                Action::Deny,
                [1 + (i % 60_000) as u16],
            ));
        }
        let mut bad = Rule::connect_cidrs("bad-cidr", Action::Deny, ["10.0.0.0/40"]);
        bad.connect.as_mut().unwrap().ports = vec![crate::profile::PortSpec::range(1, 65535)];
        p = p.rule(bad);
        for i in 0..3 {
            p = p.rule(Rule::connect_ports(
                format!("wide-{i}"),
                Action::Deny,
                [crate::profile::PortSpec::range(1, 65535)],
            ));
        }
        p = p.rule(Rule::exec_names("r0", Action::Deny, ["dup"]));
        let err = KernelPolicy::compile(&p).unwrap_err().to_string();
        let n = PARALLEL_VALIDATION_RULES + 10;
        assert!(err.contains(&format!("rules[{n}]")), "{err}");
        assert!(err.contains("ports (ranges counted port by port)"), "{err}");
        assert!(err.contains("duplicate rule name `r0`"), "{err}");
    }

    #[test]
    fn invalid_profile_does_not_compile() {
        let p = Profile::new("t").rule(Rule::connect_ports("p", Action::Deny, [0]));
        assert!(KernelPolicy::compile(&p).is_err());
    }
}
