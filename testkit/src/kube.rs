//! A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, kube-proxy and CoreDNS (and, for tests that ask, cert-manager) — the binaries scripts/kube-tools.sh builds from
//! pinned module versions — started in a network namespace of their own and stopped (every
//! process killed, the namespace deleted) when the [`ControlPlane`] drops.
//!
//! Inside the namespace the control plane has the addresses a cluster's would: the API server
//! listens on 6443 of every address there and advertises [`API_ADDR`] (on the namespace's
//! loopback), which the `kubernetes` Service (10.96.0.1) leads to; CoreDNS answers on [`DNS_ADDR`] for `cluster.local`. Pods (the
//! node agent's) get addresses of [`POD_CIDR`], one /32 route each, so every packet between
//! pods and Services crosses the namespace's own routing and kube-proxy's iptables rules.
//! Nothing of it is reachable from the host: tests run kubectl and helm inside the namespace
//! ([`ControlPlane::kubectl`], [`ControlPlane::helm`]) and reach a Service or pod through a
//! [`Forward`], a loopback port whose connections are dialled from inside.
//!
//! Security is the envtest flag set and more: the secure port alone, client certificates of one
//! test CA for every component (admin in `system:masters`, each node as `system:node:<name>`),
//! RBAC and the Node authorizer on, NodeRestriction admission, service-account tokens signed by a
//! key of the test's own.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::lab;
use crate::pki::{Pki, Usage};

/// The API server's advertised address (on the namespace's loopback).
pub const API_ADDR: Ipv4Addr = Ipv4Addr::new(10, 243, 0, 1);
/// The API server's port.
pub const API_PORT: u16 = 6443;
/// CoreDNS's address, the cluster DNS every pod's resolv.conf names.
pub const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(10, 243, 0, 10);
/// The gateway every pod routes through (the node agent's pods' default route).
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// Pod addresses.
pub const POD_CIDR: &str = "10.244.0.0/16";
/// Service ClusterIPs.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// How long the control plane may take to start, and a kubectl call to answer.
const START: Duration = Duration::from_secs(120);

/// The directory holding the tools: `PADDOCK_KUBE_TOOLS`, or what scripts/kube-tools.sh builds
/// (once per machine; ~18 minutes cold).
pub fn tools() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| crate::tool_from_script("PADDOCK_KUBE_TOOLS", "kube-tools.sh")).clone()
}

/// The Paddock image archive the pods run: `PADDOCK_IMAGE` (what `make test` builds from the
/// test binaries), else one built now by images/build.sh from the binaries next to the tests.
pub fn image() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PADDOCK_IMAGE") {
        return Ok(PathBuf::from(path));
    }
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = crate::package_dir(env!("CARGO_MANIFEST_DIR")).join("..");
            let bin = crate::binary("paddock-server");
            let bin_dir = bin.parent().ok_or("no binary directory")?;
            let out = std::env::temp_dir().join(format!("paddock-test-image-{}.oci.tar", std::process::id()));
            run(
                "images/build.sh",
                Command::new(root.join("images/build.sh")).arg(bin_dir).arg(&out).stderr(Stdio::inherit()),
            )?;
            Ok(out)
        })
        .clone()
}

/// Runs `f` on a thread of its own inside network namespace `ns`: every socket it opens is
/// the namespace's.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter_netns(&ns)?;
        Ok(f())
    })
    .join()
    .map_err(|_| "a thread in the namespace panicked".to_owned())?
}

/// Moves the calling thread into network namespace `ns`.
pub fn enter_netns(ns: &str) -> Result<(), String> {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).map_err(|e| format!("namespace {ns}: {e}"))?;
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {ns}: {e}"))
}

