//! The topology: a LAN bridge in its own namespace and hosts (router, nodes, client), each a
//! network namespace with one veth `eth0` plugged into the bridge.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once};
use std::thread;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::cmd::{self, COMMAND_TIMEOUT, Process};
use super::error::LabError;
use super::mac::MacAddr;
use super::sys;
use super::wait::wait_until;

/// Prefix of every namespace and temp dir the lab creates: `flb-<pid>-<lab#>-<role>`.
pub const PREFIX: &str = "flb-";

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// What to build. `LabSpec { nodes: 2, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Number of node hosts (`node0`, `node1`, ...), at most 80.
    pub nodes: usize,
    /// The LAN's IPv4 subnet (a /24 or larger). Router `.1`, node i `.11+i`, client `.100`.
    pub ipv4_subnet: Ipv4Net,
    /// The LAN's IPv6 subnet. Router `::1`, node i `::11+i` (as hex digits: `::11`, `::12`),
    /// client `::100`.
    pub ipv6_subnet: Ipv6Net,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            nodes: 1,
            ipv4_subnet: Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 24).unwrap_or_default(),
            ipv6_subnet: Ipv6Net::new(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0), 64)
                .unwrap_or_default(),
        }
    }
}

/// One host of the lab: a network namespace whose only link is `eth0` on the LAN.
#[derive(Debug, Clone)]
pub struct Host {
    /// Role name: `router`, `node0`, `node1`, ..., `client`.
    pub name: String,
    /// Network namespace name (for `ip netns exec`).
    pub netns: String,
    /// The LAN interface inside the namespace (always `eth0`).
    pub ifname: String,
    /// MAC address of `ifname`.
    pub mac: MacAddr,
    /// IPv4 address on the LAN.
    pub ipv4: Ipv4Addr,
    /// IPv6 (ULA) address on the LAN.
    pub ipv6: Ipv6Addr,
    /// The LAN's IPv4 subnet.
    pub ipv4_net: Ipv4Net,
    /// The LAN's IPv6 subnet.
    pub ipv6_net: Ipv6Net,
    pub(crate) workdir: PathBuf,
    pub(crate) counter: Arc<AtomicU32>,
}

