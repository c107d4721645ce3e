//! BFD and graceful restart benchmark (issue 14).
//!
//! ```text
//! cargo build --release -p ferrolb-standalone && cargo build --release -p ferrolb-tests --bin bfd_gr_bench
//! sudo target/release/bfd_gr_bench [--nodes 10] [--rounds 2] [--restarts 20] [--skip-hold90]
//! ```
//!
//! 1. **Node failure → the router drops its route.** The lab's router runs BIRD 2 with one
//!    passive neighbor per node; each node announces its own /32 (`10.100.0.<i>`). Per mode,
//!    every node's link is cut in turn (`ip link set eth0 down` in the node, 300 ms apart) and
//!    BIRD's table is read every 10 ms; a trial is the time from a node's cut until its route
//!    is gone. `--rounds` rounds of `--nodes` nodes make the trials. Modes: ferrolb with the
//!    default BFDProfile (300 ms x 3) and BIRD `bfd on`; ferrolb with hold time 9 s and no BFD;
//!    ferrolb with the 90 s default hold time (skip with `--skip-hold90`); and the anchor, FRR
//!    (bgpd + bfdd + zebra) on each node in place of ferrolb, `neighbor bfd` with its defaults
//!    (300 ms x 3).
//! 2. **Restarts with and without graceful restart.** One node runs ferrolb with BIRD as the
//!    router (which installs the route in its kernel and forwards), the node answers TCP on
//!    the address, and the client connects through the router every 5 ms. `--restarts` times:
//!    SIGTERM, wait for the exit, start a new process, wait until its session is up and 1 s
//!    more. Counted: restarts during which BIRD's table lost the route (read every 10 ms), and
//!    the longest gap the client saw.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrolb_tests::bgp_host::{self, HostConfig, NODE_ASN, ROUTER_ASN};
use ferrolb_tests::lab::{
    self, Afi, Bfd, BgpConfig, BgpDaemon, Bird, Frr, Lab, LabError, LabSpec, Neighbor, Origin,
    Process, Signal, wait_until,
};

const POLL: Duration = Duration::from_millis(10);
const STAGGER: Duration = Duration::from_millis(300);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| -> usize {
        (args.iter().position(|a| a == name))
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let nodes = arg("--nodes", 10);
    let rounds = arg("--rounds", 2);
    let restarts = arg("--restarts", 20);
    let hold90 = !args.iter().any(|a| a == "--skip-hold90");
    if let Err(e) = run(nodes, rounds, restarts, hold90) {
        eprintln!("bfd_gr_bench: {e}");
        std::process::exit(1);
    }
}

fn ferrolb_bin() -> std::path::PathBuf {
    ferrolb_tests::l2bench::ferrolb_bin()
}

fn run(nodes: usize, rounds: usize, restarts: usize, hold90: bool) -> Result<(), LabError> {
    println!(
        "machine: {} cores, load {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mut modes = vec![Mode::FerrolbBfd, Mode::Hold9];
    if hold90 {
        modes.push(Mode::Hold90);
    }
    modes.push(Mode::FrrBfd);
    println!("\n1. node link cut -> route gone at the router ({nodes} nodes x {rounds} rounds)");
    println!("| mode | trials | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for mode in modes {
        let mut times = Vec::new();
        for _ in 0..rounds {
            times.extend(detection_round(mode, nodes)?);
        }
        times.sort();
        println!(
            "| {} | {} | {} | {} | {} |",
            mode.name(),
            times.len(),
            ms(pct(&times, 50)),
            ms(pct(&times, 99)),
            ms(times.last().copied()),
        );
    }
    println!("\n2. {restarts} speaker restarts (SIGTERM, new process)");
    println!(
        "| graceful restart | restarts with the route gone at the router | longest client gap | connections served |"
    );
    println!("|---|---:|---:|---:|");
    for gr in [true, false] {
        let (lost, gap, served) = restart_round(gr, restarts)?;
        println!(
            "| {} | {lost} of {restarts} | {} | {served} |",
            if gr { "on" } else { "off" },
            ms(Some(gap))
        );
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    FerrolbBfd,
    Hold9,
    Hold90,
    FrrBfd,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::FerrolbBfd => "ferrolb, BFD default profile (300 ms x 3)",
            Mode::Hold9 => "ferrolb, hold time 9 s, no BFD",
            Mode::Hold90 => "ferrolb, hold time 90 s (default), no BFD",
            Mode::FrrBfd => "FRR bgpd + bfdd on the node (300 ms x 3)",
        }
    }

    fn bfd(self) -> bool {
        matches!(self, Mode::FerrolbBfd | Mode::FrrBfd)
    }
}

