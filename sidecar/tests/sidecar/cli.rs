//! The `paddock` CLI against a real sidecar.

use std::process::Output;

use hyper::Method;
use serde_json::json;

use crate::harness::{eventually, Bounded, Server, Sidecar, SidecarExt};

async fn paddock(s: &Sidecar, args: &[&str]) -> Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paddock"))
        .arg("--socket")
        .arg(&s.socket)
        .args(args)
        .kill_on_drop(true)
        .output()
        .bounded()
        .await;
    output.expect("paddock runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn cli_reads_writes_and_runs_commands_under_a_lock() {
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let s = Sidecar::start(&server, &cluster, "pod-a", &["--join", "web"]).await;

    let put = paddock(&s, &["put", "/conf/mode", "fast"]).await;
    assert!(put.status.success(), "{put:?}");
    let get = paddock(&s, &["get", "/conf/mode"]).await;
    assert_eq!(stdout(&get), "fast\n");
    let ls = paddock(&s, &["ls", "/conf"]).await;
    assert_eq!(stdout(&ls), "mode\n");
    let missing = paddock(&s, &["get", "/conf/none"]).await;
    assert!(!missing.status.success());
    let members = paddock(&s, &["members", "web"]).await;
    assert_eq!(stdout(&members), "pod-a\tpod-a\t127.0.0.1\n");

    let locked = paddock(&s, &["lock", "deploy", "--", "sh", "-c", "echo token=$PADDOCK_FENCING_TOKEN; exit 3"]).await;
    assert_eq!(locked.status.code(), Some(3), "the command's exit code: {locked:?}");
    let token: i64 = stdout(&locked).trim().strip_prefix("token=").and_then(|t| t.parse().ok()).expect("token printed");
    assert!(token > 0);
    // The CLI released the lock when the command ended.
    eventually("lock released", || async { s.api.stream(Method::POST, "/v1/locks/deploy?try", None).await.is_ok() })
        .await;

    let elected =
        paddock(&s, &["elect", "primary", "--value", "me", "--", "sh", "-c", "echo term=$PADDOCK_TERM"]).await;
    assert!(elected.status.success(), "{elected:?}");
    assert!(stdout(&elected).starts_with("term="));
    eventually("leadership ends with the command", || async {
        s.call(Method::GET, "/v1/elections/primary", None).await.body["leader"] == json!(null)
    })
    .await;
}

#[tokio::test]
async fn cli_stops_its_command_before_a_blackholed_holds_deadline() {
    let server = Server::start().await;
    let blackhole = crate::harness::Proxy::start(server.client_addr).await;
    let s = Sidecar::start(&server, &blackhole.addr.to_string(), "pod-a", &["--session-timeout-ms", "2000"]).await;
    let started = server.dir().join("started");
    // A command that ignores SIGTERM: only the SIGKILL before the deadline stops it.
    let script = format!("trap '' TERM; touch {}; while :; do sleep 0.05; done", started.display());
    let mut cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_paddock"))
        .arg("--socket")
        .arg(&s.socket)
        .args(["lock", "deploy", "--", "sh", "-c", &script])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("paddock runs");
    eventually("the command runs under the lock", || async { started.exists() }).await;

    blackhole.stall();
    let status = cli.wait().bounded().await.expect("paddock exits");
    let exited_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    blackhole.restore();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut cli.stderr.take().expect("stderr"), &mut stderr)
        .await
        .expect("stderr read");
    assert_eq!(status.code(), Some(75), "{stderr}");
    let deadline = stderr
        .lines()
        .filter_map(|line| line.split_once(": {").map(|(_, event)| format!("{{{event}")))
        .filter_map(|event| serde_json::from_str::<serde_json::Value>(&event).ok())
        .find(|event| event["type"] == "suspended")
        .and_then(|event| event["valid_until_ms"].as_u64())
        .unwrap_or_else(|| panic!("no suspended event with a deadline: {stderr}"));
    // paddock exits only once its command is dead; both are seen here no earlier than they were.
    assert!(
        exited_at < u128::from(deadline),
        "the command outlived the deadline {deadline} (exit at {exited_at}): {stderr}"
    );
}
