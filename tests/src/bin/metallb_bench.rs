//! ferrolb next to MetalLB, on the same real control plane and the same lab, one system at a
//! time, the systems' order alternating across repetitions so that drift in the machine's load
//! favours neither. MetalLB v0.16.1's controller and speaker are built from its Go module and
//! installed with its own chart (`scripts/build-tools.sh --metallb`); both systems run from their
//! installed Deployment and DaemonSet with their ServiceAccounts' tokens (harness: `cluster`).
//!
//! ```text
//! scripts/build-tools.sh --metallb
//! cargo build --release -p ferrolb-controller -p ferrolb-speaker -p ferrolb-tests --bin metallb_bench
//! target/release/metallb_bench controller [--services 10000] [--rate 100] [--reps 2]
//! target/release/metallb_bench l2 [--trials 20]
//! target/release/metallb_bench bgp [--services 1000,10000]
//! target/release/metallb_bench footprint [--services 1000]
//! target/release/metallb_bench samples
//! ```
//!
//! Root is needed (network namespaces). Nothing here is part of the test suite.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrolb_tests::bench::{
    self, AssignmentWatch, Request, api_writes as writes, arg, arg_usize, cpu_seconds,
    load_average, percentile, proc_kib,
};
use ferrolb_tests::cluster::ferrolb as flb;
use ferrolb_tests::cluster::install::PodProcess;
use ferrolb_tests::cluster::metallb::{self as mlb, MetallbTemplates};
use ferrolb_tests::cluster::{self, Cluster};
use ferrolb_tests::lab::{
    self, BgpConfig, BgpDaemon, Bird, Host, Lab, LabSpec, Neighbor, Process, Signal,
};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Small helpers.

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

fn dist(v: &mut [Duration]) -> String {
    v.sort();
    format!(
        "p50 {} / p99 {} / max {} ms (n={})",
        ms(percentile(v, 0.5)),
        ms(percentile(v, 0.99)),
        ms(v.last().copied().unwrap_or_default()),
        v.len()
    )
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The two systems.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Ferrolb,
    Metallb,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Ferrolb => "ferrolb",
            System::Metallb => "MetalLB",
        }
    }

    fn namespace(self) -> &'static str {
        match self {
            System::Ferrolb => flb::NAMESPACE,
            System::Metallb => mlb::NAMESPACE,
        }
    }

    fn group(self) -> &'static str {
        match self {
            System::Ferrolb => "ferrolb.io",
            System::Metallb => "metallb.io",
        }
    }

    /// The systems in the order of repetition `rep` (alternating).
    /// `--only ferrolb|metallb` keeps one (for trying a row out).
    fn order(rep: usize) -> Vec<System> {
        let both = if rep.is_multiple_of(2) {
            [System::Ferrolb, System::Metallb]
        } else {
            [System::Metallb, System::Ferrolb]
        };
        let only = arg("--only").map(|s| s.to_lowercase());
        both.into_iter()
            .filter(|s| only.as_deref().is_none_or(|o| o == s.name().to_lowercase()))
            .collect()
    }
}

/// One installed system.
struct Installed {
    system: System,
    metallb: Option<MetallbTemplates>,
}

impl Installed {
    fn install(c: &Cluster, system: System) -> Installed {
        match system {
            System::Ferrolb => {
                // One replica without leader election: MetalLB's controller runs alone too, so
                // a restart is compared like with like. Both log at their charts' default (info).
                c.helm_install(
                    flb::RELEASE,
                    flb::NAMESPACE,
                    &[
                        "controller.replicas=1",
                        "controller.leaderElection.enabled=false",
                    ],
                )
                .expect("helm install ferrolb");
                Installed {
                    system,
                    metallb: None,
                }
            }
            System::Metallb => {
                let t = c.helm_install_metallb().expect("helm install metallb");
                Installed {
                    system,
                    metallb: Some(t),
                }
            }
        }
    }

    fn controller(&self, c: &Cluster, name: &str) -> PodProcess {
        let p = match &self.metallb {
            None => c.start_controller(name),
            Some(t) => c.start_metallb_controller(t, name),
        }
        .expect("controller");
        if self.system == System::Metallb {
            lab::wait_until(
                "MetalLB's memberlist Secret",
                Duration::from_secs(60),
                || {
                    c.kubectl(&["get", "secret", "metallb-memberlist", "-n", mlb::NAMESPACE])
                        .is_ok()
                },
            )
            .expect("memberlist secret");
        }
        p
    }

