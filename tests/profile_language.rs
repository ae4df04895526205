//! The profile language without a kernel: every matcher, every error kind
//! with its field path, round trips, golden compiled entries of the bundled
//! profiles, and property tests that parsing and compiling never panic.

use std::{fmt::Write as _, path::PathBuf};

use minerguard::{
    profile::{FileKind, MatcherKind, ProfileError, MAX_NESTING, MAX_PROFILE_BYTES},
    KernelPolicy, Profile, SeccompPolicy,
};
use proptest::prelude::*;

fn profile_with(rule_body: &str) -> String {
    format!("apiVersion: minerguard/v1\nname: t\nrules:\n  - name: r\n{rule_body}")
}

#[test]
fn every_matcher_kind_parses_and_compiles() {
    // Iterates the matcher table: a new kind fails to build here until it
    // has a sample (the match has no `_` arm).
    let sample = |kind: MatcherKind| {
        match kind {
        MatcherKind::ExecNames => "    action: deny\n    exec: { names: [xmrig] }\n",
        MatcherKind::ExecPathPrefixes => "    action: deny\n    exec: { path_prefixes: [/tmp/] }\n",
        MatcherKind::ExecFiles => "    action: deny\n    exec: { files: [/usr/local/bin/xmrig] }\n",
        MatcherKind::ExecDirs => "    action: deny\n    exec: { dirs: [/tmp, /dev/shm] }\n",
        MatcherKind::ExecMemfd => "    action: deny\n    exec: { memfd: true }\n",
        MatcherKind::ExecDrift => "    action: deny\n    exec: { drift: true }\n",
        MatcherKind::ExecCmdline => "    action: kill\n    exec: { cmdline: [\"stratum+tcp://\"] }\n",
        MatcherKind::ExecAllowOnly => "    action: deny\n    exec: { allow_only: [/usr/bin/, /bin/sh] }\n",
        MatcherKind::ExecNoNewExec => "    action: deny\n    exec: { no_new_exec: true }\n",
        MatcherKind::ConnectPorts => "    action: deny\n    connect: { ports: [3333, \"5000-5010\"] }\n",
        MatcherKind::ConnectCidrs => "    action: deny\n    connect: { cidrs: [203.0.113.0/24, \"2001:db8::/32\"] }\n",
        MatcherKind::ConnectDomains => "    action: audit\n    connect: { domains: [pool.supportxmr.com] }\n",
        MatcherKind::Stratum => "    action: kill\n    stratum: { signatures: [\"mining.notify\"] }\n",
        MatcherKind::OpenMsr => "    action: deny\n    open: { msr: true }\n",
        MatcherKind::ScopeEscape => "    action: kill\n    scope: { escape: true }\n",
        MatcherKind::Behaviour => "    action: audit\n    behaviour: { window_secs: 5, busy_threads: 2 }\n",
        MatcherKind::Seccomp => "    action: deny\n    seccomp:\n      default: allow\n      syscalls:\n        - names: [ptrace]\n          action: { errno: 1 }\n        - names: [personality]\n          action: kill_process\n          args: [{ index: 0, op: masked_eq, value: 8, mask: 8 }]\n",
    }
    };
    let mut bodies: Vec<(&str, MatcherKind)> =
        MatcherKind::ALL.iter().map(|k| (sample(*k), *k)).collect();
    bodies.push(("    action: kill\n    stratum: {}\n", MatcherKind::Stratum));
    assert_eq!(bodies.len(), MatcherKind::ALL.len() + 1);
    for (body, kind) in bodies {
        let p = Profile::from_yaml(&profile_with(body)).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(p.rules[0].matcher_kind(), Some(kind), "{body}");
        let valid = p.validate().unwrap();
        let (_, matcher) = valid.rules().next().unwrap();
        assert_eq!(matcher.kind(), kind, "{body}");
        let k = KernelPolicy::from_valid(&valid).unwrap();
        assert_eq!(k.rules[0].matcher, kind);
        assert_eq!(KernelPolicy::compile(&p).unwrap(), k);
        assert_eq!(
            SeccompPolicy::compile(&p).unwrap().is_some(),
            kind == MatcherKind::Seccomp,
            "{body}"
        );
    }
}

