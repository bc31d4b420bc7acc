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
