//! Podman's REST API (libpod, v4) on its unix socket: a container from
//! `GET /v4.0.0/libpod/containers/<id>/json`, over hyper's HTTP/1 client
//! on a tokio `UnixStream` (one connection per call).

use super::{tokio_runtime, MetadataSource, RuntimeError, CALL_TIMEOUT};
use crate::identity::ContainerInfo;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The runtime's name in errors.
const RUNTIME: &str = "podman";

/// The API version in request paths (Podman 4.x serves it).
const API: &str = "/v4.0.0/libpod";

/// The largest answer read (an inspect answer is a few KiB).
const MAX_ANSWER: usize = 4 << 20;

/// Podman's REST API on its unix socket (`podman system service`).
/// Blocking: the HTTP client runs on a current-thread tokio runtime of its
/// own; every call is bounded by [`CALL_TIMEOUT`]. Nothing is cached.
pub struct PodmanSource {
    /// Runs the client's futures.
    rt: tokio::runtime::Runtime,
    /// The API socket.
    socket: PathBuf,
}

/// Why a GET gave no answer to read.
enum Failure {
    /// The socket, the connection or the deadline failed.
    Unreachable(String),
    /// The answer was larger than [`MAX_ANSWER`].
    TooLarge,
}

impl std::fmt::Debug for PodmanSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodmanSource")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl PodmanSource {
    /// The API at `socket`, checked to answer (`GET …/_ping`).
    pub fn new(socket: &Path) -> Result<Self, RuntimeError> {
        let source = PodmanSource {
            rt: tokio_runtime(RUNTIME, socket)?,
            socket: socket.to_path_buf(),
        };
        let ping = format!("{API}/_ping");
        match source.get(&ping) {
            Ok((status, _)) if status.is_success() => Ok(source),
            Ok((status, _)) => Err(source.unreachable(format!("GET {ping} answered {status}"))),
            Err(Failure::Unreachable(detail)) => Err(source.unreachable(detail)),
            Err(Failure::TooLarge) => {
                Err(source.unreachable(format!("GET {ping} answered more than {MAX_ANSWER} bytes")))
            }
        }
    }

    /// A [`RuntimeError::Unreachable`] for this socket.
    fn unreachable(&self, detail: String) -> RuntimeError {
        RuntimeError::Unreachable {
            runtime: RUNTIME,
            endpoint: self.socket.display().to_string(),
            detail,
        }
    }

    /// `GET path`: the status and the body, within [`CALL_TIMEOUT`].
    fn get(&self, path: &str) -> Result<(StatusCode, Bytes), Failure> {
        self.rt
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, get(&self.socket, path)).await })
            .unwrap_or_else(|_| {
                Err(Failure::Unreachable(format!(
                    "no answer to GET {path} within {CALL_TIMEOUT:?}"
                )))
            })
    }
}

impl MetadataSource for PodmanSource {
    /// `Name`, `Config.Image` (else `ImageName`), `Config.Labels`; the
    /// Kubernetes fields from the CRI labels when it has them. Podman's pods
    /// have no CRI sandbox: `pod_labels` stays empty.
    fn container(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let path = format!("{API}/containers/{}/json", path_segment(id));
        let bad = |detail: String| RuntimeError::BadAnswer {
            runtime: RUNTIME,
            id: id.to_string(),
            detail,
        };
        let (status, body) = self.get(&path).map_err(|failure| match failure {
            Failure::Unreachable(detail) => self.unreachable(detail),
            Failure::TooLarge => bad(format!("GET {path}: more than {MAX_ANSWER} bytes")),
        })?;
        match status {
            StatusCode::OK => parse_inspect(&body).map_err(bad),
            StatusCode::NOT_FOUND => Err(RuntimeError::NotFound {
                runtime: RUNTIME,
                id: id.to_string(),
            }),
            _ => Err(bad(format!(
                "GET {path} answered {status}: {}",
                error_message(&body)
            ))),
        }
    }
}

