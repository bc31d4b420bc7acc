//! One pod bound to a node: its sandbox (a network namespace with one address), its volumes, its
//! containers in kubelet's order — init containers one by one, native sidecars (init containers
//! with `restartPolicy: Always`) started and kept running, then the app containers — restarts
//! per restartPolicy with a capped back-off, probes, the status it reports, and its end: on
//! deletion the app containers get SIGTERM and, after the grace period, SIGKILL, then the
//! sidecars; then the pod object is deleted for good.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::container::{self, Mount};
use crate::node::{now_rfc3339, Node};
use crate::probe;
use crate::Agent;

/// The longest wait between restarts (kubelet's is 5 minutes; tests want fast recovery).
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A container that ran this long restarts without back-off.
const RESET_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Clone)]
enum Update {
    Pod(Box<Pod>),
    Gone,
}

/// The node's handle on a pod worker.
pub struct Handle {
    updates: watch::Sender<Update>,
}

impl Handle {
    pub fn start(pod: Pod, node: Arc<Node>, agent: Arc<Agent>) -> Handle {
        let (updates, rx) = watch::channel(Update::Pod(Box::new(pod.clone())));
        tokio::spawn(async move {
            let name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
            if let Err(e) = run(pod, rx, node, agent).await {
                tracing::warn!(pod = %name, "pod worker failed: {e:#}");
            }
        });
        Handle { updates }
    }

    pub fn update(&self, pod: Pod) {
        let _ = self.updates.send(Update::Pod(Box::new(pod)));
    }

    pub fn gone(&self) {
        let _ = self.updates.send(Update::Gone);
    }
}

/// A pod's network: its namespace, address and the veth to it.
struct Sandbox {
    netns: String,
    veth: String,
    ip: Ipv4Addr,
    dir: PathBuf,
    node: Arc<Node>,
    agent: Arc<Agent>,
}

static SANDBOXES: Mutex<Vec<Arc<Sandbox>>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);

