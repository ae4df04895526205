//! The maps every backend shares (bpf/include/maps.h), their `#[repr(C)]`
//! key/value mirrors (bpf/include/event.h), and typed writes into them.

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::skel::abi::types as c;

use crate::{
    compile::{signatures::START, InodeEntry, KernelPolicy, PathEntry, PathKind, RuleRef},
    error::AttachError,
    profile::Action,
};

use super::abi::{
    ACTION_AUDIT, ACTION_DENY, ACTION_KILL, BUCKET_SIZE, CONFIG_EGRESS_JUDGE, INODE_FILE,
    PATH_ALLOW_DIR, PATH_ALLOW_FILE, PATH_DIR, PATTERN_ID_OVERLONG, PATTERN_LEN, PREFIX_LEN,
    REF_SIGNATURES, STAT_OWN_COPIES, STAT_REFUSED_UNQUEUED, STAT_RINGBUF_DROPS,
    STAT_UNREAD_REFUSED, STAT_UNTRACKED,
};
pub(crate) use super::abi::{MAX_SCOPES, MAX_SCOPE_DEPTH, METHOD_LEN, NAME_LEN};

/// `enum mg_action` values. `kill-container` is `kill` in the kernel: the
/// task dies there, and the event decoder (which knows the rule asked for
/// more) has userspace kill the task's cgroup.
pub(crate) fn action_code(a: Action) -> u8 {
    match a {
        Action::Deny => ACTION_DENY,
        Action::Kill | Action::KillContainer => ACTION_KILL,
        Action::Audit => ACTION_AUDIT,
    }
}

/// Inverse of [`action_code`] (`kill` for `kill-container`'s code).
pub(crate) fn action_from_code(c: u8) -> Option<Action> {
    match c {
        ACTION_DENY => Some(Action::Deny),
        ACTION_KILL => Some(Action::Kill),
        ACTION_AUDIT => Some(Action::Audit),
        _ => None,
    }
}

/// Plain-old-data map keys and values: no implicit padding, every byte set.
///
/// # Safety
/// Implementors are `#[repr(C)]` with explicit padding fields only.
pub(crate) unsafe trait Pod: Copy {
    fn bytes(&self) -> &[u8] {
        // SAFETY: Pod types have no uninitialised padding (trait contract).
        unsafe {
            std::slice::from_raw_parts((self as *const Self).cast(), std::mem::size_of::<Self>())
        }
    }
}

/// `struct mg_scope`, as the C header declares it (through BTF).
pub(crate) type ScopeValue = c::mg_scope;

/// `struct mg_config`, as the C header declares it (through BTF).
pub(crate) type ConfigValue = c::mg_config;

/// `mg_scope_gen`'s low bit: some scope is inside another
/// (`MG_SCOPES_NESTED` in `bpf/include/scope_cache.h`).
const SCOPES_NESTED: u64 = 1;

/// `struct mg_tracking`, as the C header declares it (through BTF).
pub(crate) type TrackingValue = c::mg_tracking;

/// `struct mg_rule_ref`, as the C header declares it (through BTF).
pub(crate) type RuleRefValue = c::mg_rule_ref;

/// `struct mg_name_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameKey {
    pub policy_id: u32,
    pub name: [u8; NAME_LEN],
}

/// `struct mg_cidr4_key`, as the C header declares it (through BTF).
pub(crate) type Cidr4Key = c::mg_cidr4_key;

/// `struct mg_cidr6_key`, as the C header declares it (through BTF).
pub(crate) type Cidr6Key = c::mg_cidr6_key;

/// `struct mg_prefix_key`, as the C header declares it (through BTF).
pub(crate) type PrefixKey = c::mg_prefix_key;

/// `struct mg_prefix_bucket`, as the C header declares it (through BTF).
pub(crate) type PrefixBucket = c::mg_prefix_bucket;

/// `struct mg_pattern_key`, as the C header declares it (through BTF).
pub(crate) type PatternKey = c::mg_pattern_key;

/// `struct mg_pattern`, as the C header declares it (through BTF).
pub(crate) type PatternValue = c::mg_pattern;

/// `struct mg_inode_key`, as the C header declares it (through BTF).
pub(crate) type InodeKey = c::mg_inode_key;

impl InodeKey {
    fn new(policy_id: u32, e: &InodeEntry) -> Self {
        InodeKey {
            policy_id,
            dev: e.dev,
            ino: e.ino,
            kind: INODE_FILE,
            _pad: [0; 7],
        }
    }
}

/// `struct mg_path_key`, as the C header declares it (through BTF).
pub(crate) type PathKey = c::mg_path_key;

impl PathKey {
    fn new(policy_id: u32, e: &PathEntry) -> Self {
        let mut key = PathKey {
            policy_id,
            // enum mg_path_kind
            kind: match e.kind {
                PathKind::Dir => PATH_DIR,
                PathKind::AllowFile => PATH_ALLOW_FILE,
                PathKind::AllowDir => PATH_ALLOW_DIR,
            },
            _pad: [0; 3],
            path: [0; PREFIX_LEN],
        };
        // The kernel looks a directory up by the bytes before its '/': the
        // root directory is the empty key. Validation keeps paths shorter
        // than the key.
        let path = if e.path == "/" { "" } else { e.path.as_str() };
        let n = path.len().min(PREFIX_LEN - 1);
        for (dst, src) in key.path.iter_mut().zip(&path.as_bytes()[..n]) {
            *dst = *src as _;
        }
        key
    }
}

