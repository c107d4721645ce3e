//! Issue 15's layer-2 benchmark: failover at the physical limit, IPv4 (ARP) next to IPv6 (NDP),
//! on five nodes, with the real `ferrolb standalone` binary (build it in release).
//!
//! 1. Failover kinds, per family, interleaved: *graceful* (SIGTERM: the owner hands over and
//!    goes quiet once its successor confirms), *process crash* (SIGKILL; the node and its link
//!    stay up, so its kernel answers membership probes with port unreachable), *link cut* (the
//!    owner's link down; its process keeps running, isolated). Each timed from the signal (or
//!    the cut) to the client's first complete TCP exchange with VIP:80 answered through another
//!    node's kube-proxy stand-in.
//! 2. *Freeze*: SIGSTOP of the owner for 50, 100, 200 and 500 ms, then SIGCONT; the client
//!    probes for 3 s more: whether the address moves, when, and when it moves back.
//! 3. *False takeovers*: with every speaker up and both cores saturated by busy loops, tcpdump
//!    on the client for `WATCH_SECS` (default 600): any ARP or neighbour advertisement naming a
//!    VIP from a node that does not own it is a false takeover.
//! 4. ARP and NDP reply latency at that load, from the client: to the VIPs (ferrolb's user-space
//!    responder) and to the owners' own addresses (the kernel).
//!
//! Ignored by default; needs root and the lab packages:
//!
//! ```text
//! cargo build --release -p ferrolb-standalone
//! FERROLB_BIN=target/release/ferrolb cargo test -p ferrolb-tests --test l2_limits -- --ignored --nocapture
//! ```
//!
//! Options: `BENCH_NODES` (default 5), `BENCH_TRIALS` (default 20 per kind and family),
//! `FREEZE_TRIALS` (default 5 per duration and family), `WATCH_SECS` (default 600),
//! `REPLY_SAMPLES` (default 400 per target), `FERROLB_BIN`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ferrolb_tests::l2bench::{
    Series, arp_macs, arping_batch, env_usize, ferrolb_bin, machine, ms, private_copy, probe_until,
    probe_window, served_by, solicit, spawn_standalone, steadily_served_by,
};
use ferrolb_tests::lab::{self, Host, Lab, LabSpec, Process, Signal};

const VIP4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x200);

fn config(nodes: &[Host]) -> String {
    let mut c = String::from(
        r#"apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan4}
spec: {addresses: [10.0.0.200-10.0.0.209]}
---
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan6}
spec: {addresses: ["fd00::200-fd00::209"]}
---
apiVersion: ferrolb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan}
spec: {ipAddressPools: [lan4, lan6], interfaces: [eth0]}
---
apiVersion: v1
kind: Service
metadata: {name: web4, namespace: bench, annotations: {ferrolb.io/loadBalancerIPs: "10.0.0.200"}}
spec: {type: LoadBalancer, ipFamilyPolicy: SingleStack, ipFamilies: [IPv4], ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web6, namespace: bench, annotations: {ferrolb.io/loadBalancerIPs: "fd00::200"}}
spec: {type: LoadBalancer, ipFamilyPolicy: SingleStack, ipFamilies: [IPv6], ports: [{port: 80}]}
"#,
    );
    for n in nodes {
        c.push_str(&format!(
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {}}}\n",
            n.name
        ));
    }
    c
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn vip(self) -> IpAddr {
        match self {
            Family::V4 => VIP4.into(),
            Family::V6 => VIP6.into(),
        }
    }

    fn target(self) -> SocketAddr {
        SocketAddr::new(self.vip(), 80)
    }

    fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4 (ARP)",
            Family::V6 => "IPv6 (NDP)",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Graceful,
    Crash,
    Cut,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Graceful => "graceful (SIGTERM)",
            Kind::Crash => "process crash (SIGKILL, link up)",
            Kind::Cut => "link cut (process running)",
        }
    }
}