    fn speaker(&self, c: &Cluster, node: &Host) -> PodProcess {
        match &self.metallb {
            None => c.start_speaker(node),
            Some(t) => c.start_metallb_speaker(t, node),
        }
        .expect("speaker")
    }

    /// Applies config objects given as (kind, name, spec) in the system's group and namespace.
    fn apply(&self, c: &Cluster, objects: &[(&str, &str, serde_json::Value)]) {
        let docs: Vec<String> = objects
            .iter()
            .map(|(kind, name, spec)| {
                let version = if *kind == "BGPPeer" && self.system == System::Metallb {
                    "v1beta2"
                } else {
                    "v1beta1"
                };
                serde_json::to_string(&json!({
                    "apiVersion": format!("{}/{version}", self.system.group()), "kind": kind,
                    "metadata": {"name": name, "namespace": self.system.namespace()}, "spec": spec,
                }))
                .expect("json")
            })
            .collect();
        c.apply_yaml(&docs.join("\n---\n")).expect("apply config");
    }
}

fn service(ns: &str, name: &str, extra: serde_json::Value) -> Service {
    let mut spec = json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
                          "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
        .expect("service")
}

// ---------------------------------------------------------------------------------------------
// Row 1: the controller.

fn controller_row() {
    let count = arg_usize("--services", 10_000);
    let rate = arg_usize("--rate", 100).max(1);
    let reps = arg_usize("--reps", 2).max(1);
    println!("## controller: {count} Services at {rate}/s, {reps} repetitions per system");
    for rep in 0..reps {
        for system in System::order(rep) {
            println!(
                "{} (rep {}, load average {}):",
                system.name(),
                rep + 1,
                load_average()
            );
            controller_trial(system, count, rate);
        }
    }
}

fn controller_trial(system: System, count: usize, rate: usize) {
    let c = Cluster::start().expect("control plane");
    let inst = Installed::install(&c, system);
    inst.apply(
        &c,
        &[(
            "IPAddressPool",
            "bench",
            json!({"addresses": ["10.100.0.0/16"]}),
        )],
    );
    c.create_namespace("bench", &[]).expect("namespace");
    let mut controller = inst.controller(&c, "controller-bench-0");
    let pid = controller.process.pid();
    let api: Api<Service> = Api::namespaced(c.client(), "bench");
    c.block_on(api.create(
        &PostParams::default(),
        &service("bench", "warm-up", json!({})),
    ))
    .expect("warm-up");
    c.wait_ingress("bench", "warm-up", Duration::from_secs(120))
        .expect("warm-up assigned");
    let rss_idle = proc_kib(pid, "VmRSS:");
    let cpu_before = cpu_seconds(pid);

    let watch = AssignmentWatch::start(&c, &api);
    let before = writes(&c);
    let (sent, created_in) = bench::at_rate(&c, &api, Request::Create, count, rate, |i| {
        service("bench", &format!("svc-{i:05}"), json!({}))
    });
    print_rate(Request::Create, count, created_in);
    lab::wait_until("every Service assigned", Duration::from_secs(900), || {
        watch.assigned() > count
    })
    .expect("all assigned");
    let all_after = sent.values().min().map(|t| t.elapsed()).unwrap_or_default();
    std::thread::sleep(Duration::from_secs(3));
    let after = writes(&c);
    let rss_peak = proc_kib(pid, "VmHWM:");
    let cpu = cpu_seconds(pid) - cpu_before;
    let sightings = watch.stop();
    let mut total = sightings.create_to_ip(&sent);
    let mut share = sightings.controller_share(&sent);
    let d = delta(&after, &before);
    let mine: Vec<String> = d
        .iter()
        // The benchmark's creates, the API server's own ClusterIP records and its identity
        // Lease (renewed every 10 s) are nobody's under test.
        .filter(|(k, _)| !["POST services", "POST ipaddresses", "PUT leases"].contains(&k.as_str()))
        .map(|(k, v)| format!("{k} {:.3}", v / count as f64))
        .collect();
    println!(
        "  all {count} assigned {:.1} s after the first create",
        all_after.as_secs_f64()
    );
    println!("  create -> IP seen: {}", dist(&mut total));
    println!(
        "  the controller's share (Service seen -> IP seen): {}",
        dist(&mut share)
    );
    println!(
        "  writes per Service besides the create: {}",
        mine.join(", ")
    );
    println!(
        "  controller RSS idle {} / peak {}; CPU {cpu:.1} s over the burst",
        mib(rss_idle),
        mib(rss_peak)
    );

    // A crash and a new replica, everything in place.
    let held = bench::addresses(&c, &api);
    let before = writes(&c);
    controller.process.kill();
    let t = Instant::now();
    let replacement = inst.controller(&c, "controller-bench-1");
    c.block_on(api.create(
        &PostParams::default(),
        &service("bench", "after-restart", json!({})),
    ))
    .expect("create");
    c.wait_ingress("bench", "after-restart", Duration::from_secs(300))
        .expect("assigned after restart");
    let working = t.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let now = bench::addresses(&c, &api);
    let moved = held
        .iter()
        .filter(|(n, ips)| now.get(*n) != Some(ips))
        .count();
    let d = delta(&writes(&c), &before);
    let service_writes: f64 = d
        .iter()
        .filter(|(k, _)| k.contains("services"))
        .map(|(k, v)| if k == "POST services" { 0.0 } else { *v })
        .sum();
    println!(
        "  restart: a new Service assigned {:.2} s after the crash; addresses moved {moved}; Service writes {service_writes:.0} (the new one's included); peak RSS {}",
        working.as_secs_f64(),
        mib(proc_kib(replacement.process.pid(), "VmHWM:"))
    );
}

