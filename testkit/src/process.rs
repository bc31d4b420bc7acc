//! A child process of a test: started with its stderr appended to a log file, ready once it
//! prints a given line on stdout (drained for the child's whole life so it never blocks on a full
//! pipe), signalled on demand, killed when the handle drops, its log tail printed when the test
//! fails.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::wait::{Bounded, WAIT};

/// Removes the `PADDOCK_*` (except `PADDOCK_LOG`) and `POD_*` variables the test runner may have,
/// so that a child sees only the flags and env its test gives it.
pub fn clean_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if (key.starts_with("PADDOCK_") && key != "PADDOCK_LOG") || key.starts_with("POD_") {
            command.env_remove(key);
        }
    }
}

/// One running child.
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    /// The readiness line it printed.
    pub ready_line: String,
}

impl Process {
    /// Starts `command` (named `name` in failure output) with stderr appended to `log`, and waits
    /// up to [`WAIT`] for a stdout line starting with `ready`.
    pub async fn start(name: &str, mut command: Command, ready: &str, log: &Path) -> Process {
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log_file));
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                let _ = lines_tx.send(std::mem::take(&mut line));
            }
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
        });
        let mut process =
            Process { name: name.to_owned(), child: Some(child), log: log.to_owned(), ready_line: String::new() };
        let ready = ready.to_owned();
        let seen = tokio::task::spawn_blocking(move || loop {
            match lines_rx.recv_timeout(WAIT) {
                Ok(line) if line.starts_with(&ready) => return Ok(line),
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        })
        .await
        .expect("readiness reader");
        match seen {
            Ok(line) => process.ready_line = line.trim_end().to_owned(),
            Err(e) => {
                process.kill9();
                panic!("{name} did not become ready ({e}); log:\n{}", process.log());
            }
        }
        process
    }

    /// The value of `key=` (e.g. `client=`) in the readiness line.
    pub fn field(&self, key: &str) -> String {
        self.ready_line
            .split_whitespace()
            .find_map(|word| word.strip_prefix(key))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.ready_line))
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<Pid> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok()).map(Pid::from_raw)
    }

    /// Whether the child has not been killed or reaped by this handle.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, SIGTERM, ...); a no-op once the child is gone.
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, signal);
        }
    }

    /// SIGKILL and reap: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped child is killed as well; SIGCONT is not needed for SIGKILL.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to [`WAIT`] for the child to exit on its own.
    pub async fn exited(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap_or_else(|| panic!("{} is not running", self.name));
        let status = tokio::task::spawn_blocking(move || child.wait()).bounded().await;
        status.expect("join").expect("wait")
    }

    /// Its stderr so far (every run that appended to the same log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Prints the last `lines` lines of the log to stderr.
    pub fn print_tail(&self, lines: usize) {
        let text = self.log();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        eprintln!("--- {} log (last {} lines) ---", self.name, tail.len());
        for line in tail.into_iter().rev() {
            eprintln!("{line}");
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            self.print_tail(60);
        }
    }
}
