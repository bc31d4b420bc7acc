//! The sidecar's error type and its one mapping to HTTP: status, `Retry-After`, and the JSON body
//! `{"error": {"code", "message"}}`. ZooKeeper errors are translated here and nowhere else.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Result with the sidecar's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything an API call can fail with, in the words the app sees.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The znode (or member, election, ...) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The znode already exists.
    #[error("{0}")]
    Exists(String),
    /// Someone else holds it (a lock taken with `?try`, another pod's member id).
    #[error("{0}")]
    Held(String),
    /// The znode still has children.
    #[error("{0}")]
    NotEmpty(String),
    /// `If-Match` named a version the znode no longer has.
    #[error("{0}")]
    BadVersion(String),
    /// A queue item is acknowledged without a live claim on it through this sidecar (never
    /// claimed here, or its claim ended), or with a stale claim token.
    #[error("{0}")]
    NotClaimed(String),
    /// The request is malformed: path, query, header or body.
    #[error("{0}")]
    BadInput(String),
    /// The request body is larger than the sidecar accepts.
    #[error("{0}")]
    TooLarge(String),
    /// There is no ZooKeeper session right now (connecting, suspended or expired); retry.
    #[error("{0}")]
    NoSession(String),
    /// The session is suspended: holds are valid only until `valid_until` (a lease's keepalive,
    /// a lease-bound hold whose request waited); the body says until when.
    #[error("{message}")]
    Suspended {
        /// What was suspended.
        message: String,
        /// The hold deadline ([`crate::deadline`]).
        valid_until: std::time::Instant,
    },
    /// The sidecar is shutting down and takes no new holds.
    #[error("sidecar is draining")]
    Draining,
    /// No such route.
    #[error("{0}")]
    NoRoute(String),
    /// The route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The cluster refused the operation for a reason the app cannot fix by retrying.
    #[error("{0}")]
    Forbidden(String),
    /// Anything else the cluster answered.
    #[error("zookeeper: {0}")]
    Zookeeper(zookeeper_client::Error),
}

impl Error {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NotFound(_) | Error::NoRoute(_) => StatusCode::NOT_FOUND,
            Error::Exists(_) | Error::Held(_) | Error::NotEmpty(_) => StatusCode::CONFLICT,
            Error::BadVersion(_) | Error::NotClaimed(_) => StatusCode::PRECONDITION_FAILED,
            Error::BadInput(_) => StatusCode::BAD_REQUEST,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::NoSession(_) | Error::Suspended { .. } | Error::Draining => StatusCode::SERVICE_UNAVAILABLE,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Zookeeper(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code in the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::Exists(_) => "exists",
            Error::Held(_) => "held",
            Error::NotEmpty(_) => "not_empty",
            Error::BadVersion(_) => "bad_version",
            Error::NotClaimed(_) => "not_claimed",
            Error::BadInput(_) => "bad_input",
            Error::TooLarge(_) => "too_large",
            Error::NoSession(_) => "no_session",
            Error::Suspended { .. } => "suspended",
            Error::Draining => "draining",
            Error::NoRoute(_) => "no_route",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::Forbidden(_) => "forbidden",
            Error::Zookeeper(_) => "zookeeper",
        }
    }

    /// Translates a ZooKeeper error about `path` (a path as the app sees it).
    pub fn from_zk(err: zookeeper_client::Error, path: &str) -> Error {
        use zookeeper_client::Error as Zk;
        match err {
            Zk::NoNode => Error::NotFound(format!("no znode {path}")),
            Zk::NodeExists => Error::Exists(format!("znode {path} exists")),
            Zk::BadVersion => Error::BadVersion(format!("znode {path} is not at the expected version")),
            Zk::NotEmpty => Error::NotEmpty(format!("znode {path} has children")),
            Zk::NoChildrenForEphemerals => Error::BadInput(format!("parent of {path} is ephemeral")),
            Zk::BadArguments(reason) => Error::BadInput(format!("bad arguments for {path}: {reason}")),
            Zk::NoAuth | Zk::InvalidAcl => Error::Forbidden(format!("not allowed on {path}")),
            // `Custom` carries the I/O error that broke the connection under an in-flight call.
            Zk::ConnectionLoss | Zk::Timeout | Zk::NoHosts | Zk::Custom(_) => {
                Error::NoSession("connection to the cluster was lost; retry".to_owned())
            }
            Zk::SessionExpired | Zk::SessionMoved | Zk::ClientClosed => {
                Error::NoSession("zookeeper session is gone; retry".to_owned())
            }
            other => Error::Zookeeper(other),
        }
    }

    /// Whether a retry on the same session may succeed: the connection dropped mid-call (the
    /// client reports the broken connection's I/O error to in-flight calls as `Custom`).
    pub fn is_connection_loss(err: &zookeeper_client::Error) -> bool {
        use zookeeper_client::Error as Zk;
        // A server whose write could not commit in time answers ConnectionLoss (-4), which the
        // client reports as an unexpected code: the outcome is unknown, as for a lost link.
        matches!(err, Zk::ConnectionLoss | Zk::Timeout | Zk::Custom(_) | Zk::UnexpectedErrorCode(-4))
    }
}

/// The JSON body every error response carries.
pub fn error_body(code: &str, message: &str) -> serde_json::Value {
    json!({ "error": { "code": code, "message": message } })
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = error_body(self.code(), &self.to_string());
        if let Error::Suspended { valid_until, .. } = &self {
            let (valid_until_ms, valid_for_ms) =
                crate::deadline::as_seen(*valid_until, std::time::Instant::now(), std::time::SystemTime::now());
            body["error"]["valid_until_ms"] = json!(valid_until_ms);
            body["error"]["valid_for_ms"] = json!(valid_for_ms);
        }
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zookeeper_errors_map_to_the_documented_statuses() {
        use zookeeper_client::Error as Zk;
        let cases = [
            (Zk::NoNode, 404),
            (Zk::NodeExists, 409),
            (Zk::NotEmpty, 409),
            (Zk::BadVersion, 412),
            (Zk::ConnectionLoss, 503),
            (Zk::SessionExpired, 503),
            (Zk::NoChildrenForEphemerals, 400),
        ];
        for (err, status) in cases {
            assert_eq!(Error::from_zk(err.clone(), "/a").status().as_u16(), status, "{err:?}");
        }
    }

    #[test]
    fn unavailable_answers_carry_retry_after() {
        let response = Error::NoSession("connecting".into()).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
        let response = Error::BadInput("x".into()).into_response();
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