struct Fleet<'a> {
    lab: &'a Lab,
    bin: PathBuf,
    conf: PathBuf,
    secret: PathBuf,
    procs: Vec<Option<Process>>,
    /// The owner of each family's VIP with every speaker up (the election's first choice).
    owners: BTreeMap<Family, usize>,
    /// Restores in which the client kept sending to another node's MAC although only the owner
    /// answered ARP/NDP (its cache had not followed the failback).
    client_stayed: usize,
}

impl Fleet<'_> {
    fn start(&mut self, i: usize) {
        let node = self.lab.node(i);
        let p = spawn_standalone(self.lab, node, &self.bin, &self.conf, &self.secret);
        self.procs[i] = Some(p.expect("spawn ferrolb"));
    }

    fn proc(&mut self, i: usize) -> &mut Process {
        self.procs[i].as_mut().expect("running")
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, p) in self.procs.iter().enumerate() {
            if let Some(p) = p {
                out.push_str(&format!("--- node{i}\n{}\n", lab::tail(&p.log(), 15)));
            }
        }
        out
    }

    /// Every speaker running, every link up, each VIP answered (ARP/NDP and TCP) by its owner
    /// alone; then past the takeover bursts and the client's ARP locktime.
    fn restore(&mut self) {
        for i in 0..self.procs.len() {
            let _ = self.lab.node(i).link_up();
            let running = self.procs[i].as_mut().is_some_and(|p| p.is_running());
            if !running {
                self.start(i);
            }
        }
        let client = self.lab.client();
        for (fam, o) in self.owners.clone() {
            let owner = self.lab.node(o);
            let mac = owner.mac.to_string();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let macs: Vec<String> = match fam {
                    Family::V4 => arp_macs(client, VIP4, 3),
                    Family::V6 => (0..3)
                        .flat_map(|_| solicit(client, VIP6, Duration::from_millis(100)))
                        .map(|(m, _)| m)
                        .collect(),
                };
                if !macs.is_empty() && macs.iter().all(|m| *m == mac) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} is not the only one answering for {} 30 s into the restore \
                     (replies from {macs:?})\n{}",
                    owner.name,
                    fam.vip(),
                    self.logs()
                );
                thread::sleep(Duration::from_millis(100));
            }
            if !steadily_served_by(client, fam.target(), &owner.name, 3, Duration::from_secs(3)) {
                // The owner alone answers ARP/NDP, yet the client still sends to another MAC:
                // counted, then the client's cache is flushed (as if its entry had aged).
                self.client_stayed += 1;
                println!(
                    "  restore: the client still goes through {:?} for {}; flushing its neighbours",
                    served_by(client, fam.target(), Duration::from_secs(1)),
                    fam.vip()
                );
                client.flush_neighbours().expect("flush");
                assert!(
                    steadily_served_by(
                        client,
                        fam.target(),
                        &owner.name,
                        3,
                        Duration::from_secs(10)
                    ),
                    "{} does not serve {} after the restore\n{}",
                    owner.name,
                    fam.target(),
                    self.logs()
                );
            }
        }
        thread::sleep(Duration::from_millis(1500));
    }

    /// One failover of `fam`'s owner; restores before returning.
    fn trial(&mut self, fam: Family, kind: Kind) -> Duration {
        let lab = self.lab;
        let o = self.owners[&fam];
        let owner = lab.node(o).name.clone();
        let t0 = Instant::now();
        let was = owner.clone();
        let probe = probe_until(
            lab.client(),
            fam.target(),
            move |n| !n.is_empty() && n != was,
            t0,
        );
        match kind {
            Kind::Graceful => self.proc(o).stop_within(Duration::from_secs(3)),
            Kind::Crash => self.proc(o).kill(),
            Kind::Cut => lab.node(o).link_down().expect("link down"),
        }
        let took = probe.join().expect("probe thread");
        if kind == Kind::Cut {
            lab.node(o).link_up().expect("link up");
        }
        let took = took.unwrap_or_else(|| {
            panic!(
                "{kind:?} of {owner}: nobody else took {} over\n{}",
                fam.vip(),
                self.logs()
            )
        });
        self.restore();
        took
    }

    /// SIGSTOP of `fam`'s owner for `pause`: when (since the SIGSTOP) the address moved to
    /// another node, if it did, and when it came back to the owner.
    fn freeze(&mut self, fam: Family, pause: Duration) -> (Option<Duration>, Option<Duration>) {
        let lab = self.lab;
        let o = self.owners[&fam];
        let owner = lab.node(o).name.clone();
        let t0 = Instant::now();
        let probe = probe_window(
            lab.client(),
            fam.target(),
            t0,
            pause + Duration::from_secs(3),
        );
        assert!(self.proc(o).signal(Signal::Stop), "SIGSTOP");
        thread::sleep(pause.saturating_sub(t0.elapsed()));
        assert!(self.proc(o).signal(Signal::Continue), "SIGCONT");
        let seen = probe.join().expect("probe thread");
        let moved = seen.iter().find(|(_, n)| *n != owner).map(|(t, _)| *t);
        let back = moved.and_then(|m| {
            seen.iter()
                .find(|(t, n)| *t > m && *n == owner)
                .map(|(t, _)| *t)
        });
        self.restore();
        (moved, back)
    }
}

