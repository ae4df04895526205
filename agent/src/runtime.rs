//! Reading a container's metadata from its runtime's API.

use crate::identity::ContainerInfo;

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