fn pct(sorted: &[Duration], p: usize) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let i = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted.get(i.min(sorted.len() - 1)).copied()
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{} ms", d.as_millis()))
}

fn prefix(i: usize) -> String {
    format!("10.100.0.{i}/32")
}

/// What announces from a node.
enum Speaker {
    Ferrolb(Process),
    /// Kept for its lifetime (dropping it stops the daemons).
    Frr {
        _daemons: Box<Frr>,
    },
}

fn detection_round(mode: Mode, n: usize) -> Result<Vec<Duration>, LabError> {
    let lab = Lab::new(LabSpec {
        nodes: n,
        ..Default::default()
    })?;
    let router = lab.router();
    let bfd = if mode.bfd() { Bfd::Active } else { Bfd::Off };
    let mut cfg = BgpConfig::new(ROUTER_ASN, router.ipv4);
    for node in lab.nodes() {
        cfg = cfg.neighbor(
            Neighbor::new(IpAddr::V4(node.ipv4), NODE_ASN)
                .passive()
                .bfd(bfd),
        );
    }
    let bird = Bird::start(router, &cfg)?;
    let bin = ferrolb_bin();
    let mut speakers = Vec::new();
    for (i, node) in lab.nodes().iter().enumerate() {
        let speaker = match mode {
            Mode::FrrBfd => {
                let c = BgpConfig::new(NODE_ASN, node.ipv4)
                    .neighbor(Neighbor::new(IpAddr::V4(router.ipv4), ROUTER_ASN).bfd(Bfd::Active))
                    .route(Origin::new(
                        prefix(i)
                            .parse()
                            .map_err(|e| LabError::Invalid(format!("{e}")))?,
                    ));
                Speaker::Frr {
                    _daemons: Box::new(Frr::start(node, &c)?),
                }
            }
            _ => {
                let mut c = HostConfig::new(IpAddr::V4(router.ipv4));
                c.pool = format!("10.100.0.{i}/32");
                c.hold_time = match mode {
                    Mode::Hold9 => "9s".into(),
                    _ => "90s".into(),
                };
                c.bfd_profile = mode.bfd().then(|| "{}".to_string());
                let conf = node.workdir().join("conf");
                c.write(&conf, &node.name)?;
                Speaker::Ferrolb(bgp_host::spawn(node, &bin, &conf)?)
            }
        };
        speakers.push(speaker);
    }
    let all_up = |b: &Bird| {
        let routes = b.routes(Afi::Ipv4).unwrap_or_default();
        let bfd_ok = !mode.bfd()
            || b.birdc(&["show", "bfd", "sessions"])
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(" Up "))
                .count()
                >= n;
        (0..n).all(|i| routes.iter().any(|r| r.prefix.to_string() == prefix(i))) && bfd_ok
    };
    wait_until(
        "every node's route (and BFD) at the router",
        Duration::from_secs(60),
        || all_up(&bird),
    )?;
    // Poll the router's table; note when each prefix first goes missing.
    let gone: Arc<Mutex<BTreeMap<usize, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (gone, stop) = (gone.clone(), stop.clone());
        let reader = BirdRoutes {
            socket: bird.socket().to_string(),
        };
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                let present = reader.prefixes();
                let mut g = gone.lock().unwrap_or_else(|p| p.into_inner());
                for i in 0..n {
                    if !present.contains(&prefix(i)) {
                        g.entry(i).or_insert(now);
                    }
                }
                drop(g);
                std::thread::sleep(POLL);
            }
        })
    };
    let timeout = match mode {
        Mode::Hold90 => Duration::from_secs(100),
        Mode::Hold9 => Duration::from_secs(20),
        _ => Duration::from_secs(10),
    };
    let mut cut = Vec::new();
    for node in lab.nodes() {
        cut.push(Instant::now());
        node.link_down()?;
        std::thread::sleep(STAGGER);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && gone.lock().map(|g| g.len()).unwrap_or(0) < n {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let g = gone.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let times: Vec<Duration> = (0..n)
        .filter_map(|i| Some(g.get(&i)?.saturating_duration_since(cut[i])))
        .collect();
    if times.len() < n {
        eprintln!(
            "{}: {} of {n} routes still there after {timeout:?}",
            mode.name(),
            n - times.len()
        );
    }
    for s in speakers {
        if let Speaker::Ferrolb(mut p) = s {
            p.kill();
        }
    }
    Ok(times)
}

/// `birdc show route` from a thread (the [`Bird`] handle stays with the caller).
#[derive(Clone)]
struct BirdRoutes {
    socket: String,
}

impl BirdRoutes {
    fn prefixes(&self) -> Vec<String> {
        let argv = ["birdc", "-s", self.socket.as_str(), "show", "route"];
        let out = lab::run_command_ok(&argv, lab::COMMAND_TIMEOUT).unwrap_or_default();
        out.lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.starts_with("10.100."))
            .map(str::to_string)
            .collect()
    }
}