#[test]
fn port_ranges_expand_to_every_port() {
    let p = Profile::from_yaml(&profile_with(
        "    action: deny\n    connect: { ports: [3333, \"5000-5003\"] }\n",
    ))
    .unwrap();
    let k = KernelPolicy::compile(&p).unwrap();
    assert_eq!(
        k.ports.keys().copied().collect::<Vec<_>>(),
        [3333, 5000, 5001, 5002, 5003]
    );
}

/// (rule body, field path, message fragment) for each error kind.
const ERRORS: &[(&str, &str, &str)] = &[
    ("    action: deny\n    exek: {}\n", "rules[0]", "unknown field `exek`"),
    ("    action: deny\n    exec: { names: xmrig }\n", "rules[0].exec.names", "invalid type"),
    ("    action: block\n    exec: { names: [a] }\n", "rules[0].action", "unknown variant `block`"),
    ("    action: deny\n    exec: {}\n", "rules[0].exec", "empty matcher"),
    ("    action: deny\n", "rules[0]", "found none"),
    ("    action: deny\n    exec: { names: [a], dirs: [/tmp] }\n", "rules[0]", "exactly one matcher"),
    ("    action: deny\n    exec: { names: [a] }\n    open: { msr: true }\n", "rules[0]", "exactly one matcher"),
    ("    action: deny\n    exec: { names: [a/b] }\n", "rules[0].exec.names[0]", "basenames only"),
    ("    action: deny\n    exec: { names: [\"\"] }\n", "rules[0].exec.names[0]", "must not be empty"),
    ("    action: deny\n    exec: { dirs: [tmp] }\n", "rules[0].exec.dirs[0]", "not an absolute path"),
    ("    action: deny\n    exec: { path_prefixes: [/tmp] }\n", "rules[0].exec.path_prefixes[0]", "must end with `/`"),
    ("    action: deny\n    exec: { cmdline: [\"\"] }\n", "rules[0].exec.cmdline[0]", "at least 4"),
    ("    action: deny\n    connect: { ports: [0] }\n", "rules[0].connect.ports[0]", "port 0"),
    ("    action: deny\n    connect: { ports: [70000] }\n", "rules[0].connect.ports[0]", "out of range"),
    ("    action: deny\n    connect: { ports: [\"10-5\"] }\n", "rules[0].connect.ports[0]", "is empty"),
    ("    action: deny\n    connect: { ports: [\"x-y\"] }\n", "rules[0].connect.ports[0]", "not a port"),
    ("    action: deny\n    connect: { cidrs: [1.2.3.4/8] }\n", "rules[0].connect.cidrs[0]", "host bits"),
    ("    action: deny\n    connect: { cidrs: [\"::/129\"] }\n", "rules[0].connect.cidrs[0]", "prefix length"),
    ("    action: deny\n    connect: { cidrs: [pool] }\n", "rules[0].connect.cidrs[0]", "not an IPv4 or IPv6"),
    ("    action: deny\n    connect: { domains: [\"*.nicehash.com\"] }\n", "rules[0].connect.domains[0]", "wildcards"),
    ("    action: deny\n    open: { msr: false }\n", "rules[0].open", "empty matcher"),
    ("    action: deny\n    seccomp: { syscalls: [{ names: [notacall], action: allow }] }\n", "rules[0].seccomp.syscalls[0].names[0]", "unknown x86_64 syscall"),
    ("    action: deny\n    seccomp: { syscalls: [{ names: [bpf], action: { errno: 9999 } }] }\n", "rules[0].seccomp.syscalls[0].action", "errno 9999"),
    ("    action: deny\n    seccomp: { syscalls: [{ names: [bpf], action: kill }] }\n", "rules[0].seccomp.syscalls[0].action", "unknown seccomp action `kill`"),
    ("    action: deny\n    seccomp: { syscalls: [{ names: [bpf], action: allow }, { names: [bpf], action: log }] }\n", "rules[0].seccomp.syscalls[1].names[0]", "conflicting rules"),
    ("    action: deny\n    seccomp: { syscalls: [{ names: [bpf], action: allow, args: [{ index: 6, op: eq, value: 0 }] }] }\n", "rules[0].seccomp.syscalls[0].args[0].index", "0-5"),
    ("    action: deny\n    seccomp: { syscalls: [{ names: [bpf], action: allow, args: [{ index: 0, op: masked_eq, value: 0 }] }] }\n", "rules[0].seccomp.syscalls[0].args[0].mask", "needs a `mask`"),
    ("    action: audit\n    behaviour: { window_secs: 0 }\n", "rules[0].behaviour.window_secs", "1-3600"),
    ("    action: kill\n    behaviour: { busy_percent: 150 }\n", "rules[0].behaviour.busy_percent", "1-100"),
    ("    action: kill\n    behaviour: { busy_threads: 0 }\n", "rules[0].behaviour.busy_threads", "1-4096"),
    ("    action: kill\n    behaviour: { anon_mib: 0 }\n", "rules[0].behaviour.anon_mib", "1-1048576"),
    ("    action: kill\n    behaviour: { window: 5 }\n", "rules[0].behaviour", "unknown field `window`"),
    ("    action: kill\n    behaviour: { anon_mib: lots }\n", "rules[0].behaviour.anon_mib", "invalid type"),
    ("    action: kill\n    behaviour: { needs_connection: 3 }\n", "rules[0].behaviour.needs_connection", "invalid type"),
    ("    action: kill\n    behaviour: { throttled_window_secs: 0 }\n", "rules[0].behaviour.throttled_window_secs", "1-3600"),
    ("    action: kill\n    behaviour: { throttled_percent: 101 }\n", "rules[0].behaviour.throttled_percent", "0-100"),
    ("    action: kill\n    behaviour: { throttled_max_sleeps: 2000000 }\n", "rules[0].behaviour.throttled_max_sleeps", "0-1000000"),
    ("    action: kill\n    behaviour: { rhythm_max_bytes_per_sec: 0 }\n", "rules[0].behaviour.rhythm_max_bytes_per_sec", "1-1073741824"),
    ("    action: kill\n    behaviour: { needs_rhythm: often }\n", "rules[0].behaviour.needs_rhythm", "invalid type"),
    ("    action: kill\n    behaviour: { count_tuning: 1 }\n", "rules[0].behaviour.count_tuning", "invalid type"),
    ("    action: kill\n    behaviour: { rhythm_max_quiet_secs: 0 }\n", "rules[0].behaviour.rhythm_max_quiet_secs", "1-86400"),
];