impl Host {
    /// The host's address of the given family.
    pub fn ip(&self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(self.ipv6)
        } else {
            IpAddr::V4(self.ipv4)
        }
    }

    /// A private directory for this host's files (configs, logs, sockets); removed with the lab.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// A fresh path under [`Host::workdir`] named `<stem>-<n>` (for daemon dirs, logs...).
    pub fn unique_path(&self, stem: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.workdir.join(format!("{stem}-{n}"))
    }

    /// Runs `argv` in the namespace (`ip netns exec NS ...`), bounded by 10 s.
    /// A non-zero exit is not an error: see `Output::status`.
    pub fn exec(&self, argv: &[&str]) -> Result<Output, LabError> {
        self.exec_timeout(argv, COMMAND_TIMEOUT)
    }

    /// [`Host::exec`] with an explicit bound.
    pub fn exec_timeout(&self, argv: &[&str], timeout: Duration) -> Result<Output, LabError> {
        cmd::run(&self.netns_argv(argv), timeout)
    }

    /// Runs `argv` in the namespace; its stdout, or an error with its stderr if it failed.
    pub fn exec_ok(&self, argv: &[&str]) -> Result<String, LabError> {
        let full = self.netns_argv(argv);
        let output = cmd::run(&full, COMMAND_TIMEOUT)?;
        cmd::check(&full, output)
    }

    /// Starts `argv` in the namespace in the background; stdout/stderr go to a log file in the
    /// host's workdir. The returned [`Process`] is stopped when dropped (and the lab kills
    /// whatever still runs in its namespaces when it is dropped).
    pub fn spawn(&self, argv: &[&str]) -> Result<Process, LabError> {
        self.spawn_with_env(argv, &[])
    }

    /// [`Host::spawn`] with extra environment variables.
    pub fn spawn_with_env(
        &self,
        argv: &[&str],
        env: &[(String, String)],
    ) -> Result<Process, LabError> {
        let stem = argv
            .first()
            .and_then(|p| Path::new(p).file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "proc".into());
        let log = self.unique_path(&format!("{stem}.log"));
        Process::spawn_with_env(&self.netns_argv(argv), env, &log)
    }

    /// Runs `f` on a fresh thread that has entered this host's network namespace (only that
    /// thread moves), and returns its result. Sockets created there stay in the namespace.
    pub fn in_netns<T, F>(&self, f: F) -> Result<T, LabError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.spawn_thread(f)?.join()
    }

    /// Like [`Host::in_netns`] but returns at once with a handle to join later.
    pub fn spawn_thread<T, F>(&self, f: F) -> Result<NetnsThread<T>, LabError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let netns = self.netns.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = thread::Builder::new()
            .name(format!("netns-{}", self.name))
            .spawn(move || {
                let entered = sys::enter_netns(&netns);
                let ok = entered.is_ok();
                let _ = tx.send(entered);
                if ok { Some(f()) } else { None }
            })
            .map_err(|e| LabError::io("spawning a thread", e))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(NetnsThread {
                handle,
                netns: self.netns.clone(),
            }),
            Ok(Err(e)) => Err(LabError::io(format!("entering netns {}", self.netns), e)),
            Err(_) => Err(LabError::Invalid(format!(
                "thread for netns {} died before entering it",
                self.netns
            ))),
        }
    }

    /// Adds an address to `eth0` (e.g. a VIP as /32 for a test without a responder).
    pub fn add_address(&self, addr: IpNet) -> Result<(), LabError> {
        let a = addr.to_string();
        let mut argv = vec!["ip", "addr", "add", a.as_str(), "dev", self.ifname.as_str()];
        if addr.addr().is_ipv6() {
            argv.push("nodad");
        }
        self.exec_ok(&argv).map(drop)
    }

    /// Removes an address from `eth0`.
    pub fn del_address(&self, addr: IpNet) -> Result<(), LabError> {
        let a = addr.to_string();
        self.exec_ok(&["ip", "addr", "del", a.as_str(), "dev", self.ifname.as_str()])
            .map(drop)
    }

    /// Brings `eth0` down (simulates a cable cut / node death on the LAN).
    pub fn link_down(&self) -> Result<(), LabError> {
        self.exec_ok(&["ip", "link", "set", self.ifname.as_str(), "down"])
            .map(drop)
    }

    /// Brings `eth0` back up. Routes via a gateway on it went with the link: see
    /// [`Host::gateway_routes`].
    pub fn link_up(&self) -> Result<(), LabError> {
        self.exec_ok(&["ip", "link", "set", self.ifname.as_str(), "up"])
            .map(drop)
    }

    /// The routes via a gateway on `eth0` (IPv4 and IPv6), as `ip route` prints them: the kernel
    /// drops them when the link goes down, [`Host::restore_routes`] puts them back after
    /// [`Host::link_up`].
    pub fn gateway_routes(&self) -> Result<Vec<String>, LabError> {
        let mut out = Vec::new();
        for family in ["-4", "-6"] {
            let text =
                self.exec_ok(&["ip", family, "route", "show", "dev", self.ifname.as_str()])?;
            out.extend(
                text.lines()
                    .filter(|l| l.contains(" via "))
                    .map(|l| format!("{family} {} dev {}", l.trim(), self.ifname)),
            );
        }
        Ok(out)
    }

    /// Puts back routes saved by [`Host::gateway_routes`] once the link is up again: IPv6 routes
    /// are refused until the link's address has passed duplicate address detection, so each is
    /// retried for up to 10 s.
    pub fn restore_routes(&self, routes: &[String]) -> Result<(), LabError> {
        for r in routes {
            let mut words: Vec<&str> = r.split_whitespace().collect();
            let family = words.first().copied().unwrap_or("-4");
            words.splice(0..1.min(words.len()), ["ip", family, "route", "replace"]);
            wait_until(
                &format!("{} to take `{r}` back", self.name),
                Duration::from_secs(10),
                || self.exec_ok(&words).is_ok(),
            )?;
        }
        Ok(())
    }

    /// Adds a route via a gateway on the LAN (e.g. the VIP pool via a node).
    pub fn add_route(&self, dst: IpNet, via: IpAddr) -> Result<(), LabError> {
        let (d, v) = (dst.to_string(), via.to_string());
        self.exec_ok(&["ip", "route", "replace", d.as_str(), "via", v.as_str()])
            .map(drop)
    }

    fn netns_argv<'a>(&'a self, argv: &[&'a str]) -> Vec<&'a str> {
        let mut full = vec!["ip", "netns", "exec", self.netns.as_str()];
        full.extend_from_slice(argv);
        full
    }
}

/// A thread running inside a host's network namespace (see [`Host::spawn_thread`]).
#[derive(Debug)]
pub struct NetnsThread<T> {
    handle: thread::JoinHandle<Option<T>>,
    netns: String,
}

impl<T> NetnsThread<T> {
    /// Waits for the thread and returns its result (an error if it panicked).
    pub fn join(self) -> Result<T, LabError> {
        match self.handle.join() {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(LabError::Invalid(format!(
                "could not enter netns {}",
                self.netns
            ))),
            Err(_) => Err(LabError::Invalid(format!(
                "thread in netns {} panicked",
                self.netns
            ))),
        }
    }

