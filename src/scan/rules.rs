//! The compiled policy, arranged for judging running processes: the same
//! entries the kernel gets ([`KernelPolicy`]), matched the way its programs
//! match them (exec: `bpf/include/exec_match.h`; connect: `net_match.h`;
//! `open.msr`: `device.bpf.c`).

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    os::unix::fs::MetadataExt,
    sync::Arc,
};

use crate::{
    compile::{CompiledRule, KernelPolicy, PathKind, RuleRef},
    profile::MatcherKind,
};

use super::{
    net::Peer,
    process::{basename, is_under, kernel_dev, FileView, Process},
    Evidence, Match,
};

/// A policy's entries, looked up per process.
#[derive(Debug)]
pub(crate) struct Rules {
    policy: KernelPolicy,
    /// `exec.dirs` / `path_prefixes` directories (with host aliases).
    dirs: Vec<(String, RuleRef)>,
    /// `exec.allow_only` files and directories.
    allow_files: HashSet<String>,
    allow_dirs: Vec<String>,
    /// `exec.files` by (kernel device, inode), and by the device `stat`
    /// reports where the two differ: a scan sees both encodings.
    inodes: HashMap<(u32, u64), RuleRef>,
    /// `exec.cmdline` substrings, lower case.
    cmdline: Vec<(Vec<u8>, RuleRef)>,
}

impl Rules {
    /// Arranges a policy whose inodes and domains are resolved.
    pub fn new(policy: KernelPolicy) -> Self {
        let mut dirs = Vec::new();
        let mut allow_files = HashSet::new();
        let mut allow_dirs = Vec::new();
        for entry in policy.path_entries() {
            match entry.kind {
                PathKind::Dir => dirs.push((entry.path, entry.rule)),
                PathKind::AllowFile => {
                    allow_files.insert(entry.path);
                }
                PathKind::AllowDir => allow_dirs.push(entry.path),
            }
        }
        let mut inodes: HashMap<(u32, u64), RuleRef> = policy
            .inodes
            .iter()
            .map(|e| ((e.dev, e.ino), e.rule))
            .collect();
        for (path, rule) in &policy.exec_files {
            if let Ok(meta) = std::fs::metadata(path) {
                inodes
                    .entry((kernel_dev(meta.dev()), meta.ino()))
                    .or_insert(*rule);
            }
        }
        let cmdline = policy
            .cmdline
            .iter()
            .map(|(p, r)| (p.as_bytes().to_vec(), *r))
            .collect();
        Rules {
            policy,
            dirs,
            allow_files,
            allow_dirs,
            inodes,
            cmdline,
        }
    }

    /// The compiled policy.
    pub fn policy(&self) -> &KernelPolicy {
        &self.policy
    }

    /// Whether judging needs the process's executable mappings.
    pub fn needs_mappings(&self) -> bool {
        !self.policy.exec_names.is_empty()
            || self.policy.memfd.is_some()
            || !self.inodes.is_empty()
            || !self.dirs.is_empty()
    }

    /// Whether judging needs the process's sockets.
    pub fn needs_sockets(&self) -> bool {
        !self.policy.ports.is_empty()
            || !self.policy.cidrs4.is_empty()
            || !self.policy.cidrs6.is_empty()
    }

    /// Whether judging needs the process's open devices.
    pub fn needs_devices(&self) -> bool {
        self.policy.msr.is_some()
    }

    fn to_match(&self, r: RuleRef, evidence: Evidence) -> Match {
        let rule: &CompiledRule = &self.policy.rules[r.rule_idx as usize];
        Match {
            rule: rule.name.clone(),
            rule_index: r.rule_idx,
            kind: rule.kind,
            matcher: rule.matcher,
            action: r.action,
            evidence,
        }
    }

    /// The rules the program (`exe`) matches: names (the file's and the
    /// name it was run by, which `comm` keeps), inodes, directories,
    /// fileless, drift (the program only: a scan does not judge mappings
    /// for drift), and the allow-list.
    pub fn judge_exe(&self, p: &Process, exe: &FileView, out: &mut Vec<Match>) {
        let evidence = || Evidence::Exe {
            path: exe.path.clone(),
        };
        self.judge_file(exe, &evidence, out);
        if let Some(r) = self.policy.exec_names.get(p.comm.as_str()) {
            if basename(&exe.path) != p.comm {
                out.push(self.to_match(*r, evidence()));
            }
        }
        if let Some(r) = self.policy.drift {
            if super::drift::drifted(p.pid, &exe.path) {
                out.push(self.to_match(r, evidence()));
            }
        }
        if let Some(r) = self.policy.allow_only {
            let allowed = self.allow_files.contains(&exe.path)
                || self.allow_dirs.iter().any(|d| is_under(&exe.path, d));
            if !allowed {
                out.push(self.to_match(r, evidence()));
            }
        }
    }

    /// The rules an executable mapping matches (the allow-list judges
    /// programs, not mappings, as in the kernel).
    pub fn judge_mapping(&self, file: &FileView, out: &mut Vec<Match>) {
        let evidence = || Evidence::Mapped {
            path: file.path.clone(),
        };
        self.judge_file(file, &evidence, out);
    }