fn print_rate(request: Request, count: usize, took: Duration) {
    println!(
        "  {} {count} in {:.1} s ({:.0}/s achieved)",
        if request == Request::Create {
            "created"
        } else {
            "deleted"
        },
        took.as_secs_f64(),
        count as f64 / took.as_secs_f64()
    );
}

/// `count` Services `svc-00000`.. selecting the lab's pod (both systems announce a Service only
/// while it has a ready endpoint), created or deleted at `rate`.
fn lab_services_at_rate(
    c: &Cluster,
    api: &Api<Service>,
    request: Request,
    count: usize,
    rate: usize,
) -> BTreeMap<String, Instant> {
    let (sent, took) = bench::at_rate(c, api, request, count, rate, |i| {
        service(
            "bench",
            &format!("svc-{i:05}"),
            json!({"selector": {"app": "web"}}),
        )
    });
    print_rate(request, count, took);
    sent
}

// ---------------------------------------------------------------------------------------------
// A lab with a control plane, kube-proxy on every node, a system installed, and a pod on the
// last node (so that killing an announcing node never takes the backend away).

struct LabEnv {
    speakers: Vec<Option<PodProcess>>,
    _controller: PodProcess,
    _pod: cluster::nodes::SimulatedPod,
    _proxies: Vec<Process>,
    inst: Installed,
    c: Cluster,
    lab: Lab,
}

impl LabEnv {
    /// `announcers` nodes announce (node0..); one more node holds the pod and announces nothing.
    fn start(system: System, announcers: usize) -> LabEnv {
        let lab = Lab::new(LabSpec {
            nodes: announcers + 1,
            ..Default::default()
        })
        .expect("lab");
        let c = Cluster::start().expect("control plane");
        c.register_nodes(&lab).expect("nodes");
        for n in lab.nodes().iter().take(announcers) {
            c.kubectl(&["label", "node", &n.name, "bench/announce=yes"])
                .expect("label");
            // A cut link keeps its IPv6 addresses, as on a carrier loss (the kernel's default
            // flushes them on an administrative down, which is how the lab cuts a link).
            let key = format!("net.ipv6.conf.{}.keep_addr_on_down=1", n.ifname);
            n.exec_ok(&["sysctl", "-q", "-w", &key])
                .expect("keep_addr_on_down");
        }
        let proxies = lab
            .nodes()
            .iter()
            .map(|n| c.start_kube_proxy(n).expect("kube-proxy"))
            .collect();
        let inst = Installed::install(&c, system);
        let controller = inst.controller(&c, "controller-0");
        let speakers = lab
            .nodes()
            .iter()
            .take(announcers)
            .map(|n| Some(inst.speaker(&c, n)))
            .collect();
        c.create_namespace("bench", &[]).expect("namespace");
        let pod = c
            .run_pod(&lab, announcers, "bench", "web-0", &[("app", "web")])
            .expect("pod");
        LabEnv {
            speakers,
            _controller: controller,
            _pod: pod,
            _proxies: proxies,
            inst,
            c,
            lab,
        }
    }

