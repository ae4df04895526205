//! The minerguard node agent (`minerguard agent`): finds the pods' cgroups
//! on a Kubernetes node, applies a baseline profile to all of them and a
//! binding's profile to each matching container, and reports every event
//! with the container and pod it came from.
//!
//! Modules, one job each:
//! - [`identity`]: which runtime and container a cgroup belongs to, from
//!   its name alone, and what the runtime says about a container.
//! - [`runtime`]: reading a container's metadata from its runtime's API.
//!
//! Outputs:
//! - [`webhook`]: a falcosidekick-compatible webhook (bounded queue, retries).
//! - [`metrics`]: Prometheus metrics and `/metrics`, `/healthz`, `/readyz`.

pub mod identity;
pub mod runtime;

// Outputs.
pub mod metrics;
pub mod webhook;
