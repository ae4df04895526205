//! The minerguard node agent (`minerguard agent`): finds the pods' cgroups
//! on a Kubernetes node, applies a baseline profile to all of them and a
//! binding's profile to each matching container, and reports every event
//! with the container and pod it came from.
//!
//! Modules, one job each:
//! - [`identity`]: which runtime and container a cgroup belongs to, from
//!   its name alone, and what the runtime says about a container.
//! - [`runtime`]: reading a container's metadata from its runtime's API.
//! - [`config`]: the `AgentConfig` file, checked whole.
//! - [`binding`]: which binding's profile a container gets.
//! - [`discovery`]: the pods' cgroup root and the containers' cgroups.
//! - [`follow`]: the moment a container's cgroup appears or goes (inotify).
//! - [`agent`]: the baseline and the bound containers' scopes, kept in
//!   step with containers and configuration.
//! - [`scans`]: scans of what already runs in the scopes, each by the
//!   profile its scope is under, off the agent's loop.
//! - [`behaviour`]: the behaviour detector over the scopes whose profiles
//!   have `behaviour` rules, off the agent's loop.
//! - [`enrich`]: events with the node, container and pod they came from.
//!
//! Outputs:
//! - [`webhook`]: a falcosidekick-compatible webhook (bounded queue, retries).
//! - [`metrics`]: Prometheus metrics and `/metrics`, `/healthz`, `/readyz`.

pub mod agent;
pub mod behaviour;
pub mod binding;
pub mod config;
pub mod discovery;
pub mod enrich;
pub mod follow;
pub mod identity;
pub mod runtime;
pub mod scans;

// Outputs.
pub mod metrics;
pub mod webhook;