fn restart_round(gr: bool, restarts: usize) -> Result<(usize, Duration, u64), LabError> {
    let lab = Lab::new(LabSpec {
        nodes: 1,
        ..Default::default()
    })?;
    let (router, node, client) = (lab.router(), lab.node(0), lab.client());
    router.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    let cfg = BgpConfig::new(ROUTER_ASN, router.ipv4)
        .neighbor(Neighbor::new(IpAddr::V4(node.ipv4), NODE_ASN).passive());
    let bird = Bird::start_with(router, &cfg, "protocol kernel { ipv4 { export all; }; }\n")?;
    let router_ip = router.ipv4.to_string();
    client.exec_ok(&["ip", "route", "add", "10.100.0.0/24", "via", &router_ip])?;
    let vip = Ipv4Addr::new(10, 100, 0, 0);
    node.exec_ok(&["ip", "addr", "add", "10.100.0.0/32", "dev", "lo"])?;
    let backend = node.start_tcp_backend(SocketAddr::new(IpAddr::V4(vip), 80), "node0")?;
    let mut c = HostConfig::new(IpAddr::V4(router.ipv4));
    c.pool = "10.100.0.0/32".into();
    c.graceful_restart = gr;
    let conf = node.workdir().join("conf");
    c.write(&conf, &node.name)?;
    let bin = ferrolb_bin();
    let mut p = bgp_host::spawn(node, &bin, &conf)?;
    wait_until("the route at the router", Duration::from_secs(30), || {
        bgp_host::has_route(&bird, "10.100.0.0/32")
    })?;
    let probe = client.start_outage_probe(
        SocketAddr::new(IpAddr::V4(vip), 80),
        Duration::from_millis(5),
        Duration::from_millis(200),
    )?;
    let reader = BirdRoutes {
        socket: bird.socket().to_string(),
    };
    let mut lost = 0;
    for _ in 0..restarts {
        let missing = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (missing, stop) = (missing.clone(), stop.clone());
            let reader = reader.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if !reader.prefixes().iter().any(|p| p == "10.100.0.0/32") {
                        missing.store(true, Ordering::Relaxed);
                    }
                    std::thread::sleep(POLL);
                }
            })
        };
        p.signal(Signal::Term);
        wait_until("the old process to exit", Duration::from_secs(10), || {
            p.exited().is_some()
        })?;
        p = bgp_host::spawn(node, &bin, &conf)?;
        wait_until("the new session", Duration::from_secs(30), || {
            p.log().contains("session established")
        })?;
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        let _ = watcher.join();
        if missing.load(Ordering::Relaxed) {
            lost += 1;
        }
    }
    let report = probe.stop();
    p.kill();
    Ok((lost, report.longest_gap, backend.served()))
}
