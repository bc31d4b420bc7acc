//! Runs real `paddock-server` processes as a Raft cluster on 127.0.0.1 for a test (through
//! `paddock-testkit`): fast ticks (200 ms: sessions between 400 ms and 4 s), fault injection on,
//! the test's extra flags last.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use paddock_testkit::clean_env;
pub use paddock_testkit::cluster::{Cluster, NodeSpec};
pub use paddock_testkit::zk::{
    assert_same_everywhere, ensure_node, retrying, StateLog, Writer, EPHEMERAL, PERSISTENT, SEQUENTIAL,
};
pub use paddock_testkit::{http, poll_for, wait_for_within as wait_for, Bounded, WAIT};
use zookeeper_client::{Client, Error as ZkError};

/// The session timeout test clients ask for: the server's maximum with 200 ms ticks.
pub const SESSION: Duration = Duration::from_secs(4);

/// Starts `size` voters with the test flags plus `extra` and waits for a leader.
pub async fn start_cluster(size: u64, extra: &[&str]) -> Cluster {
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    let launcher = Arc::new(move |spec: &NodeSpec| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_paddock-server"));
        clean_env(&mut command);
        command
            .args(["--id", &spec.id.to_string()])
            .arg("--data-dir")
            .arg(spec.data_dir())
            .args(["--client-addr", &spec.client_addr.to_string()])
            .args(["--admin-addr", &spec.admin_addr.to_string()])
            .args(["--peer-addr", &spec.peer_addr.to_string()])
            .args(["--tick-ms", "200", "--enable-fault-injection"]);
        match spec.members_flag() {
            Some(members) => command.args(["--initial-members", &members]),
            None => command.arg("--join"),
        };
        command.args(&extra);
        command
    });
    Cluster::start(size, launcher).await
}

/// Clients of a cluster with the [`SESSION`] timeout.
pub trait Clients {
    /// A client over the nodes `ids`.
    async fn client(&self, ids: &[u64]) -> Client;
    /// Like [`Clients::client`], returning the error.
    async fn try_client(&self, ids: &[u64]) -> Result<Client, ZkError>;
}

impl Clients for Cluster {
    async fn client(&self, ids: &[u64]) -> Client {
        self.try_client(ids).await.unwrap_or_else(|e| panic!("client to {ids:?} failed to connect: {e}"))
    }

    async fn try_client(&self, ids: &[u64]) -> Result<Client, ZkError> {
        paddock_testkit::zk::connect(&self.connect_string(ids), SESSION).await
    }
}
