//! Docker's Engine API on its unix socket: a container from
//! `GET /containers/<id>/json` (unversioned: the daemon's own version;
//! the fields read are the same since API 1.24). Kubernetes nodes on
//! Docker run cri-dockerd, which labels each container with the CRI labels
//! and `io.kubernetes.sandbox.id`, its pod's sandbox container.

use super::podman::parse_inspect;
use super::unix_http::{path_segment, UnixHttp};
use super::{pod_labels_of_sandbox, MetadataSource, RuntimeError};
use crate::identity::ContainerInfo;
use std::collections::BTreeMap;
use std::path::Path;

/// The runtime's name in errors.
const RUNTIME: &str = "docker";

/// The label cri-dockerd puts on a container: its pod's sandbox container.
const SANDBOX_LABEL: &str = "io.kubernetes.sandbox.id";

/// The label prefixes of a sandbox container that are not the pod's own
/// labels: kubelet's CRI labels, and the pod's annotations, which
/// cri-dockerd stores as labels under `annotation.`.
const NOT_POD_LABELS: [&str; 2] = ["io.kubernetes.", "annotation."];

/// Docker's API at its socket. Blocking; every call bounded by
/// [`super::CALL_TIMEOUT`]. Nothing is cached.
#[derive(Debug)]
pub struct DockerSource {
    api: UnixHttp,
}

impl DockerSource {
    /// The API at `socket`, checked to answer (`GET /_ping`).
    pub fn new(socket: &Path) -> Result<Self, RuntimeError> {
        Ok(DockerSource {
            api: UnixHttp::new(RUNTIME, socket, "/_ping")?,
        })
    }

    /// `Name`, `Config.Image`, `Config.Labels` of container `id`.
    fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let path = format!("/containers/{}/json", path_segment(id));
        let body = self.api.inspect(id, &path)?;
        parse_inspect(&body).map_err(|detail| self.api.bad(id, detail))
    }
}

impl MetadataSource for DockerSource {
    /// The container's name, image and labels; the Kubernetes fields from
    /// its CRI labels; the pod's labels from its sandbox container (none
    /// when it names none, or that one is gone).
    fn container(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let mut info = self.inspect(id)?.with_cri_labels();
        if let Some(sandbox) = info.labels.get(SANDBOX_LABEL).cloned() {
            info.pod_labels = match self.inspect(&sandbox) {
                Ok(s) => pod_labels_of_sandbox(s.labels, &NOT_POD_LABELS),
                Err(RuntimeError::NotFound { .. }) => BTreeMap::new(),
                Err(e) => return Err(e),
            };
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_labels_leave_out_kubelets_and_the_annotations() {
        let sandbox = [
            ("io.kubernetes.pod.name", "web-0"),
            ("io.kubernetes.docker.type", "podsandbox"),
            ("annotation.kubernetes.io/config.seen", "x"),
            ("tier", "web"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>();
        let labels = pod_labels_of_sandbox(sandbox, &NOT_POD_LABELS);
        assert_eq!(labels.len(), 1, "{labels:?}");
        assert_eq!(labels["tier"], "web");
    }
}
