//! CRI-O's inspect API on its unix socket (what `crio status containers`
//! reads): a container from `GET /containers/<id>`, whose answer has the
//! CRI labels, the image as the pod spec names it, and its `sandbox` id;
//! the pod's labels from that sandbox's own entry (CRI-O keeps the pod's
//! labels on the sandbox's infra container).

use super::unix_http::{parse, path_segment, UnixHttp};
use super::{pod_labels_of_sandbox, MetadataSource, RuntimeError};
use crate::identity::ContainerInfo;
use std::collections::BTreeMap;
use std::path::Path;

/// The runtime's name in errors.
const RUNTIME: &str = "crio";

/// The label prefix of a sandbox's labels that are not the pod's own:
/// kubelet's CRI labels.
const NOT_POD_LABELS: [&str; 1] = ["io.kubernetes."];

/// CRI-O's inspect API at its socket. Blocking; every call bounded by
/// [`super::CALL_TIMEOUT`]. Nothing is cached.
#[derive(Debug)]
pub struct CrioSource {
    api: UnixHttp,
}

/// The fields of CRI-O's answer the agent reads.
#[derive(serde::Deserialize)]
struct Inspect {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    sandbox: String,
}

impl CrioSource {
    /// The API at `socket`, checked to answer (`GET /info`).
    pub fn new(socket: &Path) -> Result<Self, RuntimeError> {
        Ok(CrioSource {
            api: UnixHttp::new(RUNTIME, socket, "/info")?,
        })
    }

    /// CRI-O's answer for container `id`.
    fn inspect(&self, id: &str) -> Result<Inspect, RuntimeError> {
        let path = format!("/containers/{}", path_segment(id));
        let body = self.api.inspect(id, &path)?;
        parse(&body).map_err(|detail| self.api.bad(id, detail))
    }
}

impl MetadataSource for CrioSource {
    /// The container's CRI labels and image; the Kubernetes fields from its
    /// CRI labels; the pod's labels from its sandbox's entry (none when it
    /// has no sandbox or CRI-O does not serve the sandbox's entry).
    fn container(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let inspect = self.inspect(id)?;
        let mut info = ContainerInfo {
            id: id.to_string(),
            name: inspect.name,
            image: inspect.image,
            labels: inspect.labels.unwrap_or_default(),
            ..Default::default()
        }
        .with_cri_labels();
        if !inspect.sandbox.is_empty() && inspect.sandbox != id {
            info.pod_labels = match self.inspect(&inspect.sandbox) {
                Ok(s) => pod_labels_of_sandbox(s.labels.unwrap_or_default(), &NOT_POD_LABELS),
                Err(RuntimeError::NotFound { .. }) => BTreeMap::new(),
                Err(e) => return Err(e),
            };
        }
        Ok(info)
    }
}