#[test]
fn every_error_kind_names_its_field() {
    for (body, field, fragment) in ERRORS {
        let err = Profile::from_yaml(&profile_with(body)).expect_err(body);
        let d = err
            .diagnostics()
            .into_iter()
            .find(|d| d.field == *field)
            .unwrap_or_else(|| panic!("no diagnostic at `{field}` for\n{body}\ngot: {err}"));
        assert!(
            d.message.contains(fragment),
            "`{field}`: `{}` lacks `{fragment}`",
            d.message
        );
    }
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let err = Profile::from_yaml(&profile_with(
        "    action: deny\n    exec: { names: [a], bogus: 1 }\n",
    ))
    .unwrap_err();
    let d = &err.diagnostics()[0];
    assert_eq!(
        (d.line, d.field.as_str()),
        (Some(6), "rules[0].exec"),
        "{d}"
    );
    assert!(d.column.is_some());
}

#[test]
fn kernel_limits_and_dead_rules_are_errors() {
    let long = "x".repeat(64);
    let err = Profile::from_yaml(&profile_with(&format!(
        "    action: deny\n    exec: {{ names: [{long}] }}\n"
    )))
    .unwrap_err();
    assert!(
        err.to_string().contains("kernel map key holds at most 63"),
        "{err}"
    );

    let err = Profile::from_yaml(&profile_with(
        "    action: deny\n    connect: { ports: [\"1-65535\"] }\n",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("65535 ports"), "{err}");

    let p = Profile::from_yaml(
        "apiVersion: minerguard/v1\nname: t\nrules:\n  - name: a\n    action: kill\n    exec: { names: [x, y] }\n  - name: b\n    action: deny\n    exec: { names: [y] }\n",
    )
    .unwrap();
    let err = KernelPolicy::compile(&p).unwrap_err();
    let d = &err.diagnostics()[0];
    assert_eq!(d.field, "rules[1]");
    assert!(d.message.contains("can never fire"), "{d}");
}

#[test]
fn all_errors_of_a_file_are_reported_at_once() {
    let err = Profile::from_yaml(
        "apiVersion: minerguard/v9\nname: \"\"\nrules:\n  - name: a\n    action: deny\n    exec: { names: [a/b] }\n  - name: a\n    action: deny\n    connect: { ports: [0], cidrs: [x] }\n",
    )
    .unwrap_err();
    assert!(matches!(err, ProfileError::Invalid { .. }));
    let fields: Vec<String> = err.diagnostics().into_iter().map(|d| d.field).collect();
    assert_eq!(
        fields,
        [
            "apiVersion",
            "name",
            "rules[0].exec.names[0]",
            "rules[1].name",
            "rules[1]",
            "rules[1].connect.ports[0]",
            "rules[1].connect.cidrs[0]"
        ]
    );
}

#[test]
fn bundled_profiles_round_trip_through_yaml_and_json() {
    for name in Profile::bundled_names() {
        let p = Profile::bundled(name).unwrap();
        assert_eq!(
            Profile::from_yaml(&p.to_yaml()).unwrap(),
            p,
            "{name} via YAML"
        );
        assert_eq!(
            Profile::from_json(&p.to_json()).unwrap(),
            p,
            "{name} via JSON"
        );
    }
}

#[test]
fn bundled_profile_files_check_clean_from_disk() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("profiles");
    for name in Profile::bundled_names() {
        let p = Profile::from_file(dir.join(format!("{name}.yaml"))).unwrap();
        assert_eq!(p, Profile::bundled(name).unwrap());
    }
    let strict = Profile::bundled("container-strict").unwrap();
    assert!(strict.rules.len() > Profile::bundled("default").unwrap().rules.len());
    assert_eq!(
        Profile::bundled("audit").unwrap().mode,
        minerguard::Mode::Audit
    );
}

