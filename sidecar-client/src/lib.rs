//! A small HTTP/1.1 client for the sidecar's Unix socket (used by the `paddock` CLI, the e2e app
//! and the tests) and for plain-HTTP URLs (the sidecar's app health probe): one connection per request, JSON
//! bodies, NDJSON streams read line by line. Dropping a [`EventLines`] closes its connection,
//! which is how a holder lets go of a lock or a campaign.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::task::JoinHandle;

/// What a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket or address could not be reached.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The socket path or address.
        target: String,
        /// Why.
        source: std::io::Error,
    },
    /// HTTP failed on the connection.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (bad URL, header).
    #[error("bad request: {0}")]
    Request(String),
    /// A stream request was answered with an error instead of a stream.
    #[error("{status}: {body}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The error body.
        body: Value,
    },
    /// A stream line was not JSON.
    #[error("bad JSON from the sidecar: {0}")]
    Json(#[from] serde_json::Error),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
}

/// A JSON answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body as JSON (`null` when empty, a string when not JSON).
    pub body: Value,
}

/// A client of one sidecar socket.
#[derive(Debug, Clone)]
pub struct SocketClient {
    socket: PathBuf,
}

async fn handshake<IO>(
    io: IO,
) -> Result<(hyper::client::conn::http1::SendRequest<Full<Bytes>>, JoinHandle<()>), ClientError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((sender, driver))
}

fn build(
    method: Method,
    uri: &str,
    host: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Result<Request<Full<Bytes>>, ClientError> {
    let mut builder = Request::builder().method(method).uri(uri).header(hyper::header::HOST, host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let payload = match body {
        Some(json) => {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(json)?)
        }
        None => Bytes::new(),
    };
    builder.body(Full::new(payload)).map_err(|e| ClientError::Request(e.to_string()))
}

async fn read_reply(response: hyper::Response<Incoming>) -> Result<Reply, ClientError> {
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok(Reply { status, body })
}

impl SocketClient {
    /// A client of the sidecar listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> SocketClient {
        SocketClient { socket: socket.into() }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn connect(&self) -> Result<UnixStream, ClientError> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::Connect { target: self.socket.display().to_string(), source })
    }

    /// Sends one request and reads the whole JSON answer.
    pub async fn request(
        &self,
        method: Method,
        uri: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, ClientError> {
        let (mut sender, driver) = handshake(self.connect().await?).await?;
        let response = sender.send_request(build(method, uri, "paddock", body, headers)?).await;
        let reply = match response {
            Ok(response) => read_reply(response).await,
            Err(e) => Err(e.into()),
        };
        driver.abort();
        reply
    }

    /// `GET uri`.
    pub async fn get(&self, uri: &str) -> Result<Reply, ClientError> {
        self.request(Method::GET, uri, None, &[]).await
    }

    /// Opens a stream; a non-200 answer is [`ClientError::Status`].
    pub async fn stream(&self, method: Method, uri: &str, body: Option<&Value>) -> Result<EventLines, ClientError> {
        let (mut sender, driver) = handshake(self.connect().await?).await?;
        let response = match sender.send_request(build(method, uri, "paddock", body, &[])?).await {
            Ok(response) => response,
            Err(e) => {
                driver.abort();
                return Err(e.into());
            }
        };
        if response.status() != StatusCode::OK {
            let reply = read_reply(response).await;
            driver.abort();
            let reply = reply?;
            return Err(ClientError::Status { status: reply.status, body: reply.body });
        }
        Ok(EventLines { body: response.into_body(), buffer: Vec::new(), driver, _sender: sender })
    }
}

/// An open NDJSON stream. Dropping it closes the connection.
#[derive(Debug)]
pub struct EventLines {
    body: Incoming,
    buffer: Vec<u8>,
    driver: JoinHandle<()>,
    _sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl EventLines {
    /// The next event; `None` when the sidecar ended the stream.
    pub async fn next(&mut self) -> Result<Option<Value>, ClientError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(serde_json::from_slice(&line)?));
            }
            match self.body.frame().await {
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                None => return Ok(None),
            }
        }
    }

    /// The next event within `bound`.
    pub async fn next_within(&mut self, bound: Duration) -> Result<Option<Value>, ClientError> {
        tokio::time::timeout(bound, self.next()).await.map_err(|_| ClientError::Timeout)?
    }
}

impl Drop for EventLines {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// `GET url` on a plain-HTTP URL (`http://host:port/path`) within `bound`; the status.
pub async fn probe(url: &str, bound: Duration) -> Result<StatusCode, ClientError> {
    let uri: hyper::Uri = url.parse().map_err(|e| ClientError::Request(format!("bad URL {url:?}: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(ClientError::Request(format!("only http:// URLs can be probed, not {url:?}")));
    }
    let authority = uri.authority().ok_or_else(|| ClientError::Request(format!("no host in {url:?}")))?.clone();
    let host_port = match authority.port_u16() {
        Some(_) => authority.as_str().to_owned(),
        None => format!("{}:80", authority.host()),
    };
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    let exchange = async {
        let tcp = TcpStream::connect(&host_port)
            .await
            .map_err(|source| ClientError::Connect { target: host_port.clone(), source })?;
        let (mut sender, driver) = handshake(tcp).await?;
        let response = sender.send_request(build(Method::GET, &path, authority.as_str(), None, &[])?).await;
        driver.abort();
        Ok::<_, ClientError>(response?.status())
    };
    tokio::time::timeout(bound, exchange).await.map_err(|_| ClientError::Timeout)?
}
