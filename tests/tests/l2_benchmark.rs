//! Issue 6's layer-2 failover benchmark with real processes, in one run and one lab:
//!
//! 1. `ferrolb standalone --node` on node0 and node1 (the real binary), SIGKILL of the announcing
//!    host's process together with its link cut (a dead node);
//! 2. the same, but SIGTERM (graceful leave; the node stays up);
//!    (1 and 2 are interleaved, kill / term / kill / ...);
//! 3. keepalived (VRRP, `advert_int 1`, priorities 150/100, `nopreempt`) on the same two nodes,
//!    the master's link cut;
//! 4. ARP reply latency: `arping` from the client to the VIP (ferrolb's user-space reply) and to
//!    the owner's own address (the kernel's reply), interleaved batches;
//! 5. VmRSS / VmHWM of both `ferrolb` processes.
//!
//! Each failover is timed from the kill (or the cut) to the client's first complete TCP
//! exchange with VIP:80 answered through the *other* node's kube-proxy stand-in (nftables DNAT
//! to a local backend that answers with the node's name). The client starts a new connection
//! every 5 ms, each on its own thread with a 100 ms connect/read timeout, so a SYN lost to the
//! dead MAC does not hold the next probe back.
//!
//! Ignored by default; needs root and the lab packages plus keepalived:
//!
//! ```text
//! cargo build -p ferrolb-standalone
//! cargo test -p ferrolb-tests --test l2_benchmark -- --ignored --nocapture
//! ```
//!
//! `BENCH_TRIALS` (default 20) sets the trials per failover kind, `ARP_SAMPLES` (default 400)
//! the arping samples per target, `IDLE_SECS` (default 30) the idle watch for false
//! suspicions (tcpdump on the client: ARP frames from the non-owner naming the VIP), `FERROLB_BIN` another `ferrolb` binary (e.g. a saved copy, to compare builds).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use ferrolb_tests::l2bench::{
    FAILOVER_BOUND, Series, arp_macs, arping_batch, env_usize, ferrolb_bin, machine, ms,
    private_copy, probe_until, proc_status, served_by, spawn_standalone, steadily_served_by,
    wait_until,
};
use ferrolb_tests::lab::{self, Lab, LabSpec, Process};

/// The keepalived VIP (outside ferrolb's pool).
const KEEPALIVED_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 220);

const CONFIG: &str = r#"apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan}
spec: {addresses: [10.0.0.200-10.0.0.209]}
---
apiVersion: ferrolb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan}
spec: {ipAddressPools: [lan], interfaces: [eth0]}
---
apiVersion: v1
kind: Node
metadata: {name: node0}
---
apiVersion: v1
kind: Node
metadata: {name: node1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: bench}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"#;

fn count(p: &Process, needle: &str) -> usize {
    p.log().matches(needle).count()
}

struct Ferrolb<'a> {
    lab: &'a Lab,
    bin: PathBuf,
    conf: PathBuf,
    secret: PathBuf,
    procs: Vec<Option<Process>>,
}

impl Ferrolb<'_> {
    fn start(&mut self, i: usize) {
        let node = self.lab.node(i);
        let p = spawn_standalone(self.lab, node, &self.bin, &self.conf, &self.secret);
        self.procs[i] = Some(p.expect("spawn ferrolb"));
    }

    fn proc(&self, i: usize) -> &Process {
        self.procs[i].as_ref().expect("running")
    }
}