    /// What judges a file by itself (`mg_file_match`).
    fn judge_file(&self, f: &FileView, evidence: &dyn Fn() -> Evidence, out: &mut Vec<Match>) {
        let name = basename(&f.path);
        if let Some(r) = self.policy.exec_names.get(name) {
            out.push(self.to_match(*r, evidence()));
        }
        if let Some(r) = self.inodes.get(&(f.dev, f.ino)) {
            out.push(self.to_match(*r, evidence()));
        }
        // A memfd has no directory.
        if !f.path.starts_with("/memfd:") {
            if let Some((_, r)) = self
                .dirs
                .iter()
                .filter(|(d, _)| is_under(&f.path, d))
                .max_by_key(|(_, r)| (r.action, std::cmp::Reverse(r.rule_idx)))
            {
                out.push(self.to_match(*r, evidence()));
            }
        }
        if let (true, Some(r)) = (f.unlinked, self.policy.memfd) {
            out.push(self.to_match(r, evidence()));
        }
    }

    /// The `exec.cmdline` rules argv matches (lower case, as the kernel
    /// searches it); an argv longer than the kernel searches is the
    /// strongest cmdline rule, as there.
    pub fn judge_cmdline(&self, p: &Process, out: &mut Vec<Match>) {
        if self.cmdline.is_empty() {
            return;
        }
        if p.cmdline_overlong {
            if let Some(r) = self.policy.strongest_cmdline() {
                let evidence = Evidence::Cmdline {
                    pattern: format!(
                        "argv longer than {} bytes",
                        crate::compile::limits::MAX_CMDLINE_ARGV_BYTES
                    ),
                };
                out.push(self.to_match(r, evidence));
            }
            return;
        }
        let argv = p.cmdline.to_ascii_lowercase();
        for (pattern, r) in &self.cmdline {
            if !pattern.is_empty() && argv.windows(pattern.len()).any(|w| w == pattern.as_slice()) {
                let evidence = Evidence::Cmdline {
                    pattern: String::from_utf8_lossy(pattern).into_owned(),
                };
                out.push(self.to_match(*r, evidence));
            }
        }
    }

    /// The connect rules a connected socket's peer matches: the stronger
    /// of its port's rule and the longest-prefix CIDR rule.
    pub fn judge_peer(&self, peer: &Peer, out: &mut Vec<Match>) {
        let domain = self.policy.domain_addresses.get(&peer.addr.ip()).cloned();
        let evidence = || Evidence::Socket {
            peer: peer.addr,
            protocol: peer.protocol,
            domain: domain.clone(),
        };
        if let Some(r) = self.policy.ports.get(&peer.addr.port()) {
            out.push(self.to_match(*r, evidence()));
        }
        if let Some(r) = self.longest_prefix(peer.addr.ip()) {
            out.push(self.to_match(r, evidence()));
        }
    }

    /// The LPM trie's answer: the entry with the longest prefix holding `ip`.
    fn longest_prefix(&self, ip: IpAddr) -> Option<RuleRef> {
        fn holds(net: &[u8], len: u8, addr: &[u8]) -> bool {
            let (full, rest) = (usize::from(len / 8), len % 8);
            net[..full] == addr[..full]
                && (rest == 0 || (net[full] ^ addr[full]) & (0xffu8 << (8 - rest)) == 0)
        }
        match ip {
            IpAddr::V4(a) => self
                .policy
                .cidrs4
                .iter()
                .filter(|((net, len), _)| holds(net, *len, &a.octets()))
                .max_by_key(|((_, len), _)| *len)
                .map(|(_, r)| *r),
            IpAddr::V6(a) => self
                .policy
                .cidrs6
                .iter()
                .filter(|((net, len), _)| holds(net, *len, &a.octets()))
                .max_by_key(|((_, len), _)| *len)
                .map(|(_, r)| *r),
        }
    }

    /// The `open.msr` rule, for an MSR device the process holds open.
    pub fn judge_msr(&self, path: &str, minor: u32, out: &mut Vec<Match>) {
        if let Some(r) = self.policy.msr {
            let evidence = Evidence::Msr {
                path: path.to_string(),
                cpu: minor,
            };
            out.push(self.to_match(r, evidence));
        }
    }

    /// Rules a scan cannot judge on a running process, each with why.
    pub fn unjudged(&self) -> Vec<(Arc<str>, &'static str)> {
        self.policy
            .rules
            .iter()
            .filter_map(|r| {
                let why = match r.matcher {
                    MatcherKind::Stratum => {
                        "bytes sent before the scan are gone; ports and addresses judge connections"
                    }
                    MatcherKind::ExecNoNewExec => "which exec came first is not known afterwards",
                    MatcherKind::ScopeEscape => "an operation, not a state",
                    MatcherKind::Seccomp => "system calls, for the seccomp filter",
                    MatcherKind::Behaviour => {
                        "judged over a sampling window by the behaviour detector, not by one scan"
                    }
                    _ => return None,
                };
                Some((r.name.clone(), why))
            })
            .collect()
    }
}
