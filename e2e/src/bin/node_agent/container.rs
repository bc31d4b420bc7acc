//! One run of one container: its root file system (an overlay on the image, with the pod's
//! resolv.conf, hosts and hostname, a few device nodes and the volume mounts), and the process,
//! entered into the pod's network namespace and a PID and mount namespace of its own, chrooted,
//! as its user. Everything through util-linux and iproute2, no unsafe code:
//! `setpriv --no-new-privs ip netns exec <pod> unshare --pid --fork --mount-proc --root=<root>
//! --wd=<dir> --setgid G --setuid U -- <command>`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The programs the agent runs, found once on PATH.
pub struct Tools {
    pub ip: PathBuf,
    pub unshare: PathBuf,
    pub setpriv: PathBuf,
    pub mount: PathBuf,
    pub umount: PathBuf,
}

fn which(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not on PATH"))
}

impl Tools {
    pub fn find() -> anyhow::Result<Tools> {
        Ok(Tools {
            ip: which("ip")?,
            unshare: which("unshare")?,
            setpriv: which("setpriv")?,
            mount: which("mount")?,
            umount: which("umount")?,
        })
    }

    /// Runs `program` with `args` to completion.
    pub fn run(&self, program: &Path, args: &[&str]) -> anyhow::Result<()> {
        let output = std::process::Command::new(program).args(args).output().with_context(|| format!("{program:?}"))?;
        if !output.status.success() {
            bail!("{} {}: {}", program.display(), args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(())
    }

    fn bind(&self, source: &Path, target: &Path, read_only: bool) -> anyhow::Result<()> {
        let (s, t) = (source.to_string_lossy(), target.to_string_lossy());
        self.run(&self.mount, &["--bind", &s, &t])?;
        if read_only {
            self.run(&self.mount, &["-o", "remount,bind,ro", &t])?;
        }
        Ok(())
    }
}

/// A mount of a volume into the container.
pub struct Mount {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
}

/// What a container run needs.
pub struct Spec {
    pub image_root: PathBuf,
    /// This run's directory (upper, work and merged root of the overlay).
    pub dir: PathBuf,
    pub netns: String,
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub uid: u32,
    pub gid: u32,
    pub cwd: String,
    pub files: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub read_only_root: bool,
    pub no_new_privs: bool,
    pub log: PathBuf,
}

/// Joins an absolute container path onto `root`, refusing `..`.
fn inside(root: &Path, path: &str) -> anyhow::Result<PathBuf> {
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        bail!("{path:?} is not an absolute path without `..`");
    }
    Ok(root.join(path.trim_start_matches('/')))
}

/// A running container process.
pub struct Running {
    child: tokio::process::Child,
    /// The merged root, unmounted when the run ends.
    root: PathBuf,
}

/// The merged root of a run in `dir`.
fn merged(dir: &Path) -> PathBuf {
    dir.join("root")
}

/// Lays out the root of `spec` and starts its process.
pub fn start(tools: &Tools, spec: &Spec) -> anyhow::Result<Running> {
    let (upper, work, root) = (spec.dir.join("upper"), spec.dir.join("work"), merged(&spec.dir));
    for d in [&upper, &work, &root] {
        std::fs::create_dir_all(d)?;
    }
    let options =
        format!("lowerdir={},upperdir={},workdir={}", spec.image_root.display(), upper.display(), work.display());
    tools.run(&tools.mount, &["-t", "overlay", "overlay", "-o", &options, &root.to_string_lossy()])?;
    let result = populate(tools, spec, &root);
    if let Err(e) = result {
        unmount(tools, &root);
        return Err(e);
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&spec.log)?;
    let mut command = tokio::process::Command::new(&tools.setpriv);
    if spec.no_new_privs {
        command.arg("--no-new-privs");
    }
    command
        .arg(&tools.ip)
        .args(["netns", "exec", &spec.netns])
        .arg(&tools.unshare)
        .args(["--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL"])
        .arg(format!("--root={}", root.display()))
        .arg(format!("--wd={}", spec.cwd))
        .arg(format!("--setgid={}", spec.gid))
        .arg(format!("--setuid={}", spec.uid))
        .arg("--")
        .arg(&spec.program)
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    match command.spawn() {
        Ok(child) => Ok(Running { child, root }),
        Err(e) => {
            unmount(tools, &root);
            Err(anyhow::anyhow!("starting {}: {e}", spec.program))
        }
    }
}

fn populate(tools: &Tools, spec: &Spec, root: &Path) -> anyhow::Result<()> {
    for d in ["dev", "proc", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = root.join("dev").join(dev);
        std::fs::write(&target, b"")?;
        tools.bind(&Path::new("/dev").join(dev), &target, false)?;
    }
    for (path, content) in &spec.files {
        let target = inside(root, path)?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, content)?;
    }
    let program = if spec.program.starts_with('/') {
        inside(root, &spec.program)?
    } else {
        // Resolved as the runtime would: on the container's PATH.
        let path = spec.env.iter().find(|(k, _)| k == "PATH").map_or("/usr/local/bin:/usr/bin:/bin", |(_, v)| v);
        path.split(':')
            .filter_map(|d| inside(root, &format!("{d}/{}", spec.program)).ok())
            .find(|p| p.is_file())
            .with_context(|| format!("{}: not found on the container's PATH {path}", spec.program))?
    };
    if !program.is_file() {
        bail!("{}: no such file in the image", spec.program);
    }
    for mount in &spec.mounts {
        let target = inside(root, &mount.target)?;
        if mount.source.is_dir() {
            std::fs::create_dir_all(&target)?;
        } else {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if !target.exists() {
                std::fs::write(&target, b"")?;
            }
        }
        tools.bind(&mount.source, &target, mount.read_only)?;
    }
    std::fs::create_dir_all(inside(root, &spec.cwd)?)?;
    if spec.read_only_root {
        tools.run(&tools.mount, &["-o", "remount,ro", &root.to_string_lossy()])?;
    }
    Ok(())
}

fn unmount(tools: &Tools, root: &Path) {
    let _ = tools.run(&tools.umount, &["-R", "-l", &root.to_string_lossy()]);
}

impl Running {
    /// The container's own process (PID 1 of its namespace), once unshare has forked it.
    fn init_pid(&self) -> Option<Pid> {
        let pid = self.child.id()?;
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok().map(Pid::from_raw)
    }

    /// Sends `signal` to the container's process (SIGKILL ends its whole PID namespace).
    pub fn signal(&self, signal: Signal) {
        match self.init_pid() {
            Some(pid) => {
                let _ = kill(pid, signal);
            }
            None => {
                if let Some(pid) = self.child.id() {
                    let _ = kill(Pid::from_raw(pid as i32), signal);
                }
            }
        }
    }

    /// Waits for the process to end: its exit code (128 + the signal that ended it).
    pub async fn wait(&mut self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        match self.child.wait().await {
            Ok(status) => status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            Err(_) => 255,
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; the exit code.
    pub async fn stop(&mut self, grace: Duration) -> i32 {
        self.signal(Signal::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(_) => {}
            Err(_) => self.signal(Signal::SIGKILL),
        }
        self.wait().await
    }

    /// Unmounts the run's root after its process ended.
    pub fn clean(self, tools: &Tools) {
        unmount(tools, &self.root);
    }
}
