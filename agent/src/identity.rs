//! Which container a cgroup is, from its name, and what is known of a
//! container.
//!
//! Cgroup names by runtime and cgroup driver (the container id is 64 hex
//! digits in every case):
//! - containerd (CRI, systemd driver): `cri-containerd-<id>.scope`; with
//!   the cgroupfs driver `<id>` under `pod<uid>`;
//! - CRI-O: `crio-<id>.scope` (its conmon: `crio-conmon-<id>.scope`); with
//!   the cgroupfs manager `crio-<id>` (its conmon: `crio-conmon-<id>`),
//!   as CRI-O's `CgroupfsManager::ContainerCgroupPath` makes it;
//! - Docker: `docker-<id>.scope`; with the cgroupfs driver `<id>` under
//!   the cgroup parent;
//! - Podman: `libpod-<id>.scope` (its conmon: `libpod-conmon-<id>.scope`);
//!   with the cgroupfs manager `libpod-<id>` (its conmon: `conmon` beside
//!   it), as libpod's `getOCICgroupPath` makes it and as the agent's
//!   end-to-end test sees it.

use std::collections::BTreeMap;

/// A container runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// containerd (its CRI plugin, or `ctr`).
    Containerd,
    /// CRI-O.
    Crio,
    /// Docker.
    Docker,
    /// Podman.
    Podman,
}

impl RuntimeKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Containerd => "containerd",
            RuntimeKind::Crio => "crio",
            RuntimeKind::Docker => "docker",
            RuntimeKind::Podman => "podman",
        }
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container as its cgroup's name tells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    /// The runtime, when the name says (`None` for the cgroupfs driver's
    /// bare id).
    pub runtime: Option<RuntimeKind>,
    /// The container id (64 lower-case hex digits).
    pub id: String,
}

/// Whether `s` is a container id: 64 lower-case hex digits.
fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The container a cgroup directory name belongs to, if it is a
/// container's own cgroup (not a runtime's monitor process, not a pod).
pub fn parse_cgroup_name(name: &str) -> Option<ContainerRef> {
    // A runtime's prefix, and whether its cgroupfs layout names a
    // container `<prefix><id>` (no `.scope`) too.
    const PREFIXES: [(&str, RuntimeKind, bool); 4] = [
        ("cri-containerd-", RuntimeKind::Containerd, false),
        ("crio-", RuntimeKind::Crio, true),
        ("docker-", RuntimeKind::Docker, false),
        ("libpod-", RuntimeKind::Podman, true),
    ];
    let (stem, scope) = match name.strip_suffix(".scope") {
        Some(stem) => (stem, true),
        None => (name, false),
    };
    let prefixed = PREFIXES.iter().find_map(|(prefix, runtime, bare)| {
        let id = stem.strip_prefix(prefix)?;
        ((scope || *bare) && is_container_id(id)).then(|| ContainerRef {
            runtime: Some(*runtime),
            id: id.to_string(),
        })
    });
    if prefixed.is_some() || scope {
        return prefixed;
    }
    is_container_id(name).then(|| ContainerRef {
        runtime: None,
        id: name.to_string(),
    })
}

/// What the runtime says of a container (empty fields when it does not
/// say). Kubernetes fields come from the CRI labels
/// (`io.kubernetes.pod.namespace`, `.pod.name`, `.pod.uid`,
/// `io.kubernetes.container.name`); pod labels from the pod's sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ContainerInfo {
    /// The container id.
    pub id: String,
    /// Its name (Kubernetes: the container's name in the pod spec).
    pub name: String,
    /// Its image reference as the runtime has it (`registry/repo:tag` or
    /// `repo@sha256:…`).
    pub image: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod_name: String,
    /// The pod's uid.
    pub pod_uid: String,
    /// The pod's labels.
    pub pod_labels: BTreeMap<String, String>,
    /// The container's own labels, as the runtime stores them.
    pub labels: BTreeMap<String, String>,
}

/// The CRI label keys (kubelet's `pkg/kubelet/types/labels.go`).
pub mod labels {
    /// The pod's namespace.
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// The pod's name.
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    /// The pod's uid.
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    /// The container's name in the pod.
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
}

