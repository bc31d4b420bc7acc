//! A `paddock-sidecar` process and a client of its Unix socket. The caller makes the command
//! line (the sidecar suite passes flags directly, the e2e suite renders them with the operator's
//! injector); readiness is the `listening` line, then `/readyz` saying the session is connected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use hyper::{Method, StatusCode};
use nix::sys::signal::Signal;
use paddock_sidecar_client::{EventLines, Reply, SocketClient};
use serde_json::Value;

use crate::process::Process;
use crate::wait::{eventually, Bounded};

/// One running sidecar.
pub struct Sidecar {
    process: Process,
    /// The pod name it runs as.
    pub pod: String,
    /// Its Unix socket.
    pub socket: PathBuf,
    /// Its TCP health/metrics address.
    pub http: SocketAddr,
    /// A client of its socket.
    pub api: SocketClient,
}

impl Sidecar {
    /// Starts `command` (a sidecar for `pod` serving `socket`, its stderr appended to `log`) and
    /// waits until it is ready.
    pub async fn launch(command: Command, pod: &str, socket: &Path, log: &Path) -> Sidecar {
        let process = Process::start(&format!("sidecar {pod}"), command, "paddock-sidecar listening ", log).await;
        let http = process.field("http=").parse().expect("http address");
        let sidecar =
            Sidecar { process, pod: pod.to_owned(), api: SocketClient::new(socket), socket: socket.to_owned(), http };
        sidecar.ready().await;
        sidecar
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&self) {
        eventually(&format!("sidecar {} ready", self.pod), || async {
            matches!(self.api.get("/readyz").await, Ok(reply) if reply.status == StatusCode::OK)
        })
        .await;
    }

    /// One request with a JSON body; fails the test if the socket does not answer.
    pub async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        self.call_with(method, uri, body, &[]).await
    }

    /// One request with headers.
    pub async fn call_with(&self, method: Method, uri: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Reply {
        match self.api.request(method.clone(), uri, body.as_ref(), headers).bounded().await {
            Ok(reply) => reply,
            Err(e) => panic!("{method} {uri} on sidecar {} failed: {e}", self.pod),
        }
    }

    /// Opens a stream; fails the test unless it is answered 200.
    pub async fn stream(&self, method: Method, uri: &str, body: Option<Value>) -> EventLines {
        match self.api.stream(method.clone(), uri, body.as_ref()).bounded().await {
            Ok(stream) => stream,
            Err(e) => panic!("{method} {uri} on sidecar {} failed: {e}", self.pod),
        }
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// SIGKILL: the sidecar's session is left to expire.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Waits (bounded) for the process to exit.
    pub async fn exited(&mut self) -> ExitStatus {
        self.process.exited().await
    }

    /// The sidecar's stderr so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// The next event of `stream` (bounded); `None` when the stream ended.
pub async fn next(stream: &mut EventLines) -> Option<Value> {
    match stream.next().bounded().await {
        Ok(event) => event,
        Err(e) => panic!("stream failed: {e}"),
    }
}

/// The next event, which must exist and be of `kind`.
pub async fn expect(stream: &mut EventLines, kind: &str) -> Value {
    match next(stream).await {
        Some(event) if event["type"] == kind => event,
        other => panic!("expected a {kind} event, got {other:?}"),
    }
}