/// The scope flags a policy needs (which optional lookups to make): the
/// bits of `enum mg_scope_flag`, named as C names them (through BTF).
pub(crate) fn scope_flags(policy: &KernelPolicy) -> u32 {
    type F = c::mg_scope_flag;
    [
        (!policy.cidrs4.is_empty(), F::MG_SCOPE_CIDR4),
        (!policy.cidrs6.is_empty(), F::MG_SCOPE_CIDR6),
        (!policy.inodes.is_empty(), F::MG_SCOPE_INODES),
        (!policy.exec_dirs.is_empty(), F::MG_SCOPE_PATHS),
        (policy.allow_only.is_some(), F::MG_SCOPE_ALLOW_ONLY),
        (policy.no_new_exec.is_some(), F::MG_SCOPE_NO_NEW_EXEC),
        (policy.memfd.is_some(), F::MG_SCOPE_MEMFD),
        (policy.drift.is_some(), F::MG_SCOPE_DRIFT),
        (!policy.cmdline.is_empty(), F::MG_SCOPE_CMDLINE),
    ]
    .into_iter()
    .filter(|(needed, _)| *needed)
    .fold(0, |flags, (_, flag)| flags | flag.0)
}

/// `struct mg_port_key`, as the C header declares it (through BTF).
pub(crate) type PortKey = c::mg_port_key;

/// `struct mg_method_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct MethodKey {
    pub policy_id: u32,
    pub name: [u8; METHOD_LEN],
}

impl MethodKey {
    fn new(policy_id: u32, method: &str) -> Self {
        let mut key = MethodKey {
            policy_id,
            name: [0; METHOD_LEN],
        };
        // Validation keeps methods below METHOD_LEN; the NUL stays in place.
        let n = method.len().min(METHOD_LEN - 1);
        key.name[..n].copy_from_slice(&method.as_bytes()[..n]);
        key
    }
}

/// `struct mg_method`, as the C header declares it (through BTF).
pub(crate) type MethodValue = c::mg_method;

/// `struct mg_sig_key`, as the C header declares it (through BTF).
pub(crate) type SigKey = c::mg_sig_key;

/// `struct mg_sig_step`, as the C header declares it (through BTF).
pub(crate) type SigStep = c::mg_sig_step;

/// `struct mg_sig_first`, as the C header declares it (through BTF).
pub(crate) type SigFirst = c::mg_sig_first;

// SAFETY: repr(C) with every padding byte a named field: the C structs as
// libbpf-cargo generates them from BTF (it names padding `_pad`/`__pad_N`),
// and NameKey (checked against its C struct by the layout test).
unsafe impl Pod for ScopeValue {}
unsafe impl Pod for ConfigValue {}
unsafe impl Pod for TrackingValue {}
unsafe impl Pod for RuleRefValue {}
unsafe impl Pod for NameKey {}
unsafe impl Pod for PortKey {}
unsafe impl Pod for MethodKey {}
unsafe impl Pod for MethodValue {}
unsafe impl Pod for SigKey {}
unsafe impl Pod for SigStep {}
unsafe impl Pod for SigFirst {}
unsafe impl Pod for Cidr4Key {}
unsafe impl Pod for Cidr6Key {}
unsafe impl Pod for InodeKey {}
unsafe impl Pod for PathKey {}
unsafe impl Pod for PrefixKey {}
unsafe impl Pod for PrefixBucket {}
unsafe impl Pod for PatternKey {}
unsafe impl Pod for PatternValue {}
unsafe impl Pod for u64 {}
unsafe impl Pod for u32 {}

impl From<RuleRef> for RuleRefValue {
    fn from(r: RuleRef) -> Self {
        RuleRefValue {
            rule_idx: r.rule_idx,
            action: action_code(r.action),
            flags: 0,
            _pad: [0; 2],
        }
    }
}

/// The value of a policy's `mg_stratum` entry: its rule, flagged when the
/// policy has signatures (the reader then steps their automaton).
fn stratum_value(r: RuleRef, policy: &KernelPolicy) -> RuleRefValue {
    let mut v = RuleRefValue::from(r);
    if !policy.stratum_signatures.is_empty() {
        v.flags |= REF_SIGNATURES;
    }
    v
}

impl NameKey {
    fn new(policy_id: u32, name: &str) -> Self {
        let mut key = NameKey {
            policy_id,
            name: [0; NAME_LEN],
        };
        // Validation keeps names below NAME_LEN; the NUL stays in place.
        let n = name.len().min(NAME_LEN - 1);
        key.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        key
    }
}

