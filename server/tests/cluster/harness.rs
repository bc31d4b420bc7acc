//! Runs real `paddock-server` processes as a Raft cluster on 127.0.0.1 for a test (through
//! `paddock-testkit`): fast ticks (200 ms: sessions between 400 ms and 4 s), fault injection on,
//! the test's extra flags last.

use std::sync::Arc;
use std::time::Duration;

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
    Cluster::start(size, launcher(extra)).await
}

/// [`start_cluster`] with every peer link through a proxy, so the test can partition it.
pub async fn start_partitionable_cluster(size: u64, extra: &[&str]) -> Cluster {
    Cluster::start_partitionable(size, launcher(extra)).await
}

fn launcher(extra: &[&str]) -> paddock_testkit::cluster::Launcher {
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    Arc::new(move |spec: &NodeSpec| {
        let mut command = spec.server_command(std::path::Path::new(env!("CARGO_BIN_EXE_paddock-server")));
        command.args(["--tick-ms", "200", "--enable-fault-injection"]).args(&extra);
        command
    })
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
