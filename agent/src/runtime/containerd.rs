//! containerd's gRPC API (`containerd-client`): a container from
//! `Containers.Get` in one namespace, its pod's labels from the pod's
//! sandbox container.
//!
//! containerd's CRI plugin keeps a pod's sandbox as a container of its own,
//! labelled `io.cri-containerd.kind=sandbox` and carrying the pod's labels
//! beside the CRI ones (`io.kubernetes.pod.uid`, …); the pod's other
//! containers are labelled `io.cri-containerd.kind=container`.

use super::{pod_labels_of_sandbox, tokio_runtime, MetadataSource, RuntimeError, CALL_TIMEOUT};
use crate::identity::{labels, ContainerInfo};
use containerd_client::services::v1::{
    containers_client::ContainersClient, version_client::VersionClient, Container,
    GetContainerRequest, ListContainersRequest,
};
use containerd_client::tonic::{
    metadata::{AsciiMetadataValue, MetadataValue},
    transport::Channel,
    Code, Request, Response, Status,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};

/// The runtime's name in errors.
const RUNTIME: &str = "containerd";

/// The gRPC metadata key that names the containerd namespace of a call.
const NAMESPACE_HEADER: &str = "containerd-namespace";

/// The label by which containerd's CRI plugin tells a pod's sandbox
/// (`sandbox`) from its other containers (`container`).
pub const KIND_LABEL: &str = "io.cri-containerd.kind";

/// [`KIND_LABEL`]'s value on a pod's sandbox.
pub const KIND_SANDBOX: &str = "sandbox";

/// containerd's gRPC API on its socket, in one namespace (`k8s.io` for the
/// CRI plugin's containers). Blocking: the gRPC client runs on a
/// current-thread tokio runtime of its own; every call is bounded by
/// [`CALL_TIMEOUT`]. Nothing is cached.
pub struct ContainerdSource {
    /// Runs the client's futures.
    rt: tokio::runtime::Runtime,
    /// The Containers service.
    containers: ContainersClient<Channel>,
    /// The namespace, as the value of [`NAMESPACE_HEADER`].
    namespace: AsciiMetadataValue,
    /// The socket, for errors.
    endpoint: PathBuf,
}