    /// BIRD on the router, passive to the two announcing nodes, and the system's BGP
    /// configuration: one pool advertised over BGP (and over L2 too with `l2`), one BGPPeer;
    /// returns once both sessions are Established.
    fn peer_with_bird(&self, l2: bool) -> Bird {
        let router = self.lab.router();
        let mut cfg = BgpConfig::new(64500, router.ipv4);
        for n in self.lab.nodes().iter().take(2) {
            cfg = cfg.neighbor(Neighbor::new(IpAddr::V4(n.ipv4), 64512).passive());
        }
        let bird = Bird::start(router, &cfg).expect("bird");
        let advertise =
            json!({"ipAddressPools": ["routed"], "nodeSelectors": LabEnv::node_selector()});
        let mut objects = vec![
            (
                "IPAddressPool",
                "routed",
                json!({"addresses": ["10.128.0.0/16"]}),
            ),
            ("BGPAdvertisement", "routed", advertise.clone()),
            (
                "BGPPeer",
                "router",
                json!({"myASN": 64512, "peerASN": 64500, "peerAddress": router.ipv4.to_string(),
                       "nodeSelectors": LabEnv::node_selector()}),
            ),
        ];
        if l2 {
            objects.push(("L2Advertisement", "routed", advertise));
        }
        self.inst.apply(&self.c, &objects);
        for n in self.lab.nodes().iter().take(2) {
            if let Err(e) = bird.wait_established(IpAddr::V4(n.ipv4), Duration::from_secs(120)) {
                let logs: Vec<String> = (self.speakers.iter().flatten())
                    .map(|s| lab::tail(&s.process.log(), 30))
                    .collect();
                panic!(
                    "no session from {}: {e}\nspeakers:\n{}",
                    n.name,
                    logs.join("\n---\n")
                );
            }
        }
        bird
    }

    fn node_selector() -> serde_json::Value {
        json!([{"matchLabels": {"bench/announce": "yes"}}])
    }

    /// The node whose MAC the client's kernel resolved `vip` to for a fresh connection (its own
    /// ARP/NDP, not a tool's: MetalLB's speaker did not answer ndisc6's solicitations here,
    /// while it answered the kernel's).
    fn owner(&self, vip: IpAddr) -> Option<usize> {
        let client = self.lab.client();
        let _ = client.flush_neighbours();
        if !self.served(vip) {
            return None;
        }
        let mac = client.neighbour_mac(vip).ok().flatten()?;
        self.lab.nodes().iter().position(|n| n.mac == mac)
    }

    fn served(&self, vip: IpAddr) -> bool {
        self.lab
            .client()
            .tcp_probe(SocketAddr::new(vip, 80), Duration::from_millis(500))
            .is_ok_and(|p| p.ok)
    }
}

// ---------------------------------------------------------------------------------------------
// Row 2: L2 failover.

#[derive(Clone, Copy, Debug)]
enum Kill {
    /// SIGKILL of the owner's speaker and its link cut (a node lost).
    CrashAndCut,
    /// SIGTERM of the owner's speaker (a rolling update).
    Term,
}

fn l2_row() {
    let trials = arg_usize("--trials", 20);
    println!(
        "## L2 failover: 2 announcing nodes, {trials} trials per kind and family, TCP probe every 5 ms"
    );
    // Every trial's gap, by system and "kind family", across the repetitions.
    let mut all: BTreeMap<(&str, String), Vec<Duration>> = BTreeMap::new();
    for rep in 0..2 {
        for system in System::order(rep) {
            println!("{} (load average {}):", system.name(), load_average());
            for (what, gaps) in l2_trials(system, trials.div_ceil(2)) {
                all.entry((system.name(), what)).or_default().extend(gaps);
            }
        }
    }
    println!("all trials:");
    for ((system, what), mut gaps) in all {
        println!("  {system} {what}: longest gap {}", dist(&mut gaps));
    }
}

