//! Podman's REST API (libpod, v4) on its unix socket: a container from
//! `GET /v4.0.0/libpod/containers/<id>/json`, over hyper's HTTP/1 client
//! on a tokio `UnixStream` (one connection per call).

use super::unix_http::{parse, path_segment, UnixHttp};
use super::{MetadataSource, RuntimeError};
use crate::identity::ContainerInfo;
use std::collections::BTreeMap;
use std::path::Path;

/// The runtime's name in errors.
const RUNTIME: &str = "podman";

/// The API version in request paths (Podman 4.x serves it).
const API: &str = "/v4.0.0/libpod";

/// Podman's REST API on its unix socket (`podman system service`).
/// Blocking; every call is bounded by [`super::CALL_TIMEOUT`]. Nothing is
/// cached.
#[derive(Debug)]
pub struct PodmanSource {
    api: UnixHttp,
}

impl PodmanSource {
    /// The API at `socket`, checked to answer (`GET …/_ping`).
    pub fn new(socket: &Path) -> Result<Self, RuntimeError> {
        Ok(PodmanSource {
            api: UnixHttp::new(RUNTIME, socket, &format!("{API}/_ping"))?,
        })
    }
}

impl MetadataSource for PodmanSource {
    /// `Name`, `Config.Image` (else `ImageName`), `Config.Labels`; the
    /// Kubernetes fields from the CRI labels when it has them. Podman's pods
    /// have no CRI sandbox: `pod_labels` stays empty.
    fn container(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let path = format!("{API}/containers/{}/json", path_segment(id));
        let body = self.api.inspect(id, &path)?;
        parse_inspect(&body).map_err(|detail| self.api.bad(id, detail))
    }
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
/// Docker's inspect answer has the same fields (`ImageName` aside).
pub(super) fn parse_inspect(body: &[u8]) -> Result<ContainerInfo, String> {
    let inspect: Inspect = parse(body)?;
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
}