impl Sandbox {
    fn create(pod: &Pod, node: Arc<Node>, agent: Arc<Agent>) -> anyhow::Result<Arc<Sandbox>> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let netns = format!("{}{n}", agent.netns_prefix);
        let veth = format!("vp{n}");
        let ip = node.allocate().context("the node's pod CIDR is full")?;
        let dir = agent.dir.join("pods").join(pod.uid().unwrap_or_default());
        std::fs::create_dir_all(dir.join("logs"))?;
        let sandbox = Arc::new(Sandbox { netns, veth, ip, dir, node, agent });
        SANDBOXES.lock().unwrap_or_else(|e| e.into_inner()).push(sandbox.clone());
        sandbox.network().inspect_err(|_| sandbox.teardown())?;
        Ok(sandbox)
    }

    fn network(&self) -> anyhow::Result<()> {
        let tools = &self.agent.tools;
        let ip = |args: &[&str]| tools.run(&tools.ip, args);
        let (ns, veth, addr) = (self.netns.as_str(), self.veth.as_str(), format!("{}/32", self.ip));
        let gateway = self.agent.pod_gateway.to_string();
        ip(&["netns", "add", ns])?;
        ip(&["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
        ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        // One /32 per pod, routed through the node (the agent's namespace) by proxy ARP: every
        // packet between pods and to Services crosses kube-proxy's rules there.
        ip(&["-n", ns, "route", "add", &gateway, "dev", "eth0", "scope", "link"])?;
        ip(&["-n", ns, "route", "add", "default", "via", &gateway, "dev", "eth0"])?;
        ip(&["link", "set", veth, "up"])?;
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{veth}/proxy_arp"), "1")?;
        ip(&["route", "add", &addr, "dev", veth])?;
        Ok(())
    }

    fn teardown(&self) {
        let tools = &self.agent.tools;
        // Whatever still runs in the namespace (an agent stopping with its pods up).
        if let Ok(out) = std::process::Command::new(&tools.ip).args(["netns", "pids", &self.netns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        let _ = tools.run(&tools.ip, &["link", "delete", &self.veth]);
        let _ = tools.run(&tools.ip, &["netns", "delete", &self.netns]);
        self.node.release(self.ip);
        SANDBOXES.lock().unwrap_or_else(|e| e.into_inner()).retain(|s| s.netns != self.netns);
    }
}

/// Kills every pod's processes and removes their namespaces (the agent is stopping).
pub fn stop_all() {
    let all: Vec<Arc<Sandbox>> = SANDBOXES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for sandbox in all {
        sandbox.teardown();
    }
}

/// A container's state as the API shows it.
#[derive(Clone)]
enum State {
    Waiting { reason: String, message: Option<String> },
    Running { since: String },
    Terminated { code: i32, reason: String, started: String, finished: String },
}

#[derive(Clone)]
struct Status {
    name: String,
    image: String,
    state: State,
    last: Option<State>,
    restarts: i32,
    ready: bool,
    started: bool,
}

/// What the worker reports.
struct Report {
    init: Vec<Status>,
    apps: Vec<Status>,
    phase: &'static str,
    initialized: bool,
    start_time: String,
}

/// Which list a container is in.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Init,
    Sidecar,
    App,
}

struct Ctx {
    pod: Pod,
    node: Arc<Node>,
    agent: Arc<Agent>,
    sandbox: Arc<Sandbox>,
    volumes: std::collections::HashMap<String, PathBuf>,
    report: Mutex<Report>,
    /// Bumped on every change of `report`.
    changed: watch::Sender<u64>,
}

impl Ctx {
    fn set(&self, kind: Kind, index: usize, f: impl FnOnce(&mut Status)) {
        {
            let mut report = self.report.lock().unwrap_or_else(|e| e.into_inner());
            let list = if kind == Kind::App { &mut report.apps } else { &mut report.init };
            if let Some(status) = list.get_mut(index) {
                f(status);
            }
        }
        self.touch();
    }

    fn touch(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn status(&self, kind: Kind, index: usize) -> Option<Status> {
        let report = self.report.lock().unwrap_or_else(|e| e.into_inner());
        let list = if kind == Kind::App { &report.apps } else { &report.init };
        list.get(index).cloned()
    }
}

fn initial(containers: &[Container]) -> Vec<Status> {
    containers
        .iter()
        .map(|c| Status {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            state: State::Waiting { reason: "PodInitializing".to_owned(), message: None },
            last: None,
            restarts: 0,
            ready: false,
            started: false,
        })
        .collect()
}

/// A field of the pod for env and downwardAPI (`metadata.name`, `status.podIP`, ...).
pub fn field(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> anyhow::Result<String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let from_map = |map: &BTreeMap<String, String>, key: &str| map.get(key).cloned().unwrap_or_default();
    let quoted =
        |prefix: &str| path.strip_prefix(prefix).and_then(|r| r.strip_prefix("['")).and_then(|r| r.strip_suffix("']"));
    Ok(match path {
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => pod.namespace().unwrap_or_default(),
        "metadata.uid" => pod.uid().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_owned(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_owned(),
        _ => {
            if let Some(key) = quoted("metadata.labels") {
                from_map(pod.labels(), key)
            } else if let Some(key) = quoted("metadata.annotations") {
                from_map(pod.annotations(), key)
            } else {
                bail!("field {path} is not supported")
            }
        }
    })
}

/// Kubernetes' `$(VAR)` expansion: defined variables replaced, `$$` an escaped `$`, anything
/// else left as written.
fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

async fn environment(
    ctx: &Ctx,
    container: &Container,
    image: &crate::image::Image,
) -> anyhow::Result<Vec<(String, String)>> {
    let pod = &ctx.pod;
    let ns = pod.namespace().unwrap_or_default();
    let client = &ctx.node.client;
    let ip = ctx.sandbox.ip.to_string();
    let mut env: Vec<(String, String)> = Vec::new();
    let host = ctx.agent.api_service_host.to_string();
    env.push(("KUBERNETES_SERVICE_HOST".to_owned(), host.clone()));
    env.push(("KUBERNETES_SERVICE_PORT".to_owned(), "443".to_owned()));
    env.push(("KUBERNETES_SERVICE_PORT_HTTPS".to_owned(), "443".to_owned()));
    env.push(("KUBERNETES_PORT".to_owned(), format!("tcp://{host}:443")));
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(source) = &from.config_map_ref {
            match Api::<ConfigMap>::namespaced(client.clone(), &ns).get_opt(&source.name).await? {
                Some(map) => env.extend(map.data.into_iter().flatten().map(|(k, v)| (format!("{prefix}{k}"), v))),
                None if source.optional == Some(true) => {}
                None => bail!("configmap {} not found", source.name),
            }
        }
        if let Some(source) = &from.secret_ref {
            match Api::<Secret>::namespaced(client.clone(), &ns).get_opt(&source.name).await? {
                Some(secret) => env.extend(
                    secret
                        .data
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned())),
                ),
                None if source.optional == Some(true) => {}
                None => bail!("secret {} not found", source.name),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => expand(var.value.as_deref().unwrap_or_default(), &env),
            Some(from) => {
                if let Some(field_ref) = &from.field_ref {
                    field(pod, &field_ref.field_path, &ip, &ctx.agent.node_ip.to_string())?
                } else if let Some(key) = &from.config_map_key_ref {
                    let map = Api::<ConfigMap>::namespaced(client.clone(), &ns).get_opt(&key.name).await?;
                    match map.and_then(|m| m.data.and_then(|d| d.get(&key.key).cloned())) {
                        Some(v) => v,
                        None if key.optional == Some(true) => continue,
                        None => bail!("configmap {} has no key {}", key.name, key.key),
                    }
                } else if let Some(key) = &from.secret_key_ref {
                    let secret = Api::<Secret>::namespaced(client.clone(), &ns).get_opt(&key.name).await?;
                    match secret.and_then(|s| s.data.and_then(|d| d.get(&key.key).cloned())) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if key.optional == Some(true) => continue,
                        None => bail!("secret {} has no key {}", key.name, key.key),
                    }
                } else {
                    bail!("env {}: this valueFrom is not supported", var.name)
                }
            }
        };
        env.push((var.name.clone(), value));
    }
    let mut all = image.env.clone();
    all.push(("HOSTNAME".to_owned(), hostname(pod)));
    for (k, v) in env {
        all.retain(|(key, _)| *key != k);
        all.push((k, v));
    }
    Ok(all)
}

fn hostname(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.hostname.clone()).unwrap_or_else(|| pod.name_any())
}

