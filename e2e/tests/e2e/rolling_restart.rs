//! Rolling restart of every server pod (leader last), each one deleted with SIGTERM and started
//! again on its volume, under a write load and a register that several clients write.

use std::collections::BTreeMap;
use std::sync::Arc;

use paddock_e2e::history::{check_register, RegisterWrite};
use paddock_testkit::zk::assert_same_everywhere;
use tokio::sync::{watch, Mutex};
use zookeeper_client::Client;

use crate::harness::{connect, ensure_node, lost_connection, start_cluster, StateLog, Writer, CLIENT_SESSION};

/// Writes `writer-N` values to `/register` until told to stop, recording each outcome.
fn register_writer(
    client: Client,
    name: String,
    log: Arc<Mutex<Vec<RegisterWrite>>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // A write in flight is never abandoned: its outcome must be recorded.
        for n in 0.. {
            if *stop.borrow_and_update() {
                return;
            }
            let value = format!("{name}-{n}");
            match client.set_data("/register", value.as_bytes(), None).await {
                Ok(stat) => log.lock().await.push(RegisterWrite { value, version: Some(stat.version) }),
                Err(e) if lost_connection(&e) => {
                    log.lock().await.push(RegisterWrite { value, version: None });
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{name}: set_data failed: {e}"),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_every_server_under_load_loses_nothing() {
    let mut cluster = start_cluster(3).await;
    let all = cluster.ids();
    let setup = connect(&cluster.connect_all(), CLIENT_SESSION).await.expect("client");
    ensure_node(&setup, "/rolling").await;
    ensure_node(&setup, "/register").await;

    let writer_client = connect(&cluster.connect_all(), CLIENT_SESSION).await.expect("client");
    let states = StateLog::watch(&writer_client);
    let writer = Writer::spawn(writer_client, "/rolling");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (stop, stopped) = watch::channel(false);
    let mut register_tasks = Vec::new();
    for name in ["a", "b"] {
        let client = connect(&cluster.connect_all(), CLIENT_SESSION).await.expect("client");
        register_tasks.push(register_writer(client, name.to_owned(), log.clone(), stopped.clone()));
    }
    // A reader that must never see the register's version go back.
    let reader = connect(&cluster.connect_all(), CLIENT_SESSION).await.expect("client");
    let reads = Arc::new(Mutex::new(Vec::new()));
    let reader_task = {
        let reads = reads.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            loop {
                let read = tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => return,
                    read = reader.get_data("/register") => read,
                };
                if let Ok((_, stat)) = read {
                    reads.lock().await.push(stat.version);
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    writer.wait_progress(20, paddock_testkit::WAIT).await;

    // Followers first, the leader last, as a careful StatefulSet rollout does it.
    let leader = cluster.leader().await;
    let mut order: Vec<u64> = all.iter().copied().filter(|id| *id != leader).collect();
    order.push(leader);
    for id in order {
        let clean = cluster.node_mut(id).terminate().await;
        assert!(clean, "node {id} did not exit cleanly on SIGTERM");
        let others: Vec<u64> = all.iter().copied().filter(|o| *o != id).collect();
        cluster.wait_leader(&others, None).await;
        writer.wait_progress(10, paddock_testkit::WAIT).await;
        cluster.node_mut(id).start().await;
        cluster.wait_ready(&[id]).await;
        cluster.wait_caught_up(id, &all).await;
        writer.wait_progress(10, paddock_testkit::WAIT).await;
    }

    stop.send_replace(true);
    for task in register_tasks {
        task.await.expect("register writer");
    }
    reader_task.await.expect("reader");
    let report = writer.finish().await;
    assert!(report.errors.is_empty(), "writer errors: {:?}", report.errors);
    states.assert_never_expired("the writer");
    assert!(report.acked.len() >= 60, "only {} writes acknowledged", report.acked.len());
    assert_same_everywhere(&cluster, &all, "/rolling", &report.acked).await;

    setup.sync("/register").await.expect("sync");
    let (data, stat) = setup.get_data("/register").await.expect("read the register");
    let last = String::from_utf8(data).expect("utf-8");
    let writes = log.lock().await.clone();
    let reads = BTreeMap::from([("reader".to_owned(), reads.lock().await.clone())]);
    let acked = check_register(&writes, (&last, stat.version), &reads)
        .unwrap_or_else(|problems| panic!("register history broken: {problems:#?}"));
    assert!(acked > 20, "only {acked} register writes acknowledged");
}