/// `GET path` on a new connection to `socket`.
async fn get(socket: &Path, path: &str) -> Result<(StatusCode, Bytes), Failure> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| Failure::Unreachable(format!("connect: {e}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::Unreachable(format!("HTTP handshake: {e}")))?;
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(path)
        // HTTP/1.1 needs one (Go's server refuses a request without it).
        .header(hyper::header::HOST, "podman")
        .body(Empty::<Bytes>::new())
        .map_err(|e| Failure::Unreachable(format!("GET {path}: {e}")))?;
    let answer = sender.send_request(request).await;
    let answer = answer.map_err(|e| Failure::Unreachable(format!("GET {path}: {e}")));
    let result = match answer {
        Ok(answer) => {
            let status = answer.status();
            match Limited::new(answer.into_body(), MAX_ANSWER).collect().await {
                Ok(body) => Ok((status, body.to_bytes())),
                Err(e) if e.is::<LengthLimitError>() => Err(Failure::TooLarge),
                Err(e) => Err(Failure::Unreachable(format!("GET {path}: body: {e}"))),
            }
        }
        Err(e) => Err(e),
    };
    connection.abort();
    result
}

/// `id` for a URL path: unreserved characters as they are, the rest
/// percent-encoded.
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The fields of an inspect answer the agent reads.
#[derive(serde::Deserialize)]
struct Inspect {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "ImageName", default)]
    image_name: Option<String>,
    #[serde(rename = "Config", default)]
    config: Option<Config>,
}

/// An inspect answer's `Config`.
#[derive(serde::Deserialize)]
struct Config {
    #[serde(rename = "Image", default)]
    image: Option<String>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

/// What an inspect answer says; an error names the field that could not be
/// read.
fn parse_inspect(body: &[u8]) -> Result<ContainerInfo, String> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let inspect: Inspect = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        format!("field `{field}`: {}", e.inner())
    })?;
    let (config_image, labels) = match inspect.config {
        Some(c) => (c.image, c.labels.unwrap_or_default()),
        None => (None, BTreeMap::new()),
    };
    let image = [config_image, inspect.image_name]
        .into_iter()
        .flatten()
        .find(|i| !i.is_empty())
        .unwrap_or_default();
    Ok(ContainerInfo {
        id: inspect.id,
        name: inspect.name.trim_start_matches('/').to_string(),
        image,
        labels,
        ..Default::default()
    }
    .with_cri_labels())
}

/// The `message` of an error answer, else its start.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Error {
        message: String,
    }
    serde_json::from_slice::<Error>(body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inspect_answer_gives_the_fields() {
        let info = parse_inspect(
            br#"{"Id":"abc","Name":"web","ImageName":"localhost/app:1",
                "Config":{"Image":"localhost/app:1","Labels":{
                    "io.kubernetes.pod.namespace":"ns1","io.kubernetes.pod.name":"p",
                    "io.kubernetes.pod.uid":"u","io.kubernetes.container.name":"app","x":"y"}}}"#,
        )
        .unwrap();
        assert_eq!(
            (
                info.id.as_str(),
                info.name.as_str(),
                info.image.as_str(),
                info.namespace.as_str(),
                info.pod_name.as_str(),
                info.pod_uid.as_str(),
            ),
            ("abc", "app", "localhost/app:1", "ns1", "p", "u",)
        );
        assert_eq!(info.labels.get("x").map(String::as_str), Some("y"));
    }

    #[test]
    fn null_labels_and_a_missing_config_image_are_read() {
        let info = parse_inspect(
            br#"{"Id":"abc","Name":"/web","ImageName":"img","Config":{"Image":"","Labels":null}}"#,
        )
        .unwrap();
        assert_eq!((info.name.as_str(), info.image.as_str()), ("web", "img"));
        assert!(info.labels.is_empty());
    }

    #[test]
    fn a_bad_answer_names_the_field() {
        let err =
            parse_inspect(br#"{"Id":"abc","Name":"web","Config":{"Labels":{"a":1}}}"#).unwrap_err();
        assert!(err.contains("Config.Labels.a"), "{err}");
        let err = parse_inspect(br#"{"Name":"web"}"#).unwrap_err();
        assert!(err.contains("Id"), "{err}");
    }

    #[test]
    fn ids_are_escaped_in_paths() {
        assert_eq!(path_segment("abc-1.2_x"), "abc-1.2_x");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
