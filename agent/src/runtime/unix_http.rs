//! `GET` over HTTP/1.1 on a runtime's unix socket (Podman, Docker and
//! CRI-O serve their APIs that way): hyper's client on a tokio
//! `UnixStream`, one connection per call, bounded in time and size.

use super::{tokio_runtime, RuntimeError, CALL_TIMEOUT};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};

/// The largest answer read (an inspect answer is a few KiB).
pub const MAX_ANSWER: usize = 4 << 20;

/// A runtime's HTTP API on a unix socket. Blocking: the client runs on a
/// current-thread tokio runtime of its own. Nothing is cached.
pub struct UnixHttp {
    /// Runs the client's futures.
    rt: tokio::runtime::Runtime,
    /// The API socket.
    socket: PathBuf,
    /// The runtime's name, in errors.
    runtime: &'static str,
}

impl std::fmt::Debug for UnixHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixHttp")
            .field("runtime", &self.runtime)
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// Why a GET gave no answer to read.
enum Failure {
    /// The socket, the connection or the deadline failed.
    Unreachable(String),
    /// The answer was larger than [`MAX_ANSWER`].
    TooLarge,
}

impl UnixHttp {
    /// The API of `runtime` at `socket`, checked to answer `GET ping` with
    /// a success status.
    pub fn new(runtime: &'static str, socket: &Path, ping: &str) -> Result<Self, RuntimeError> {
        let api = UnixHttp {
            rt: tokio_runtime(runtime, socket)?,
            socket: socket.to_path_buf(),
            runtime,
        };
        match api.get(ping) {
            Ok((status, _)) if status.is_success() => Ok(api),
            Ok((status, _)) => Err(api.unreachable(format!("GET {ping} answered {status}"))),
            Err(Failure::Unreachable(detail)) => Err(api.unreachable(detail)),
            Err(Failure::TooLarge) => {
                Err(api.unreachable(format!("GET {ping} answered more than {MAX_ANSWER} bytes")))
            }
        }
    }

    /// A [`RuntimeError::Unreachable`] for this socket.
    fn unreachable(&self, detail: String) -> RuntimeError {
        RuntimeError::Unreachable {
            runtime: self.runtime,
            endpoint: self.socket.display().to_string(),
            detail,
        }
    }

    /// A [`RuntimeError::BadAnswer`] about container `id`.
    pub fn bad(&self, id: &str, detail: String) -> RuntimeError {
        RuntimeError::BadAnswer {
            runtime: self.runtime,
            id: id.to_string(),
            detail,
        }
    }

    /// The body of `GET path`, an answer about container `id`: 404 is
    /// [`RuntimeError::NotFound`], another failure status a bad answer
    /// carrying the runtime's message.
    pub fn inspect(&self, id: &str, path: &str) -> Result<Bytes, RuntimeError> {
        let (status, body) = self.get(path).map_err(|failure| match failure {
            Failure::Unreachable(detail) => self.unreachable(detail),
            Failure::TooLarge => self.bad(id, format!("GET {path}: more than {MAX_ANSWER} bytes")),
        })?;
        match status {
            StatusCode::OK => Ok(body),
            StatusCode::NOT_FOUND => Err(RuntimeError::NotFound {
                runtime: self.runtime,
                id: id.to_string(),
            }),
            _ => Err(self.bad(
                id,
                format!("GET {path} answered {status}: {}", error_message(&body)),
            )),
        }
    }

    /// `GET path`: the status and the body, within [`CALL_TIMEOUT`].
    fn get(&self, path: &str) -> Result<(StatusCode, Bytes), Failure> {
        self.rt
            .block_on(async {
                tokio::time::timeout(CALL_TIMEOUT, get(&self.socket, self.runtime, path)).await
            })
            .unwrap_or_else(|_| {
                Err(Failure::Unreachable(format!(
                    "no answer to GET {path} within {CALL_TIMEOUT:?}"
                )))
            })
    }
}

/// `GET path` on a new connection to `socket`.
async fn get(socket: &Path, host: &str, path: &str) -> Result<(StatusCode, Bytes), Failure> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| Failure::Unreachable(format!("connect: {e}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::Unreachable(format!("HTTP handshake: {e}")))?;
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(path)
        // HTTP/1.1 needs one (Go's server refuses a request without it).
        .header(hyper::header::HOST, host)
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
pub fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `message` of an error answer (Podman's and Docker's JSON), else its
/// start (CRI-O answers plain text).
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Error {
        message: String,
    }
    serde_json::from_slice::<Error>(body)
        .map(|e| e.message)
        .unwrap_or_else(|_| {
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string()
        })
}

/// Reads `body` as `T`; an error names the field that could not be read.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        format!("field `{field}`: {}", e.inner())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_escaped_in_paths() {
        assert_eq!(path_segment("abc-1.2_x"), "abc-1.2_x");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn error_messages_from_json_or_text() {
        assert_eq!(
            error_message(br#"{"message":"no such container"}"#),
            "no such container"
        );
        assert_eq!(
            error_message(b"container with id: x not found\n"),
            "container with id: x not found"
        );
    }
}
