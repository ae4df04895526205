//! `AgentConfig`: what the agent enforces where, read from YAML (a
//! ConfigMap) and checked whole before anything is enforced.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use minerguard::{Profile, ValidProfile};
use serde::Deserialize;

use crate::identity::RuntimeKind;

/// Why a configuration cannot be used; every variant names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not have the shape of an `AgentConfig`.
    #[error("{path}: `{field}`: {problem}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The field, as a path (`bindings[0].match.namespaces`).
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A field has a value that cannot be used.
    #[error("{path}: `{field}`: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

/// Which runtime's API gives container metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeChoice {
    /// The first runtime whose default socket exists.
    #[default]
    Auto,
    /// containerd.
    Containerd,
    /// CRI-O.
    Crio,
    /// Docker.
    Docker,
    /// Podman.
    Podman,
}

impl RuntimeChoice {
    /// The runtime this names (`None`: auto).
    pub fn kind(self) -> Option<RuntimeKind> {
        match self {
            RuntimeChoice::Auto => None,
            RuntimeChoice::Containerd => Some(RuntimeKind::Containerd),
            RuntimeChoice::Crio => Some(RuntimeKind::Crio),
            RuntimeChoice::Docker => Some(RuntimeKind::Docker),
            RuntimeChoice::Podman => Some(RuntimeKind::Podman),
        }
    }
}

/// The file as written (before checks).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    api_version: String,
    kind: String,
    #[serde(default = "default_baseline")]
    baseline: String,
    #[serde(default)]
    runtime: RuntimeChoice,
    #[serde(default)]
    runtime_endpoint: Option<PathBuf>,
    #[serde(default)]
    runtime_namespace: Option<String>,
    #[serde(default)]
    pods_root: Option<PathBuf>,
    #[serde(default)]
    instance: Option<String>,
    #[serde(default)]
    bindings: Vec<RawBinding>,
    #[serde(default)]
    outputs: RawOutputs,
    #[serde(default)]
    metrics: Option<RawMetrics>,
    #[serde(default)]
    scan: RawScan,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawScan {
    #[serde(default = "yes")]
    enabled: bool,
    /// A duration, or `0` (a number in YAML).
    #[serde(default)]
    every: Option<serde_yaml::Value>,
    #[serde(default)]
    dry_run: bool,
}

impl Default for RawScan {
    fn default() -> Self {
        RawScan {
            enabled: true,
            every: None,
            dry_run: false,
        }
    }
}

fn default_baseline() -> String {
    "default".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBinding {
    name: String,
    #[serde(rename = "match", default)]
    matcher: RawMatch,
    profile: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMatch {
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    pod_labels: BTreeMap<String, String>,
    #[serde(default)]
    containers: Vec<String>,
    #[serde(default)]
    images: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawOutputs {
    #[serde(default = "yes")]
    stdout: bool,
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default)]
    file_max_size: Option<String>,
    #[serde(default)]
    webhook: Option<RawWebhook>,
}

impl Default for RawOutputs {
    fn default() -> Self {
        RawOutputs {
            stdout: true,
            file: None,
            file_max_size: None,
            webhook: None,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawWebhook {
    url: String,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    queue: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMetrics {
    listen: String,
}

/// A checked agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The profile applied to the pods' cgroup root.
    pub baseline: NamedProfile,
    /// Which runtime's API to ask.
    pub runtime: RuntimeChoice,
    /// Its socket (`None`: the runtime's default).
    pub runtime_endpoint: Option<PathBuf>,
    /// containerd namespace of the containers (`k8s.io` for the CRI).
    pub runtime_namespace: String,
    /// The pods' cgroup root (`None`: found under the cgroup v2 mount).
    pub pods_root: Option<PathBuf>,
    /// The pinned instance name (enforcement outlives the agent; a
    /// restarted agent adopts it).
    pub instance: String,
    /// Bindings, first match wins.
    pub bindings: Vec<Binding>,
    /// Where events go.
    pub outputs: Outputs,
    /// Where `/metrics`, `/healthz`, `/readyz` are served, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// Scans of what already runs in the scopes.
    pub scan: ScanConfig,
}

/// When the agent scans the processes already running in its scopes
/// (`scan:` in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanConfig {
    /// Whether it scans at all (`enabled`, default true).
    pub enabled: bool,
    /// How often every scope is scanned again (`every`, default `10m`,
    /// spread by ±10 %); zero: only when a scope is applied or its profile
    /// changes.
    pub every: Duration,
    /// Report findings, never kill (`dryRun`, default false).
    pub dry_run: bool,
}

/// How often the agent scans every scope unless `scan.every` says.
pub const DEFAULT_SCAN_EVERY: Duration = Duration::from_secs(600);

/// A profile with the name it was given by (bundled name or path).
#[derive(Debug, Clone)]
pub struct NamedProfile {
    /// As written in the configuration.
    pub source: String,
    /// The profile.
    pub profile: ValidProfile<'static>,
}

/// Which containers get which profile.
#[derive(Debug, Clone)]
pub struct Binding {
    /// Its name (in logs and events).
    pub name: String,
    /// What a container must match (every given criterion).
    pub matcher: Match,
    /// The profile its containers get.
    pub profile: NamedProfile,
}

/// What a binding matches: each non-empty list must hold the container's
/// value; every pod label given must be the pod's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    /// Pod namespaces.
    pub namespaces: Vec<String>,
    /// Pod labels, all required.
    pub pod_labels: BTreeMap<String, String>,
    /// Container names.
    pub containers: Vec<String>,
    /// Image patterns (`*` matches any run of characters).
    pub images: Vec<String>,
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// JSON lines on stdout.
    pub stdout: bool,
    /// JSON lines appended to this file.
    pub file: Option<PathBuf>,
    /// Rotate the file before it passes this many bytes.
    pub file_max_size: Option<u64>,
    /// POST each event to this webhook.
    pub webhook: Option<WebhookConfig>,
}

/// A webhook output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `http://host:port/path`.
    pub url: String,
    /// Each try's time limit.
    pub timeout: Duration,
    /// Events waiting at most (more are dropped, counted).
    pub queue: usize,
}

fn invalid(path: &Path, field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        field: field.into(),
        problem: problem.into(),
    }
}

