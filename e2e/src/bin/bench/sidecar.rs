//! Sidecar figures (Paddock only): a lock acquired and released through the sidecar's Unix
//! socket, and the hand-over of an election when the leading app's connection closes (which is
//! what the kernel does when the app dies).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hyper::{Method, StatusCode};
use paddock_sidecar_client::{EventLines, SocketClient};
use serde_json::{json, Value};

use crate::ensemble::Ensemble;
use crate::proc::Proc;
use crate::stats::Samples;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the sidecar runs measured.
#[derive(Debug, Default)]
pub struct SidecarFigures {
    /// Lock acquire through the socket (sorted).
    pub acquire: Samples,
    /// Lock release through the socket (sorted).
    pub release: Samples,
    /// Acquire + release (sorted).
    pub round_trip: Samples,
    /// Leader's connection closed → the other candidate's `leader` event (sorted).
    pub handover: Samples,
}

struct RunningSidecar {
    _proc: Proc,
    api: SocketClient,
}

async fn start_sidecar(bin: &Path, ensemble: &Ensemble, dir: &Path, pod: &str) -> Result<RunningSidecar> {
    let socket = dir.join(format!("{pod}.sock"));
    let mut command = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if (key.starts_with("PADDOCK_") && key != "PADDOCK_LOG") || key.starts_with("POD_") {
            command.env_remove(key);
        }
    }
    command
        .env("POD_NAME", pod)
        .arg("--socket")
        .arg(&socket)
        .arg("--cluster")
        .arg(ensemble.connect_all())
        .arg("--namespace")
        .arg("sidecar-bench")
        .arg("--listen-addr")
        .arg("127.0.0.1:0");
    let mut proc = Proc::spawn(&format!("sidecar {pod}"), command, &dir.join(format!("{pod}.log")))?;
    proc.wait_line("paddock-sidecar listening ", Duration::from_secs(30)).await?;
    let api = SocketClient::new(&socket);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if matches!(tokio::time::timeout(Duration::from_secs(3), api.get("/readyz")).await, Ok(Ok(r)) if r.status == StatusCode::OK)
        {
            break;
        }
        if Instant::now() >= deadline {
            bail!("sidecar {pod} not ready within 30 s; log:\n{}", proc.tail(20));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(RunningSidecar { _proc: proc, api })
}

async fn call(api: &SocketClient, method: Method, uri: &str, body: Option<&Value>) -> Result<(StatusCode, Value)> {
    let reply = tokio::time::timeout(CALL_TIMEOUT, api.request(method.clone(), uri, body, &[]))
        .await
        .map_err(|_| anyhow!("{method} {uri}: no answer within {CALL_TIMEOUT:?}"))?
        .with_context(|| format!("{method} {uri}"))?;
    Ok((reply.status, reply.body))
}

async fn next_event(stream: &mut EventLines, within: Duration) -> Result<Value> {
    match stream.next_within(within).await {
        Ok(Some(event)) => Ok(event),
        Ok(None) => bail!("the stream ended"),
        Err(e) => Err(anyhow!("stream: {e}")),
    }
}

/// Waits on `stream` for an event of type `kind` (skipping others), within `within`.
async fn wait_event(stream: &mut EventLines, kind: &str, within: Duration) -> Result<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no {kind} event within {within:?}");
        }
        let event = next_event(stream, left).await?;
        if event["type"] == kind {
            return Ok(event);
        }
    }
}

async fn campaign(api: &SocketClient) -> Result<EventLines> {
    let body = json!({"value": "bench"});
    tokio::time::timeout(CALL_TIMEOUT, api.stream(Method::POST, "/v1/elections/bench/campaign", Some(&body)))
        .await
        .map_err(|_| anyhow!("campaign: no answer within {CALL_TIMEOUT:?}"))?
        .context("campaign")
}

/// Starts two sidecars on the running Paddock ensemble and measures `locks` lock round trips
/// and `handovers` leadership hand-overs.
pub async fn measure(
    bin: &Path,
    ensemble: &Ensemble,
    dir: &Path,
    locks: usize,
    handovers: usize,
) -> Result<SidecarFigures> {
    let a = start_sidecar(bin, ensemble, dir, "bench-a").await?;
    let b = start_sidecar(bin, ensemble, dir, "bench-b").await?;
    let mut figures = SidecarFigures::default();

    let (status, lease) = call(&a.api, Method::POST, "/v1/leases", Some(&json!({"ttl_ms": 300000}))).await?;
    if status != StatusCode::CREATED {
        bail!("granting a lease answered {status}: {lease}");
    }
    let lease = lease["id"].as_str().ok_or_else(|| anyhow!("no lease id in {lease}"))?.to_owned();
    let lock_uri = format!("/v1/locks/bench?lease={lease}");
    let warmup = 20;
    let deadline = Instant::now() + Duration::from_secs(90);
    for i in 0..warmup + locks {
        if Instant::now() >= deadline {
            break;
        }
        let t0 = Instant::now();
        let (status, body) = call(&a.api, Method::POST, &lock_uri, None).await?;
        if status != StatusCode::OK || body["acquired"] != true {
            bail!("lock acquire answered {status}: {body}");
        }
        let t1 = Instant::now();
        let (status, body) = call(&a.api, Method::DELETE, &lock_uri, None).await?;
        if status != StatusCode::NO_CONTENT {
            bail!("lock release answered {status}: {body}");
        }
        let t2 = Instant::now();
        if i >= warmup {
            figures.acquire.record(t1 - t0);
            figures.release.record(t2 - t1);
            figures.round_trip.record(t2 - t0);
        }
    }
    let _ = call(&a.api, Method::DELETE, &format!("/v1/leases/{lease}"), None).await;

    // Hand-over: the leader's app connection closes; the other candidate's stream says `leader`.
    let apis = [&a.api, &b.api];
    let mut leading = campaign(apis[0]).await?;
    wait_event(&mut leading, "leader", Duration::from_secs(30)).await.context("first campaign")?;
    let mut turn = 1;
    for _ in 0..handovers {
        let mut waiting = campaign(apis[turn]).await?;
        wait_event(&mut waiting, "follower", Duration::from_secs(30)).await.context("second candidate")?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t0 = Instant::now();
        drop(leading);
        wait_event(&mut waiting, "leader", Duration::from_secs(30)).await.context("hand-over")?;
        figures.handover.record(t0.elapsed());
        leading = waiting;
        turn = 1 - turn;
    }
    drop(leading);
    figures.acquire.sort();
    figures.release.sort();
    figures.round_trip.sort();
    figures.handover.sort();
    Ok(figures)
}