fn assigned_vip(state: &Path) -> Option<IpAddr> {
    let text = std::fs::read_to_string(state).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["services"]["bench/web"]["ips"][0].as_str()?.parse().ok()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kill {
    /// SIGKILL of the process and the node's link cut.
    Dead,
    /// SIGTERM: the speaker leaves the membership; the node stays up.
    Term,
}

/// One ferrolb failover of the owner `o` to `1 - o`; restores the lab (link up, process
/// restarted, the owner serving again) before returning.
fn ferrolb_trial(f: &mut Ferrolb, vip: IpAddr, o: usize, kind: Kill) -> Duration {
    let lab = f.lab;
    let client = lab.client();
    let target = SocketAddr::new(vip, 80);
    let (owner, other) = (lab.node(o).name.clone(), lab.node(1 - o).name.clone());
    assert!(
        steadily_served_by(client, target, &owner, 3, Duration::from_secs(10)),
        "{owner} does not serve {target} before the trial"
    );
    let t0 = Instant::now();
    let via = other.clone();
    let probe = probe_until(client, target, move |n| n == via, t0);
    match kind {
        Kill::Dead => {
            f.procs[o].as_mut().unwrap().kill();
            lab.node(o).link_down().unwrap();
        }
        Kill::Term => f.procs[o]
            .as_mut()
            .unwrap()
            .stop_within(Duration::from_secs(3)),
    }
    let took = probe.join().unwrap();
    if kind == Kill::Dead {
        lab.node(o).link_up().unwrap();
    }
    let took = took.unwrap_or_else(|| {
        panic!(
            "{kind:?}: {other} did not take {target} over within {FAILOVER_BOUND:?}\n{}",
            lab::tail(&f.proc(1 - o).log(), 20)
        )
    });
    // Restore: the owner's process back, it joins and takes the VIP back (failback), the
    // survivor goes quiet.
    f.start(o);
    let IpAddr::V4(vip4) = vip else {
        panic!("IPv4 pool")
    };
    let owner_mac = lab.node(o).mac.to_string();
    let back = Instant::now() + Duration::from_secs(20);
    loop {
        // Every ARP reply for the VIP comes from the owner: it is back and the survivor, which
        // sees it live again, has gone quiet.
        let macs = arp_macs(client, vip4, 3);
        if !macs.is_empty() && macs.iter().all(|m| *m == owner_mac) {
            break;
        }
        assert!(
            Instant::now() < back,
            "{owner} is not the only one answering ARP for {vip} 20 s after its restart \
             (replies from {macs:?})\n{other}:\n{}\n{owner}:\n{}",
            lab::tail(&f.proc(1 - o).log(), 20),
            lab::tail(&f.proc(o).log(), 20)
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        steadily_served_by(client, target, &owner, 3, Duration::from_secs(10)),
        "{owner} does not serve {target} again after the trial"
    );
    // Past the takeover burst and the client's ARP locktime (1 s).
    thread::sleep(Duration::from_millis(1500));
    took
}

fn keepalived_conf(prio: u32) -> String {
    format!(
        "global_defs {{\n  router_id bench\n}}\nvrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {prio}\n  advert_int 1\n  nopreempt\n  virtual_ipaddress {{\n    {KEEPALIVED_VIP}/24\n  }}\n}}\n"
    )
}

#[test]
#[ignore]
fn l2_failover_benchmark() {
    if !lab::require_lab() {
        return;
    }
    assert!(
        lab::find_tool("keepalived").is_some(),
        "keepalived is needed (apt-get install keepalived)"
    );
    let trials = env_usize("BENCH_TRIALS", 20);
    let arp_samples = env_usize("ARP_SAMPLES", 400);
    let bin = ferrolb_bin();
    println!("machine at start: {}", machine());
    println!(
        "ferrolb binary: {} (trials per kind {trials}, arping samples per target {arp_samples})",
        bin.display()
    );

    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let client = lab.client();
    let conf = lab.dir().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("ferrolb.yaml"), CONFIG).unwrap();
    let secret = lab.dir().join("membership-secret");
    std::fs::write(&secret, "bench-secret").unwrap();

    // Backends and the kube-proxy stand-in on both nodes, for ferrolb's pool and keepalived's VIP.
    let mut backends = Vec::new();
    for node in lab.nodes() {
        let local = IpAddr::V4(node.ipv4);
        backends.push(
            node.start_tcp_backend(SocketAddr::new(local, 8080), &node.name)
                .unwrap(),
        );
        for v in (200..210).chain([220]) {
            node.install_service_dnat(IpAddr::from([10, 0, 0, v]), 80, local, 8080)
                .unwrap();
        }
    }

    // ---- ferrolb ------------------------------------------------------------------------
    // A private copy: the shared target/debug/ferrolb may be rebuilt during the run.
    let (private_bin, sum) = private_copy(&bin, lab.dir());
    println!("ferrolb binary sha256 {sum}");
    let mut f = Ferrolb {
        lab: &lab,
        bin: private_bin,
        conf,
        secret,
        procs: vec![None, None],
    };
    f.start(0);
    f.start(1);
    let state0 = lab.node(0).workdir().join("state.json");
    let mut vip = None;
    wait_until("the Service is assigned", Duration::from_secs(15), || {
        vip = assigned_vip(&state0);
        vip.is_some()
    });
    let vip = vip.unwrap();
    let target = SocketAddr::new(vip, 80);
    served_by(client, target, Duration::from_secs(15)).expect("the VIP is served");
    thread::sleep(Duration::from_secs(3)); // membership settled, start-up bursts over
    client.flush_neighbours().unwrap();
    let owner_name = served_by(client, target, Duration::from_secs(5)).expect("served");
    let o = lab
        .nodes()
        .iter()
        .position(|h| h.name == owner_name)
        .unwrap();
    println!("ferrolb: {vip} owned by {owner_name} (the election's first choice)");

    let mut dead = Series::new("ferrolb, SIGKILL + link cut");
    let mut term = Series::new("ferrolb, SIGTERM (graceful leave)");
    for t in 0..trials {
        for kind in [Kill::Dead, Kill::Term] {
            let took = ferrolb_trial(&mut f, vip, o, kind);
            println!("  trial {t:>2} {kind:?}: {}", ms(took));
            match kind {
                Kill::Dead => dead.samples.push(took),
                Kill::Term => term.samples.push(took),
            }
        }
    }

    // False suspicions: with both up, the non-owner must never claim the VIP. A takeover starts
    // with a gratuitous ARP burst, so the client captures every ARP frame from the non-owner's
    // MAC that names the VIP. (The speakers' "announcing ..." log lines are no measure: the
    // main loop samples the status every 100 ms and a takeover that the owner's refutation
    // ends sooner is not printed; during the trials the survivor's takeovers often end less
    // than 100 ms after the measurement, when the restarted owner rejoins.)
    let survivor_mac = lab.node(1 - o).mac.to_string();
    let idle = Duration::from_secs(env_usize("IDLE_SECS", 30) as u64);
    let filter = format!("arp and ether src {survivor_mac}");
    let mut capture = client
        .spawn(&["tcpdump", "-l", "-n", "-e", "-i", "eth0", filter.as_str()])
        .unwrap();
    thread::sleep(idle);
    // Positive control: one ARP request from the non-owner's kernel must be captured.
    let router = lab.router().ipv4.to_string();
    let _ = lab
        .node(1 - o)
        .exec(&["arping", "-c", "1", "-w", "1", "-i", "eth0", &router]);
    thread::sleep(Duration::from_millis(300));
    capture.stop();
    let vip_s = vip.to_string();
    let false_claims = capture
        .log()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .any(|t| t.trim_end_matches(',') == vip_s)
        })
        .count();
    let arp_frames = capture.log().lines().filter(|l| l.contains("ARP")).count();
    println!(
        "{idle:?} idle with both up: {false_claims} ARP frames from the non-owner naming {vip} \
         (0 expected; {arp_frames} ARP frames from it in all, 1 being a control)"
    );
    if std::env::var_os("BENCH_DEBUG").is_some() {
        println!("capture:\n{}", capture.log());
    }
    assert!(
        arp_frames >= 1,
        "the capture saw nothing:\n{}",
        capture.log()
    );

    // ---- ARP reply latency and RSS, while the owner announces ------------------------------
    let IpAddr::V4(vip4) = vip else {
        panic!("IPv4 pool")
    };
    let own4 = lab.node(o).ipv4;
    let mut arp_user = Series::new(&format!("arping {vip4} (ferrolb, user space)"));
    let mut arp_kernel = Series::new(&format!("arping {own4} (kernel, node's own IP)"));
    let batches = 4;
    for _ in 0..batches {
        arp_user
            .samples
            .extend(arping_batch(client, vip4, arp_samples / batches));
        arp_kernel
            .samples
            .extend(arping_batch(client, own4, arp_samples / batches));
    }
    let rss_owner = proc_status(f.proc(o).pid());
    let rss_other = proc_status(f.proc(1 - o).pid());
    println!(
        "RSS of the announcing ferrolb ({owner_name}, restarted before the last trial): {rss_owner}"
    );
    println!(
        "RSS of the other ferrolb ({}, up since the start, {} takeovers): {rss_other}",
        lab.node(1 - o).name,
        2 * trials
    );
    for p in f.procs.iter_mut().flatten() {
        p.stop();
    }
    drop(f);

    // ---- keepalived -----------------------------------------------------------------------
    let mut ka = Vec::new();
    for (i, node) in lab.nodes().iter().enumerate() {
        let cfg = node.workdir().join("keepalived.conf");
        std::fs::write(&cfg, keepalived_conf(if i == 0 { 150 } else { 100 })).unwrap();
        let (pid, vpid) = (
            node.workdir().join("keepalived.pid"),
            node.workdir().join("vrrp.pid"),
        );
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let (cfg, pid, vpid) = (s(&cfg), s(&pid), s(&vpid));
        ka.push(
            node.spawn(&[
                "keepalived",
                "-n",
                "-l",
                "-P",
                "-f",
                &cfg,
                "-p",
                &pid,
                "-r",
                &vpid,
            ])
            .unwrap(),
        );
    }
    let ktarget = SocketAddr::new(IpAddr::V4(KEEPALIVED_VIP), 80);
    served_by(client, ktarget, Duration::from_secs(20)).expect("keepalived's VIP is served");
    thread::sleep(Duration::from_secs(3));
    let mut kdead = Series::new("keepalived VRRP, link cut");
    for t in 0..trials {
        let master_name = served_by(client, ktarget, Duration::from_secs(10)).expect("served");
        let m = lab
            .nodes()
            .iter()
            .position(|h| h.name == master_name)
            .unwrap();
        let other = lab.node(1 - m).name.clone();
        let backups_before = count(&ka[m], "Entering BACKUP STATE");
        let t0 = Instant::now();
        let via = other.clone();
        let probe = probe_until(client, ktarget, move |n| n == via, t0);
        lab.node(m).link_down().unwrap();
        let took = probe.join().unwrap();
        lab.node(m).link_up().unwrap();
        let took = took.unwrap_or_else(|| {
            panic!(
                "keepalived: {other} did not take over within {FAILOVER_BOUND:?}\n{}",
                lab::tail(&ka[1 - m].log(), 20)
            )
        });
        println!(
            "  trial {t:>2} keepalived ({master_name} cut): {}",
            ms(took)
        );
        kdead.samples.push(took);
        // nopreempt: the old master comes back as backup; the next trial cuts the new master.
        wait_until(
            &format!("{master_name}'s keepalived back in BACKUP"),
            Duration::from_secs(15),
            || count(&ka[m], "Entering BACKUP STATE") > backups_before,
        );
        assert!(
            steadily_served_by(client, ktarget, &other, 3, Duration::from_secs(10)),
            "{other} does not serve {ktarget} after the trial"
        );
        thread::sleep(Duration::from_millis(1500));
    }
    drop(ka);
    drop(backends);
    drop(lab);

    println!("\nmachine at end: {}", machine());
    println!("\n| kind | n | min | p50 | p99 | max |\n|---|---|---|---|---|---|");
    for s in [&dead, &term, &kdead, &arp_user, &arp_kernel] {
        println!("{}", s.row());
    }
    println!("RSS announcing: {rss_owner}; RSS other: {rss_other}");
    println!("false VIP claims by the non-owner in {idle:?} idle: {false_claims}");
    assert_eq!(dead.samples.len(), trials);
}
