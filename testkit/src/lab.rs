//! Real network faults between processes: every host of a test (a server, a sidecar) runs in its
//! own network namespace, joined to the others by a veth pair on one bridge, with an address of
//! a /24 that only this lab uses — the test process itself reaches them from the host side of
//! the bridge, as a pod network would. Faults are the kernel's own: `iptables` rules inside a
//! host's namespace (blackholes that stall a link without closing it, random packet drops),
//! a `tbf` qdisc on its veth (a slow link), and a cgroup CPU quota (a pod at its CPU limit).
//!
//! Everything a lab makes is named after the test process's pid (`pd<pid in hex>l<n>…`) and removed when
//! the [`Lab`] drops — deleting a namespace deletes its veth and its rules. A lab left behind
//! by a test process that was itself killed is swept by the next lab made on the machine.
//!
//! Needs root and iproute2/iptables; [`Lab::available`] says whether this machine has them.
//! This kernel has no `netem`, so there are no pure delays: a slow link is a rate limit.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use nix::unistd::Pid;

/// The first octets of every lab's subnet: `10.213.<n>.0/24`.
const NET: [u8; 2] = [10, 213];
/// Where cgroup v1's CPU controller is mounted.
const CPU_CGROUPS: &str = "/sys/fs/cgroup/cpu";

/// One namespace of the lab.
#[derive(Debug, Clone)]
pub struct Host {
    /// The test's name for it (a server's Raft id, or any number the test picks).
    pub id: u64,
    /// The network namespace.
    pub ns: String,
    /// Its address on the bridge.
    pub addr: Ipv4Addr,
    veth: String,
}

/// The bridge, its namespaces, and the faults in force.
pub struct Lab {
    tag: String,
    bridge: String,
    subnet: u8,
    hosts: Mutex<BTreeMap<u64, Host>>,
    cgroups: Mutex<Vec<PathBuf>>,
}

/// Serializes subnet picks of labs made by one test process.
static PICK: Mutex<()> = Mutex::new(());