/// A stable text rendering of everything compile produces.
fn render(p: &Profile) -> String {
    let k = KernelPolicy::compile(p).unwrap();
    let mut out = format!("profile {}\n", k.profile);
    for (i, r) in k.rules.iter().enumerate() {
        writeln!(out, "rule {i} {} {} {}", r.name, r.matcher, r.action).unwrap();
    }
    for (name, r) in &k.exec_names {
        writeln!(out, "exec_names {name} -> rule {} {}", r.rule_idx, r.action).unwrap();
    }
    for (port, r) in &k.ports {
        writeln!(out, "ports {port} -> rule {} {}", r.rule_idx, r.action).unwrap();
    }
    for (path, r) in &k.exec_files {
        writeln!(out, "exec_files {path} -> rule {} {}", r.rule_idx, r.action).unwrap();
    }
    for (path, r) in &k.exec_dirs {
        writeln!(out, "exec_dirs {path} -> rule {} {}", r.rule_idx, r.action).unwrap();
    }
    if let Some(r) = k.memfd {
        writeln!(out, "memfd -> rule {} {}", r.rule_idx, r.action).unwrap();
    }
    if let Some(r) = &k.drift {
        writeln!(out, "drift -> rule {} {}", r.rule_idx, r.action).unwrap();
    }
    if let Some(r) = &k.escape {
        writeln!(out, "escape -> rule {} {}", r.rule_idx, r.action).unwrap();
    }

    for (pattern, r) in &k.cmdline {
        writeln!(
            out,
            "cmdline {pattern:?} -> rule {} {}",
            r.rule_idx, r.action
        )
        .unwrap();
    }
    if let Some(r) = k.msr {
        writeln!(out, "msr -> rule {} {}", r.rule_idx, r.action).unwrap();
    }
    if let Some(r) = k.stratum {
        writeln!(out, "stratum -> rule {} {}", r.rule_idx, r.action).unwrap();
    }
    for ((addr, len), r) in &k.cidrs4 {
        writeln!(
            out,
            "cidrs4 {addr:?}/{len} -> rule {} {}",
            r.rule_idx, r.action
        )
        .unwrap();
    }
    for ((addr, len), r) in &k.cidrs6 {
        writeln!(
            out,
            "cidrs6 {addr:?}/{len} -> rule {} {}",
            r.rule_idx, r.action
        )
        .unwrap();
    }
    if let Some(s) = SeccompPolicy::compile(p).unwrap() {
        writeln!(out, "seccomp default {:?}", s.default).unwrap();
        for e in &s.entries {
            writeln!(
                out,
                "seccomp {} ({}) {:?} args {:?} rule {}",
                e.syscall, e.number, e.action, e.args, e.rule_idx
            )
            .unwrap();
        }
    }
    out
}