impl ContainerInfo {
    /// Fills the Kubernetes fields from the CRI labels among `labels`.
    pub fn with_cri_labels(mut self) -> Self {
        let get = |k: &str| self.labels.get(k).cloned().unwrap_or_default();
        self.namespace = get(labels::POD_NAMESPACE);
        self.pod_name = get(labels::POD_NAME);
        self.pod_uid = get(labels::POD_UID);
        let name = get(labels::CONTAINER_NAME);
        if !name.is_empty() {
            self.name = name;
        }
        self
    }

    /// The image's repository and tag (`registry/repo`, `tag`); a digest
    /// reference has no tag.
    pub fn image_parts(&self) -> (&str, &str) {
        let image = self.image.split('@').next().unwrap_or("");
        // A ':' after the last '/' separates the tag (one before it is a
        // registry's port).
        match image.rfind(':') {
            Some(i) if !image[i..].contains('/') => (&image[..i], &image[i + 1..]),
            _ => (image, ""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn cgroup_names_give_the_runtime_and_id() {
        for (name, runtime) in [
            (
                format!("cri-containerd-{ID}.scope"),
                Some(RuntimeKind::Containerd),
            ),
            (format!("crio-{ID}.scope"), Some(RuntimeKind::Crio)),
            (format!("docker-{ID}.scope"), Some(RuntimeKind::Docker)),
            (format!("libpod-{ID}.scope"), Some(RuntimeKind::Podman)),
            // The cgroupfs managers' names.
            (format!("crio-{ID}"), Some(RuntimeKind::Crio)),
            (format!("libpod-{ID}"), Some(RuntimeKind::Podman)),
            (ID.to_string(), None),
        ] {
            let got = parse_cgroup_name(&name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(got.runtime, runtime, "{name}");
            assert_eq!(got.id, ID);
        }
    }

    #[test]
    fn other_cgroups_are_not_containers() {
        for name in [
            format!("crio-conmon-{ID}.scope"),
            format!("libpod-conmon-{ID}.scope"),
            // The monitors with the cgroupfs managers.
            format!("crio-conmon-{ID}"),
            format!("libpod-conmon-{ID}"),
            "conmon".to_string(),
            // No runtime's cgroupfs layout names them so.
            format!("cri-containerd-{ID}"),
            format!("docker-{ID}"),
            format!("{ID}.scope"),
            format!("libpod-{}", &ID[1..]),
            format!("libpod-{ID}.slice"),
            format!("cri-containerd-{}.scope", &ID[1..]),
            format!("docker-{}.scope", ID.to_uppercase()),
            "kubepods-besteffort-pod1234.slice".to_string(),
            "pod6c2a1b0e-1f2d-4c3b-9a8e-7d6c5b4a3f2e".to_string(),
            "system.slice".to_string(),
            String::new(),
        ] {
            assert_eq!(parse_cgroup_name(&name), None, "{name}");
        }
    }

    #[test]
    fn image_parts_split_at_the_tag_not_a_port() {
        let info = |image: &str| ContainerInfo {
            image: image.into(),
            ..Default::default()
        };
        assert_eq!(
            info("registry.example/app:1.2").image_parts(),
            ("registry.example/app", "1.2")
        );
        assert_eq!(
            info("localhost:5000/app").image_parts(),
            ("localhost:5000/app", "")
        );
        assert_eq!(
            info("localhost:5000/app:v1").image_parts(),
            ("localhost:5000/app", "v1")
        );
        assert_eq!(info("app@sha256:abcd").image_parts(), ("app", ""));
    }

    #[test]
    fn cri_labels_fill_the_kubernetes_fields() {
        let info = ContainerInfo {
            name: "ctr-name".into(),
            labels: [
                (labels::POD_NAMESPACE, "tenant-a"),
                (labels::POD_NAME, "web-0"),
                (labels::POD_UID, "uid-1"),
                (labels::CONTAINER_NAME, "app"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..Default::default()
        }
        .with_cri_labels();
        assert_eq!(
            (
                info.namespace.as_str(),
                info.pod_name.as_str(),
                info.pod_uid.as_str(),
                info.name.as_str()
            ),
            ("tenant-a", "web-0", "uid-1", "app")
        );
    }
}