    /// True once the thread has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// A running lab. Dropping it kills every process left in its namespaces, deletes the
/// namespaces (and with them the veths and the bridge) and removes its temp dir.
#[derive(Debug)]
pub struct Lab {
    id: String,
    lan_netns: String,
    router: Host,
    nodes: Vec<Host>,
    client: Host,
    cleanup: Cleanup,
}

#[derive(Debug)]
struct Cleanup {
    namespaces: Vec<String>,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            destroy_netns(ns);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    /// Builds the topology. Sweeps leftovers of dead test processes first (once per process).
    pub fn new(spec: LabSpec) -> Result<Lab, LabError> {
        if spec.nodes > 80 {
            return Err(LabError::Invalid(format!(
                "{} nodes (at most 80)",
                spec.nodes
            )));
        }
        if spec.ipv4_subnet.prefix_len() > 24 {
            return Err(LabError::Invalid(format!(
                "IPv4 subnet {} is smaller than a /24",
                spec.ipv4_subnet
            )));
        }
        SWEEP.call_once(|| {
            sweep_stale();
        });
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{PREFIX}{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        let mut cleanup = Cleanup {
            namespaces: Vec::new(),
            dir: dir.clone(),
        };
        let lan_netns = format!("{id}-lan");
        create_netns(&lan_netns, &mut cleanup)?;
        let lan = |args: &[&str]| {
            let mut argv = vec!["ip", "-n", lan_netns.as_str()];
            argv.extend_from_slice(args);
            cmd::run_ok(&argv, COMMAND_TIMEOUT)
        };
        lan(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        lan(&["link", "set", "br0", "up"])?;
        // The bridge itself needs no addresses.
        cmd::run_ok(
            &[
                "ip",
                "netns",
                "exec",
                &lan_netns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ],
            COMMAND_TIMEOUT,
        )?;

        let counter = Arc::new(AtomicU32::new(0));
        let mut add = |name: &str, offset: u32| -> Result<Host, LabError> {
            add_host(
                &id,
                &lan_netns,
                name,
                offset,
                &spec,
                &dir,
                &counter,
                &mut cleanup,
            )
        };
        let router = add("router", 1)?;
        let mut nodes = Vec::with_capacity(spec.nodes);
        for i in 0..spec.nodes {
            nodes.push(add(&format!("node{i}"), 11 + i as u32)?);
        }
        let client = add("client", 100)?;
        Ok(Lab {
            id,
            lan_netns,
            router,
            nodes,
            client,
            cleanup,
        })
    }

    /// The lab's unique id (`flb-<pid>-<n>`), prefix of all its namespaces.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The router host (a BGP peer of the nodes, typically).
    pub fn router(&self) -> &Host {
        &self.router
    }

    /// Node host `i` (panics if there is no such node: a test bug).
    pub fn node(&self, i: usize) -> &Host {
        match self.nodes.get(i) {
            Some(h) => h,
            None => panic!("lab has {} nodes, no node({i})", self.nodes.len()),
        }
    }

    /// All node hosts.
    pub fn nodes(&self) -> &[Host] {
        &self.nodes
    }

    /// The client host (probes traffic towards VIPs).
    pub fn client(&self) -> &Host {
        &self.client
    }

    /// Router, nodes and client.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        std::iter::once(&self.router)
            .chain(self.nodes.iter())
            .chain(std::iter::once(&self.client))
    }

    /// The namespace holding the bridge `br0`.
    pub fn lan_netns(&self) -> &str {
        &self.lan_netns
    }

    /// Every namespace of the lab (deleted on drop).
    pub fn namespaces(&self) -> Vec<String> {
        self.cleanup.namespaces.clone()
    }

    /// The lab's temp dir (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.cleanup.dir
    }
}

#[allow(clippy::too_many_arguments)]
fn add_host(
    id: &str,
    lan_netns: &str,
    name: &str,
    offset: u32,
    spec: &LabSpec,
    dir: &Path,
    counter: &Arc<AtomicU32>,
    cleanup: &mut Cleanup,
) -> Result<Host, LabError> {
    let netns = format!("{id}-{name}");
    create_netns(&netns, cleanup)?;
    let ns = |args: &[&str]| {
        let mut argv = vec!["ip", "-n", netns.as_str()];
        argv.extend_from_slice(args);
        cmd::run_ok(&argv, COMMAND_TIMEOUT)
    };
    let nsexec = |args: &[&str]| {
        let mut argv = vec!["ip", "netns", "exec", netns.as_str()];
        argv.extend_from_slice(args);
        cmd::run_ok(&argv, COMMAND_TIMEOUT)
    };
    // DAD off before any address exists, so IPv6 addresses are usable at once.
    nsexec(&[
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
    ])?;
    ns(&["link", "set", "lo", "up"])?;
    // The bridge-side end lives in the lan namespace under a short name (<= 15 chars).
    let port = format!("v-{name}");
    cmd::run_ok(
        &[
            "ip", "-n", lan_netns, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
            "netns", &netns,
        ],
        COMMAND_TIMEOUT,
    )?;
    cmd::run_ok(
        &[
            "ip", "-n", lan_netns, "link", "set", &port, "master", "br0", "up",
        ],
        COMMAND_TIMEOUT,
    )?;
    nsexec(&["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"])?;
    let ipv4 = nth_v4(spec.ipv4_subnet, offset);
    let ipv6 = nth_v6(spec.ipv6_subnet, offset)?;
    let v4 = format!("{ipv4}/{}", spec.ipv4_subnet.prefix_len());
    let v6 = format!("{ipv6}/{}", spec.ipv6_subnet.prefix_len());
    ns(&["addr", "add", &v4, "dev", "eth0"])?;
    ns(&["addr", "add", &v6, "dev", "eth0", "nodad"])?;
    ns(&["link", "set", "eth0", "up"])?;
    let mac = read_mac(&netns, "eth0")?;
    let workdir = dir.join(name);
    std::fs::create_dir_all(&workdir)
        .map_err(|e| LabError::io(format!("creating {}", workdir.display()), e))?;
    Ok(Host {
        name: name.to_string(),
        netns,
        ifname: "eth0".into(),
        mac,
        ipv4,
        ipv6,
        ipv4_net: spec.ipv4_subnet,
        ipv6_net: spec.ipv6_subnet,
        workdir,
        counter: Arc::clone(counter),
    })
}

fn nth_v4(net: Ipv4Net, offset: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + offset)
}