/// `2s`, `500ms`, `1m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        _ => None,
    }
}

/// `4096`, `64K`, `10M`, `1G`.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Loads a profile by bundled name, or by path (relative to `dir`, the
/// configuration's directory).
fn load_profile(
    path: &Path,
    dir: &Path,
    field: &str,
    source: &str,
) -> Result<NamedProfile, ConfigError> {
    let file = dir.join(source);
    let profile = if Profile::bundled_names().contains(&source) && !file.exists() {
        ValidProfile::bundled(source)
            .ok_or_else(|| invalid(path, field, "unknown bundled profile"))?
    } else {
        Profile::load(&file).map_err(|e| {
            invalid(
                path,
                field,
                format!(
                    "profile `{source}`: {e} (bundled profiles: {})",
                    Profile::bundled_names().join(", ")
                ),
            )
        })?
    };
    Ok(NamedProfile {
        source: source.to_string(),
        profile,
    })
}

impl AgentConfig {
    /// Reads and checks the configuration at `path`.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, dir)
    }

    /// Checks configuration `text` (from `path`, whose profile paths are
    /// relative to `dir`).
    pub fn parse(text: &str, path: &Path, dir: &Path) -> Result<AgentConfig, ConfigError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            ConfigError::Shape {
                path: path.to_path_buf(),
                field: if field == "." {
                    "(top level)".into()
                } else {
                    field
                },
                problem: e.into_inner().to_string(),
            }
        })?;
        if raw.api_version != "minerguard/v1" {
            return Err(invalid(path, "apiVersion", "expected `minerguard/v1`"));
        }
        if raw.kind != "AgentConfig" {
            return Err(invalid(path, "kind", "expected `AgentConfig`"));
        }
        let baseline = load_profile(path, dir, "baseline", &raw.baseline)?;
        let mut bindings = Vec::new();
        for (i, b) in raw.bindings.into_iter().enumerate() {
            let field = |f: &str| format!("bindings[{i}].{f}");
            if b.name.is_empty() {
                return Err(invalid(path, field("name"), "empty"));
            }
            if bindings.iter().any(|o: &Binding| o.name == b.name) {
                return Err(invalid(
                    path,
                    field("name"),
                    format!("`{}` is used twice", b.name),
                ));
            }
            let m = b.matcher;
            if m.namespaces.is_empty()
                && m.pod_labels.is_empty()
                && m.containers.is_empty()
                && m.images.is_empty()
            {
                return Err(invalid(
                    path,
                    field("match"),
                    "matches every container: give namespaces, podLabels, containers or images (the baseline is for every container)",
                ));
            }
            for (j, image) in m.images.iter().enumerate() {
                if image.is_empty() || image.contains(char::is_whitespace) {
                    return Err(invalid(
                        path,
                        field(&format!("match.images[{j}]")),
                        "an image pattern is a non-empty reference with no spaces (`*` matches any run of characters)",
                    ));
                }
            }
            let profile = load_profile(path, dir, &field("profile"), &b.profile)?;
            bindings.push(Binding {
                name: b.name,
                matcher: Match {
                    namespaces: m.namespaces,
                    pod_labels: m.pod_labels,
                    containers: m.containers,
                    images: m.images,
                },
                profile,
            });
        }
        let webhook = match raw.outputs.webhook {
            None => None,
            Some(w) => {
                if !w.url.starts_with("http://") {
                    return Err(invalid(
                        path,
                        "outputs.webhook.url",
                        "expected an http:// URL (falcosidekick's, for instance)",
                    ));
                }
                let timeout = match &w.timeout {
                    None => Duration::from_secs(2),
                    Some(t) => parse_duration(t).ok_or_else(|| {
                        invalid(
                            path,
                            "outputs.webhook.timeout",
                            "expected a duration such as `2s` or `500ms`",
                        )
                    })?,
                };
                let queue = w.queue.unwrap_or(10_000);
                if queue == 0 {
                    return Err(invalid(path, "outputs.webhook.queue", "must be at least 1"));
                }
                Some(WebhookConfig {
                    url: w.url,
                    timeout,
                    queue,
                })
            }
        };
        let file_max_size = match &raw.outputs.file_max_size {
            None => None,
            Some(s) => Some(parse_size(s).filter(|n| *n > 0).ok_or_else(|| {
                invalid(
                    path,
                    "outputs.fileMaxSize",
                    "expected a size such as `10M` or `1G`",
                )
            })?),
        };
        if file_max_size.is_some() && raw.outputs.file.is_none() {
            return Err(invalid(path, "outputs.fileMaxSize", "needs outputs.file"));
        }
        let metrics = match raw.metrics {
            None => None,
            Some(m) => Some(m.listen.parse().map_err(|_| {
                invalid(
                    path,
                    "metrics.listen",
                    "expected an address and port such as `0.0.0.0:9464`",
                )
            })?),
        };
        let every = match &raw.scan.every {
            None => DEFAULT_SCAN_EVERY,
            Some(v) if v.as_u64() == Some(0) || v.as_str() == Some("0") => Duration::ZERO,
            Some(v) => (v.as_str())
                .and_then(parse_duration)
                .filter(|d| *d >= Duration::from_secs(1))
                .ok_or_else(|| {
                    invalid(
                        path,
                        "scan.every",
                        "expected a duration of at least 1s such as `10m` or `1h`, or `0` (only when a scope is applied or changes)",
                    )
                })?,
        };
        let scan = ScanConfig {
            enabled: raw.scan.enabled,
            every,
            dry_run: raw.scan.dry_run,
        };
        let instance = raw.instance.unwrap_or_else(|| "agent".into());
        if instance.is_empty()
            || instance.len() > 64
            || !instance
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                path,
                "instance",
                "use 1-64 characters of A-Z a-z 0-9 _ -",
            ));
        }
        Ok(AgentConfig {
            baseline,
            runtime: raw.runtime,
            runtime_endpoint: raw.runtime_endpoint,
            runtime_namespace: raw.runtime_namespace.unwrap_or_else(|| "k8s.io".into()),
            pods_root: raw.pods_root,
            instance,
            bindings,
            outputs: Outputs {
                stdout: raw.outputs.stdout,
                file: raw.outputs.file,
                file_max_size,
                webhook,
            },
            metrics,
            scan,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(text, Path::new("agent.yaml"), Path::new("/nonexistent"))
    }

    const HEAD: &str = "apiVersion: minerguard/v1\nkind: AgentConfig\n";

    #[test]
    fn scans_default_to_every_ten_minutes_and_take_their_fields() {
        let cfg = parse(HEAD).unwrap();
        assert_eq!(
            cfg.scan,
            ScanConfig {
                enabled: true,
                every: DEFAULT_SCAN_EVERY,
                dry_run: false
            }
        );
        let cfg = parse(&format!("{HEAD}scan: {{ every: 1h, dryRun: true }}\n")).unwrap();
        assert_eq!(cfg.scan.every, Duration::from_secs(3600));
        assert!(cfg.scan.dry_run);
        for zero in ["0", "\"0\""] {
            let cfg = parse(&format!("{HEAD}scan: {{ every: {zero} }}\n")).unwrap();
            assert_eq!(cfg.scan.every, Duration::ZERO);
        }
        for bad in ["soon", "500ms", "-1m", "5"] {
            let err = parse(&format!("{HEAD}scan: {{ every: \"{bad}\" }}\n")).unwrap_err();
            assert!(err.to_string().contains("scan.every"), "{bad}: {err}");
        }
        let err = parse(&format!("{HEAD}scan: {{ often: true }}\n")).unwrap_err();
        assert!(err.to_string().contains("scan"), "{err}");
    }

    #[test]
    fn the_issue_example_is_accepted() {
        let cfg = parse(&format!(
            "{HEAD}baseline: default\nruntime: auto\nruntimeEndpoint: /run/containerd/containerd.sock\nbindings:\n  - name: tenants-strict\n    match:\n      namespaces: [tenant-a]\n      podLabels: {{ tier: web }}\n      containers: [app]\n      images: [\"registry.example/app:*\"]\n    profile: container-strict\noutputs:\n  stdout: true\n  file: /var/log/minerguard/events.jsonl\n  webhook: {{ url: \"http://falcosidekick.minerguard:2801/\", timeout: 2s }}\nmetrics: {{ listen: \"0.0.0.0:9464\" }}\n"
        ))
        .unwrap();
        assert_eq!(cfg.baseline.profile.name, "default");
        assert_eq!(cfg.bindings.len(), 1);
        assert_eq!(cfg.bindings[0].profile.profile.name, "container-strict");
        assert_eq!(cfg.bindings[0].matcher.pod_labels["tier"], "web");
        assert_eq!(
            cfg.outputs.webhook.as_ref().unwrap().timeout,
            Duration::from_secs(2)
        );
        assert_eq!(cfg.metrics.unwrap().port(), 9464);
        assert_eq!(cfg.instance, "agent");
        assert_eq!(cfg.runtime_namespace, "k8s.io");
    }

    #[test]
    fn every_bad_field_is_named() {
        for (text, field) in [
            ("apiVersion: v2\nkind: AgentConfig\n", "apiVersion"),
            ("apiVersion: minerguard/v1\nkind: Agent\n", "kind"),
            (&format!("{HEAD}baseline: nope\n") as &str, "baseline"),
            (&format!("{HEAD}runtime: rkt\n"), "runtime"),
            (&format!("{HEAD}surprise: 1\n"), "surprise"),
            (&format!("{HEAD}bindings:\n  - name: a\n    profile: default\n"), "bindings[0].match"),
            (&format!("{HEAD}bindings:\n  - name: a\n    match: {{ images: [\"\"] }}\n    profile: default\n"), "bindings[0].match.images[0]"),
            (&format!("{HEAD}bindings:\n  - name: a\n    match: {{ namespaces: [x] }}\n    profile: missing\n"), "bindings[0].profile"),
            (&format!("{HEAD}bindings:\n  - name: a\n    match: {{ namespaces: [x] }}\n    profile: default\n  - name: a\n    match: {{ namespaces: [y] }}\n    profile: default\n"), "bindings[1].name"),
            (&format!("{HEAD}bindings:\n  - name: a\n    match: {{ namespace: [x] }}\n    profile: default\n"), "bindings[0].match.namespace"),
            (&format!("{HEAD}outputs: {{ webhook: {{ url: \"https://x\" }} }}\n"), "outputs.webhook.url"),
            (&format!("{HEAD}outputs: {{ webhook: {{ url: \"http://x\", timeout: soon }} }}\n"), "outputs.webhook.timeout"),
            (&format!("{HEAD}outputs: {{ fileMaxSize: 10M }}\n"), "outputs.fileMaxSize"),
            (&format!("{HEAD}metrics: {{ listen: \"nowhere\" }}\n"), "metrics.listen"),
            (&format!("{HEAD}instance: \"a/b\"\n"), "instance"),
        ] {
            let e = parse(text).err().unwrap_or_else(|| panic!("accepted:\n{text}"));
            let shown = e.to_string();
            assert!(shown.contains(&format!("`{field}`")), "{field}: {shown}");
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_size("10M"), Some(10 << 20));
        assert_eq!(parse_size("x"), None);
    }
}