fn files(ctx: &Ctx) -> Vec<(String, String)> {
    let pod = &ctx.pod;
    let ns = pod.namespace().unwrap_or_default();
    let domain = &ctx.agent.cluster_domain;
    let host = hostname(pod);
    let fqdn = pod
        .spec
        .as_ref()
        .and_then(|s| s.subdomain.clone())
        .map(|sub| format!("{host}.{sub}.{ns}.svc.{domain} "))
        .unwrap_or_default();
    vec![
        (
            "/etc/resolv.conf".to_owned(),
            format!(
                "nameserver {}\nsearch {ns}.svc.{domain} svc.{domain} {domain}\noptions ndots:5\n",
                ctx.agent.cluster_dns
            ),
        ),
        (
            "/etc/hosts".to_owned(),
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{fqdn}{host}\n",
                ctx.sandbox.ip
            ),
        ),
        ("/etc/hostname".to_owned(), format!("{host}\n")),
    ]
}

/// The run of `container` as a [`container::Spec`].
async fn spec(ctx: &Ctx, container: &Container, run: i32) -> anyhow::Result<container::Spec> {
    let reference = crate::image::normalize(container.image.as_deref().unwrap_or_default());
    let image = ctx.agent.images.get(&reference).with_context(|| format!("image {reference} is not on this node"))?;
    let env = environment(ctx, container, image).await?;
    let (mut command, mut args): (Vec<String>, Vec<String>) = match (&container.command, &container.args) {
        (Some(c), a) => (c.clone(), a.clone().unwrap_or_default()),
        (None, Some(a)) => (image.args.clone(), a.clone()),
        (None, None) => (image.args.clone(), Vec::new()),
    };
    command.append(&mut args);
    let command: Vec<String> = command.iter().map(|a| expand(a, &env)).collect();
    let Some((program, args)) = command.split_first() else {
        bail!("no command: neither the container nor the image has one")
    };
    let pod_ctx = ctx.pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let own = container.security_context.clone().unwrap_or_default();
    let uid = own.run_as_user.or(pod_ctx.run_as_user).map_or(image.uid, |u| u as u32);
    let gid = own.run_as_group.or(pod_ctx.run_as_group).map_or(image.gid, |g| g as u32);
    if own.run_as_non_root.or(pod_ctx.run_as_non_root) == Some(true) && uid == 0 {
        bail!("container has runAsNonRoot and image will run as root");
    }
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let source = ctx.volumes.get(&mount.name).with_context(|| format!("volume {} is not defined", mount.name))?;
        let source = match mount.sub_path.as_deref().filter(|p| !p.is_empty()) {
            Some(sub) if !sub.split('/').any(|c| c == "..") => source.join(sub),
            Some(sub) => bail!("subPath {sub} leaves its volume"),
            None => source.clone(),
        };
        mounts.push(Mount { source, target: mount.mount_path.clone(), read_only: mount.read_only == Some(true) });
    }
    let dir = ctx.sandbox.dir.join("containers").join(format!("{}-{run}", container.name));
    Ok(container::Spec {
        image_root: image.rootfs.clone(),
        dir,
        netns: ctx.sandbox.netns.clone(),
        program: program.clone(),
        args: args.to_vec(),
        env,
        uid,
        gid,
        cwd: container.working_dir.clone().unwrap_or_else(|| image.cwd.clone()),
        files: files(ctx),
        mounts,
        read_only_root: own.read_only_root_filesystem == Some(true),
        no_new_privs: own.allow_privilege_escalation == Some(false),
        log: ctx.sandbox.dir.join("logs").join(format!("{}.log", container.name)),
    })
}

