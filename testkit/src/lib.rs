//! Test support shared by Paddock's process-level suites (server, sidecar, e2e, bench): every wait
//! bounded, every child process killed when its handle drops, every address on loopback or
//! in a network namespace the test made itself.

pub mod cluster;
pub mod http;
pub mod kube;
pub mod lab;
pub mod net;
pub mod process;
pub mod raw;
pub mod sidecar;
pub mod wait;
pub mod zk;

use std::path::PathBuf;

pub use http::{http, HttpAnswer};
pub use net::{free_addrs, Proxy};
pub use process::{clean_env, Process};
pub use wait::{eventually, poll_for, wait_for, wait_for_within, Bounded, POLL, WAIT};

/// The directory of the package whose tests run: as cargo says when it runs them, else `built`
/// (pass `env!("CARGO_MANIFEST_DIR")`, the path at build time). The build-time path alone goes
/// stale when another checkout built the binary into the shared target directory (CI's fresh
/// clones use the same cache) and cargo reuses it here.
pub fn package_dir(built: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(built), PathBuf::from)
}

/// A workspace binary (`paddock-server`, `paddock-sidecar`, ...) next to the running test
/// executable (`target/<profile>/deps/..` → `target/<profile>/`), or in `PADDOCK_BIN_DIR`.
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("PADDOCK_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("current exe");
            let deps = exe.parent().map(PathBuf::from).unwrap_or_default();
            if deps.ends_with("deps") {
                deps.parent().map(PathBuf::from).unwrap_or(deps)
            } else {
                deps
            }
        }
    };
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: build it first (`cargo build --workspace --bins`)", path.display());
    path
}
