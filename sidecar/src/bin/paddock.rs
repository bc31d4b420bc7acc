//! `paddock`: the command line for the sidecar's socket. `lock` and `elect` run a command while
//! holding a lock or leadership, and stop it when the hold is lost, or, while the session is
//! suspended, before the hold's deadline passes; `get`, `put`, `ls`, `watch` and `members` read
//! and write the namespace.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use hyper::{Method, StatusCode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use paddock_sidecar::client::{ClientError, EventLines, SocketClient};
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

/// Exit code when the lock or leadership was lost while the command ran.
const EXIT_LOST: u8 = 75;
/// How long a stopped command gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// While suspended with `left` until the hold's deadline: SIGTERM once half of it has passed
/// without a `reconnected` (a leader failover is usually over by then, and then the command
/// goes on), SIGKILL at a tenth of it before the deadline, so the command is gone in time.
#[derive(Debug, Clone, Copy)]
struct Suspension {
    term_at: Instant,
    kill_at: Instant,
}

impl Suspension {
    /// The suspension a `suspended` event (received now) describes. Of its two ways to say the
    /// deadline, the earlier counts: `valid_for_ms` was counted when the sidecar sent it.
    fn from_event(event: &Value) -> Suspension {
        let now = Instant::now();
        let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let by_clock = event["valid_until_ms"].as_u64().map(|until| until.saturating_sub(wall_ms));
        let by_count = event["valid_for_ms"].as_u64();
        // A sidecar that says no deadline gives the command none either.
        let left = Duration::from_millis(by_clock.into_iter().chain(by_count).min().unwrap_or(0));
        Suspension { term_at: now + left / 2, kill_at: now + left - left / 10 }
    }
}

