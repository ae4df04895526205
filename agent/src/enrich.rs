//! Events that say who: the Falco JSON of an event with the node and the
//! container and pod it came from (Falco's field names, so falcosidekick,
//! Falco's UI and jq filters work unchanged).

use std::sync::Arc;

use minerguard::{behaviour::Detection, scan::Finding, Event};
use serde_json::{json, Value};

use crate::agent::Directory;

/// Adds the node and container fields to events.
#[derive(Clone)]
pub struct Enricher {
    hostname: String,
    directory: Directory,
}

/// This node's name: `NODE_NAME` (the DaemonSet sets it from the pod's
/// `spec.nodeName`: inside a pod `uname -n` is the pod's name), else
/// `uname -n`.
pub fn hostname() -> String {
    if let Ok(name) = std::env::var("NODE_NAME") {
        if !name.is_empty() {
            return name;
        }
    }
    // SAFETY: uname fills the struct we own.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    u.nodename
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8 as char)
        .collect()
}

impl Enricher {
    /// Reads container metadata from `directory`.
    pub fn new(directory: Directory) -> Self {
        Enricher {
            hostname: hostname(),
            directory,
        }
    }

    /// The event as Falco-shaped JSON with `hostname` and, when its cgroup
    /// is a known container's, `container.*` and `k8s.*` output fields.
    pub fn json(&self, ev: &Event) -> Value {
        let mut v: Value =
            serde_json::from_str(&minerguard::falco_json(ev)).unwrap_or_else(|_| json!({}));
        self.enrich(&mut v, ev.cgroup_id);
        v
    }

    /// A scan's finding (under `profile`) as Falco-shaped JSON, with the
    /// same fields as [`Enricher::json`] adds to events.
    pub fn scan_json(&self, finding: &Finding, profile: &Arc<str>) -> Value {
        let mut v = minerguard::scan::scan_value(finding, profile);
        self.enrich(&mut v, finding.process.cgroup_id);
        v
    }

    /// A behaviour detection (under `profile`) as Falco-shaped JSON, with
    /// the same fields as [`Enricher::json`] adds to events.
    pub fn behaviour_json(&self, detection: &Detection, profile: &Arc<str>) -> Value {
        let mut v = detection.to_value(profile);
        self.enrich(&mut v, detection.process.cgroup_id);
        v
    }

    /// Adds `hostname`, and the container's and pod's fields when
    /// `cgroup_id` is a known container's.
    fn enrich(&self, v: &mut Value, cgroup_id: u64) {
        v["hostname"] = json!(self.hostname);
        let info = self
            .directory
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cgroup_id)
            .cloned();
        if let (Some(info), Some(fields)) = (info, v["output_fields"].as_object_mut()) {
            let (repository, tag) = info.image_parts();
            for (k, val) in [
                ("container.id", info.id.get(..12).unwrap_or(&info.id)),
                ("container.full_id", info.id.as_str()),
                ("container.name", info.name.as_str()),
                ("container.image.repository", repository),
                ("container.image.tag", tag),
                ("k8s.ns.name", info.namespace.as_str()),
                ("k8s.pod.name", info.pod_name.as_str()),
                ("k8s.pod.uid", info.pod_uid.as_str()),
            ] {
                if !val.is_empty() {
                    fields.insert(k.into(), json!(val));
                }
            }
        }
    }
}
