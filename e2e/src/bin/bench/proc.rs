//! Child processes of the benchmark (`java` running ZooKeeper, `paddock-server`,
//! `paddock-sidecar`): output appended to a log file, stdout lines forwarded to a channel for
//! readiness lines, SIGTERM with a bounded grace period, SIGKILL on drop, and resident memory
//! from `/proc/PID/status`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// One running child process.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    lines: Option<mpsc::Receiver<String>>,
}

impl Proc {
    /// Starts `command`; stderr (and stdout, copied line by line) are appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Proc> {
        let mut log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open log file {}", log.display()))?;
        let _ = writeln!(log_file, "===== start {name}: {command:?}");
        let stderr = log_file.try_clone().context("cannot duplicate the log file handle")?;
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(stderr));
        let mut child = command.spawn().with_context(|| format!("cannot start {name} ({command:?})"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("{name}: no stdout pipe"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                let _ = log_file.write_all(line.as_bytes());
                let _ = tx.send(std::mem::take(&mut line));
            }
        });
        Ok(Proc { name: name.to_owned(), child: Some(child), log: log.to_owned(), lines: Some(rx) })
    }

    /// Waits up to `within` for a stdout line starting with `prefix`; returns it.
    pub async fn wait_line(&mut self, prefix: &str, within: Duration) -> Result<String> {
        let rx = self.lines.take().ok_or_else(|| anyhow!("{}: stdout is already being waited on", self.name))?;
        let prefix_owned = prefix.to_owned();
        let (rx, found) = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + within;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) if line.starts_with(&prefix_owned) => return (rx, Ok(line.trim_end().to_owned())),
                    Ok(_) => continue,
                    Err(e) => return (rx, Err(e)),
                }
            }
        })
        .await
        .context("readiness reader task failed")?;
        self.lines = Some(rx);
        found.map_err(|e| {
            anyhow!(
                "{} printed no line starting with {prefix:?} within {within:?} ({e}); log tail:\n{}",
                self.name,
                self.tail(30)
            )
        })
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it has exited on its own.
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`. Returns how long it took.
    pub async fn terminate(&mut self, grace: Duration) -> Duration {
        let start = Instant::now();
        let Some(pid) = self.pid() else { return Duration::ZERO };
        if let Ok(raw) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
        }
        while start.elapsed() < grace {
            if self.exited() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill9();
        start.elapsed()
    }

    /// Resident set size in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> Result<u64> {
        let pid = self.pid().ok_or_else(|| anyhow!("{} is not running", self.name))?;
        rss_of(pid)
    }

    /// The last `n` lines of the log.
    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `VmRSS` of process `pid`, in bytes.
pub fn rss_of(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let line =
        status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("bad VmRSS line {line:?}"))?;
    Ok(kib * 1024)
}

/// CPU time (user + system) of process `pid` so far, in clock ticks (`/proc/PID/stat`).
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Disk space allocated to the files under `dir` (as `du` counts it).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                // Allocated blocks, as `du` counts: ZooKeeper's preallocated txn logs are sparse.
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

/// Runs a short command to completion (bounded) and returns its stdout.
pub async fn run_capture(program: &str, args: &[&str], within: Duration) -> Result<String> {
    let mut command = tokio::process::Command::new(program);
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(within, command.output())
        .await
        .map_err(|_| anyhow!("{program} {args:?} took longer than {within:?}"))?
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        bail!("{program} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