fn run(what: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{what}: {}: {e}", args[0]))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{what}: `{}` failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

fn output(args: &[&str]) -> String {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The pid in a name this module made (`pd<pid in hex>l…`), if it is one.
fn owner(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("pd")?;
    let digits: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    if !rest[digits.len()..].starts_with('l') {
        return None;
    }
    i32::from_str_radix(&digits, 16).ok()
}

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The names of the machine's network namespaces.
pub fn namespaces() -> Vec<String> {
    output(&["ip", "netns", "list"]).lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect()
}

/// Kills whatever runs in namespace `name` and deletes it.
pub fn remove_namespace(name: &str) {
    for p in output(&["ip", "netns", "pids", name]).split_whitespace().filter_map(|p| p.parse().ok()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
    }
    let _ = run("cleanup", &["ip", "netns", "delete", name]);
}

/// Removes what labs of dead test processes left behind.
fn sweep() {
    for name in namespaces() {
        if owner(&name).is_some_and(|pid| !alive(pid)) {
            remove_namespace(&name);
        }
    }
    // Bridges and the host ends of veth pairs (`name@peer`).
    for line in output(&["ip", "-o", "link", "show"]).lines() {
        let name = line.split(':').nth(1).map(str::trim).unwrap_or_default();
        let name = name.split('@').next().unwrap_or_default();
        if owner(name).is_some_and(|pid| !alive(pid)) {
            let _ = run("sweep", &["ip", "link", "delete", name]);
        }
    }
    if let Ok(entries) = std::fs::read_dir(CPU_CGROUPS) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner(&name).is_some_and(|pid| !alive(pid)) {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
}

/// A fresh name for a network namespace of this test process outside a lab
/// (`pd<pid in hex>l<kind><n>`, `kind` a letter), which the next lab made on the machine sweeps
/// once the process is gone.
pub fn name(kind: &str) -> Result<String, String> {
    let _pick = PICK.lock().unwrap_or_else(|e| e.into_inner());
    sweep();
    let taken = namespaces();
    let pid = std::process::id();
    (0..1000)
        .map(|k| format!("pd{pid:x}l{kind}{k}"))
        .find(|n| !taken.contains(n))
        .ok_or_else(|| "no free namespace name".to_owned())
}

impl Lab {
    /// Whether labs can be made here: root, `ip` and `iptables`.
    pub fn available() -> bool {
        nix::unistd::geteuid().is_root()
            && Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success())
            && Command::new("iptables").arg("-V").output().is_ok_and(|o| o.status.success())
    }

    /// A bridge with one namespace per id in `ids`.
    pub fn create(ids: &[u64]) -> Result<Lab, String> {
        let _pick = PICK.lock().unwrap_or_else(|e| e.into_inner());
        sweep();
        let used = output(&["ip", "-o", "-4", "addr", "show"]);
        let pid = std::process::id();
        let subnet = (0..=250u8)
            .map(|k| ((pid % 251) as u8).wrapping_add(k) % 251)
            .find(|n| !used.contains(&format!("inet {}.{}.{n}.", NET[0], NET[1])))
            .ok_or("no free 10.213.x.0/24 subnet for a lab")?;
        // Interface names are at most 15 bytes: `pd<pid in hex>l<k>g` for the bridge, `…v<id>`
        // and `…w<id>` for a veth pair, k the lab's number in this process.
        let links = output(&["ip", "-o", "link", "show"]);
        let tag = (0..)
            .map(|k| format!("pd{pid:x}l{k}"))
            .find(|tag| !links.contains(&format!(" {tag}g:")))
            .ok_or("no free lab name")?;
        let lab = Lab {
            bridge: format!("{tag}g"),
            tag,
            subnet,
            hosts: Mutex::new(BTreeMap::new()),
            cgroups: Mutex::new(Vec::new()),
        };
        run("bridge", &["ip", "link", "add", &lab.bridge, "type", "bridge"])?;
        let gateway = format!("{}/24", lab.gateway());
        run("bridge address", &["ip", "addr", "add", &gateway, "dev", &lab.bridge])?;
        run("bridge up", &["ip", "link", "set", &lab.bridge, "up"])?;
        for id in ids {
            lab.add_host(*id)?;
        }
        Ok(lab)
    }

    /// The host side's address on the bridge (where the test process's connections come from).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(NET[0], NET[1], self.subnet, 1)
    }

    /// Adds a namespace for `id` (a member that joins later, a sidecar's pod).
    pub fn add_host(&self, id: u64) -> Result<Host, String> {
        let octet = u8::try_from(10 + id).map_err(|_| format!("host id {id} too large for a lab"))?;
        let ns = format!("{}h{id}", self.tag);
        let veth = format!("{}v{id}", self.tag);
        let inner = format!("{}w{id}", self.tag);
        let addr = Ipv4Addr::new(NET[0], NET[1], self.subnet, octet);
        run("namespace", &["ip", "netns", "add", &ns])?;
        run("loopback", &["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        run("veth", &["ip", "link", "add", &veth, "type", "veth", "peer", "name", &inner])?;
        run("veth into namespace", &["ip", "link", "set", &inner, "netns", &ns])?;
        run("veth on bridge", &["ip", "link", "set", &veth, "master", &self.bridge, "up"])?;
        let cidr = format!("{addr}/24");
        run("address", &["ip", "netns", "exec", &ns, "ip", "addr", "add", &cidr, "dev", &inner])?;
        run("veth up", &["ip", "netns", "exec", &ns, "ip", "link", "set", &inner, "up"])?;
        let host = Host { id, ns, addr, veth: inner };
        self.hosts.lock().unwrap_or_else(|e| e.into_inner()).insert(id, host.clone());
        Ok(host)
    }

    /// The host `id`.
    pub fn host(&self, id: u64) -> Host {
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
            .unwrap_or_else(|| panic!("no lab host {id}"))
    }

    fn ids(&self) -> Vec<u64> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect()
    }

    /// `command` run inside host `id`'s namespace (`ip netns exec` execs it, so the pid the
    /// caller sees is the program's own and signals reach it directly).
    pub fn wrap(&self, id: u64, command: &Command) -> Command {
        wrap_in(&self.host(id).ns, command)
    }

    fn iptables(&self, id: u64, rule: &[&str]) {
        let ns = self.host(id).ns;
        let mut args = vec!["ip", "netns", "exec", &ns, "iptables", "-w"];
        args.extend_from_slice(rule);
        run("fault", &args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Every packet between `a` and `b` dropped, both ways: their connections stall, unclosed,
    /// until [`Lab::heal`] (and TCP gives up on its own far later).
    pub fn blackhole(&self, a: u64, b: u64) {
        self.drop_between(a, b, None);
    }

    /// `side` cut from every other host (a clean partition when done to both sides: each rule
    /// drops both directions).
    pub fn partition(&self, side: &[u64]) {
        for a in side {
            for b in self.ids().into_iter().filter(|b| !side.contains(b)) {
                self.blackhole(*a, b);
            }
        }
    }

    /// The fraction `p` (0..1) of packets between `a` and `b` dropped at random, both ways.
    pub fn lossy(&self, a: u64, b: u64, p: f64) {
        self.drop_between(a, b, Some(p));
    }

    fn drop_between(&self, a: u64, b: u64, p: Option<f64>) {
        let probability = p.map(|p| format!("{p:.3}"));
        for (here, there) in [(a, b), (b, a)] {
            let there = self.host(there).addr.to_string();
            for (chain, flag) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                let mut rule = vec!["-A", chain, flag, &there];
                if let Some(p) = &probability {
                    rule.extend_from_slice(&["-m", "statistic", "--mode", "random", "--probability", p]);
                }
                rule.extend_from_slice(&["-j", "DROP"]);
                self.iptables(here, &rule);
            }
        }
    }

    /// Every packet between host `id` and the test process (the bridge's own address) dropped:
    /// its clients' connections stall.
    pub fn blackhole_gateway(&self, id: u64) {
        let gateway = self.gateway().to_string();
        self.iptables(id, &["-A", "INPUT", "-s", &gateway, "-j", "DROP"]);
        self.iptables(id, &["-A", "OUTPUT", "-d", &gateway, "-j", "DROP"]);
    }

    /// Host `id`'s link limited to `kbit` kilobits a second (its outgoing packets queue).
    pub fn slow(&self, id: u64, kbit: u32) {
        let host = self.host(id);
        let rate = format!("{kbit}kbit");
        run(
            "slow link",
            &[
                "ip", "netns", "exec", &host.ns, "tc", "qdisc", "replace", "dev", &host.veth, "root", "tbf", "rate",
                &rate, "burst", "16kbit", "latency", "2s",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Every network fault removed: rules flushed, qdiscs back to the default.
    /// Never panics (it also runs while a failed test unwinds); a rule it cannot flush is
    /// reported on stderr.
    pub fn heal(&self) {
        for id in self.ids() {
            let host = self.host(id);
            if let Err(e) = run("heal", &["ip", "netns", "exec", &host.ns, "iptables", "-w", "-F"]) {
                eprintln!("lab: {e}");
            }
            // Deleting the default qdisc fails; that is fine.
            let _ = run("heal", &["ip", "netns", "exec", &host.ns, "tc", "qdisc", "del", "dev", &host.veth, "root"]);
        }
    }

    /// Puts process `pid` (host `id`'s server, say) under a CPU quota of `millicores`
    /// thousandths of a core, as a Kubernetes CPU limit does (CFS quota over a 100 ms period).
    /// The limit lasts until [`Lab::unlimit`] or the process exits.
    pub fn limit_cpu(&self, id: u64, pid: Pid, millicores: u32) {
        let dir = PathBuf::from(CPU_CGROUPS).join(format!("{}q{id}", self.tag));
        let set = || -> std::io::Result<()> {
            if !dir.exists() {
                std::fs::create_dir(&dir)?;
                self.cgroups.lock().unwrap_or_else(|e| e.into_inner()).push(dir.clone());
            }
            std::fs::write(dir.join("cpu.cfs_period_us"), "100000")?;
            std::fs::write(dir.join("cpu.cfs_quota_us"), (u64::from(millicores) * 100).to_string())?;
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())
        };
        set().unwrap_or_else(|e| panic!("cpu limit on {}: {e}", dir.display()));
    }

    /// Takes process `pid` out of every quota of this lab.
    pub fn unlimit(&self, pid: Pid) {
        let _ = std::fs::write(PathBuf::from(CPU_CGROUPS).join("cgroup.procs"), pid.to_string());
    }
}

/// `command` to be run inside namespace `ns`: the same program, arguments, environment
/// changes and working directory.
pub fn wrap_in(ns: &str, command: &Command) -> Command {
    let mut wrapped = Command::new("ip");
    wrapped.args(["netns", "exec", ns]).arg(command.get_program()).args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

impl Drop for Lab {
    fn drop(&mut self) {
        for dir in self.cgroups.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            // Processes still inside go back to the root group first.
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines() {
                    let _ = std::fs::write(PathBuf::from(CPU_CGROUPS).join("cgroup.procs"), pid);
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
        let hosts = std::mem::take(&mut *self.hosts.lock().unwrap_or_else(|e| e.into_inner()));
        for host in hosts.values() {
            // A socket of a killed process still retrying into a blackhole keeps its namespace
            // (and so the veth pair) alive after the namespace's name is gone: deleting the
            // host end removes the pair at once.
            let _ = run("cleanup", &["ip", "link", "delete", &format!("{}v{}", self.tag, host.id)]);
            let _ = run("cleanup", &["ip", "netns", "delete", &host.ns]);
        }
        let _ = run("cleanup", &["ip", "link", "delete", &self.bridge]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_owner() {
        assert_eq!(owner("pd1a2bl0h3"), Some(0x1a2b));
        assert_eq!(owner("pd11l0g"), Some(17));
        assert_eq!(owner("pd11x"), None);
        assert_eq!(owner("pdl0"), None);
        assert_eq!(owner("cni0"), None);
    }

    #[test]
    fn wrapping_keeps_program_args_and_env() {
        let mut command = Command::new("/bin/true");
        command.args(["-a", "b"]).env("X", "1").env_remove("Y");
        let wrapped = wrap_in("ns1", &command);
        let args: Vec<_> = wrapped.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["netns", "exec", "ns1", "/bin/true", "-a", "b"]);
        let envs: Vec<_> = wrapped.get_envs().collect();
        assert!(envs.contains(&(std::ffi::OsStr::new("X"), Some(std::ffi::OsStr::new("1")))));
        assert!(envs.contains(&(std::ffi::OsStr::new("Y"), None)));
    }
}