fn l2_trials(system: System, trials: usize) -> Vec<(String, Vec<Duration>)> {
    let mut out = Vec::new();
    let mut env = LabEnv::start(system, 2);
    env.inst.apply(
        &env.c,
        &[
            (
                "IPAddressPool",
                "lan",
                json!({"addresses": ["10.0.0.200-10.0.0.209", "fd00::200-fd00::209"]}),
            ),
            (
                "L2Advertisement",
                "lan",
                json!({"ipAddressPools": ["lan"], "nodeSelectors": LabEnv::node_selector()}),
            ),
        ],
    );
    let api: Api<Service> = Api::namespaced(env.c.client(), "bench");
    let mut vips = Vec::new();
    for (name, family) in [("web4", "IPv4"), ("web6", "IPv6")] {
        let svc = service(
            "bench",
            name,
            json!({"selector": {"app": "web"}, "ipFamilies": [family], "ipFamilyPolicy": "SingleStack"}),
        );
        env.c
            .block_on(api.create(&PostParams::default(), &svc))
            .expect("service");
        vips.push(
            env.c
                .wait_ingress("bench", name, Duration::from_secs(60))
                .expect("address")[0],
        );
    }
    for vip in &vips {
        lab::wait_until("served", Duration::from_secs(60), || env.served(*vip)).expect("served");
    }
    for kill in [Kill::CrashAndCut, Kill::Term] {
        for vip in &vips {
            let mut gaps = Vec::new();
            for _ in 0..trials {
                if let Some(g) = l2_trial(&mut env, *vip, kill) {
                    gaps.push(g);
                }
            }
            let family = if vip.is_ipv4() { "IPv4" } else { "IPv6" };
            println!("  {kill:?} {family}: longest gap {}", dist(&mut gaps));
            out.push((format!("{kill:?} {family}"), gaps));
        }
    }
    out
}

