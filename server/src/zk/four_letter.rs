//! ZooKeeper's four-letter words on the client port: a connection whose first four bytes are
//! one of these gets a plain-text answer and is closed.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::port::ClientPort;

/// The words answered (all of DESIGN.md's list; ZooKeeper's whitelist is not needed here).
pub const WORDS: [&[u8; 4]; 10] =
    [b"ruok", b"srvr", b"stat", b"mntr", b"conf", b"cons", b"envi", b"wchs", b"isro", b"dirs"];

/// Whether the first four bytes of a connection are a four-letter word.
pub fn is_word(first: &[u8; 4]) -> bool {
    WORDS.contains(&first)
}

/// The version string clients and tools see.
pub const VERSION: &str = concat!("3.9.3-paddock-", env!("CARGO_PKG_VERSION"));

fn mode(port: &ClientPort) -> &'static str {
    port.server.role()
}

/// The answer to `word` (one of [`WORDS`]).
pub fn answer(port: &ClientPort, word: &[u8; 4]) -> String {
    let mut out = String::new();
    let tree = port.server.store.tree();
    let (received, sent) = port.connections.packets();
    let (min, avg, max) = port.connections.latency_ms();
    match word {
        b"ruok" => out.push_str("imok"),
        b"isro" => out.push_str("rw"),
        b"srvr" | b"stat" => {
            let _ = writeln!(out, "Zookeeper version: {VERSION}, built on unknown");
            if word == b"stat" {
                out.push_str("Clients:\n");
                for (_, c) in port.connections.list() {
                    let _ = writeln!(
                        out,
                        " /{}[1](queued=0,recved={},sent={})",
                        c.peer,
                        c.received.load(Ordering::Relaxed),
                        c.sent.load(Ordering::Relaxed)
                    );
                }
                out.push('\n');
            }
            let _ = writeln!(out, "Latency min/avg/max: {min:.3}/{avg:.4}/{max:.3}");
            let _ = writeln!(out, "Received: {received}");
            let _ = writeln!(out, "Sent: {sent}");
            let _ = writeln!(out, "Connections: {}", port.connections.count());
            let _ = writeln!(out, "Outstanding: 0");
            let _ = writeln!(out, "Zxid: 0x{:x}", tree.last_zxid());
            let _ = writeln!(out, "Mode: {}", mode(port));
            let _ = writeln!(out, "Node count: {}", tree.node_count());
        }
        b"mntr" => {
            let watches = port.server.store.watches().watch_count();
            let rows: [(&str, String); 16] = [
                ("zk_version", VERSION.to_owned()),
                ("zk_server_state", mode(port).to_owned()),
                ("zk_avg_latency", format!("{avg:.4}")),
                ("zk_max_latency", format!("{max:.3}")),
                ("zk_min_latency", format!("{min:.3}")),
                ("zk_packets_received", received.to_string()),
                ("zk_packets_sent", sent.to_string()),
                ("zk_num_alive_connections", port.connections.count().to_string()),
                ("zk_outstanding_requests", "0".to_owned()),
                ("zk_znode_count", tree.node_count().to_string()),
                ("zk_watch_count", watches.to_string()),
                ("zk_ephemerals_count", tree.ephemeral_count().to_string()),
                ("zk_approximate_data_size", tree.approximate_data_size().to_string()),
                ("zk_global_sessions", tree.sessions().count().to_string()),
                ("zk_last_zxid", tree.last_zxid().to_string()),
                ("zk_uptime", port.server.started.elapsed().as_millis().to_string()),
            ];
            for (k, v) in rows {
                let _ = writeln!(out, "{k}\t{v}");
            }
        }
        b"conf" => {
            let c = &port.server.config;
            let _ = writeln!(out, "clientPort={}", c.client_addr.port());
            let _ = writeln!(out, "clientPortAddress={}", c.client_addr.ip());
            let _ = writeln!(out, "dataDir={}", c.data_dir.display());
            let _ = writeln!(out, "tickTime={}", c.tick_ms);
            let _ = writeln!(out, "maxClientCnxns={}", c.max_connections);
            let _ = writeln!(out, "minSessionTimeout={}", c.min_session_timeout().as_millis());
            let _ = writeln!(out, "maxSessionTimeout={}", c.max_session_timeout().as_millis());
            let _ = writeln!(out, "serverId={}", c.id);
            let _ = writeln!(out, "snapshotEvery={}", c.snapshot_every);
            let _ = writeln!(out, "jute.maxbuffer={}", c.max_buffer);
        }
        b"cons" => {
            for (_, c) in port.connections.list() {
                let _ = writeln!(
                    out,
                    " /{}[1](queued=0,recved={},sent={},sid=0x{:x},lzxid=0x{:x},to={})",
                    c.peer,
                    c.received.load(Ordering::Relaxed),
                    c.sent.load(Ordering::Relaxed),
                    c.session_id.load(Ordering::Relaxed),
                    c.last_zxid.load(Ordering::Relaxed),
                    c.timeout_ms.load(Ordering::Relaxed),
                );
            }
            out.push('\n');
        }
        b"envi" => {
            out.push_str("Environment:\n");
            let _ = writeln!(out, "zookeeper.version={VERSION}");
            let _ = writeln!(out, "host.name={}", std::env::var("HOSTNAME").unwrap_or_default());
            let _ = writeln!(out, "os.name={}", std::env::consts::OS);
            let _ = writeln!(out, "os.arch={}", std::env::consts::ARCH);
            let _ = writeln!(
                out,
                "user.dir={}",
                std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default()
            );
        }
        b"wchs" => {
            let w = port.server.store.watches();
            let _ = writeln!(out, "{} connections watching {} paths", w.watching_connections(), w.path_count());
            let _ = writeln!(out, "Total watches:{}", w.watch_count());
        }
        b"dirs" => {
            let size = dir_size(&port.server.config.data_dir);
            let _ = writeln!(out, "datadir_size: {size}");
            let _ = writeln!(out, "logdir_size: {size}");
        }
        _ => {}
    }
    out
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
