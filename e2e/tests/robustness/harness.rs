//! The robustness suite's cluster: servers run by the test's own flags, each in its own network
//! namespace of a lab, with fast ticks so that sessions, elections and faults fit in seconds.

use std::sync::Arc;
use std::time::Duration;

pub use paddock_testkit::cluster::{Cluster, NodeSpec};
pub use paddock_testkit::{wait_for_within as wait_for, WAIT};

/// Raft tick: sessions between 2 and 20 ticks.
pub const TICK_MS: u64 = 200;
/// The session timeout the workload's clients ask for.
pub const SESSION: Duration = Duration::from_secs(4);

/// Starts `size` voters, each in its own namespace, with `extra` flags last; waits for a leader.
pub async fn start_cluster(size: u64, extra: &[&str]) -> Cluster {
    assert!(
        paddock_testkit::lab::Lab::available(),
        "the robustness suite needs root, iproute2 and iptables (`make test` installs them)"
    );
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    let launcher = Arc::new(move |spec: &NodeSpec| {
        let mut command = spec.server_command(&paddock_testkit::binary("paddock-server"));
        command.args(["--tick-ms", &TICK_MS.to_string()]).args(&extra);
        command
    });
    Cluster::start_in_lab(size, launcher).await
}