/// One failover: the owner's speaker killed (and its link cut); the longest gap the probe saw;
/// then the node and its speaker back, and settled.
fn l2_trial(env: &mut LabEnv, vip: IpAddr, kill: Kill) -> Option<Duration> {
    let settle = |env: &LabEnv| {
        lab::wait_until(
            "the address served and owned",
            Duration::from_secs(60),
            || env.owner(vip).is_some() && env.served(vip),
        )
    };
    if let Err(e) = settle(env) {
        let nd = match vip {
            IpAddr::V6(v6) => format!(
                "{:?}",
                env.lab.client().ndisc(v6, Duration::from_millis(500))
            ),
            IpAddr::V4(v4) => format!(
                "{:?}",
                env.lab.client().arping(v4, Duration::from_millis(500))
            ),
        };
        eprintln!(
            "  {kill:?} {vip}: not settled before the trial: {e} (owner {:?}, served {}, neighbour discovery {nd})",
            env.owner(vip),
            env.served(vip)
        );
        return None;
    }
    // The owner stable for 2 s (a restarted speaker may take its addresses back first).
    let mut o = env.owner(vip);
    for _ in 0..15 {
        std::thread::sleep(Duration::from_secs(2));
        let now = env.owner(vip);
        if now.is_some() && now == o && env.served(vip) {
            break;
        }
        o = now;
    }
    let Some(o) = o else {
        eprintln!("  {kill:?} {vip}: no owner");
        return None;
    };
    let probe = match env.lab.client().start_outage_probe(
        SocketAddr::new(vip, 80),
        Duration::from_millis(5),
        Duration::from_millis(100),
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("  {kill:?} {vip}: probe: {e}");
            return None;
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    let node = env.lab.node(o).clone();
    let Some(mut speaker) = env.speakers[o].take() else {
        eprintln!("  {kill:?} {vip}: node {o} answers without a speaker");
        return None;
    };
    let mut routes = Vec::new();
    match kill {
        Kill::CrashAndCut => {
            routes = node.gateway_routes().expect("the node's routes");
            let _ = node.link_down();
            speaker.process.signal(Signal::Kill);
        }
        Kill::Term => {
            speaker.terminate();
        }
    }
    let start = Instant::now();
    let recovered = lab::wait_until("served again", Duration::from_secs(60), || {
        env.lab
            .client()
            .tcp_probe(SocketAddr::new(vip, 80), Duration::from_millis(100))
            .is_ok_and(|p| p.ok)
    });
    if recovered.is_ok() {
        std::thread::sleep(Duration::from_millis(500).max(start.elapsed() / 10));
    }
    let report = probe.stop();
    speaker.process.kill();
    drop(speaker);
    let _ = node.link_up();
    if let Err(e) = node.restore_routes(&routes) {
        eprintln!("  restoring {}'s routes: {e}", node.name);
    }
    env.speakers[o] = Some(env.inst.speaker(&env.c, &node));
    if let Err(e) = &recovered {
        eprintln!("  {kill:?} {vip}: not served again: {e} ({report:?})");
    }
    recovered.ok().map(|_| report.longest_gap)
}

// ---------------------------------------------------------------------------------------------
// Row 3: BGP.

fn bgp_row() {
    let sizes: Vec<usize> = arg("--services")
        .unwrap_or_else(|| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    println!("## BGP: 2 nodes to one BIRD; Services created at up to 200/s");
    for (rep, size) in sizes.iter().enumerate() {
        for system in System::order(rep) {
            println!(
                "{} with {size} Services (load average {}):",
                system.name(),
                load_average()
            );
            bgp_trial(system, *size);
        }
    }
}

/// BIRD's imported route count and received updates per neighbour, from `show protocols all`.
fn bird_counts(bird: &Bird) -> Vec<(u64, u64, u64)> {
    let text = bird
        .birdc(&["show", "protocols", "all"])
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut cur: Option<(u64, u64, u64)> = None;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("Routes:") {
            let n = l
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            cur = Some((n, 0, 0));
        }
        if let (Some(c), true) = (cur.as_mut(), l.starts_with("Import updates:")) {
            c.1 = l
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
        if let (Some(c), true) = (cur.as_mut(), l.starts_with("Import withdraws:")) {
            c.2 = l
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            out.push(*c);
            cur = None;
        }
    }
    out
}

/// BGP UPDATE messages seen on the wire, by sender, in a `tcpdump -v` log (tcpdump prints each
/// BGP message of a segment; a message whose header straddles two segments is missed, rare).
fn updates_by_sender(log: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut sender = String::new();
    for line in log.lines() {
        if let Some((left, _)) = line.split_once(" > ") {
            // "... 10.0.0.1.40123 > 10.0.0.254.179: ..." : the sender's address without the port.
            sender = left
                .rsplit(' ')
                .next()
                .and_then(|a| a.rsplit_once('.'))
                .map(|(ip, _)| ip.to_string())
                .unwrap_or_default();
        }
        if line.contains("Update Message (2)") {
            *out.entry(sender.clone()).or_insert(0) += 1;
        }
    }
    out
}

/// The time from the k-th request to the first poll at which `reached(k)` held, for each k;
/// `polls` are (time, routes on the node with the fewest/most) in order.
fn kth_latency(
    sent: &BTreeMap<String, Instant>,
    polls: &[(Instant, usize)],
    reached: impl Fn(usize, usize) -> bool,
) -> Vec<Duration> {
    let mut order: Vec<Instant> = sent.values().copied().collect();
    order.sort();
    let mut out = Vec::new();
    let mut p = 0;
    for (k, t) in order.iter().enumerate() {
        while p < polls.len() && !reached(polls[p].1, k + 1) {
            p += 1;
        }
        if let Some((at, _)) = polls.get(p) {
            out.push(at.saturating_duration_since(*t));
        }
    }
    out
}

fn bgp_trial(system: System, count: usize) {
    let env = LabEnv::start(system, 2);
    let router = env.lab.router();
    let bird = env.peer_with_bird(false);
    std::thread::sleep(Duration::from_secs(2));
    let api: Api<Service> = Api::namespaced(env.c.client(), "bench");
    let rate = 200;

    // Polls BIRD every 50 ms while `op` runs at `rate`: (time, fewest routes, most routes).
    let run = |op: Request, until: &(dyn Fn(usize, usize) -> bool + Sync)| {
        let capture = lab::Capture::start(router, "tcp dst port 179").expect("tcpdump");
        // Polled until `until` holds, or 10 minutes after the last request was sent.
        let sent_all: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
        let (sent, polls) = std::thread::scope(|s| {
            let poller = s.spawn(|| {
                let mut polls: Vec<(Instant, usize, usize)> = Vec::new();
                let started = Instant::now();
                let give_up = || match *sent_all.lock().expect("lock") {
                    Some(t) => t.elapsed() > Duration::from_secs(600),
                    None => started.elapsed() > Duration::from_secs(3600),
                };
                while !give_up() {
                    let routes: Vec<usize> =
                        bird_counts(&bird).iter().map(|c| c.0 as usize).collect();
                    let (lo, hi) = (
                        routes.iter().copied().min().unwrap_or(0),
                        routes.iter().copied().max().unwrap_or(0),
                    );
                    polls.push((Instant::now(), lo, hi));
                    if until(lo, hi) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                polls
            });
            let sent = lab_services_at_rate(&env.c, &api, op, count, rate);
            *sent_all.lock().expect("lock") = Some(Instant::now());
            (sent, poller.join().expect("poller"))
        });
        std::thread::sleep(Duration::from_secs(2));
        let updates = updates_by_sender(&capture.stop());
        (sent, polls, updates)
    };

    // Announce: the k-th create counted in at the first poll that shows k routes from both nodes.
    let (sent, polls, updates) = run(Request::Create, &|lo, _| lo >= count);
    let fewest: Vec<(Instant, usize)> = polls.iter().map(|p| (p.0, p.1)).collect();
    let mut latency = kth_latency(&sent, &fewest, |routes, k| routes >= k);
    let last = sent.values().max().copied().unwrap_or_else(Instant::now);
    let all_in = fewest
        .iter()
        .find(|p| p.1 >= count)
        .map(|p| p.0.saturating_duration_since(last));
    println!(
        "  create -> route in BIRD from both nodes (k-th create to k routes): {}",
        dist(&mut latency)
    );
    println!(
        "  all {count} routes in BIRD {} after the last create; UPDATE messages per node {updates:?} ({:.3} per Service)",
        all_in
            .map(|d| format!("{:.2} s", d.as_secs_f64()))
            .unwrap_or_else(|| "never".into()),
        updates.values().sum::<u64>() as f64 / (2 * count) as f64
    );
    let speaker_rss: Vec<String> = env
        .speakers
        .iter()
        .flatten()
        .map(|s| mib(proc_kib(s.process.pid(), "VmHWM:")))
        .collect();
    let speaker_cpu: Vec<String> = env
        .speakers
        .iter()
        .flatten()
        .map(|s| format!("{:.1} s", cpu_seconds(s.process.pid())))
        .collect();
    println!("  speakers' peak RSS {speaker_rss:?}, CPU since start {speaker_cpu:?}");

    // Withdraw: the k-th delete counted out at the first poll that shows count-k routes or
    // fewer from both nodes.
    let (sent, polls, updates) = run(Request::Delete, &|_, hi| hi == 0);
    let most: Vec<(Instant, usize)> = polls.iter().map(|p| (p.0, p.2)).collect();
    let mut latency = kth_latency(&sent, &most, |routes, k| routes <= count - k);
    let last = sent.values().max().copied().unwrap_or_else(Instant::now);
    let all_out = most
        .iter()
        .find(|p| p.1 == 0)
        .map(|p| p.0.saturating_duration_since(last));
    println!(
        "  delete -> withdrawn from BIRD on both nodes (k-th delete to count-k routes): {}",
        dist(&mut latency)
    );
    println!(
        "  none in BIRD {} after the last delete; UPDATE messages per node {updates:?} ({:.3} per Service)",
        all_out
            .map(|d| format!("{:.2} s", d.as_secs_f64()))
            .unwrap_or_else(|| "never".into()),
        updates.values().sum::<u64>() as f64 / (2 * count) as f64
    );
}

// ---------------------------------------------------------------------------------------------
// Row 4: footprint at rest.

fn footprint_row() {
    let count = arg_usize("--services", 1000);
    println!("## footprint: 2 nodes, L2 and BGP, {count} Services, then 60 s idle");
    for system in System::order(0) {
        let env = LabEnv::start(system, 2);
        let bird = env.peer_with_bird(true);
        let api: Api<Service> = Api::namespaced(env.c.client(), "bench");
        lab_services_at_rate(&env.c, &api, Request::Create, count, 200);
        lab::wait_until("all routes in BIRD", Duration::from_secs(600), || {
            bird_counts(&bird).iter().all(|c| c.0 as usize >= count)
        })
        .expect("routes");
        std::thread::sleep(Duration::from_secs(5));
        let pids: Vec<(String, u32)> =
            std::iter::once(("controller".to_string(), env._controller.process.pid()))
                .chain(
                    env.speakers
                        .iter()
                        .flatten()
                        .map(|s| (s.name.clone(), s.process.pid())),
                )
                .collect();
        let cpu0: Vec<f64> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
        std::thread::sleep(Duration::from_secs(60));
        println!("{} (load average {}):", system.name(), load_average());
        for ((name, pid), c0) in pids.iter().zip(cpu0) {
            println!(
                "  {name}: RSS {} (peak {}), CPU {:.2} s over 60 s idle",
                mib(proc_kib(*pid, "VmRSS:")),
                mib(proc_kib(*pid, "VmHWM:")),
                cpu_seconds(*pid) - c0
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MetalLB's own configuration samples, with the API group renamed.

fn samples_row() {
    // MetalLB's module source (Go downloads it; the samples need no MetalLB build).
    let out = std::process::Command::new("go")
        .args(["mod", "download", "-json", "go.universe.tf/metallb"])
        .current_dir(cluster::workspace_root().join("tools/metallb"))
        .output()
        .expect("go");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("go's JSON");
    let dir = PathBuf::from(info["Dir"].as_str().expect("Dir")).join("configsamples");
    let c = Cluster::start().expect("control plane");
    c.helm_install(flb::RELEASE, flb::NAMESPACE, &["controller.replicas=1"])
        .expect("helm install");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("configsamples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    println!(
        "## MetalLB's configsamples ({}), group renamed to ferrolb.io",
        dir.display()
    );
    for f in files
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
    {
        println!(
            "  {}: {}",
            f.file_name().unwrap_or_default().to_string_lossy(),
            sample_outcome(&c, f)
        );
    }
}

/// The file with only its group (and namespace) renamed, then through `ferrolb migrate`'s
/// conversion: each given to the API server and the config model.
fn sample_outcome(c: &Cluster, file: &Path) -> String {
    let original = std::fs::read_to_string(file).unwrap_or_default();
    let renamed = original
        .replace("metallb.io/", "ferrolb.io/")
        .replace("metallb-system", "ferrolb-system");
    let migrated = match ferrolb_config::migrate::migrate(&original, "ferrolb-system") {
        Ok(m) => {
            let left: Vec<String> = (m.report.iter())
                .filter(|l| !matches!(l.what, ferrolb_config::migrate::Outcome::Carried))
                .filter(|l| !matches!(l.what, ferrolb_config::migrate::Outcome::LeftOut(_)))
                .map(|l| l.to_string())
                .collect();
            let said = if left.is_empty() {
                String::new()
            } else {
                format!(" (report: {})", left.join("; "))
            };
            format!("{}{said}", one_outcome(c, &m.yaml))
        }
        Err(e) => format!("not read: {e}"),
    };
    format!(
        "renamed: {} | migrated: {migrated}",
        one_outcome(c, &renamed)
    )
}

fn one_outcome(c: &Cluster, text: &str) -> String {
    if text.trim().is_empty() {
        return "nothing to apply".into();
    }
    // The API server's verdict (schema, CEL), without storing anything.
    let server = c.kubectl_with_stdin(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        Some(text),
    );
    let server = match server {
        Ok(_) => "the API server accepts it".to_string(),
        Err(lab::LabError::Command { stderr, .. }) => {
            format!(
                "the API server refuses it: {}",
                stderr.lines().next().unwrap_or("?").trim()
            )
        }
        Err(e) => format!("could not ask the API server: {e}"),
    };
    // The config model's verdict on the file's ferrolb.io objects alone (each on its own, as
    // the controller builds them).
    let model = match ferrolb_config::parse_documents(text) {
        Err(e) => format!("not read: {e}"),
        Ok(docs) => {
            let built = ferrolb_config::LastGood::default().build(&docs.config);
            if built.errors.0.is_empty() {
                "the config model accepts it".into()
            } else {
                format!(
                    "the config model refuses: {}",
                    built.errors.to_string().replace('\n', " ")
                )
            }
        }
    };
    format!("{server}; {model}")
}

fn main() {
    if !(lab::require_lab() && cluster::require_cluster()) {
        std::process::exit(2);
    }
    let samples_only = std::env::args().nth(1).as_deref() == Some("samples");
    if !samples_only
        && cluster::tools()
            .ok()
            .and_then(|t| t.metallb.as_ref())
            .is_none()
    {
        eprintln!(
            "MetalLB is not built: run scripts/build-tools.sh --metallb (and FERROLB_TOOLS_BIN to its output)"
        );
        std::process::exit(2);
    }
    println!(
        "ferrolb vs MetalLB v0.16.1 on kube-apiserver v1.37.2, {} CPUs, load average {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load_average()
    );
    match std::env::args().nth(1).as_deref() {
        Some("controller") => controller_row(),
        Some("l2") => l2_row(),
        Some("bgp") => bgp_row(),
        Some("footprint") => footprint_row(),
        Some("samples") => samples_row(),
        _ => {
            eprintln!("usage: metallb_bench controller|l2|bgp|footprint|samples [options]");
            std::process::exit(2);
        }
    }
}