impl std::fmt::Debug for ContainerdSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerdSource")
            .field("endpoint", &self.endpoint)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl ContainerdSource {
    /// Connects to containerd at `socket` and checks that it answers (its
    /// Version service), within [`CALL_TIMEOUT`] for each step.
    /// `namespace` is the containerd namespace the containers are looked up
    /// in (`k8s.io` for Kubernetes); a name containerd would refuse is
    /// refused here, as [`RuntimeError::Unreachable`].
    pub fn connect(socket: &Path, namespace: &str) -> Result<Self, RuntimeError> {
        let unreachable = |detail: String| RuntimeError::Unreachable {
            runtime: RUNTIME,
            endpoint: socket.display().to_string(),
            detail,
        };
        if !is_namespace_name(namespace) {
            return Err(unreachable(format!(
                "{namespace:?} is not a containerd namespace name"
            )));
        }
        let header = MetadataValue::try_from(namespace)
            .map_err(|e| unreachable(format!("namespace {namespace:?}: {e}")))?;
        let rt = tokio_runtime(RUNTIME, socket)?;
        let channel = rt
            .block_on(async {
                tokio::time::timeout(CALL_TIMEOUT, containerd_client::connect(socket)).await
            })
            .map_err(|_| unreachable(format!("no connection within {CALL_TIMEOUT:?}")))?
            .map_err(|e| unreachable(error_chain(&e)))?;
        let mut version = VersionClient::new(channel.clone());
        let answer = rt
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, version.version(())).await })
            .map_err(|_| unreachable(format!("no answer to Version within {CALL_TIMEOUT:?}")))?
            .map_err(|status| unreachable(format!("Version: {}", status_text(&status))))?;
        if answer.get_ref().version.is_empty() {
            return Err(unreachable(
                "Version gave no `version`: not a containerd".into(),
            ));
        }
        Ok(ContainerdSource {
            rt,
            containers: ContainersClient::new(channel),
            namespace: header,
            endpoint: socket.to_path_buf(),
        })
    }

    /// `message` as a request in this source's namespace, with a deadline.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(NAMESPACE_HEADER, self.namespace.clone());
        request.set_timeout(CALL_TIMEOUT);
        request
    }

    /// Runs `call` (the `method` of the API, about container `id`) to its
    /// answer, within [`CALL_TIMEOUT`].
    fn call<T>(
        &self,
        id: &str,
        method: &str,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, RuntimeError> {
        let unreachable = |detail: String| RuntimeError::Unreachable {
            runtime: RUNTIME,
            endpoint: self.endpoint.display().to_string(),
            detail,
        };
        // The timer must be made inside the runtime.
        match self
            .rt
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, call).await })
        {
            Err(_) => Err(unreachable(format!(
                "no answer to {method} within {CALL_TIMEOUT:?}"
            ))),
            Ok(Ok(answer)) => Ok(answer.into_inner()),
            Ok(Err(status)) => Err(match status.code() {
                Code::NotFound => RuntimeError::NotFound {
                    runtime: RUNTIME,
                    id: id.to_string(),
                },
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                    unreachable(format!("{method}: {}", status_text(&status)))
                }
                // A status with a source was made here, from a transport
                // error (containerd's own carry none).
                _ if std::error::Error::source(&status).is_some() => {
                    unreachable(format!("{method}: {}", status_text(&status)))
                }
                _ => bad_answer(id, format!("{method}: {}", status_text(&status))),
            }),
        }
    }

    /// The labels of the pod whose uid is `uid` (asked for container `id`),
    /// from its newest sandbox container; empty when it has none.
    fn pod_labels(&self, id: &str, uid: &str) -> Result<BTreeMap<String, String>, RuntimeError> {
        let request = self.request(ListContainersRequest {
            filters: vec![sandbox_filter(uid)],
        });
        let mut client = self.containers.clone();
        let answer = self.call(id, "Containers.List", client.list(request))?;
        let sandbox = answer
            .containers
            .into_iter()
            .filter(|c| is_sandbox_of(c, uid))
            .max_by_key(|c| c.created_at.map(|t| (t.seconds, t.nanos)));
        // The pod's own labels. (The CRI plugin also merges the sandbox
        // image's own labels in, where the pod has no label of the same key;
        // a pause image has none.)
        Ok(sandbox
            .map(|c| pod_labels_of_sandbox(c.labels, &NOT_POD_LABELS))
            .unwrap_or_default())
    }
}

impl MetadataSource for ContainerdSource {
    /// The container's labels and image; its name is the CRI container
    /// name label, else its id; the Kubernetes fields from its CRI labels;
    /// the pod's labels from the sandbox container of the same pod uid
    /// (empty when there is none).
    fn container(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let request = self.request(GetContainerRequest { id: id.to_string() });
        let mut client = self.containers.clone();
        let answer = self.call(id, "Containers.Get", client.get(request))?;
        let container = answer
            .container
            .ok_or_else(|| bad_answer(id, "Containers.Get gave no `container`".into()))?;
        if container.id != id {
            return Err(bad_answer(
                id,
                format!("Containers.Get gave `container.id` {:?}", container.id),
            ));
        }
        let mut info = ContainerInfo {
            id: id.to_string(),
            name: id.to_string(),
            image: container.image,
            labels: container.labels.into_iter().collect(),
            ..Default::default()
        }
        .with_cri_labels();
        if !info.pod_uid.is_empty() {
            info.pod_labels = self.pod_labels(id, &info.pod_uid)?;
        }
        Ok(info)
    }
}

