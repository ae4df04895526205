//! Reading a container's metadata from its runtime's API.
//!
//! One [`MetadataSource`] per runtime, each blocking to its caller (an
//! async client stays inside, on a current-thread tokio runtime the source
//! owns) and bounded in time: every call to the runtime gets
//! [`CALL_TIMEOUT`].
//! - [`containerd`]: containerd's gRPC API (its CRI plugin's containers
//!   and their pods' sandboxes);
//! - [`crio`]: CRI-O's inspect API on its unix socket;
//! - [`docker`]: Docker's Engine API on its unix socket (cri-dockerd's
//!   labels);
//! - [`podman`]: Podman's REST API on its unix socket.
//!
//! The three HTTP ones share [`unix_http`].

use crate::identity::{ContainerInfo, RuntimeKind};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod containerd;
pub mod crio;
pub mod docker;
pub mod podman;
pub mod unix_http;

pub use containerd::ContainerdSource;
pub use crio::CrioSource;
pub use docker::DockerSource;
pub use podman::PodmanSource;

/// How long one call to a runtime's API may take, connecting included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a runtime could not say what a container is.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime's socket could not be reached.
    #[error("cannot reach the {runtime} API at {endpoint}: {detail}")]
    Unreachable {
        /// Which runtime.
        runtime: &'static str,
        /// Its socket.
        endpoint: String,
        /// What failed.
        detail: String,
    },
    /// The runtime does not know the container (gone, or another runtime's).
    #[error("the {runtime} API does not know container {id}")]
    NotFound {
        /// Which runtime.
        runtime: &'static str,
        /// The container id.
        id: String,
    },
    /// The runtime answered something this agent cannot read.
    #[error("the {runtime} API gave an answer for container {id} that cannot be read: {detail}")]
    BadAnswer {
        /// Which runtime.
        runtime: &'static str,
        /// The container id.
        id: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// A runtime's API, asked about one container at a time.
pub trait MetadataSource: Send + Sync {
    /// What the runtime says of container `id` (Kubernetes fields filled
    /// from its CRI labels and its pod's sandbox where it has them).
    fn container(&self, id: &str) -> Result<ContainerInfo, RuntimeError>;
}

/// The socket `kind` listens on by default.
pub fn default_endpoint(kind: RuntimeKind) -> &'static Path {
    Path::new(match kind {
        RuntimeKind::Containerd => "/run/containerd/containerd.sock",
        RuntimeKind::Crio => "/var/run/crio/crio.sock",
        RuntimeKind::Docker => "/var/run/docker.sock",
        RuntimeKind::Podman => "/run/podman/podman.sock",
    })
}

/// The first runtime whose default endpoint exists on this host, in the
/// order containerd, CRI-O, Docker, Podman.
pub fn detect() -> Option<(RuntimeKind, PathBuf)> {
    [
        RuntimeKind::Containerd,
        RuntimeKind::Crio,
        RuntimeKind::Docker,
        RuntimeKind::Podman,
    ]
    .into_iter()
    .map(|kind| (kind, default_endpoint(kind)))
    .find(|(_, endpoint)| endpoint.exists())
    .map(|(kind, endpoint)| (kind, endpoint.to_path_buf()))
}

/// A metadata source for `kind` at `endpoint` (its API socket), checked to
/// answer. `namespace` is containerd's (`k8s.io` for its CRI plugin's
/// containers) and is not used by the others.
pub fn connect(
    kind: RuntimeKind,
    endpoint: &Path,
    namespace: &str,
) -> Result<Box<dyn MetadataSource>, RuntimeError> {
    match kind {
        RuntimeKind::Containerd => Ok(Box::new(ContainerdSource::connect(endpoint, namespace)?)),
        RuntimeKind::Podman => Ok(Box::new(PodmanSource::new(endpoint)?)),
        RuntimeKind::Crio => Ok(Box::new(CrioSource::new(endpoint)?)),
        RuntimeKind::Docker => Ok(Box::new(DockerSource::new(endpoint)?)),
    }
}

/// A pod sandbox's labels less those whose key starts with one of
/// `not_pod` (kubelet's CRI labels and the runtime's own): the pod's own
/// labels, as every runtime keeps them on the sandbox.
fn pod_labels_of_sandbox(
    sandbox: impl IntoIterator<Item = (String, String)>,
    not_pod: &[&str],
) -> std::collections::BTreeMap<String, String> {
    sandbox
        .into_iter()
        .filter(|(k, _)| !not_pod.iter().any(|p| k.starts_with(p)))
        .collect()
}

/// The current-thread tokio runtime a source runs its client on.
fn tokio_runtime(
    runtime: &'static str,
    endpoint: &Path,
) -> Result<tokio::runtime::Runtime, RuntimeError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| RuntimeError::Unreachable {
            runtime,
            endpoint: endpoint.display().to_string(),
            detail: format!("cannot start a tokio runtime: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_sockets_are_unreachable() {
        let missing = Path::new("/nonexistent/minerguard-test.sock");
        for kind in [
            RuntimeKind::Containerd,
            RuntimeKind::Crio,
            RuntimeKind::Docker,
            RuntimeKind::Podman,
        ] {
            let err = connect(kind, missing, "k8s.io").err().expect("no socket");
            assert!(
                matches!(&err, RuntimeError::Unreachable { runtime, .. } if *runtime == kind.as_str()),
                "{err}"
            );
        }
    }
}