/// Busy loops, one per core, for as long as the value lives.
struct Load(Vec<Child>);

impl Load {
    fn saturate() -> Load {
        let n = thread::available_parallelism().map_or(2, |n| n.get());
        Load(
            (0..n)
                .filter_map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .stdout(Stdio::null())
                        .spawn()
                        .ok()
                })
                .collect(),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The source MAC (tcpdump -e) of a capture line.
fn src_mac(line: &str) -> Option<&str> {
    line.split_whitespace()
        .find(|t| t.len() == 17 && t.matches(':').count() == 5)
}

#[test]
#[ignore]
fn l2_failover_at_the_limit() {
    if !lab::require_lab() {
        return;
    }
    let nodes = env_usize("BENCH_NODES", 5);
    let trials = env_usize("BENCH_TRIALS", 20);
    let freeze_trials = env_usize("FREEZE_TRIALS", 5);
    let watch = Duration::from_secs(env_usize("WATCH_SECS", 600) as u64);
    let samples = env_usize("REPLY_SAMPLES", 400);
    let bin = ferrolb_bin();
    println!("machine at start: {}", machine());

    let lab = Lab::new(LabSpec {
        nodes,
        ..Default::default()
    })
    .unwrap();
    let client = lab.client();
    let conf = lab.dir().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("ferrolb.yaml"), config(lab.nodes())).unwrap();
    let secret = lab.dir().join("membership-secret");
    std::fs::write(&secret, "bench-secret").unwrap();
    // A backend per node and family behind the kube-proxy stand-in: answers name the node.
    let mut backends = Vec::new();
    for node in lab.nodes() {
        // A cut link must not take the node's static IPv6 address with it (the kernel's default
        // flushes it on link down; a server's network manager would put it back).
        node.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.eth0.keep_addr_on_down=1"])
            .unwrap();
        for (vip, local) in [
            (IpAddr::from(VIP4), IpAddr::from(node.ipv4)),
            (IpAddr::from(VIP6), IpAddr::from(node.ipv6)),
        ] {
            backends.push(
                node.start_tcp_backend(SocketAddr::new(local, 8080), &node.name)
                    .unwrap(),
            );
            node.install_service_dnat(vip, 80, local, 8080).unwrap();
        }
    }
    let (private_bin, sum) = private_copy(&bin, lab.dir());
    println!(
        "ferrolb binary {} sha256 {sum}; {nodes} nodes; {trials} trials per kind and family",
        bin.display()
    );
    let mut fleet = Fleet {
        lab: &lab,
        bin: private_bin,
        conf,
        secret,
        procs: (0..nodes).map(|_| None).collect(),
        owners: BTreeMap::new(),
        client_stayed: 0,
    };
    for i in 0..nodes {
        fleet.start(i);
    }
    for fam in [Family::V4, Family::V6] {
        served_by(client, fam.target(), Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{} is not served\n{}", fam.vip(), fleet.logs()));
    }
    thread::sleep(Duration::from_secs(3)); // membership settled, start-up bursts over
    client.flush_neighbours().unwrap();
    for fam in [Family::V4, Family::V6] {
        let name = served_by(client, fam.target(), Duration::from_secs(5)).expect("served");
        let o = lab.nodes().iter().position(|h| h.name == name).unwrap();
        println!("{} owned by {name}", fam.vip());
        fleet.owners.insert(fam, o);
    }
    fleet.restore();

    // ---- 1. failover kinds ---------------------------------------------------------------
    let mut series: BTreeMap<(Family, Kind), Series> = BTreeMap::new();
    for t in 0..trials {
        for fam in [Family::V4, Family::V6] {
            for kind in [Kind::Graceful, Kind::Crash, Kind::Cut] {
                let took = fleet.trial(fam, kind);
                println!("  trial {t:>2} {fam:?} {kind:?}: {}", ms(took));
                series
                    .entry((fam, kind))
                    .or_insert_with(|| Series::new(&format!("{} — {}", fam.label(), kind.label())))
                    .samples
                    .push(took);
            }
        }
    }

    // ---- 2. freezes ----------------------------------------------------------------------
    let mut freezes = Vec::new();
    for pause_ms in [50u64, 100, 200, 500] {
        for fam in [Family::V4, Family::V6] {
            let pause = Duration::from_millis(pause_ms);
            let mut moved = Vec::new();
            let mut back = Vec::new();
            for _ in 0..freeze_trials {
                let (m, b) = fleet.freeze(fam, pause);
                println!(
                    "  freeze {pause_ms} ms {fam:?}: moved {:?}, back {:?}",
                    m.map(ms),
                    b.map(ms)
                );
                moved.extend(m);
                back.extend(b);
            }
            freezes.push((fam, pause_ms, freeze_trials, moved, back));
        }
    }

    // ---- 3. false takeovers under load, 4. reply latency at that load --------------------
    let owner_macs: BTreeMap<Family, String> = fleet
        .owners
        .iter()
        .map(|(f, o)| (*f, lab.node(*o).mac.to_string()))
        .collect();
    let node_macs: Vec<String> = lab.nodes().iter().map(|h| h.mac.to_string()).collect();
    let load = Load::saturate();
    thread::sleep(Duration::from_secs(5));
    let load_start =
        lab::run_command_ok(&["cat", "/proc/loadavg"], Duration::from_secs(5)).unwrap_or_default();
    let mut capture = client
        .spawn(&[
            "tcpdump",
            "-l",
            "-n",
            "-e",
            "-i",
            "eth0",
            "arp or (icmp6 and ip6[40] == 136)",
        ])
        .unwrap();
    thread::sleep(watch);
    // Positive control: one ARP request from a non-owner's kernel must be captured.
    let control = (0..nodes)
        .find(|i| !fleet.owners.values().any(|o| o == i))
        .unwrap_or(0);
    let router = lab.router().ipv4.to_string();
    let _ = lab
        .node(control)
        .exec(&["arping", "-c", "1", "-w", "1", "-i", "eth0", &router]);
    thread::sleep(Duration::from_millis(300));
    capture.stop();
    let log = capture.log();
    let mut false_claims = Vec::new();
    for line in log.lines() {
        let Some(src) = src_mac(line).map(str::to_lowercase) else {
            continue;
        };
        if !node_macs.contains(&src) {
            continue;
        }
        for fam in [Family::V4, Family::V6] {
            let vip = fam.vip().to_string();
            let names_vip = line
                .split_whitespace()
                .any(|t| t.trim_end_matches(',') == vip);
            if names_vip && src != owner_macs[&fam] {
                false_claims.push(line.to_string());
            }
        }
    }
    let control_seen = log
        .lines()
        .any(|l| l.contains(&router) && src_mac(l) == Some(&node_macs[control]));
    println!(
        "{watch:?} with every speaker up and {} busy loops (load at start {}): {} false claims",
        load.0.len(),
        load_start.trim(),
        false_claims.len()
    );
    for l in false_claims.iter().take(10) {
        println!("  {l}");
    }
    assert!(
        control_seen,
        "the capture missed the control frame:\n{}",
        lab::tail(&log, 20)
    );

    let o4 = lab.node(fleet.owners[&Family::V4]);
    let o6 = lab.node(fleet.owners[&Family::V6]);
    let mut arp_vip = Series::new(&format!("ARP {VIP4} (ferrolb, user space)"));
    let mut arp_own = Series::new(&format!("ARP {} (kernel)", o4.ipv4));
    let mut nd_vip = Series::new(&format!("NDP {VIP6} (ferrolb, user space)"));
    let mut nd_own = Series::new(&format!("NDP {} (kernel)", o6.ipv6));
    let batches = 4;
    for _ in 0..batches {
        arp_vip
            .samples
            .extend(arping_batch(client, VIP4, samples / batches));
        arp_own
            .samples
            .extend(arping_batch(client, o4.ipv4, samples / batches));
        for (series, addr) in [(&mut nd_vip, VIP6), (&mut nd_own, o6.ipv6)] {
            for _ in 0..samples / batches {
                if let Some((_, rtt)) = solicit(client, addr, Duration::from_millis(50)).first() {
                    series.samples.push(*rtt);
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
    }
    let client_stayed = fleet.client_stayed;
    let load_end =
        lab::run_command_ok(&["cat", "/proc/loadavg"], Duration::from_secs(5)).unwrap_or_default();
    drop(load);
    for p in fleet.procs.iter_mut().flatten() {
        p.stop();
    }
    drop(fleet);
    drop(backends);
    drop(lab);

    println!("\nmachine at end: {}", machine());
    println!("\n| family — kind | n | min | p50 | p99 | max |\n|---|---|---|---|---|---|");
    for s in series.values() {
        println!("{}", s.row());
    }
    for kind in [Kind::Graceful, Kind::Crash, Kind::Cut] {
        let p = |f| series.get(&(f, kind)).and_then(Series::p50);
        if let (Some(a), Some(n)) = (p(Family::V4), p(Family::V6)) {
            println!(
                "NDP / ARP p50, {}: {:.2}",
                kind.label(),
                n.as_secs_f64() / a.as_secs_f64()
            );
        }
    }
    println!(
        "\n| family | SIGSTOP | trials | moved | moved after (min / max) | back after (min / max) |\n|---|---|---|---|---|---|"
    );
    for (fam, pause, n, moved, back) in &freezes {
        let range = |v: &Vec<Duration>| {
            let (lo, hi) = (v.iter().min(), v.iter().max());
            match (lo, hi) {
                (Some(lo), Some(hi)) => format!("{} / {}", ms(*lo), ms(*hi)),
                _ => "–".into(),
            }
        };
        println!(
            "| {} | {pause} ms | {n} | {} | {} | {} |",
            fam.label(),
            moved.len(),
            range(moved),
            range(back)
        );
    }
    println!(
        "\nfalse takeovers in {watch:?} under load (load at start {}, at end {}): {}",
        load_start.trim(),
        load_end.trim(),
        false_claims.len()
    );
    println!("restores in which the client's cache had not followed the failback: {client_stayed}");
    println!("\n| reply latency at load | n | min | p50 | p99 | max |\n|---|---|---|---|---|---|");
    for s in [&arp_vip, &arp_own, &nd_vip, &nd_own] {
        println!("{}", s.row());
    }
    assert!(series.values().all(|s| s.samples.len() == trials));
}