/// Why a run ended early.
enum Stop {
    /// The pod is going: stop by this deadline.
    Pod(Instant),
    /// A startup or liveness probe failed.
    Probe(String),
}

/// Runs `container` (slot `index` of `kind`) until it may not restart or `stop` says to end.
/// Returns the last exit code.
async fn supervise(
    ctx: Arc<Ctx>,
    kind: Kind,
    index: usize,
    container: Container,
    mut stop: watch::Receiver<Option<Instant>>,
) -> i32 {
    let policy = ctx.pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".to_owned());
    let grace = Duration::from_secs(
        ctx.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).max(0) as u64,
    );
    let mut backoff = Duration::from_secs(1);
    let mut last_code = 0;
    let mut run = 0;
    loop {
        if stop.borrow().is_some() {
            return last_code;
        }
        let started_at = Instant::now();
        let spec = match spec(&ctx, &container, run).await {
            Ok(spec) => spec,
            Err(e) => {
                ctx.set(kind, index, |s| {
                    s.state = State::Waiting {
                        reason: "CreateContainerConfigError".to_owned(),
                        message: Some(format!("{e:#}")),
                    }
                });
                if wait_or_stop(&mut stop, backoff).await {
                    return last_code;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let mut running = match container::start(&ctx.agent.tools, &spec) {
            Ok(running) => running,
            Err(e) => {
                ctx.set(kind, index, |s| {
                    s.state = State::Waiting { reason: "RunContainerError".to_owned(), message: Some(format!("{e:#}")) }
                });
                if wait_or_stop(&mut stop, backoff).await {
                    return last_code;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let since = now_rfc3339();
        let has_startup = container.startup_probe.is_some() && kind != Kind::Init;
        let has_readiness = container.readiness_probe.is_some() && kind != Kind::Init;
        ctx.set(kind, index, |s| {
            s.state = State::Running { since: since.clone() };
            s.started = !has_startup;
            s.ready = kind != Kind::Init && !has_startup && !has_readiness;
        });
        let (fail_tx, mut fail_rx) = tokio::sync::mpsc::channel::<String>(1);
        let probes = (kind != Kind::Init)
            .then(|| tokio::spawn(probe_loop(ctx.clone(), kind, index, container.clone(), fail_tx)));
        let ended = tokio::select! {
            code = running.wait() => Ok(code),
            deadline = stopped(&mut stop) => Err(Stop::Pod(deadline)),
            Some(why) = fail_rx.recv() => Err(Stop::Probe(why)),
        };
        if let Some(probes) = probes {
            probes.abort();
        }
        let (code, stopping, reason) = match ended {
            Ok(code) => (code, false, None),
            Err(Stop::Pod(deadline)) => {
                let code = running.stop(deadline.saturating_duration_since(Instant::now())).await;
                (code, true, None)
            }
            Err(Stop::Probe(why)) => {
                tracing::info!(container = %container.name, "{why}: restarting");
                (running.stop(grace).await, false, Some(why))
            }
        };
        running.clean(&ctx.agent.tools);
        let _ = std::fs::remove_dir_all(&spec.dir);
        last_code = code;
        let terminated = State::Terminated {
            code,
            reason: if code == 0 { "Completed" } else { "Error" }.to_owned(),
            started: since,
            finished: now_rfc3339(),
        };
        let restart = !stopping
            && match kind {
                Kind::Init => code != 0 && policy != "Never",
                Kind::Sidecar => true,
                Kind::App => {
                    policy == "Always"
                        || (policy == "OnFailure" && code != 0)
                        || (reason.is_some() && policy != "Never")
                }
            };
        ctx.set(kind, index, |s| {
            s.ready = false;
            s.started = false;
            if restart {
                s.last = Some(terminated.clone());
                s.restarts += 1;
                s.state = State::Waiting { reason: "CrashLoopBackOff".to_owned(), message: reason.clone() };
            } else {
                s.state = terminated.clone();
            }
        });
        if !restart {
            return code;
        }
        if started_at.elapsed() >= RESET_BACKOFF {
            backoff = Duration::from_secs(1);
        }
        if wait_or_stop(&mut stop, backoff).await {
            return last_code;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        run += 1;
    }
}

/// Waits `delay`; true when told to stop meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<Option<Instant>>, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => stop.borrow().is_some(),
        _ = stopped(stop) => true,
    }
}

/// Resolves with the stop deadline once there is one.
async fn stopped(stop: &mut watch::Receiver<Option<Instant>>) -> Instant {
    loop {
        if let Some(deadline) = *stop.borrow_and_update() {
            return deadline;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Startup, then readiness and liveness probes of one run; a failed startup or liveness probe
/// is sent on `fail`.
async fn probe_loop(
    ctx: Arc<Ctx>,
    kind: Kind,
    index: usize,
    container: Container,
    fail: tokio::sync::mpsc::Sender<String>,
) {
    let ip = ctx.sandbox.ip;
    let attempt = |probe: k8s_openapi::api::core::v1::Probe| {
        let ctx = ctx.clone();
        let container = container.clone();
        async move {
            match probe::attempt(&probe, &container, ip).await {
                Ok(passed) => passed,
                Err(e) => {
                    tracing::warn!(pod = %ctx.pod.name_any(), container = %container.name, "probe: {e}");
                    false
                }
            }
        }
    };
    if let Some(startup) = container.startup_probe.clone() {
        let t = probe::timing(&startup);
        tokio::time::sleep(t.initial_delay).await;
        let mut failures = 0;
        loop {
            if attempt(startup.clone()).await {
                break;
            }
            failures += 1;
            if failures >= t.failure_threshold {
                let _ = fail.send("startup probe failed".to_owned()).await;
                return;
            }
            tokio::time::sleep(t.period).await;
        }
    }
    let has_readiness = container.readiness_probe.is_some();
    ctx.set(kind, index, |s| {
        s.started = true;
        if !has_readiness {
            s.ready = true;
        }
    });
    let readiness = async {
        let Some(probe) = container.readiness_probe.clone() else { return std::future::pending::<()>().await };
        let t = probe::timing(&probe);
        tokio::time::sleep(t.initial_delay).await;
        let (mut ok, mut bad) = (0, 0);
        loop {
            if attempt(probe.clone()).await {
                ok += 1;
                bad = 0;
            } else {
                bad += 1;
                ok = 0;
            }
            let ready = ctx.status(kind, index).is_some_and(|s| s.ready);
            if !ready && ok >= t.success_threshold {
                ctx.set(kind, index, |s| s.ready = true);
            } else if ready && bad >= t.failure_threshold {
                ctx.set(kind, index, |s| s.ready = false);
            }
            tokio::time::sleep(t.period).await;
        }
    };
    let liveness = async {
        let Some(probe) = container.liveness_probe.clone() else { return std::future::pending::<()>().await };
        let t = probe::timing(&probe);
        tokio::time::sleep(t.initial_delay).await;
        let mut bad = 0;
        loop {
            if attempt(probe.clone()).await {
                bad = 0;
            } else {
                bad += 1;
                if bad >= t.failure_threshold {
                    let _ = fail.send("liveness probe failed".to_owned()).await;
                    return;
                }
            }
            tokio::time::sleep(t.period).await;
        }
    };
    tokio::join!(readiness, liveness);
}

fn state_json(state: &State) -> Value {
    match state {
        State::Waiting { reason, message } => json!({"waiting": {"reason": reason, "message": message}}),
        State::Running { since } => json!({"running": {"startedAt": since}}),
        State::Terminated { code, reason, started, finished } => {
            json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished}})
        }
    }
}

fn status_json(status: &Status, uid: &str) -> Value {
    json!({
        "name": status.name,
        "image": status.image,
        "imageID": "",
        "containerID": format!("paddock://{uid}/{}/{}", status.name, status.restarts),
        "ready": status.ready,
        "started": status.started,
        "restartCount": status.restarts,
        "state": state_json(&status.state),
        "lastState": status.last.as_ref().map_or(json!({}), state_json),
    })
}

fn condition(kind: &str, ok: bool, now: &str) -> Value {
    json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastTransitionTime": now, "lastProbeTime": null})
}

fn pod_status(ctx: &Ctx) -> Value {
    let report = ctx.report.lock().unwrap_or_else(|e| e.into_inner());
    let uid = ctx.pod.uid().unwrap_or_default();
    let now = now_rfc3339();
    let sidecars_ready =
        report.init.iter().zip(init_kinds(&ctx.pod)).filter(|(_, k)| *k == Kind::Sidecar).all(|(s, _)| s.ready);
    let containers_ready = report.initialized && report.apps.iter().all(|s| s.ready) && sidecars_ready;
    let ip = ctx.sandbox.ip.to_string();
    json!({
        "status": {
            "phase": report.phase,
            "hostIP": ctx.agent.node_ip.to_string(),
            "hostIPs": [{"ip": ctx.agent.node_ip.to_string()}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": report.start_time,
            "conditions": [
                // The sandbox exists before the worker reports anything.
                condition("PodReadyToStartContainers", true, &now),
                condition("Initialized", report.initialized, &now),
                condition("ContainersReady", containers_ready, &now),
                condition("Ready", containers_ready, &now),
            ],
            "initContainerStatuses": report.init.iter().map(|s| status_json(s, &uid)).collect::<Vec<_>>(),
            "containerStatuses": report.apps.iter().map(|s| status_json(s, &uid)).collect::<Vec<_>>(),
        }
    })
}

fn init_kinds(pod: &Pod) -> Vec<Kind> {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .map(|c| if c.restart_policy.as_deref() == Some("Always") { Kind::Sidecar } else { Kind::Init })
        .collect()
}

/// Posts the status whenever it changes, until the pod ends.
async fn reporter(ctx: Arc<Ctx>) {
    let api: Api<Pod> = Api::namespaced(ctx.node.client.clone(), &ctx.pod.namespace().unwrap_or_default());
    let name = ctx.pod.name_any();
    let mut last = Value::Null;
    let mut changes = ctx.changed.subscribe();
    loop {
        let status = pod_status(&ctx);
        // Conditions carry a transition time of now: compare without them.
        let mut key = status.clone();
        for c in key["status"]["conditions"].as_array_mut().into_iter().flatten() {
            c["lastTransitionTime"] = Value::Null;
        }
        if key != last {
            match api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(status)).await {
                Ok(_) => last = key,
                Err(kube::Error::Api(e)) if e.code == 404 => return,
                Err(e) => {
                    tracing::warn!(pod = %name, "status update failed: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
        // Coalesce a burst of changes into one update.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The grace period of a pod being deleted.
fn deletion(pod: &Pod) -> Option<Duration> {
    pod.metadata.deletion_timestamp.as_ref()?;
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    Some(Duration::from_secs(seconds.max(0) as u64))
}

/// Waits until the pod is deleted (its grace period) or gone (zero).
async fn until_deleted(updates: &mut watch::Receiver<Update>) -> Duration {
    loop {
        match &*updates.borrow_and_update() {
            Update::Gone => return Duration::ZERO,
            Update::Pod(pod) => {
                if let Some(grace) = deletion(pod) {
                    return grace;
                }
            }
        }
        if updates.changed().await.is_err() {
            return Duration::ZERO;
        }
    }
}

/// How often Secret and ConfigMap volumes are read again (kubelet: about a minute; shorter here,
/// so tests of renewals wait seconds, not minutes).
const VOLUME_SYNC: Duration = Duration::from_secs(2);

async fn run(pod: Pod, mut updates: watch::Receiver<Update>, node: Arc<Node>, agent: Arc<Agent>) -> anyhow::Result<()> {
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.host_network == Some(true) {
        bail!("hostNetwork pods are not supported by the node agent");
    }
    let sandbox = Sandbox::create(&pod, node.clone(), agent.clone())?;
    let init_containers = spec.init_containers.clone().unwrap_or_default();
    let kinds = init_kinds(&pod);
    let volumes_dir = sandbox.dir.join("volumes");
    let report = Report {
        init: initial(&init_containers),
        apps: initial(&spec.containers),
        phase: "Pending",
        initialized: false,
        start_time: now_rfc3339(),
    };
    let volumes = loop {
        match crate::volumes::prepare(
            &node.client,
            &pod,
            &volumes_dir,
            &sandbox.ip.to_string(),
            &agent.node_ip.to_string(),
        )
        .await
        {
            Ok(volumes) => break volumes,
            Err(e) => {
                tracing::info!(pod = %pod.name_any(), "volumes not ready: {e:#}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = until_deleted(&mut updates) => {
                        sandbox.teardown();
                        return finish(&node, &pod).await;
                    }
                }
            }
        }
    };
    let ctx = Arc::new(Ctx {
        pod: pod.clone(),
        node: node.clone(),
        agent,
        sandbox: sandbox.clone(),
        volumes,
        report: Mutex::new(report),
        changed: watch::channel(0).0,
    });
    let reporting = tokio::spawn(reporter(ctx.clone()));
    // Renewed Secrets and changed ConfigMaps reach the running containers, as kubelet's sync.
    let refreshing =
        tokio::spawn(crate::volumes::keep_fresh(node.client.clone(), pod.clone(), volumes_dir.clone(), VOLUME_SYNC));
    let (app_stop, app_stop_rx) = watch::channel(None);
    let (side_stop, side_stop_rx) = watch::channel(None);
    let mut sidecars = Vec::new();

    // The lifecycle: init containers in order, then the apps; it ends with the apps.
    let lifecycle = {
        let ctx = ctx.clone();
        let app_stop_rx = app_stop_rx.clone();
        let side_stop_rx = side_stop_rx.clone();
        let (side_tx, side_rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let restart_never = ctx.pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never");
            for (index, (container, kind)) in init_containers.into_iter().zip(kinds).enumerate() {
                if kind == Kind::Sidecar {
                    let handle =
                        tokio::spawn(supervise(ctx.clone(), Kind::Sidecar, index, container, side_stop_rx.clone()));
                    let _ = side_tx.send(handle);
                    // The next container starts once this one has started.
                    let mut changes = ctx.changed.subscribe();
                    loop {
                        if ctx.status(Kind::Sidecar, index).is_some_and(|s| s.started) || app_stop_rx.borrow().is_some()
                        {
                            break;
                        }
                        let _ = changes.changed().await;
                    }
                } else {
                    let code = supervise(ctx.clone(), Kind::Init, index, container, app_stop_rx.clone()).await;
                    if code != 0 || app_stop_rx.borrow().is_some() {
                        if restart_never && code != 0 {
                            return Some("Failed");
                        }
                        return None;
                    }
                }
            }
            {
                let mut report = ctx.report.lock().unwrap_or_else(|e| e.into_inner());
                report.initialized = true;
                report.phase = "Running";
            }
            ctx.touch();
            let apps: Vec<_> = ctx
                .pod
                .spec
                .as_ref()
                .map(|s| s.containers.clone())
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(index, c)| tokio::spawn(supervise(ctx.clone(), Kind::App, index, c, app_stop_rx.clone())))
                .collect();
            let mut failed = false;
            for app in apps {
                failed |= app.await.unwrap_or(1) != 0;
            }
            Some(if failed { "Failed" } else { "Succeeded" })
        });
        (task, side_rx)
    };
    let (mut lifecycle, mut side_rx) = lifecycle;

    let mut grace = None;
    let outcome = tokio::select! {
        outcome = &mut lifecycle => outcome.ok().flatten(),
        g = until_deleted(&mut updates) => { grace = Some(g); None }
    };
    let deadline = Instant::now() + grace.unwrap_or(Duration::from_secs(30));
    if grace.is_some() {
        let _ = app_stop.send(Some(deadline));
        ctx.touch();
        let _ = (&mut lifecycle).await;
    }
    while let Ok(handle) = side_rx.try_recv() {
        sidecars.push(handle);
    }
    // Sidecars stop after the apps, in reverse order, within what is left of the grace period
    // (at least two seconds, as kubelet gives them).
    let sidecar_deadline = deadline.max(Instant::now() + Duration::from_secs(2));
    let _ = side_stop.send(Some(sidecar_deadline));
    for handle in sidecars.into_iter().rev() {
        let _ = handle.await;
    }
    if let Some(phase) = outcome {
        ctx.report.lock().unwrap_or_else(|e| e.into_inner()).phase = phase;
        ctx.touch();
        // Let the reporter post the final phase.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reporting.abort();
    refreshing.abort();
    sandbox.teardown();
    if grace.is_some() {
        finish(&node, &pod).await?;
    }
    Ok(())
}

/// Deletes the pod object for good once its processes are gone (kubelet's final delete).
async fn finish(node: &Node, pod: &Pod) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(node.client.clone(), &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn variables_expand_as_kubernetes_does() {
        let env = vec![("POD_NAME".to_owned(), "zk-0".to_owned()), ("A".to_owned(), "1".to_owned())];
        assert_eq!(expand("--id=$(POD_NAME).zk", &env), "--id=zk-0.zk");
        assert_eq!(expand("$(A)$(A)", &env), "11");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("$(MISSING)", &env), "$(MISSING)");
        assert_eq!(expand("cost $5 $(", &env), "cost $5 $(");
    }
}