#[test]
fn golden_compiled_entries_of_bundled_profiles() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for name in Profile::bundled_names() {
        let got = render(&Profile::bundled(name).unwrap());
        let path = dir.join(format!("{name}.compiled.txt"));
        if std::env::var_os("MINERGUARD_BLESS").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with MINERGUARD_BLESS=1 to create it",
                path.display()
            )
        });
        assert_eq!(
            got, want,
            "{name}: compiled entries changed; if intended, rerun with MINERGUARD_BLESS=1"
        );
    }
}

/// A fresh directory for one test's files.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mg-lang-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `load` on another thread; a hang fails the test instead of
/// stopping the suite.
fn within_deadline<T: Send + 'static>(load: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(load());
    });
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .expect("loading did not return: it blocked or looped")
}

fn mkfifo(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn dev_zero_is_refused_as_a_profile_and_as_a_base() {
    let err = within_deadline(|| Profile::from_file("/dev/zero").unwrap_err());
    assert!(
        matches!(
            &err,
            ProfileError::NotRegularFile {
                kind: FileKind::CharDevice,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("/dev/zero"), "{err}");

    let dir = temp_dir("zero");
    let path = dir.join("p.yaml");
    std::fs::write(
        &path,
        "apiVersion: minerguard/v1\nname: p\nextends: /dev/zero\n",
    )
    .unwrap();
    let err = within_deadline(move || Profile::from_file(path).unwrap_err());
    let d = &err.diagnostics()[0];
    assert_eq!(
        (d.field.as_str(), d.line, d.column),
        ("extends", Some(3), Some(10)),
        "{d}"
    );
    assert!(
        d.message
            .contains("/dev/zero: is a character device, not a regular file"),
        "{d}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = temp_dir("fifo");
    let fifo = dir.join("p.yaml");
    mkfifo(&fifo);
    let path = fifo.clone();
    let err = within_deadline(move || Profile::from_file(path).unwrap_err());
    assert!(
        matches!(
            &err,
            ProfileError::NotRegularFile {
                kind: FileKind::Fifo,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("is a FIFO, not a regular file"),
        "{err}"
    );

    let base = dir.join("base.yaml");
    std::fs::write(
        &base,
        "apiVersion: minerguard/v1\nname: b\nextends: ./p.yaml\n",
    )
    .unwrap();
    let err = within_deadline(move || Profile::from_file(base).unwrap_err());
    assert_eq!(err.diagnostics()[0].field, "extends", "{err}");
    assert!(err.to_string().contains("is a FIFO"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_over_the_size_limit_is_refused() {
    let dir = temp_dir("size");
    let path = dir.join("big.yaml");
    let mut text = String::from("apiVersion: minerguard/v1\nname: big\n");
    text.push_str(&"#".repeat(MAX_PROFILE_BYTES as usize));
    std::fs::write(&path, text).unwrap();
    let err = Profile::from_file(&path).unwrap_err();
    assert!(
        matches!(&err, ProfileError::TooLarge { limit, .. } if *limit == MAX_PROFILE_BYTES),
        "{err}"
    );
    assert!(
        err.to_string().contains(&MAX_PROFILE_BYTES.to_string()),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn deep_nests_are_refused_before_parsing() {
    let deep = [
        ("flow", "[".repeat(100_000)),
        (
            "flow in a profile",
            format!("apiVersion: minerguard/v1\nname: {}", "{a: ".repeat(50_000)),
        ),
        ("block", "- ".repeat(100_000)),
        (
            "block mappings",
            (0..1000)
                .map(|i| format!("{}k:\n", " ".repeat(i)))
                .collect::<String>(),
        ),
    ];
    for (what, text) in deep {
        let started = std::time::Instant::now();
        let err = within_deadline(move || Profile::from_yaml(&text).unwrap_err());
        eprintln!("{what}: refused in {:?}", started.elapsed());
        assert!(
            matches!(&err, ProfileError::TooDeep { limit, .. } if *limit == MAX_NESTING),
            "{what}: {err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("nesting deeper than {MAX_NESTING}")),
            "{what}: {err}"
        );
    }
}

#[test]
fn a_file_that_is_not_a_profile_is_never_quoted() {
    let dir = temp_dir("secret");
    let secrets = [
        (
            "shadow",
            "root:$6$SECRETHASH:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
        ),
        ("mapping", "password: SECRETHASH\n"),
        ("list", "- SECRETHASH\n"),
        ("duplicate", "SECRETHASH: 1\nSECRETHASH: 2\n"),
        ("broken", "key: \"SECRETHASH\n"),
        ("tagged", "!SECRETHASH {a: 1}\n"),
    ];
    for (name, content) in secrets {
        let secret = dir.join(name);
        std::fs::write(&secret, content).unwrap();
        let err = Profile::from_file(&secret).unwrap_err();
        let shown = format!("{err}\n{:?}", err.diagnostics());
        assert!(!shown.contains("SECRETHASH"), "{name}: {shown}");

        let profile = dir.join(format!("uses-{name}.yaml"));
        std::fs::write(
            &profile,
            format!("apiVersion: minerguard/v1\nname: p\nextends: ./{name}\n"),
        )
        .unwrap();
        let err = Profile::from_file(&profile).unwrap_err();
        let shown = format!("{err}\n{:?}", err.diagnostics());
        assert!(!shown.contains("SECRETHASH"), "extends {name}: {shown}");
    }
    let err = Profile::from_file(dir.join("uses-shadow.yaml")).unwrap_err();
    let d = &err.diagnostics()[0];
    assert_eq!((d.field.as_str(), d.line), ("extends", Some(3)), "{d}");
    assert!(
        d.message.ends_with(
            "shadow` is not a minerguard profile (line 1: expected a mapping with apiVersion)"
        ),
        "{d}"
    );
    let err = Profile::from_file(dir.join("shadow")).unwrap_err();
    assert!(
        matches!(err, ProfileError::NotAProfile { line: 1, .. }),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Eight problems of eight kinds, reading and semantic ones mixed.
const EIGHT_PROBLEMS: &str = include_str!("fixtures/eight-problems.yaml");

#[test]
fn every_problem_comes_at_once_with_line_and_column() {
    let dir = temp_dir("eight");
    let path = dir.join("eight.yaml");
    std::fs::write(&path, EIGHT_PROBLEMS).unwrap();
    let err = Profile::from_file(&path).unwrap_err();
    assert!(matches!(&err, ProfileError::Invalid { .. }), "{err}");
    let got: Vec<(String, usize, usize)> = err
        .diagnostics()
        .into_iter()
        .map(|d| {
            assert_eq!(d.file.as_deref(), Some(path.as_path()), "{d}");
            (
                d.field,
                d.line.expect("a line"),
                d.column.expect("a column"),
            )
        })
        .collect();
    let want: Vec<(String, usize, usize)> = [
        ("apiVersion", 1, 13),
        ("rules[0].action", 5, 13),
        ("rules[1].connect.ports[1]", 9, 30),
        ("rules[2]", 13, 5),
        ("rules[4].name", 17, 11),
        ("rules[5].name", 20, 11),
        ("rules[6].connect.cidrs[0]", 25, 24),
        ("rules[7]", 26, 5),
    ]
    .into_iter()
    .map(|(f, l, c)| (f.to_string(), l, c))
    .collect();
    assert_eq!(got, want, "{err}");
    let messages: Vec<String> = err.diagnostics().into_iter().map(|d| d.message).collect();
    for (m, fragment) in messages.iter().zip([
        "unsupported apiVersion",
        "unknown variant `block`",
        "port 70000 is out of range",
        "unknown field `colour`",
        "duplicate rule name `d`",
        "must not be empty",
        "host bits",
        "exactly one matcher",
    ]) {
        assert!(m.contains(fragment), "`{m}` lacks `{fragment}`");
    }
    // Rendered compiler style, one line each, and as JSON for `check --json`.
    let text = err.to_string();
    assert_eq!(text.lines().count(), 8, "{text}");
    assert!(
        text.lines().nth(2).unwrap().ends_with(
            "eight.yaml:9:30: rules[1].connect.ports[1]: port 70000 is out of range (1-65535)"
        ),
        "{text}"
    );
    let json = serde_json::to_value(err.diagnostics()).unwrap();
    assert_eq!(json[3]["field"], "rules[2]");
    assert_eq!(json[3]["line"], 13);
    assert_eq!(json[3]["column"], 5);
    assert_eq!(json[3]["file"], path.display().to_string());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn problems_in_json_profiles_have_lines_too() {
    let json = "{\n  \"apiVersion\": \"minerguard/v1\",\n  \"name\": \"j\",\n  \"rules\": [\n    {\"name\": \"a\", \"action\": \"deny\", \"connect\": {\"ports\": [0]}},\n    {\"name\": \"b\", \"action\": \"nope\", \"stratum\": {}}\n  ]\n}\n";
    let err = Profile::from_json(json).unwrap_err();
    let got: Vec<(String, Option<usize>)> = err
        .diagnostics()
        .into_iter()
        .map(|d| (d.field, d.line))
        .collect();
    assert_eq!(
        got,
        [
            ("rules[0].connect.ports[0]".to_string(), Some(5)),
            ("rules[1].action".to_string(), Some(6))
        ],
        "{err}"
    );
}

#[test]
fn problems_in_json_that_serde_json_reads_have_lines_too() {
    let json = "{\"apiVersion\": \"minerguard/v1\", \"name\": \"j\",\n \"rules\": [\n  {\"name\": \"a\", \"action\": \"deny\", \"connect\": {\"ports\": [0]}}]}";
    let err = Profile::from_json(json).unwrap_err();
    let d = &err.diagnostics()[0];
    assert_eq!(
        (d.field.as_str(), d.line, d.column),
        ("rules[0].connect.ports[0]", Some(3), Some(57)),
        "{err}"
    );
}

#[test]
fn problems_of_a_base_and_of_its_extender_come_together() {
    let dir = temp_dir("base");
    std::fs::write(
        dir.join("base.yaml"),
        "apiVersion: minerguard/v1\nname: base\nrules:\n  - name: b\n    action: deny\n    connect: { ports: [0] }\n",
    )
    .unwrap();
    let own = dir.join("own.yaml");
    std::fs::write(
        &own,
        "apiVersion: minerguard/v1\nname: own\nextends: ./base.yaml\nrules:\n  - name: o\n    action: nope\n    stratum: {}\n",
    )
    .unwrap();
    let err = Profile::from_file(&own).unwrap_err();
    let got: Vec<(String, String, Option<usize>)> = err
        .diagnostics()
        .into_iter()
        .map(|d| {
            let file = d
                .file
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (file, d.field, d.line)
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "own.yaml".to_string(),
                "rules[0].action".to_string(),
                Some(6)
            ),
            (
                "base.yaml".to_string(),
                "rules[0].connect.ports[0]".to_string(),
                Some(6)
            ),
        ],
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn problems_of_an_extending_profile_point_into_it() {
    let err = Profile::from_yaml(
        "apiVersion: minerguard/v1\nname: mine\nextends: default\nrules:\n  - name: extra\n    action: deny\n    exec: { names: [a/b] }\n  - name: bad\n    action: nope\n    stratum: {}\n",
    )
    .unwrap_err();
    let got: Vec<(String, Option<usize>)> = err
        .diagnostics()
        .into_iter()
        .map(|d| (d.field, d.line))
        .collect();
    assert_eq!(
        got,
        [
            ("rules[0].exec.names[0]".to_string(), Some(7)),
            ("rules[1].action".to_string(), Some(9))
        ],
        "{err}"
    );
}

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,12}",
        Just(String::new()),
        Just("a/b".to_string()),
        "[ -~]{0,70}",
    ]
}

fn arb_rule_yaml() -> impl Strategy<Value = String> {
    let action = prop_oneof![
        Just("deny"),
        Just("kill"),
        Just("kill-container"),
        Just("audit"),
        Just("block")
    ];
    let matcher = prop_oneof![
        prop::collection::vec(arb_name(), 0..4).prop_map(|v| format!("exec: {{ names: {v:?} }}")),
        prop::collection::vec(any::<u32>(), 0..4)
            .prop_map(|v| format!("connect: {{ ports: {v:?} }}")),
        (any::<u16>(), any::<u16>())
            .prop_map(|(a, b)| format!("connect: {{ ports: [\"{a}-{b}\"] }}")),
        prop::collection::vec("[0-9a-f:./]{0,20}", 0..3)
            .prop_map(|v| format!("connect: {{ cidrs: {v:?} }}")),
        prop::collection::vec("[a-z_]{1,20}", 0..3).prop_map(|v| format!(
            "seccomp: {{ syscalls: [{{ names: {v:?}, action: {{ errno: 1 }} }}] }}"
        )),
        Just("stratum: {}".to_string()),
        Just("open: { msr: true }".to_string()),
        Just("exec: { memfd: true }".to_string()),
    ];
    (arb_name(), action, matcher)
        .prop_map(|(n, a, m)| format!("  - name: {n:?}\n    action: {a}\n    {m}\n"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsing_arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = Profile::from_yaml(&text);
    }

    #[test]
    fn parsing_and_compiling_generated_profiles_never_panics_and_round_trips(
        rules in prop::collection::vec(arb_rule_yaml(), 0..6)
    ) {
        let text = format!("apiVersion: minerguard/v1\nname: p\nrules:\n{}", rules.concat());
        if let Ok(p) = Profile::from_yaml(&text) {
            let _ = KernelPolicy::compile(&p);
            let _ = SeccompPolicy::compile(&p);
            prop_assert_eq!(Profile::from_yaml(&p.to_yaml()).unwrap(), p);
        }
    }
}