/// Offsets are read as hex digits so node `.11` is `::11`.
fn nth_v6(net: Ipv6Net, offset: u32) -> Result<Ipv6Addr, LabError> {
    let hex = u128::from_str_radix(&offset.to_string(), 16)
        .map_err(|e| LabError::Invalid(format!("address offset {offset}: {e}")))?;
    Ok(Ipv6Addr::from(u128::from(net.network()) + hex))
}

/// Reads the MAC of an interface in a namespace (`ip -j link show`).
pub fn read_mac(netns: &str, ifname: &str) -> Result<MacAddr, LabError> {
    let argv = ["ip", "-n", netns, "-j", "link", "show", "dev", ifname];
    let out = cmd::run_ok(&argv, COMMAND_TIMEOUT)?;
    let json: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| LabError::parse(cmd::display(&argv), e.to_string()))?;
    let addr = json
        .get(0)
        .and_then(|l| l.get("address"))
        .and_then(|a| a.as_str())
        .ok_or_else(|| LabError::parse(cmd::display(&argv), "no \"address\" field"))?;
    addr.parse()
        .map_err(|e: super::mac::BadMac| LabError::parse(cmd::display(&argv), e.to_string()))
}

fn create_netns(name: &str, cleanup: &mut Cleanup) -> Result<(), LabError> {
    cmd::run_ok(&["ip", "netns", "add", name], COMMAND_TIMEOUT)?;
    cleanup.namespaces.push(name.to_string());
    Ok(())
}

/// Kills every process in the namespace (never ourselves), then deletes it. Best effort.
pub fn destroy_netns(name: &str) {
    let me = std::process::id();
    for round in 0..2 {
        let pids = netns_pids(name);
        let others: Vec<u32> = pids.into_iter().filter(|p| *p != me).collect();
        if others.is_empty() {
            break;
        }
        let sig = if round == 0 {
            sys::SIGTERM
        } else {
            sys::SIGKILL
        };
        for pid in &others {
            sys::signal(*pid, sig);
        }
        // Give them a moment to exit (bounded).
        for _ in 0..30 {
            if netns_pids(name).iter().all(|p| *p == me) {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = cmd::run(&["ip", "netns", "delete", name], COMMAND_TIMEOUT);
}

fn netns_pids(name: &str) -> Vec<u32> {
    cmd::run_ok(&["ip", "netns", "pids", name], COMMAND_TIMEOUT)
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Names of all network namespaces (`ip netns list`).
pub fn list_netns() -> Result<Vec<String>, LabError> {
    let out = cmd::run_ok(&["ip", "netns", "list"], COMMAND_TIMEOUT)?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// The pid encoded in a lab name `flb-<pid>-...`.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Best effort: deletes namespaces and temp dirs whose creating process no longer exists
/// (left by a test process that was killed). Runs automatically once per process in
/// [`Lab::new`]; returns the namespaces it removed.
pub fn sweep_stale() -> Vec<String> {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    let mut removed = Vec::new();
    for ns in list_netns().unwrap_or_default() {
        if let Some(pid) = owner_pid(&ns)
            && !alive(pid)
        {
            destroy_netns(&ns);
            removed.push(ns);
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = owner_pid(&name)
                && !alive(pid)
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    removed
}
