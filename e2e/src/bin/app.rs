//! The app process of the e2e suite: runs beside a sidecar, as an application container would,
//! and talks to it only through its Unix socket.
//!
//! - `lock`: takes lock NAME again and again; while it holds it, writes `begin`, a few `wN` and
//!   `end` to the fenced resource with the lock's fencing token, then releases it.
//! - `elect`: campaigns in election NAME; while it leads, writes `begin` and then a `beatN`
//!   every 50 ms to the fenced resource with its term. Serves `GET /` on `--health-addr` for the
//!   sidecar's app-health probe, so a paused app is noticed.
//!
//! Every write's outcome goes to the `--acks` file as `ok|fenced TOKEN POD WHAT`. It stops
//! writing as soon as the sidecar says `suspended`, and resumes on `reconnected`. It prints
//! `paddock-e2e-app ready` once it serves, and runs until killed.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hyper::Method;
use paddock_e2e::fence::{self, Entry, Outcome};
use paddock_sidecar_client::{ClientError, EventLines, SocketClient};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
struct Args {
    /// The sidecar's socket.
    #[arg(long)]
    socket: PathBuf,
    /// This pod's name (written with every entry).
    #[arg(long)]
    pod: String,
    /// The fenced resource (a file shared by every app).
    #[arg(long)]
    resource: PathBuf,
    /// Where this app records the outcome of its writes.
    #[arg(long)]
    acks: PathBuf,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Take a lock, write under it, release it; again and again.
    Lock {
        /// The lock.
        #[arg(long)]
        name: String,
        /// `wN` writes per hold.
        #[arg(long, default_value_t = 5)]
        writes: u32,
    },
    /// Campaign; write heartbeats while leading.
    Elect {
        /// The election.
        #[arg(long)]
        name: String,
        /// Where to serve the health check.
        #[arg(long)]
        health_addr: SocketAddr,
    },
}

/// Where a hold stands after an event.
enum Hold {
    Held,
    Suspended,
    Over(String),
}

/// A stream error ends the hold as far as the app can tell.
fn after(event: Result<Option<Value>, ClientError>) -> Hold {
    let event = match event {
        Ok(event) => event,
        Err(e) => return Hold::Over(format!("stream failed: {e}")),
    };
    match event.as_ref().and_then(|e| e["type"].as_str()) {
        Some("suspended") => Hold::Suspended,
        Some("reconnected") | Some("follower") | Some("waiting") => Hold::Held,
        Some(other) => Hold::Over(other.to_owned()),
        None => Hold::Over("stream ended".to_owned()),
    }
}

struct App {
    args: Args,
    api: SocketClient,
    counter: u64,
}

impl App {
    /// Writes one entry to the resource and records its outcome.
    fn write(&mut self, token: i64, what: &str) -> Result<Outcome> {
        let entry = Entry { token, pod: self.args.pod.clone(), what: what.to_owned() };
        let resource = self.args.resource.clone();
        let outcome = fence::write(&resource, &entry)?;
        let word = if outcome == Outcome::Accepted { "ok" } else { "fenced" };
        record(&self.args.acks, &format!("{word} {token} {} {what}", self.args.pod))?;
        Ok(outcome)
    }

    fn next_write(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    /// Waits for the next event for up to `pause`; `Ok(None)` when none came.
    async fn poll(stream: &mut EventLines, pause: Duration) -> Result<Option<Hold>> {
        match tokio::time::timeout(pause, stream.next()).await {
            Err(_) => Ok(None),
            Ok(event) => Ok(Some(after(event))),
        }
    }

    /// Blocks while suspended; `false` when the hold ended meanwhile.
    async fn ride_out(stream: &mut EventLines) -> Result<bool> {
        loop {
            match after(stream.next().await) {
                Hold::Held => return Ok(true),
                Hold::Suspended => continue,
                Hold::Over(why) => {
                    eprintln!("hold over while suspended: {why}");
                    return Ok(false);
                }
            }
        }
    }

    async fn open(&self, uri: &str) -> EventLines {
        loop {
            match self.api.stream(Method::POST, uri, None).await {
                Ok(stream) => return stream,
                Err(e) => {
                    eprintln!("{uri}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn lock(&mut self, name: &str, writes: u32) -> Result<()> {
        let uri = format!("/v1/locks/{name}");
        loop {
            let mut stream = self.open(&uri).await;
            let Some(token) = taken(&mut stream, "acquired", "token", "waiting").await else { continue };
            self.hold(&mut stream, token, "w", Some(writes), Duration::from_millis(10)).await?;
            drop(stream);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes `begin`, then a write every `pause` (at most `limit`, then `end`) for as long as
    /// the hold lasts.
    async fn hold(
        &mut self,
        stream: &mut EventLines,
        token: i64,
        prefix: &str,
        limit: Option<u32>,
        pause: Duration,
    ) -> Result<()> {
        if self.write(token, "begin")? != Outcome::Accepted {
            return Ok(());
        }
        let mut done = 0;
        loop {
            match Self::poll(stream, pause).await? {
                None | Some(Hold::Held) => {}
                Some(Hold::Suspended) => {
                    if !Self::ride_out(stream).await? {
                        return Ok(());
                    }
                    continue;
                }
                Some(Hold::Over(why)) => {
                    eprintln!("hold {token} over: {why}");
                    return Ok(());
                }
            }
            if limit.is_some_and(|limit| done >= limit) {
                self.write(token, "end")?;
                return Ok(());
            }
            let what = self.next_write(prefix);
            if self.write(token, &what)? != Outcome::Accepted {
                return Ok(());
            }
            done += 1;
        }
    }

    async fn elect(&mut self, name: &str) -> Result<()> {
        let uri = format!("/v1/elections/{name}/campaign");
        loop {
            let mut stream = self.open(&uri).await;
            let Some(term) = taken(&mut stream, "leader", "term", "follower").await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            self.hold(&mut stream, term, "beat", None, Duration::from_millis(50)).await?;
        }
    }
}

/// Reads `stream` until the hold is taken (an event of type `taken`), passing over `pending`
/// and session events; the event's `field` (the fencing token), or `None` when the stream ends
/// or says anything else.
async fn taken(stream: &mut EventLines, taken: &str, field: &str, pending: &str) -> Option<i64> {
    loop {
        let event = stream.next().await.ok().flatten()?;
        match event["type"].as_str() {
            Some(kind) if kind == taken => return event[field].as_i64(),
            Some(kind) if kind == pending || kind == "suspended" || kind == "reconnected" => continue,
            _ => return None,
        }
    }
}

fn record(path: &Path, line: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(format!("{line}\n").as_bytes())?;
    Ok(())
}

/// Answers every connection with `200 ok`: the app is alive as long as it runs.
async fn serve_health(listener: tokio::net::TcpListener) {
    while let Ok((mut conn, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let api = SocketClient::new(&args.socket);
    let health = match &args.mode {
        Mode::Elect { health_addr, .. } => {
            Some(tokio::net::TcpListener::bind(health_addr).await.with_context(|| format!("binding {health_addr}"))?)
        }
        Mode::Lock { .. } => None,
    };
    if let Some(listener) = health {
        tokio::spawn(serve_health(listener));
    }
    println!("paddock-e2e-app ready pod={}", args.pod);
    let mode = match &args.mode {
        Mode::Lock { name, writes } => (name.clone(), Some(*writes)),
        Mode::Elect { name, .. } => (name.clone(), None),
    };
    let mut app = App { args, api, counter: 0 };
    match mode {
        (name, Some(writes)) => app.lock(&name, writes).await,
        (name, None) => app.elect(&name).await,
    }
}
