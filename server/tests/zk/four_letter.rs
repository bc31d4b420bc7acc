//! Four-letter words on the client port: each gets a plain-text answer and the connection
//! closes; none disturbs the sessions.

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Bounded, TestServer, PERSISTENT};

async fn ask(server: &TestServer, word: &str) -> String {
    let mut stream = TcpStream::connect(server.client_addr).bounded().await.expect("connect");
    stream.write_all(word.as_bytes()).bounded().await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).bounded().await.expect("answer, then close");
    answer
}

fn mntr(answer: &str) -> HashMap<String, String> {
    answer.lines().filter_map(|line| line.split_once('\t')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

#[tokio::test]
async fn ruok_and_isro() {
    let server = TestServer::start().await;
    assert_eq!(ask(&server, "ruok").await, "imok");
    assert_eq!(ask(&server, "isro").await, "rw");
}

#[tokio::test]
async fn srvr_and_stat() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/x", b"", &PERSISTENT).bounded().await.expect("create");
    let srvr = ask(&server, "srvr").await;
    assert!(srvr.contains("Zookeeper version: "), "{srvr}");
    assert!(srvr.contains("Mode: standalone"), "{srvr}");
    assert!(srvr.contains("Node count: 5"), "{srvr}");
    assert!(srvr.contains("Connections: 1"), "{srvr}");
    let stat = ask(&server, "stat").await;
    assert!(stat.contains("Clients:"), "{stat}");
    assert!(stat.contains("/127.0.0.1:"), "a connected client is listed: {stat}");
    assert!(stat.contains("Mode: standalone"), "{stat}");
}

#[tokio::test]
async fn mntr_reports_the_tree() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/m", b"", &PERSISTENT).bounded().await.expect("create");
    zk.create("/m/e", b"", &crate::harness::EPHEMERAL).bounded().await.expect("create");
    let (_, _, _watch) = zk.get_and_watch_data("/m").bounded().await.expect("watch");
    let values = mntr(&ask(&server, "mntr").await);
    assert_eq!(values.get("zk_server_state").map(String::as_str), Some("standalone"));
    assert_eq!(values.get("zk_znode_count").map(String::as_str), Some("6"), "4 built-in + 2: {values:?}");
    assert_eq!(values.get("zk_ephemerals_count").map(String::as_str), Some("1"));
    assert_eq!(values.get("zk_watch_count").map(String::as_str), Some("1"));
    assert_eq!(values.get("zk_num_alive_connections").map(String::as_str), Some("1"));
    for key in ["zk_version", "zk_avg_latency", "zk_packets_received", "zk_approximate_data_size", "zk_last_zxid"] {
        assert!(values.contains_key(key), "{key} missing: {values:?}");
    }
}

#[tokio::test]
async fn conf_cons_envi_wchs_dirs() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/w", b"", &PERSISTENT).bounded().await.expect("create");
    let (_, _, _watch) = zk.get_and_watch_data("/w").bounded().await.expect("watch");

    let conf = ask(&server, "conf").await;
    for line in [
        format!("clientPort={}", server.client_addr.port()),
        "tickTime=100".to_owned(),
        "minSessionTimeout=200".to_owned(),
        "maxSessionTimeout=2000".to_owned(),
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} missing from conf:\n{conf}");
    }

    let cons = ask(&server, "cons").await;
    let sid = format!("sid=0x{:x}", zk.session_id().0);
    assert!(cons.contains(&sid), "{sid} missing from cons:\n{cons}");

    let envi = ask(&server, "envi").await;
    assert!(envi.contains("zookeeper.version="), "{envi}");

    let wchs = ask(&server, "wchs").await;
    assert!(wchs.contains("1 connections watching 1 paths"), "{wchs}");
    assert!(wchs.contains("Total watches:1"), "{wchs}");

    let dirs = ask(&server, "dirs").await;
    let size: u64 = dirs
        .lines()
        .find_map(|l| l.strip_prefix("datadir_size: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no datadir_size in {dirs}"));
    assert!(size > 0, "{dirs}");

    // None of this disturbed the session.
    zk.create("/w2", b"", &PERSISTENT).bounded().await.expect("create");
}