#[derive(Debug, Parser)]
#[command(name = "paddock", version, about = "Talk to the paddock sidecar of this pod")]
struct Cli {
    /// The sidecar's socket.
    #[arg(long, env = "PADDOCK_SOCKET", default_value = "/var/run/paddock/paddock.sock", global = true)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Print a znode's data (`--json`: the whole node with its stat).
    Get {
        /// Znode path in the namespace.
        path: String,
        /// Print the JSON node.
        #[arg(long)]
        json: bool,
    },
    /// Write a znode (created with its parents when missing); data from the argument or stdin.
    Put {
        /// Znode path in the namespace.
        path: String,
        /// The data; read from stdin when absent.
        data: Option<String>,
        /// Only write if the znode is at this version.
        #[arg(long)]
        version: Option<i32>,
        /// Create the znode ephemeral (gone with the pod).
        #[arg(long)]
        ephemeral: bool,
    },
    /// List a znode's children.
    Ls {
        /// Znode path in the namespace (default the root).
        #[arg(default_value = "/")]
        path: String,
    },
    /// Print a znode's changes as JSON lines until interrupted.
    Watch {
        /// Znode path in the namespace.
        path: String,
        /// Also the changes below it.
        #[arg(long)]
        recursive: bool,
    },
    /// List a group's members (`--watch`: stream joins and leaves as JSON lines).
    Members {
        /// Group name.
        group: String,
        /// Stream changes.
        #[arg(long)]
        watch: bool,
    },
    /// Run CMD while holding lock NAME (the token is in PADDOCK_FENCING_TOKEN); CMD is stopped
    /// if the lock is lost (exit 75).
    Lock {
        /// Lock name.
        name: String,
        /// Fail (exit 1) instead of waiting when the lock is held.
        #[arg(long = "try")]
        try_only: bool,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Campaign in election NAME and run CMD while leader (the term is in PADDOCK_TERM); CMD is
    /// stopped if leadership is lost (exit 75).
    Elect {
        /// Election name.
        name: String,
        /// A value shown to followers and observers (an address, say).
        #[arg(long)]
        value: Option<String>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn encode(path: &str) -> String {
    let mut out = String::new();
    for byte in path.trim_start_matches('/').bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("paddock: {message}");
    ExitCode::FAILURE
}

fn error_message(body: &Value) -> String {
    body.pointer("/error/message").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| body.to_string())
}

fn print_data(node: &Value) {
    match (node.get("data").and_then(Value::as_str), node.get("data_b64").and_then(Value::as_str)) {
        (Some(text), _) => println!("{text}"),
        (None, Some(b64)) => println!("{b64}"),
        _ => println!(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = SocketClient::new(&cli.socket);
    match run(&client, cli.command).await {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

async fn run(client: &SocketClient, command: Cmd) -> Result<ExitCode, ClientError> {
    match command {
        Cmd::Get { path, json } => {
            let reply = client.get(&format!("/v1/nodes/{}", encode(&path))).await?;
            if reply.status != StatusCode::OK {
                return Ok(fail(error_message(&reply.body)));
            }
            if json {
                println!("{}", reply.body);
            } else {
                print_data(&reply.body);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Put { path, data, version, ephemeral } => {
            let data = match data {
                Some(data) => data,
                None => {
                    let mut text = String::new();
                    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                        return Ok(fail(format!("cannot read stdin: {e}")));
                    }
                    text
                }
            };
            let version = version.map(|v| v.to_string());
            let headers: Vec<(&str, &str)> = version.iter().map(|v| ("if-match", v.as_str())).collect();
            let uri = format!("/v1/nodes/{}{}", encode(&path), if ephemeral { "?ephemeral" } else { "" });
            let reply = client.request(Method::PUT, &uri, Some(&json!({"data": data})), &headers).await?;
            if !reply.status.is_success() {
                return Ok(fail(error_message(&reply.body)));
            }
            println!("{}", reply.body);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ls { path } => {
            let reply = client.get(&format!("/v1/nodes/{}?children", encode(&path))).await?;
            if reply.status != StatusCode::OK {
                return Ok(fail(error_message(&reply.body)));
            }
            for child in reply.body.get("children").and_then(Value::as_array).into_iter().flatten() {
                println!("{}", child.as_str().unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Watch { path, recursive } => {
            let uri = format!("/v1/nodes/{}?watch{}", encode(&path), if recursive { "&recursive" } else { "" });
            print_stream(client.stream(Method::GET, &uri, None).await?).await
        }
        Cmd::Members { group, watch } => {
            if watch {
                let uri = format!("/v1/groups/{}?watch", encode(&group));
                return print_stream(client.stream(Method::GET, &uri, None).await?).await;
            }
            let reply = client.get(&format!("/v1/groups/{}", encode(&group))).await?;
            if reply.status != StatusCode::OK {
                return Ok(fail(error_message(&reply.body)));
            }
            for member in reply.body.get("members").and_then(Value::as_array).into_iter().flatten() {
                let field = |name: &str| member.get(name).and_then(Value::as_str).unwrap_or("-").to_owned();
                println!("{}\t{}\t{}", field("id"), field("pod"), field("ip"));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lock { name, try_only, command } => {
            let uri = format!("/v1/locks/{}{}", encode(&name), if try_only { "?try" } else { "" });
            let stream = match client.stream(Method::POST, &uri, None).await {
                Ok(stream) => stream,
                Err(ClientError::Status { body, .. }) => return Ok(fail(error_message(&body))),
                Err(e) => return Err(e),
            };
            hold_and_run(stream, "acquired", "PADDOCK_FENCING_TOKEN", "token", &name, &command).await
        }
        Cmd::Elect { name, value, command } => {
            let uri = format!("/v1/elections/{}/campaign", encode(&name));
            let body = value.map(|v| json!({"value": v}));
            let stream = match client.stream(Method::POST, &uri, body.as_ref()).await {
                Ok(stream) => stream,
                Err(ClientError::Status { body, .. }) => return Ok(fail(error_message(&body))),
                Err(e) => return Err(e),
            };
            hold_and_run(stream, "leader", "PADDOCK_TERM", "term", &name, &command).await
        }
    }
}

async fn print_stream(mut stream: EventLines) -> Result<ExitCode, ClientError> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| ClientError::Request(e.to_string()))?;
    loop {
        tokio::select! {
            event = stream.next() => match event? {
                Some(event) => println!("{event}"),
                None => return Ok(ExitCode::SUCCESS),
            },
            _ = interrupt.recv() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Waits for the `granted` event, runs the command with the event's `field` exported as `env`,
/// and stops it if the hold ends first. The exit code is the command's.
async fn hold_and_run(
    mut stream: EventLines,
    granted: &str,
    env: &str,
    field: &str,
    name: &str,
    command: &[String],
) -> Result<ExitCode, ClientError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| ClientError::Request(e.to_string()))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| ClientError::Request(e.to_string()))?;
    let value = loop {
        let event = tokio::select! {
            event = stream.next() => event?,
            _ = terminate.recv() => return Ok(ExitCode::FAILURE),
            _ = interrupt.recv() => return Ok(ExitCode::FAILURE),
        };
        let Some(event) = event else {
            return Ok(fail("the sidecar ended the stream"));
        };
        match event.get("type").and_then(Value::as_str) {
            Some(t) if t == granted => break event.get(field).cloned().unwrap_or(Value::Null),
            Some("lost" | "released" | "error") => return Ok(fail(format!("{name}: {event}"))),
            _ => eprintln!("paddock: {name}: {event}"),
        }
    };
    let Some((program, args)) = command.split_first() else {
        return Ok(fail("no command given"));
    };
    let mut child = match Command::new(program).args(args).env(env, value.to_string()).spawn() {
        Ok(child) => child,
        Err(e) => return Ok(fail(format!("cannot run {program}: {e}"))),
    };
    // Set while the session is suspended; `terminated` once CMD got SIGTERM for it.
    let mut suspension: Option<Suspension> = None;
    let mut terminated = false;
    loop {
        let kill_at = suspension.map(|s| s.kill_at);
        tokio::select! {
            status = child.wait() => {
                if terminated {
                    return Ok(ExitCode::from(EXIT_LOST));
                }
                let code = status.ok().and_then(|s| s.code()).unwrap_or(1);
                return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
            }
            _ = sleep_until_some(suspension.map(|s| s.term_at)), if !terminated => {
                eprintln!("paddock: {name} may be lost soon (the session is suspended); stopping {program}");
                signal_child(&child, Signal::SIGTERM);
                terminated = true;
            }
            _ = sleep_until_some(kill_at), if terminated => {
                eprintln!("paddock: {name}: {program} did not stop before the hold's deadline; killing it");
                let _ = child.kill().await;
                return Ok(ExitCode::from(EXIT_LOST));
            }
            event = stream.next() => {
                let ended = match event {
                    Ok(Some(event)) => {
                        let kind = event.get("type").and_then(Value::as_str);
                        match kind {
                            Some("lost" | "released" | "error") => Some(event.to_string()),
                            _ => {
                                eprintln!("paddock: {name}: {event}");
                                match kind {
                                    // A later suspension never moves an earlier deadline out.
                                    Some("suspended") if suspension.is_none() => {
                                        suspension = Some(Suspension::from_event(&event));
                                    }
                                    // Once told to stop, CMD stops: it may have let go already.
                                    Some("reconnected") if !terminated => suspension = None,
                                    _ => {}
                                }
                                None
                            }
                        }
                    }
                    Ok(None) => Some("the sidecar ended the stream".to_owned()),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(why) = ended {
                    eprintln!("paddock: {name} lost ({why}); stopping {program}");
                    stop(&mut child, kill_at).await;
                    return Ok(ExitCode::from(EXIT_LOST));
                }
            }
            _ = terminate.recv() => {
                stop(&mut child, kill_at).await;
                return Ok(ExitCode::FAILURE);
            }
            _ = interrupt.recv() => {
                stop(&mut child, kill_at).await;
                return Ok(ExitCode::FAILURE);
            }
        }
    }
}

/// Sleeps until `at`; for ever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn signal_child(child: &Child, signal: Signal) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`], or at `kill_at` (a suspended hold's
/// deadline, less a margin) if that comes first.
async fn stop(child: &mut Child, kill_at: Option<Instant>) {
    if child.id().is_some() {
        signal_child(child, Signal::SIGTERM);
        let grace = Instant::now() + STOP_GRACE;
        let until = kill_at.map_or(grace, |at| at.min(grace));
        if tokio::time::timeout_at(until, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}
