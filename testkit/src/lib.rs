//! Test support shared by Paddock's process-level suites (server, sidecar, e2e, bench): every wait
//! bounded, every child process killed when its handle drops, every address on loopback or
//! in a network namespace the test made itself.

pub mod cluster;
pub mod http;
pub mod kube;
pub mod lab;
pub mod net;
pub mod pki;
pub mod process;
pub mod raw;
pub mod sidecar;
pub mod token_review;
pub mod wait;
pub mod zk;

use std::path::PathBuf;

pub use http::{http, HttpAnswer};
pub use net::{free_addrs, Proxy};
pub use process::{clean_env, Process};
pub use wait::{eventually, poll_for, wait_for, wait_for_within, Bounded, POLL, WAIT};

/// A tool one of the repository's scripts builds once per machine: the path in `env` if set,
/// else what `scripts/<script>` prints (its build log goes to stderr). Callers keep the answer
/// in a `OnceLock`, so that the tests of one process do not all build it at once.
pub fn tool_from_script(env: &str, script: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let script = package_dir(env!("CARGO_MANIFEST_DIR")).join("../scripts").join(script);
    let output = std::process::Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("failed to run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed ({}); {env} is not set", script.display(), output.status));
    }
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if path.is_empty() {
        return Err(format!("{} printed no path", script.display()));
    }
    Ok(PathBuf::from(path))
}

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
