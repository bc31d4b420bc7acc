//! What the handlers take from a request: the query flags, the path parameters and the body,
//! each extractor answering a malformed one with a 4xx in the JSON error shape, and the optional
//! `{"value"}` body of a lock, campaign, claim or join. What a route does with them is its
//! handler's business.

use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::znode;

/// Largest request body: a maximal znode payload in base64 plus JSON framing.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The query string as name/value pairs (`?watch` is `("watch", "")`), checked against the
/// names a route accepts.
#[derive(Debug, Default)]
pub struct Flags(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Flags {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(pairs)) => Ok(Flags(pairs)),
            Err(e) => Err(Error::BadInput(format!("bad query string: {}", e.body_text()))),
        }
    }
}

impl Flags {
    /// Fails on any name not in `allowed`, or given twice.
    pub fn allow(&self, allowed: &[&str]) -> Result<()> {
        for (i, (name, _)) in self.0.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                return Err(Error::BadInput(format!(
                    "unknown query parameter {name:?}; this route takes {}",
                    if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") }
                )));
            }
            if self.0[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(Error::BadInput(format!("query parameter {name:?} given twice")));
            }
        }
        Ok(())
    }

    /// A boolean flag: absent is false; present with no value, `true` or `1` is true.
    pub fn flag(&self, name: &str) -> Result<bool> {
        match self.value(name) {
            None => Ok(false),
            Some("" | "true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(Error::BadInput(format!("query parameter {name}={other:?} is not a boolean"))),
        }
    }

    /// The value of `name`, if given.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The request body, with a too-large or unreadable body answered in the API's error shape.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Error::TooLarge(format!("request body is larger than {MAX_BODY_BYTES} bytes")))
            }
            Err(e) => Err(Error::BadInput(format!("unreadable request body: {}", e.body_text()))),
        }
    }
}

/// The route's path parameters by name, percent-decoded, with bad encodings answered 400.
#[derive(Debug)]
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match RawPathParams::from_request_parts(parts, state).await {
            Ok(raw) => {
                let mut params = Vec::new();
                for (name, value) in raw.iter() {
                    params.push((name.to_owned(), value.to_owned()));
                }
                Ok(Params(params))
            }
            // A route without parameters (`/v1/nodes`).
            Err(axum::extract::rejection::RawPathParamsRejection::MissingPathParams(_)) => Ok(Params(Vec::new())),
            Err(e) => Err(Error::BadInput(format!("bad path: {}", e.body_text()))),
        }
    }
}

impl Params {
    /// The parameter `name`; empty when the route has none by that name.
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// The parameter `name` checked as one znode name (`what` says what it names, in the error).
    pub fn name(&self, name: &str, what: &str) -> Result<String> {
        let value = self.get(name).to_owned();
        znode::validate_name(what, &value)?;
        Ok(value)
    }
}

/// The optional body of a lock, campaign, claim or join: `{"value": "text"}` shown to others.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueBody {
    value: Option<String>,
}

/// Parses an optional `{"value": "text"}` body (empty is no value).
pub fn value_body(body: &[u8]) -> Result<Option<String>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let parsed: ValueBody = znode::parse_json(body)?;
    if let Some(value) = &parsed.value {
        if value.len() > znode::MAX_DATA_BYTES / 2 {
            return Err(Error::TooLarge("value is too large".to_owned()));
        }
    }
    Ok(parsed.value)
}