/// A [`RuntimeError::BadAnswer`] about container `id`.
fn bad_answer(id: &str, detail: String) -> RuntimeError {
    RuntimeError::BadAnswer {
        runtime: RUNTIME,
        id: id.to_string(),
        detail,
    }
}

/// A gRPC status as text: its code and message.
fn status_text(status: &Status) -> String {
    // A status made from a local error has that error's text as message:
    // its sources say more.
    match std::error::Error::source(status) {
        Some(source) => format!("{:?}: {}", status.code(), error_chain(source)),
        None => format!("{:?}: {}", status.code(), status.message()),
    }
}

/// An error and its sources, joined with ": " (tonic's transport errors
/// say what failed only in their sources).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        // Some wrappers repeat their source's text.
        let more = e.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

/// Whether `name` is a containerd namespace name: alphanumeric parts
/// joined by single `.`, `_` or `-`, at most 76 characters.
fn is_namespace_name(name: &str) -> bool {
    name.len() <= 76
        && name
            .split(['.', '_', '-'])
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The containerd filter for the sandboxes of pod `uid` (a Go-quoted value
/// in containerd's filter syntax; a uid that needs escapes beyond `\` and
/// `"` is left to the caller's own check).
fn sandbox_filter(uid: &str) -> String {
    let kind = format!("labels.\"{KIND_LABEL}\"=={KIND_SANDBOX}");
    if uid.chars().any(|c| c.is_control() || !c.is_ascii()) {
        return kind;
    }
    let quoted = uid.replace('\\', "\\\\").replace('"', "\\\"");
    format!("labels.\"{}\"==\"{quoted}\",{kind}", labels::POD_UID)
}

/// Whether `container` is a sandbox of pod `uid`.
fn is_sandbox_of(container: &Container, uid: &str) -> bool {
    container.labels.get(KIND_LABEL).map(String::as_str) == Some(KIND_SANDBOX)
        && container.labels.get(labels::POD_UID).map(String::as_str) == Some(uid)
}

/// The label prefixes of a sandbox that are not the pod's: kubelet's CRI
/// labels, the CRI plugin's and containerd's own (the image's stop signal).
const NOT_POD_LABELS: [&str; 3] = ["io.kubernetes.", "io.cri-containerd.", "io.containerd."];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_labels_leave_out_the_cri_ones() {
        let sandbox = [
            ("io.kubernetes.pod.uid", "u"),
            ("io.kubernetes.pod.name", "web-0"),
            ("io.cri-containerd.kind", "sandbox"),
            ("io.containerd.image.config.stop-signal", "SIGTERM"),
            ("app", "shop"),
            ("tier", "web"),
            ("app.kubernetes.io/name", "shop"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>();
        let got = pod_labels_of_sandbox(sandbox, &NOT_POD_LABELS);
        let want: BTreeMap<_, _> = [
            ("app", "shop"),
            ("app.kubernetes.io/name", "shop"),
            ("tier", "web"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_sandbox_filter_quotes_the_uid() {
        assert_eq!(
            sandbox_filter("6c2a1b0e-1f2d"),
            r#"labels."io.kubernetes.pod.uid"=="6c2a1b0e-1f2d",labels."io.cri-containerd.kind"==sandbox"#
        );
        assert_eq!(
            sandbox_filter(r#"a"b\c"#),
            r#"labels."io.kubernetes.pod.uid"=="a\"b\\c",labels."io.cri-containerd.kind"==sandbox"#
        );
        assert_eq!(
            sandbox_filter("a\nb"),
            r#"labels."io.cri-containerd.kind"==sandbox"#
        );
    }

    #[test]
    fn namespace_names() {
        for ok in ["k8s.io", "default", "minerguard-test-12", "a_b.c-d"] {
            assert!(is_namespace_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "a/b", "a b", &"a".repeat(77)] {
            assert!(!is_namespace_name(bad), "{bad}");
        }
    }
}