/// Declares [`SharedMaps`] and its name lookup from one list of the maps
/// that `bpf/include/maps.h` shares: `field: c_name`. The list is the only
/// place a map name is written on the Rust side; `shared_maps_of!`
/// is generated from it too.
macro_rules! declare_shared_maps {
    // `$d` is a literal `$`, so the generated macro can have metavariables.
    ($d:tt; $($(#[$doc:meta])* $field:ident: $c_name:ident,)+) => {
        /// Owned handles to the shared maps.
        #[derive(Debug)]
        pub(crate) struct SharedMaps {
            $($(#[$doc])* pub $field: MapHandle,)+
            /// The instance these maps (and every link) are pinned as.
            pub pins: Option<std::sync::Arc<crate::pin::PinDir>>,
        }

        impl SharedMaps {
            /// The handle for a map name of maps.h, for `bpf_map__reuse_fd`.
            pub fn by_name(&self, name: &str) -> Option<&MapHandle> {
                match name {
                    $(stringify!($c_name) => Some(&self.$field),)+
                    _ => None,
                }
            }
        }

        /// Owned handles (duplicated fds) on the shared maps of a loaded
        /// skeleton's `maps` struct: `shared_maps_of!(skel.maps)`.
        macro_rules! shared_maps_of {
            ($d maps:expr) => {{
                let m = &$d maps;
                (|| -> libbpf_rs::Result<$crate::backend::maps::SharedMaps> {
                    Ok($crate::backend::maps::SharedMaps {
                        $($field: libbpf_rs::MapHandle::try_from(&m.$c_name)?,)+
                        pins: None,
                    })
                })()
            }};
        }
    };
}

declare_shared_maps! {
    $;
    events: mg_events,
    stats: mg_stats,
    config: mg_config,
    scopes: mg_scopes,
    exec_names: mg_exec_names,
    ports: mg_ports,
    cidr4: mg_cidr4,
    cidr6: mg_cidr6,
    stratum: mg_stratum,
    memfd: mg_memfd,
    /// `mg_drift`: each policy's exec.drift rule.
    drift: mg_drift,
    /// `mg_escape`: each policy's scope.escape rule.
    escape: mg_escape,
    /// `mg_task_scope`: the scope each process is in (task storage).
    task_scope: mg_task_scope,
    inodes: mg_inodes,
    msr: mg_msr,
    cmd_prefix: mg_cmd_prefix,
    cmd_pattern: mg_cmd_pattern,
    allow_only: mg_allow_only,
    no_new_exec: mg_no_new_exec,
    exec_started: mg_exec_started,
    tfo: mg_tfo,
    tfo_armed: mg_tfo_armed,
    /// `mg_stratum_done`: the lsm backend's per-socket Stratum verdicts.
    stratum_done: mg_stratum_done,
    /// `mg_stratum_methods`: each policy's mining methods.
    stratum_methods: mg_stratum_methods,
    /// `mg_stratum_sigs`: each policy's signature automaton.
    stratum_sigs: mg_stratum_sigs,
    /// `mg_stratum_sig_first`: the bytes each policy's signatures start with.
    stratum_sig_first: mg_stratum_sig_first,
    /// `mg_tracking`: how full the Stratum sockhash is.
    tracking: mg_tracking,
    /// `mg_scope_gen`: the generation of the scopes, for the cgroup
    /// programs' scope caches (`bpf/include/scope_cache.h`).
    scope_gen: mg_scope_gen,
    /// `mg_exec_paths`: exec.dirs / path_prefixes / allow_only by path.
    exec_paths: mg_exec_paths,
    /// `mg_deep_path`: the rule for an exec whose path cannot be built.
    deep_path: mg_deep_path,
}

impl SharedMaps {
    /// Creates the maps of `bpf/include/maps.h` by loading `bpf/abi.bpf.c`,
    /// an object with no programs: every object loaded afterwards reuses
    /// them (`reuse_shared_maps`), whichever backend runs. With `pins`,
    /// maps pinned by an earlier process of the instance are reused (their
    /// policy, scopes and unread events with them); where they cannot be
    /// (another size), they are set aside and new ones pinned.
    pub fn create(
        pins: Option<std::sync::Arc<crate::pin::PinDir>>,
    ) -> Result<Self, crate::error::Error> {
        use libbpf_rs::skel::{OpenSkel, SkelBuilder};
        let build = |pinned: Option<&crate::pin::PinDir>| {
            super::skel::Owned::build(|storage| {
                let mut open = super::skel::abi::AbiSkelBuilder::default().open(storage)?;
                if let Some(pins) = pinned {
                    for mut map in open.open_object_mut().maps_mut() {
                        let name = map.name().to_string_lossy().into_owned();
                        if !name.contains('.') {
                            map.set_pin_path(pins.map_pin(&name))?;
                        }
                    }
                }
                open.load()
            })
        };
        let abi = match pins.as_deref() {
            None => build(None),
            Some(p) => match build(Some(p)) {
                Ok(abi) => Ok(abi),
                Err(_) if p.has_pinned_maps() => {
                    p.retire_maps()?;
                    build(Some(p))
                }
                Err(e) => Err(e),
            },
        }
        .map_err(super::load_err("abi"))?;
        // Duplicated fds: the maps outlive the object that made them.
        let mut maps = shared_maps_of!(abi.maps).map_err(super::load_err("abi"))?;
        maps.pins = pins;
        Ok(maps)
    }

    /// The instance the maps are pinned as, if any.
    pub fn pins(&self) -> Option<&std::sync::Arc<crate::pin::PinDir>> {
        self.pins.as_ref()
    }
}

fn map_err(map: &'static str) -> impl FnOnce(libbpf_rs::Error) -> AttachError {
    move |source| AttachError::Map { map, source }
}

impl SharedMaps {
    /// The maps holding one rule per policy, with the policy's rule for each.
    fn singletons(
        &self,
        policy: &KernelPolicy,
    ) -> [(&MapHandle, &'static str, Option<RuleRefValue>); 8] {
        let [stratum, memfd, drift, escape, msr, allow_only, no_new_exec, deep_path] =
            singleton_values(policy);
        [
            (&self.stratum, "mg_stratum", stratum),
            (&self.memfd, "mg_memfd", memfd),
            (&self.drift, "mg_drift", drift),
            (&self.escape, "mg_escape", escape),
            (&self.msr, "mg_msr", msr),
            (&self.allow_only, "mg_allow_only", allow_only),
            (&self.no_new_exec, "mg_no_new_exec", no_new_exec),
            (&self.deep_path, "mg_deep_path", deep_path),
        ]
    }

    /// Writes every entry of `policy` under `policy_id`; on failure removes
    /// what it wrote, so the maps are as before.
    pub fn write_policy(&self, policy_id: u32, policy: &KernelPolicy) -> Result<(), AttachError> {
        let e = PolicyEntries::of(policy_id, policy);
        // Signatures that compiled to nothing (validation keeps this from
        // happening) would leave the rule unenforced: refused instead.
        if !policy.stratum_signatures.is_empty() && e.signatures.keys.is_empty() {
            return Err(AttachError::Map {
                map: "mg_stratum_sigs",
                source: libbpf_rs::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        let tries = || {
            update_all(&self.cidr4, "mg_cidr4", &e.cidrs4)?;
            update_all(&self.cidr6, "mg_cidr6", &e.cidrs6)
        };
        let rest = || {
            update_all(&self.exec_names, "mg_exec_names", &e.names)?;
            update_all(&self.ports, "mg_ports", &e.ports)?;
            update_all(&self.cmd_pattern, "mg_cmd_pattern", &e.patterns)?;
            update_all(&self.cmd_prefix, "mg_cmd_prefix", &e.prefixes)?;
            update_all(&self.inodes, "mg_inodes", &e.inodes)?;
            update_all(&self.exec_paths, "mg_exec_paths", &e.paths)?;
            update_all(&self.stratum_methods, "mg_stratum_methods", &e.methods)?;
            update_all(&self.stratum_sigs, "mg_stratum_sigs", &e.signatures)?;
            update_all(
                &self.stratum_sig_first,
                "mg_stratum_sig_first",
                &e.sig_first,
            )?;
            for (map, name, value) in self.singletons(policy) {
                if let Some(v) = value {
                    map.update(policy_id.bytes(), v.bytes(), MapFlags::ANY)
                        .map_err(map_err(name))?;
                }
            }
            Ok(())
        };
        let tried = e.cidrs4.keys.len() + e.cidrs6.keys.len();
        let hashed = e.names.keys.len() + e.ports.keys.len();
        let result = if tried.min(hashed) >= PARALLEL_WRITE_ENTRIES {
            let (tried, rest) = crate::parallel::on_two_threads(tries, rest);
            tried.and(rest)
        } else {
            tries().and_then(|()| rest())
        };
        if result.is_err() {
            self.delete_policy(policy_id, policy);
        }
        result
    }

    /// Removes every entry of `policy` under `policy_id` (missing ones are fine).
    pub fn delete_policy(&self, policy_id: u32, policy: &KernelPolicy) {
        let e = PolicyEntries::of(policy_id, policy);
        delete_all(&self.exec_names, &e.names);
        delete_all(&self.ports, &e.ports);
        delete_all(&self.cidr4, &e.cidrs4);
        delete_all(&self.cidr6, &e.cidrs6);
        delete_all(&self.cmd_pattern, &e.patterns);
        delete_all(&self.cmd_prefix, &e.prefixes);
        delete_all(&self.inodes, &e.inodes);
        delete_all(&self.exec_paths, &e.paths);
        delete_all(&self.stratum_methods, &e.methods);
        delete_all(&self.stratum_sigs, &e.signatures);
        delete_all(&self.stratum_sig_first, &e.sig_first);
        for (map, _, rule) in self.singletons(policy) {
            if rule.is_some() {
                let _ = map.delete(policy_id.bytes());
            }
        }
    }

    /// Removes every entry of policy `policy_id`, found by scanning the
    /// maps (an adopted policy's entries, whose compiled form this process
    /// never had). Missing ones are fine.
    pub fn delete_policy_id(&self, policy_id: u32) {
        let id = policy_id.to_ne_bytes();
        let by_offset: [(&MapHandle, usize); 10] = [
            (&self.exec_names, 0),
            (&self.ports, 0),
            (&self.cmd_pattern, 0),
            (&self.cmd_prefix, 0),
            (&self.inodes, 0),
            (&self.exec_paths, 0),
            (&self.stratum_methods, 0),
            (&self.stratum_sigs, 0),
            // LPM keys start with the prefix length.
            (&self.cidr4, 4),
            (&self.cidr6, 4),
        ];
        for (map, at) in by_offset {
            let doomed: Vec<Vec<u8>> = map
                .keys()
                .filter(|k| k.get(at..at + 4) == Some(&id[..]))
                .collect();
            for key in doomed {
                let _ = map.delete(&key);
            }
        }
        for map in [
            &self.stratum,
            &self.stratum_sig_first,
            &self.memfd,
            &self.drift,
            &self.escape,
            &self.msr,
            &self.allow_only,
            &self.no_new_exec,
            &self.deep_path,
        ] {
            let _ = map.delete(&id);
        }
    }

    /// Whether scope `cgroup_id` points at `policy_id` in the maps.
    pub fn scope_policy(&self, cgroup_id: u64) -> Option<u32> {
        match self.scopes.lookup(cgroup_id.bytes(), MapFlags::ANY) {
            Ok(Some(v)) => v
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes),
            _ => None,
        }
    }

    /// Points scope `cgroup_id` at `policy_id` (one atomic map update).
    pub fn set_scope(
        &self,
        cgroup_id: u64,
        policy_id: u32,
        policy: &KernelPolicy,
    ) -> Result<(), AttachError> {
        let v = ScopeValue {
            policy_id,
            flags: scope_flags(policy),
            cgroup_id,
        };
        self.scopes
            .update(cgroup_id.bytes(), v.bytes(), MapFlags::ANY)
            .map_err(map_err("mg_scopes"))?;
        self.next_scope_generation()
    }

    /// Removes scope `cgroup_id`.
    pub fn clear_scope(&self, cgroup_id: u64) -> Result<(), AttachError> {
        match self.scopes.delete(cgroup_id.bytes()) {
            Ok(()) => self.next_scope_generation(),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(map_err("mg_scopes")(e)),
        }
    }

    /// `mg_scope_gen` as it is: the scopes' generation shifted left by
    /// one, the low bit set while scopes nest (0 before any scope was
    /// written).
    pub fn scope_generation(&self) -> u64 {
        match self.scope_gen.lookup(0u32.bytes(), MapFlags::ANY) {
            Ok(Some(v)) => v
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_ne_bytes),
            _ => 0,
        }
    }

    /// Starts a new generation of the scopes, keeping whether they nest:
    /// every cgroup program's scope cache (`bpf/include/scope_cache.h`)
    /// walks again on its next run, so a changed, added or removed scope
    /// is seen at once. Called after the change is in the maps.
    fn next_scope_generation(&self) -> Result<(), AttachError> {
        let now = self.scope_generation();
        self.publish_scope_generation(now & SCOPES_NESTED != 0)
    }

    /// Writes the next generation with `nested` (one 8-byte word, so a
    /// program never reads half of it).
    fn publish_scope_generation(&self, nested: bool) -> Result<(), AttachError> {
        // 1..2^63-1, then 1 again: never 0 (no cache) once written.
        let generation = (self.scope_generation() >> 1) % (u64::MAX >> 1) + 1;
        let next = (generation << 1) | u64::from(nested);
        self.scope_gen
            .update(0u32.bytes(), &next.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err("mg_scope_gen"))
    }

    /// Forgets that scope `cgroup_id` made its first exec (exec.no_new_exec
    /// starts over on the next apply).
    pub fn clear_exec_started(&self, cgroup_id: u64) {
        let _ = self.exec_started.delete(cgroup_id.bytes());
    }

    /// The config entry as the programs read it (zero where unreadable).
    fn config(&self) -> ConfigValue {
        let word = |b: &[u8], at: usize| {
            b.get(at..at + 4)
                .and_then(|w| w.try_into().ok())
                .map_or(0, u32::from_ne_bytes)
        };
        match self.config.lookup(0u32.bytes(), MapFlags::ANY) {
            Ok(Some(b)) => ConfigValue {
                scope_levels: word(&b, std::mem::offset_of!(ConfigValue, scope_levels)),
                flags: word(&b, std::mem::offset_of!(ConfigValue, flags)),
            },
            _ => ConfigValue {
                scope_levels: 0,
                flags: 0,
            },
        }
    }

    fn set_config(&self, v: ConfigValue) -> Result<(), AttachError> {
        self.config
            .update(0u32.bytes(), v.bytes(), MapFlags::ANY)
            .map_err(map_err("mg_config"))
    }

    /// Publishes which cgroup levels hold scopes (bit n: level n) and
    /// whether some scope is inside another (the scope caches then key
    /// their entries by cgroup); the flags stay as they are. Nesting must
    /// be published before a nested scope is written (`set_scope`), and
    /// may be taken back only after the scope that nested is cleared.
    pub fn set_scope_levels(&self, levels: u32, nested: bool) -> Result<(), AttachError> {
        self.set_config(ConfigValue {
            scope_levels: levels,
            ..self.config()
        })?;
        self.publish_scope_generation(nested)
    }

    /// Tells the programs whether the cgroup backend's egress program judges
    /// Stratum (`MG_CONFIG_EGRESS_JUDGE`). Written by every instance when it
    /// loads, either way: the maps may be pinned by an instance that judged
    /// otherwise.
    pub fn set_egress_judge(&self, on: bool) -> Result<(), AttachError> {
        let v = self.config();
        let flags = if on {
            v.flags | CONFIG_EGRESS_JUDGE
        } else {
            v.flags & !CONFIG_EGRESS_JUDGE
        };
        self.set_config(ConfigValue { flags, ..v })
    }

    /// Events the kernel could not write because the ring buffer was full.
    pub fn ringbuf_drops(&self) -> u64 {
        self.stat(STAT_RINGBUF_DROPS)
    }

    /// Accepted sockets the full Stratum sockhash could not take.
    pub fn untracked_sockets(&self) -> u64 {
        self.stat(STAT_UNTRACKED)
    }

    /// Sockets the egress Stratum judge refused that its full queue could
    /// not hand to userspace (left cut off, not destroyed).
    pub fn refused_unqueued(&self) -> u64 {
        self.stat(STAT_REFUSED_UNQUEUED)
    }

    /// Threads the lsm Stratum judge gave a copy of their own (every
    /// spare copy taken).
    pub fn own_copies(&self) -> u64 {
        self.stat(STAT_OWN_COPIES)
    }

    /// Sends the lsm Stratum judge refused unread (no room to read them
    /// or to follow their socket).
    pub fn unread_refused(&self) -> u64 {
        self.stat(STAT_UNREAD_REFUSED)
    }

    /// Sets how many sockets the Stratum sockhash holds before the connect
    /// hooks refuse new connections of stratum scopes.
    pub fn set_tracking_limit(&self, limit: u32) -> Result<(), AttachError> {
        let v = TrackingValue {
            sockets: 0,
            limit: u64::from(limit),
        };
        self.tracking
            .update(0u32.bytes(), v.bytes(), MapFlags::ANY)
            .map_err(map_err("mg_tracking"))
    }

    /// Sockets the Stratum sockhash holds now (those it counts).
    pub fn tracked_sockets(&self) -> u64 {
        match self.tracking.lookup(0u32.bytes(), MapFlags::ANY) {
            Ok(Some(v)) => v
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_ne_bytes)
                .unwrap_or(0),
            _ => 0,
        }
    }

    /// The sum over CPUs of a per-CPU counter of `mg_stats`.
    fn stat(&self, index: u32) -> u64 {
        match self.stats.lookup_percpu(index.bytes(), MapFlags::ANY) {
            Ok(Some(per_cpu)) => per_cpu
                .iter()
                .filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()))
                .map(u64::from_ne_bytes)
                .sum(),
            _ => 0,
        }
    }

    /// A second handle on the events ring buffer, for the poller thread.
    pub fn events_handle(&self) -> Result<MapHandle, AttachError> {
        // MapHandle::try_from duplicates the fd.
        MapHandle::try_from(&self.events).map_err(map_err("mg_events"))
    }
}

/// One map's entries as the batch calls take them: the keys back to back,
/// and the values back to back.
struct Entries<K, V> {
    keys: Vec<K>,
    values: Vec<V>,
}

impl<K, V> FromIterator<(K, V)> for Entries<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let (keys, values) = iter.into_iter().unzip();
        Entries { keys, values }
    }
}

/// A policy's entries for each multi-entry map.
struct PolicyEntries {
    names: Entries<NameKey, RuleRefValue>,
    ports: Entries<PortKey, RuleRefValue>,
    cidrs4: Entries<Cidr4Key, RuleRefValue>,
    cidrs6: Entries<Cidr6Key, RuleRefValue>,
    patterns: Entries<PatternKey, PatternValue>,
    prefixes: Entries<PrefixKey, PrefixBucket>,
    inodes: Entries<InodeKey, RuleRefValue>,
    paths: Entries<PathKey, RuleRefValue>,
    methods: Entries<MethodKey, MethodValue>,
    signatures: Entries<SigKey, SigStep>,
    /// The policy's entry of `mg_stratum_sig_first` (none without
    /// signatures).
    sig_first: Entries<u32, SigFirst>,
}

impl PolicyEntries {
    fn of(policy_id: u32, policy: &KernelPolicy) -> Self {
        let rule = |r: &RuleRef| RuleRefValue::from(*r);
        let steps = signature_steps(policy);
        PolicyEntries {
            sig_first: (!steps.is_empty())
                .then(|| {
                    let mut first = SigFirst { bits: [0; 4] };
                    for step in steps.iter().filter(|s| s.state == START) {
                        first.bits[usize::from(step.byte >> 6)] |= 1 << (step.byte & 63);
                    }
                    (policy_id, first)
                })
                .into_iter()
                .collect(),
            names: (policy.exec_names.iter())
                .map(|(n, r)| (NameKey::new(policy_id, n), rule(r)))
                .collect(),
            ports: (policy.ports.iter())
                .map(|(port, r)| {
                    let key = PortKey {
                        policy_id,
                        port: *port,
                        _pad: 0,
                    };
                    (key, rule(r))
                })
                .collect(),
            cidrs4: (policy.cidrs4.iter())
                .map(|(k, r)| (cidr4_key(policy_id, k), rule(r)))
                .collect(),
            cidrs6: (policy.cidrs6.iter())
                .map(|(k, r)| (cidr6_key(policy_id, k), rule(r)))
                .collect(),
            patterns: (policy.cmdline.iter().enumerate())
                .map(|(id, (pattern, r))| {
                    let mut bytes = [0u8; PATTERN_LEN];
                    let n = pattern.len().min(PATTERN_LEN);
                    bytes[..n].copy_from_slice(&pattern.as_bytes()[..n]);
                    let value = PatternValue {
                        r#ref: rule(r),
                        len: n as u32,
                        bytes,
                    };
                    let id = id as u32;
                    (PatternKey { policy_id, id }, value)
                })
                // An argv too long to search is matched as the strongest
                // cmdline rule: an entry with no bytes, in no bucket.
                .chain(policy.strongest_cmdline().map(|r| {
                    let key = PatternKey {
                        policy_id,
                        id: PATTERN_ID_OVERLONG,
                    };
                    let value = PatternValue {
                        r#ref: rule(&r),
                        len: 0,
                        bytes: [0; PATTERN_LEN],
                    };
                    (key, value)
                }))
                .collect(),
            prefixes: (policy.cmdline_buckets().into_iter())
                .map(|(prefix, ids)| {
                    let mut bucket = PrefixBucket {
                        count: ids.len().min(BUCKET_SIZE) as u32,
                        ids: [0; BUCKET_SIZE],
                    };
                    for (slot, id) in bucket.ids.iter_mut().zip(&ids) {
                        *slot = *id;
                    }
                    (PrefixKey { policy_id, prefix }, bucket)
                })
                .collect(),
            methods: (policy.stratum_methods.iter())
                .map(|(m, family)| {
                    let value = MethodValue {
                        sig: family.id(),
                        _pad: [0; 3],
                    };
                    (MethodKey::new(policy_id, m), value)
                })
                .collect(),
            signatures: (steps.into_iter())
                .map(|step| {
                    let key = SigKey {
                        policy_id,
                        state: step.state,
                        byte: step.byte,
                        _pad: 0,
                    };
                    let value = SigStep {
                        state: step.next,
                        found: step.found,
                    };
                    (key, value)
                })
                .collect(),
            inodes: (policy.inodes.iter())
                .map(|e| (InodeKey::new(policy_id, e), rule(&e.rule)))
                .collect(),
            paths: (policy.path_entries().iter())
                .map(|e| (PathKey::new(policy_id, e), rule(&e.rule)))
                .collect(),
        }
    }
}

/// The values of the maps holding one rule per policy, in the order of
/// [`SharedMaps::singletons`].
fn singleton_values(policy: &KernelPolicy) -> [Option<RuleRefValue>; 8] {
    [
        policy.stratum.map(|r| stratum_value(r, policy)),
        policy.memfd.map(RuleRefValue::from),
        policy.drift.map(RuleRefValue::from),
        policy.escape.map(RuleRefValue::from),
        policy.msr.map(RuleRefValue::from),
        policy.allow_only.map(RuleRefValue::from),
        policy.no_new_exec.map(RuleRefValue::from),
        policy.deep_path_rule().map(RuleRefValue::from),
    ]
}

/// The steps of `policy`'s signature automaton (none without signatures;
/// validation keeps the list within what compiles).
fn signature_steps(policy: &KernelPolicy) -> Vec<crate::compile::signatures::Step> {
    let sigs: Vec<&[u8]> = (policy.stratum_signatures.iter())
        .map(|s| s.as_bytes())
        .collect();
    if sigs.is_empty() {
        return Vec::new();
    }
    crate::compile::signatures::steps(&sigs).unwrap_or_default()
}

/// A digest of what `policy` puts into the maps (every entry, under one
/// policy id) and of the names its events carry: equal digests mean a
/// pinned policy is exactly what this one would write.
pub(crate) fn policy_digest(policy: &KernelPolicy) -> String {
    use std::hash::{Hash, Hasher};
    fn feed<K: Pod, V: Pod>(h: &mut impl Hasher, e: &Entries<K, V>) {
        slice_bytes(&e.keys).hash(h);
        slice_bytes(&e.values).hash(h);
    }
    let e = PolicyEntries::of(0, policy);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    feed(&mut h, &e.names);
    feed(&mut h, &e.ports);
    feed(&mut h, &e.cidrs4);
    feed(&mut h, &e.cidrs6);
    feed(&mut h, &e.patterns);
    feed(&mut h, &e.prefixes);
    feed(&mut h, &e.inodes);
    feed(&mut h, &e.paths);
    feed(&mut h, &e.methods);
    feed(&mut h, &e.signatures);
    feed(&mut h, &e.sig_first);
    for value in singleton_values(policy) {
        value.map(|v| v.bytes().to_vec()).hash(&mut h);
    }
    scope_flags(policy).hash(&mut h);
    policy.profile.hash(&mut h);
    format!("{:?}", policy.rules).hash(&mut h);
    format!("{:016x}", h.finish())
}

/// From this many LPM entries and as many hash entries on, a policy's tries
/// are written on a second thread while this one writes the hash maps: an
/// LPM insert allocates a trie node and costs about as much as the hash
/// inserts of the same profile, and a thread costs ~50 µs.
const PARALLEL_WRITE_ENTRIES: usize = 2048;

/// The bytes of `items`, as they lie in memory (the layout batch calls take).
fn slice_bytes<T: Pod>(items: &[T]) -> &[u8] {
    // SAFETY: Pod types have no uninitialised padding (trait contract), and
    // a slice is one contiguous allocation of size_of_val bytes.
    unsafe { std::slice::from_raw_parts(items.as_ptr().cast(), std::mem::size_of_val(items)) }
}

/// Writes `entries` into `map`: in one `BPF_MAP_UPDATE_BATCH` call (a
/// 10,000-entry profile is one syscall instead of 10,000), or entry by entry
/// where the kernel or map type has no batch update (LPM tries before 6.x).
fn update_all<K: Pod, V: Pod>(
    map: &MapHandle,
    name: &'static str,
    entries: &Entries<K, V>,
) -> Result<(), AttachError> {
    let count = entries.keys.len();
    if count > 1 {
        let keys = slice_bytes(&entries.keys);
        let values = slice_bytes(&entries.values);
        if map
            .update_batch(keys, values, count as u32, MapFlags::ANY, MapFlags::ANY)
            .is_ok()
        {
            return Ok(());
        }
        // Fall through: the one-by-one writes name the failing map, and
        // succeed where only the batch call is missing.
    }
    for (k, v) in entries.keys.iter().zip(&entries.values) {
        map.update(k.bytes(), v.bytes(), MapFlags::ANY)
            .map_err(map_err(name))?;
    }
    Ok(())
}

/// Deletes the keys of `entries` from `map` (missing ones are fine): one
/// batch call, or key by key when that fails (a missing key stops a batch).
fn delete_all<K: Pod, V>(map: &MapHandle, entries: &Entries<K, V>) {
    let count = entries.keys.len();
    if count > 1
        && map
            .delete_batch(
                slice_bytes(&entries.keys),
                count as u32,
                MapFlags::ANY,
                MapFlags::ANY,
            )
            .is_ok()
    {
        return;
    }
    for k in &entries.keys {
        let _ = map.delete(k.bytes());
    }
}

/// The LPM key of an IPv4 network: the policy id is matched in full.
fn cidr4_key(policy_id: u32, (addr, len): &([u8; 4], u8)) -> Cidr4Key {
    Cidr4Key {
        prefixlen: 32 + u32::from(*len),
        policy_id,
        addr: *addr,
    }
}

/// The LPM key of an IPv6 network.
fn cidr6_key(policy_id: u32, (addr, len): &([u8; 16], u8)) -> Cidr6Key {
    Cidr6Key {
        prefixlen: 32 + u32::from(*len),
        policy_id,
        addr: *addr,
    }
}

#[cfg(test)]
mod layout_tests {
    //! Every key and value but `NameKey` and `MethodKey` is the C struct
    //! itself (the skeleton's BTF type); those two keep bytes where C has
    //! `char`, so they are compared to the C struct field by field.
    use std::mem::{offset_of, size_of};

    use super::*;

    /// Fresh shared maps; None (skipped, with the reason printed) when not
    /// root and MINERGUARD_ALLOW_SKIP=1, a failure when not root otherwise.
    fn root_maps() -> Option<SharedMaps> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("MINERGUARD_ALLOW_SKIP").is_some_and(|v| v == "1"),
                "needs root to create the maps (MINERGUARD_ALLOW_SKIP=1 skips)"
            );
            eprintln!("skipped: not root");
            return None;
        }
        Some(SharedMaps::create(None).expect("create the shared maps"))
    }

    #[test]
    fn every_scope_change_moves_the_generation_on_and_keeps_nesting() {
        let Some(maps) = root_maps() else { return };
        let policy = KernelPolicy::compile(&crate::Profile::new("t")).unwrap();
        // Nothing written yet: no program uses its cache.
        assert_eq!(maps.scope_generation(), 0);
        let mut seen = vec![0];
        let mut step = |what: &str, nested: bool| {
            let now = maps.scope_generation();
            assert!(!seen.contains(&now), "{what}: {now} again ({seen:?})");
            assert_eq!(
                now & SCOPES_NESTED != 0,
                nested,
                "{what}: nesting bit of {now:#x}"
            );
            seen.push(now);
        };
        maps.set_scope(11, 3, &policy).unwrap();
        step("set_scope", false);
        maps.set_scope_levels(0b110, true).unwrap();
        step("levels, nested", true);
        maps.set_scope(12, 4, &policy).unwrap();
        step("set_scope keeps nesting", true);
        maps.clear_scope(12).unwrap();
        step("clear_scope", true);
        maps.set_scope_levels(0b10, false).unwrap();
        step("levels, flat", false);
        // Clearing what is not there changes nothing.
        maps.clear_scope(12).unwrap();
        assert_eq!(maps.scope_generation(), *seen.last().unwrap());
        // The generation wraps to 1, never to 0 (no cache).
        let last = (u64::MAX >> 1) << 1;
        maps.scope_gen
            .update(0u32.bytes(), &last.to_ne_bytes(), MapFlags::ANY)
            .unwrap();
        maps.set_scope(11, 5, &policy).unwrap();
        assert_eq!(maps.scope_generation(), 1 << 1);
    }

    #[test]
    fn signatures_that_compile_to_nothing_are_refused_not_written() {
        let Some(maps) = root_maps() else { return };
        let profile =
            crate::Profile::new("t").rule(crate::Rule::stratum("s", Action::Deny, ["cn-proto/7"]));
        let mut policy = KernelPolicy::compile(&profile).unwrap();
        maps.write_policy(7, &policy).unwrap();
        assert!(maps
            .stratum
            .lookup(&7u32.to_ne_bytes(), MapFlags::ANY)
            .unwrap()
            .is_some());
        maps.delete_policy(7, &policy);
        // An empty signature (validation refuses one) compiles to no step.
        policy.stratum_signatures.push(String::new());
        assert!(maps.write_policy(8, &policy).is_err());
        assert!(maps
            .stratum
            .lookup(&8u32.to_ne_bytes(), MapFlags::ANY)
            .unwrap()
            .is_none());
    }

    #[test]
    fn kill_container_is_kill_in_the_kernel() {
        assert_eq!(action_code(Action::KillContainer), ACTION_KILL);
        for a in [Action::Audit, Action::Deny, Action::Kill] {
            assert_eq!(action_from_code(action_code(a)), Some(a));
        }
    }

    #[test]
    fn mirrors_match_the_c_header() {
        assert_eq!(size_of::<NameKey>(), size_of::<c::mg_name_key>());
        assert_eq!(offset_of!(NameKey, name), offset_of!(c::mg_name_key, name));
        assert_eq!(
            size_of::<[u8; NAME_LEN]>(),
            size_of_val(&c::mg_name_key::default().name)
        );
        assert_eq!(size_of::<MethodKey>(), size_of::<c::mg_method_key>());
        assert_eq!(
            offset_of!(MethodKey, name),
            offset_of!(c::mg_method_key, name)
        );
        assert_eq!(
            size_of::<[u8; METHOD_LEN]>(),
            size_of_val(&c::mg_method_key::default().name)
        );
    }

    #[test]
    fn name_key_is_nul_terminated_and_zero_padded() {
        let k = NameKey::new(7, "xmrig");
        assert_eq!(&k.name[..6], b"xmrig\0");
        assert!(k.name[5..].iter().all(|b| *b == 0));
        assert_eq!(&k.bytes()[..4], &7u32.to_ne_bytes());
    }
}