/// A loopback port of the host whose connections go to `target` inside a namespace, dialled
/// from there (kubectl port-forward, without the API server in the path).
pub struct Forward {
    /// Where the test connects.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Forward {
    /// Forwards a free loopback port to `target` in namespace `ns`.
    pub fn start(ns: &str, target: SocketAddr) -> Result<Forward, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("forward listener: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let ns = ns.to_owned();
        let stopped = stop.clone();
        std::thread::spawn(move || {
            if enter_netns(&ns).is_err() {
                return;
            }
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        // Threads made here inherit the namespace.
                        std::thread::spawn(move || splice(client, target));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(Forward { addr, stop })
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn splice(client: TcpStream, target: SocketAddr) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else { return };
    let (Ok(mut client_r), Ok(mut server_w)) = (client.try_clone(), server.try_clone()) else { return };
    let (mut server_r, mut client_w) = (server, client);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_r, &mut server_w);
        let _ = server_w.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut server_r, &mut client_w);
    let _ = client_w.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

/// One process of the control plane.
struct Component {
    name: String,
    child: Child,
    log: PathBuf,
}

/// The running control plane.
pub struct ControlPlane {
    /// Its network namespace.
    pub ns: String,
    /// Certificates, kubeconfigs, etcd's data and every component's log.
    pub dir: PathBuf,
    /// The tools it runs (kubectl, helm, ...).
    pub tools: PathBuf,
    _temp: tempfile::TempDir,
    components: Vec<Component>,
}

fn run(what: &str, command: &mut Command) -> Result<String, String> {
    output(what, command.output())
}

fn ip(ns: &str, args: &[&str]) -> Result<String, String> {
    run(&format!("ip -n {ns} {}", args.join(" ")), Command::new("ip").arg("-n").arg(ns).args(args))
}

/// The test CA and every certificate signed by it, written by openssl into `dir`.
fn certificates(dir: &Path, nodes: &[&str]) -> Result<(), String> {
    let pki = Pki::new(dir, "paddock-test-ca")?;
    let client = |name: &str, subject: &str| pki.issue(name, subject, Usage::Client, &[]).map(drop);
    let sans = [
        "DNS:kubernetes".to_owned(),
        "DNS:kubernetes.default".to_owned(),
        "DNS:kubernetes.default.svc".to_owned(),
        format!("DNS:kubernetes.default.svc.{CLUSTER_DOMAIN}"),
        "DNS:localhost".to_owned(),
        "IP:127.0.0.1".to_owned(),
        format!("IP:{API_ADDR}"),
        "IP:10.96.0.1".to_owned(),
    ];
    pki.issue("apiserver", "/CN=kube-apiserver", Usage::Server, &sans)?;
    client("admin", "/O=system:masters/CN=paddock-test-admin")?;
    client("controller-manager", "/CN=system:kube-controller-manager")?;
    client("scheduler", "/CN=system:kube-scheduler")?;
    client("proxy", "/CN=system:kube-proxy")?;
    for node in nodes {
        client(&format!("node-{node}"), &format!("/O=system:nodes/CN=system:node:{node}"))?;
    }
    let openssl = |args: &[&str]| {
        run(&format!("openssl {}", args.join(" ")), Command::new("openssl").current_dir(dir).args(args))
    };
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key"])?;
    openssl(&["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    Ok(())
}

/// A kubeconfig for the identity whose certificate is `<name>.crt`.
fn kubeconfig(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let path = dir.join(format!("{name}.kubeconfig"));
    let d = dir.display();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{API_PORT}\n    certificate-authority: {d}/ca.crt\nusers:\n- name: {name}\n  user:\n    client-certificate: {d}/{name}.crt\n    client-key: {d}/{name}.key\ncontexts:\n- name: test\n  context: {{cluster: test, user: {name}}}\ncurrent-context: test\n"
    );
    std::fs::write(&path, text).map_err(|e| format!("kubeconfig {name}: {e}"))?;
    Ok(path)
}

impl ControlPlane {
    /// Starts etcd, the API server, the controller manager, the scheduler, kube-proxy and
    /// CoreDNS, with client certificates made for `nodes` (the node agent's), and waits until
    /// the API server is ready.
    pub fn start(nodes: &[&str]) -> Result<ControlPlane, String> {
        let tools = tools()?;
        let mut temp = tempfile::Builder::new().prefix("paddock-kube.").tempdir().map_err(|e| e.to_string())?;
        // PADDOCK_KEEP_TEST_DIR=1 keeps certificates, logs and the pods' files for a look.
        temp.disable_cleanup(std::env::var_os("PADDOCK_KEEP_TEST_DIR").is_some());
        let dir = temp.path().to_owned();
        let ns = lab::name("k")?;
        run("ip netns add", Command::new("ip").args(["netns", "add", &ns]))?;
        let mut plane = ControlPlane { ns: ns.clone(), dir: dir.clone(), tools, _temp: temp, components: Vec::new() };
        ip(&ns, &["link", "set", "lo", "up"])?;
        // Local addresses (this kernel has no dummy links): the pods' packets to them are routed
        // into the namespace and delivered here.
        ip(&ns, &["addr", "add", &format!("{API_ADDR}/32"), "dev", "lo"])?;
        ip(&ns, &["addr", "add", &format!("{DNS_ADDR}/32"), "dev", "lo"])?;
        // Every pod's gateway: a local address here, so the node answers the pods' ARP for it
        // on each veth.
        ip(&ns, &["addr", "add", &format!("{POD_GATEWAY}/32"), "dev", "lo"])?;
        // A route for ClusterIPs, so that connections made here (the API server calling a
        // webhook, a test's Forward) get as far as kube-proxy's DNAT in OUTPUT.
        ip(&ns, &["route", "add", SERVICE_CIDR, "dev", "lo", "src", &API_ADDR.to_string()])?;
        plane.sysctl("net.ipv4.ip_forward", "1")?;
        certificates(&dir, nodes)?;
        for name in ["admin", "controller-manager", "scheduler", "proxy"] {
            kubeconfig(&dir, name)?;
        }
        for node in nodes {
            kubeconfig(&dir, &format!("node-{node}"))?;
        }
        let d = dir.display().to_string();

        plane.spawn(
            "etcd",
            &[
                &format!("--data-dir={d}/etcd"),
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=default=http://127.0.0.1:2380",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )?;
        plane.wait_for_port("etcd", SocketAddr::from(([127, 0, 0, 1], 2379)))?;
        plane.spawn(
            "kube-apiserver",
            &[
                "--etcd-servers=http://127.0.0.1:2379",
                &format!("--secure-port={API_PORT}"),
                "--bind-address=0.0.0.0",
                &format!("--advertise-address={API_ADDR}"),
                &format!("--cert-dir={d}/apiserver-certs"),
                &format!("--tls-cert-file={d}/apiserver.crt"),
                &format!("--tls-private-key-file={d}/apiserver.key"),
                &format!("--client-ca-file={d}/ca.crt"),
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                &format!("--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}"),
                &format!("--service-account-key-file={d}/sa.pub"),
                &format!("--service-account-signing-key-file={d}/sa.key"),
                &format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--allow-privileged=true",
                "--endpoint-reconciler-type=lease",
                "--v=1",
            ],
        )?;
        plane.wait_until("the API server is ready", || {
            plane.kubectl(&["get", "--raw=/readyz"]).is_ok_and(|o| o.trim() == "ok")
        })?;
        plane.spawn(
            "kube-controller-manager",
            &[
                &format!("--kubeconfig={d}/controller-manager.kubeconfig"),
                &format!("--authentication-kubeconfig={d}/controller-manager.kubeconfig"),
                &format!("--authorization-kubeconfig={d}/controller-manager.kubeconfig"),
                &format!("--service-account-private-key-file={d}/sa.key"),
                &format!("--root-ca-file={d}/ca.crt"),
                "--use-service-account-credentials=true",
                &format!("--cluster-signing-cert-file={d}/ca.crt"),
                &format!("--cluster-signing-key-file={d}/ca.key"),
                &format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--allocate-node-cidrs=false",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--v=1",
            ],
        )?;
        plane.spawn(
            "kube-scheduler",
            &[
                &format!("--kubeconfig={d}/scheduler.kubeconfig"),
                &format!("--authentication-kubeconfig={d}/scheduler.kubeconfig"),
                &format!("--authorization-kubeconfig={d}/scheduler.kubeconfig"),
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--v=1",
            ],
        )?;
        plane.spawn(
            "kube-proxy",
            &[
                &format!("--kubeconfig={d}/proxy.kubeconfig"),
                "--proxy-mode=iptables",
                &format!("--cluster-cidr={POD_CIDR}"),
                &format!("--hostname-override={}", nodes.first().copied().unwrap_or("node")),
                "--conntrack-max-per-core=0",
                "--metrics-bind-address=127.0.0.1:10249",
                "--healthz-bind-address=127.0.0.1:10256",
                "--v=1",
            ],
        )?;
        let corefile = dir.join("Corefile");
        std::fs::write(
            &corefile,
            format!(
                "{CLUSTER_DOMAIN}:53 in-addr.arpa:53 {{\n    bind {DNS_ADDR}\n    errors\n    kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{\n        kubeconfig {d}/admin.kubeconfig\n        pods insecure\n    }}\n}}\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        plane.spawn("coredns", &["-conf", &corefile.display().to_string(), "-dns.port=53"])?;
        plane.wait_for_port("coredns", SocketAddr::V4(SocketAddrV4::new(DNS_ADDR, 53)))?;
        plane.wait_until("the default ServiceAccount exists", || {
            plane.kubectl(&["get", "serviceaccount", "default", "-n", "default"]).is_ok()
        })?;
        Ok(plane)
    }

    fn sysctl(&self, key: &str, value: &str) -> Result<(), String> {
        run("sysctl", Command::new("ip").args(["netns", "exec", &self.ns, "sysctl", "-qw", &format!("{key}={value}")]))
            .map(drop)
    }

    /// Starts tool `name` with `args` inside the namespace, its output appended to its log.
    fn spawn(&mut self, name: &str, args: &[&str]) -> Result<(), String> {
        let program = self.tools.join(name);
        self.spawn_program(name, &program, args)
    }

    fn spawn_program(&mut self, name: &str, program: &Path, args: &[&str]) -> Result<(), String> {
        let log = self.dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PADDOCK_LOG", std::env::var_os("PADDOCK_LOG").unwrap_or_else(|| "info".into()))
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        self.components.push(Component { name: name.to_owned(), child, log });
        Ok(())
    }

    fn wait_for_port(&self, what: &str, addr: SocketAddr) -> Result<(), String> {
        let ns = self.ns.clone();
        self.wait_until(&format!("{what} listens on {addr}"), || {
            let ns = ns.clone();
            in_netns(&ns, move || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
                .unwrap_or(false)
        })
    }

    /// Polls `ready` until it holds, failing with the logs of any component that exited.
    pub fn wait_until(&self, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + START;
        while Instant::now() < deadline {
            if ready() {
                return Ok(());
            }
            if let Some(dead) = self.exited() {
                return Err(format!("waiting until {what}: {dead}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("{what}: not within {START:?}"))
    }

    /// A component that is no longer running, with the tail of its log.
    fn exited(&self) -> Option<String> {
        self.components.iter().find_map(|c| {
            let pid = Pid::from_raw(c.child.id() as i32);
            let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
            let gone = status.as_deref().is_none_or(|s| s.split_whitespace().nth(2) == Some("Z"));
            gone.then(|| format!("{} exited; its log ends:\n{}", c.name, tail(&c.log, 30)))
        })
    }

    /// Starts the node agent (`paddock-node-agent`, the tests' kubelet) for the nodes the
    /// control plane was made with, running `images` (reference, OCI archive), and waits until
    /// every node is Ready.
    pub fn start_agent(&mut self, nodes: &[&str], images: &[(&str, &Path)]) -> Result<(), String> {
        let agent = crate::binary("paddock-node-agent");
        let dir = self.dir.join("agent");
        // The agent is PID 1 of a PID namespace of its own: when it dies, however it dies, the
        // kernel kills every container it started (their PID namespaces are nested in its).
        let mut args = vec![
            "--pid".to_owned(),
            "--fork".to_owned(),
            "--mount-proc".to_owned(),
            "--kill-child=SIGKILL".to_owned(),
            "--".to_owned(),
            agent.display().to_string(),
            format!("--netns-prefix={}p", self.ns),
            format!("--pod-cidr={POD_CIDR}"),
            format!("--pod-gateway={POD_GATEWAY}"),
            format!("--dir={}", dir.display()),
            format!("--kubeconfigs={}", self.dir.display()),
            format!("--cluster-dns={DNS_ADDR}"),
            format!("--cluster-domain={CLUSTER_DOMAIN}"),
            format!("--node-ip={API_ADDR}"),
        ];
        args.extend(nodes.iter().map(|n| format!("--node={n}")));
        args.extend(images.iter().map(|(r, a)| format!("--image={r}={}", a.display())));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn_program("paddock-node-agent", Path::new("unshare"), &args)?;
        self.wait_until("the node agent is ready", || self.log("paddock-node-agent").contains("ready nodes="))?;
        for node in nodes {
            self.wait_until(&format!("node {node} is Ready"), || {
                self.kubectl(&["get", "node", node, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])
                    .is_ok_and(|s| s.trim() == "True")
            })?;
        }
        Ok(())
    }

    /// Installs cert-manager: its CRDs and its controller (scripts/kube-tools.sh builds both; the
    /// controller runs as admin, issuing from SelfSigned and CA issuers), and waits until its
    /// Certificate resource is served.
    pub fn start_cert_manager(&mut self) -> Result<(), String> {
        let crds = self.tools.join("cert-manager-crds");
        self.kubectl(&["apply", "--server-side", "-f", &crds.display().to_string()])?;
        self.kubectl(&["create", "namespace", "cert-manager"])?;
        self.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "crd/certificates.cert-manager.io"])?;
        let kubeconfig = format!("--kubeconfig={}", self.admin_kubeconfig().display());
        self.spawn("cert-manager-controller", &[&kubeconfig])?;
        let log = self.dir.join("cert-manager-controller.log");
        self.wait_until("cert-manager's controllers start", || {
            std::fs::read_to_string(&log).is_ok_and(|text| text.contains("controllers started"))
        })
    }

    /// The admin kubeconfig.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// A command of tool `tool` (kubectl, helm) run inside the namespace as admin.
    pub fn command(&self, tool: &str) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns])
            .arg(self.tools.join(tool))
            .env("KUBECONFIG", self.admin_kubeconfig())
            .env("HOME", &self.dir)
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"))
            .stdin(Stdio::null());
        command
    }

    /// Any program run inside the namespace (a ZooKeeper CLI, say): its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns, program]).args(args).stdin(Stdio::null());
        output(&format!("{program} {}", args.join(" ")), command.output())
    }

    /// kubectl with `args`, as admin: its stdout, or an error with its stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let mut command = self.command("kubectl");
        command.args(["--request-timeout=30s"]).args(args);
        output(&format!("kubectl {}", args.join(" ")), command.output())
    }

    /// `kubectl apply -f -` of `manifest`.
    pub fn apply(&self, manifest: &str) -> Result<String, String> {
        self.stdin("kubectl", &["apply", "-f", "-"], manifest)
    }

    /// helm with `args`.
    pub fn helm(&self, args: &[&str]) -> Result<String, String> {
        output(&format!("helm {}", args.join(" ")), self.command("helm").args(args).output())
    }

    /// Tool `tool` with `args` and `input` on its stdin.
    pub fn stdin(&self, tool: &str, args: &[&str], input: &str) -> Result<String, String> {
        let mut child = self
            .command(tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{tool}: {e}"))?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        stdin.write_all(input.as_bytes()).map_err(|e| format!("{tool} stdin: {e}"))?;
        drop(stdin);
        output(&format!("{tool} {}", args.join(" ")), child.wait_with_output())
    }

    /// The log of component `name` (etcd, kube-apiserver, ...).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }
}

/// A finished command's stdout, or an error with its status, stderr and stdout.
fn output(what: &str, result: std::io::Result<Output>) -> Result<String, String> {
    let output = result.map_err(|e| format!("{what}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        ))
    }
}

fn glob_logs(pods: &Path) -> Vec<PathBuf> {
    let mut logs = Vec::new();
    for pod in std::fs::read_dir(pods).into_iter().flatten().flatten() {
        for log in std::fs::read_dir(pod.path().join("logs")).into_iter().flatten().flatten() {
            logs.push(log.path());
        }
    }
    logs.sort();
    logs
}

fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for c in &self.components {
                eprintln!("--- {} log tail ---\n{}", c.name, tail(&c.log, 20));
            }
            // Every container's log the node agent kept (pods/<uid>/logs/<container>.log).
            for log in glob_logs(&self.dir.join("agent/pods")) {
                eprintln!("--- {} ---\n{}", log.display(), tail(&log, 15));
            }
        }
        for c in self.components.iter_mut().rev() {
            let _ = kill(Pid::from_raw(c.child.id() as i32), Signal::SIGKILL);
            let _ = c.child.wait();
        }
        // The pods' namespaces (their processes died with the agent's PID namespace), then
        // the control plane's own.
        let pods = format!("{}p", self.ns);
        for name in lab::namespaces().into_iter().filter(|n| n.starts_with(&pods)) {
            lab::remove_namespace(&name);
        }
        lab::remove_namespace(&self.ns);
    }
}
