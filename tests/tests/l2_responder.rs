//! Layer 2 mode on real packets: the election picks an owner, a responder runs on every node,
//! and the client's own tools (arping, ndisc6, the kernel's neighbour table, tcpdump) must see
//! exactly the owner, before and after a failover.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use ferrolb_announce::election::{self, Cluster, Interfaces, Node, Service};
use ferrolb_announce::l2::{Applied, Responder, ResponderConfig, Stats};
use ferrolb_config::{Config, L2Advertisement};
use ferrolb_tests::lab::{self, Capture, Host, Lab, LabSpec, MacAddr, NetnsThread};

const T: Duration = Duration::from_secs(2);

// ---- the election, as every speaker would run it ----

fn config() -> Config {
    Config {
        l2_advertisements: vec![L2Advertisement {
            name: "lan".into(),
            pools: BTreeSet::from(["lan".to_string()]),
            node_selectors: vec![],
            interfaces: BTreeSet::new(),
            service_selectors: vec![],
        }],
        ..Default::default()
    }
}

fn service(ips: &[IpAddr]) -> Service {
    Service {
        name: "default/web".into(),
        ips: ips.to_vec(),
        pool: "lan".into(),
        has_serving_endpoint: true,
        ..Default::default()
    }
}

fn nodes(lab: &Lab) -> Vec<Node> {
    lab.nodes()
        .iter()
        .map(|h| Node {
            name: h.name.clone(),
            labels: Default::default(),
            network_unavailable: false,
        })
        .collect()
}

/// What each node must announce for `svc` when `live` speakers are up.
fn plan(lab: &Lab, live: &[&str], svc: &Service) -> BTreeMap<String, BTreeMap<IpAddr, Interfaces>> {
    plan_with(&config(), &nodes(lab), live, svc)
}

/// [`plan`] with an explicit config and Node list.
fn plan_with(
    cfg: &Config,
    nodes: &[Node],
    live: &[&str],
    svc: &Service,
) -> BTreeMap<String, BTreeMap<IpAddr, Interfaces>> {
    let live: BTreeSet<String> = live.iter().map(|s| s.to_string()).collect();
    let cluster = Cluster {
        shared: &Default::default(),
        config: cfg,
        nodes,
        live: &live,
        ignore_exclude_label: false,
    };
    nodes
        .iter()
        .map(|n| {
            let mine = election::decide(&cluster, svc, &n.name)
                .into_iter()
                .filter_map(|(ip, d)| d.ok().map(|a| (ip, a.interfaces)))
                .collect();
            (n.name.clone(), mine)
        })
        .collect()
}

/// The first VIP from `candidates` that the election gives to `owner` with every node live.
fn vip_owned_by(lab: &Lab, owner: &str, candidates: impl Iterator<Item = IpAddr>) -> IpAddr {
    let names: Vec<String> = lab.nodes().iter().map(|h| h.name.clone()).collect();
    let live: Vec<&str> = names.iter().map(String::as_str).collect();
    candidates
        .into_iter()
        .find(|ip| plan(lab, &live, &service(&[*ip]))[owner].contains_key(ip))
        .expect("some candidate VIP hashes to the owner")
}

fn v4_candidates() -> impl Iterator<Item = IpAddr> {
    (200..=250u8).map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
}

fn v6_candidates() -> impl Iterator<Item = IpAddr> {
    (0x200..=0x250u16).map(|i| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i)))
}

// ---- a responder running inside a node's namespace ----

enum Cmd {
    Announce(
        BTreeMap<IpAddr, Interfaces>,
        Sender<Result<Applied, String>>,
    ),
    Stats(Sender<Stats>),
}

/// A [`Responder`] on its own thread in a node's namespace; stopped (threads joined) on drop.
struct NodeResponder {
    name: String,
    tx: Option<Sender<Cmd>>,
    thread: Option<NetnsThread<()>>,
}

impl NodeResponder {
    fn start(host: &Host) -> NodeResponder {
        let (tx, rx): (Sender<Cmd>, Receiver<Cmd>) = mpsc::channel();
        let thread = host
            .spawn_thread(move || {
                let mut responder = Responder::new(ResponderConfig::default());
                // Bounded: the test drops the sender when done; 5 minutes is a safety net.
                while let Ok(cmd) = rx.recv_timeout(Duration::from_secs(300)) {
                    match cmd {
                        Cmd::Announce(desired, reply) => {
                            let _ =
                                reply.send(responder.announce(&desired).map_err(|e| e.to_string()));
                        }
                        Cmd::Stats(reply) => {
                            let _ = reply.send(responder.stats());
                        }
                    }
                }
                responder.stop();
            })
            .unwrap();
        NodeResponder {
            name: host.name.clone(),
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    fn announce(&self, desired: BTreeMap<IpAddr, Interfaces>) -> Applied {
        let (tx, rx) = mpsc::channel();
        self.tx
            .as_ref()
            .unwrap()
            .send(Cmd::Announce(desired, tx))
            .unwrap();
        rx.recv_timeout(T)
            .unwrap()
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    fn stats(&self) -> Stats {
        let (tx, rx) = mpsc::channel();
        self.tx.as_ref().unwrap().send(Cmd::Stats(tx)).unwrap();
        rx.recv_timeout(T).unwrap()
    }

    /// Stops the responder and waits for its threads; returns how long that took.
    fn stop(&mut self) -> Duration {
        let start = Instant::now();
        self.tx.take();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        start.elapsed()
    }
}

impl Drop for NodeResponder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a responder on every node and applies the plan for `svc` with every node live.
fn start_all(lab: &Lab, svc: &Service) -> Vec<NodeResponder> {
    start_each(lab, std::slice::from_ref(svc))
}

/// One Service per VIP (a Service's addresses are elected together, by its first one).
fn one_each(vips: &[IpAddr]) -> Vec<Service> {
    vips.iter()
        .enumerate()
        .map(|(i, vip)| Service {
            name: format!("default/web-{i}"),
            ..service(&[*vip])
        })
        .collect()
}

/// Responders on every node announcing what the election gives each for `services`.
fn start_each(lab: &Lab, services: &[Service]) -> Vec<NodeResponder> {
    let names: Vec<String> = lab.nodes().iter().map(|h| h.name.clone()).collect();
    let live: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut plan: BTreeMap<String, BTreeMap<IpAddr, Interfaces>> = BTreeMap::new();
    for svc in services {
        for (node, ips) in self::plan(lab, &live, svc) {
            plan.entry(node).or_default().extend(ips);
        }
    }
    lab.nodes()
        .iter()
        .map(|h| {
            let r = NodeResponder::start(h);
            let applied = r.announce(plan.get(&h.name).cloned().unwrap_or_default());
            for (ip, ifs) in &applied.interfaces {
                assert_eq!(
                    ifs,
                    &BTreeSet::from(["eth0".to_string()]),
                    "{ip} on {}",
                    h.name
                );
            }
            r
        })
        .collect()
}

// ---- an independent witness: tcpdump on the client ----

// lab::Capture: tcpdump on the client, started before the frames of interest.

fn mentions(line: &str, ip: IpAddr) -> bool {
    let ip = ip.to_string();
    line.split(|c: char| c.is_whitespace() || c == ',')
        .any(|w| w == ip || w.trim_end_matches(':') == ip)
}

fn mac_of(lab: &Lab, name: &str) -> MacAddr {
    lab.nodes().iter().find(|h| h.name == name).unwrap().mac
}

// ---- tests ----

#[test]
fn arp_only_the_elected_owner_answers() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let client = lab.client();
    let vips = [
        vip_owned_by(&lab, "node0", v4_candidates()),
        vip_owned_by(&lab, "node1", v4_candidates()),
    ];
    let capture = Capture::start(client, "arp").unwrap();
    let responders = start_each(&lab, &one_each(&vips));
    for (vip, owner) in vips.iter().zip(["node0", "node1"]) {
        let IpAddr::V4(v4) = vip else { unreachable!() };
        let reply = client.arping(*v4, T).unwrap().expect("the owner answers");
        assert_eq!(
            reply.mac,
            mac_of(&lab, owner),
            "{vip} must be answered by {owner}"
        );
    }
    let log = capture.stop();
    let client_mac = client.mac.to_string();
    for (vip, owner) in vips.iter().zip(["node0", "node1"]) {
        let senders: BTreeSet<String> = log
            .lines()
            .filter(|l| mentions(l, *vip))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .filter(|m| *m != client_mac)
            .collect();
        assert_eq!(
            senders,
            BTreeSet::from([mac_of(&lab, owner).to_string()]),
            "every ARP frame about {vip} (replies and the gratuitous burst) comes from {owner}:\n{log}"
        );
        assert!(
            log.lines()
                .any(|l| mentions(l, *vip) && l.contains("Reply") && l.contains("is-at")),
            "{log}"
        );
    }
    // Each responder heard the other's VIP asked for and kept quiet.
    for (r, vip) in responders.iter().zip(&vips) {
        // 6 rounds (1 + 5 repeats) of request + reply, and no more.
        lab::wait_until("the burst ends", T, || r.stats().total.gratuitous >= 12).unwrap();
        thread::sleep(Duration::from_millis(300));
        let s = r.stats();
        assert_eq!(s.total.gratuitous, 12, "{}: {s:?}", r.name);
        assert!(s.total.arp_replies >= 1, "{}: {s:?}", r.name);
        assert!(
            s.total.not_owned >= 1,
            "{} heard the other VIP's request: {s:?}",
            r.name
        );
        // The same per interface (the node's one LAN interface) and per address it owns.
        assert_eq!(s.interfaces.len(), 1, "{s:?}");
        assert_eq!(s.interfaces.values().next(), Some(&s.total), "{s:?}");
        let own = s.addresses.get(vip).copied().unwrap_or_default();
        assert_eq!(own.gratuitous, 12, "{}: {s:?}", r.name);
        assert!(
            own.requests >= 1 && own.responses == s.total.arp_replies,
            "{s:?}"
        );
        assert_eq!(s.addresses.len(), 1, "only its own address: {s:?}");
    }
}

#[test]
fn ndp_only_the_elected_owner_answers() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let client = lab.client();
    let vips = [
        vip_owned_by(&lab, "node0", v6_candidates()),
        vip_owned_by(&lab, "node1", v6_candidates()),
    ];
    let capture = Capture::start(client, "icmp6").unwrap();
    let responders = start_each(&lab, &one_each(&vips));
    for (vip, owner) in vips.iter().zip(["node0", "node1"]) {
        let IpAddr::V6(v6) = vip else { unreachable!() };
        let reply = client.ndisc(*v6, T).unwrap().expect("the owner advertises");
        assert_eq!(
            reply.mac,
            mac_of(&lab, owner),
            "{vip} must be answered by {owner}"
        );
    }
    let log = capture.stop();
    for (vip, owner) in vips.iter().zip(["node0", "node1"]) {
        let tgt = format!("tgt is {vip}");
        let senders: BTreeSet<String> = log
            .lines()
            .filter(|l| l.contains("neighbor advertisement") && l.contains(&tgt))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect();
        assert_eq!(
            senders,
            BTreeSet::from([mac_of(&lab, owner).to_string()]),
            "every NA for {vip} comes from {owner}:\n{log}"
        );
    }
    for r in &responders {
        lab::wait_until("the burst ends", T, || r.stats().total.gratuitous >= 6).unwrap();
        thread::sleep(Duration::from_millis(300));
        let s = r.stats();
        assert_eq!(
            s.total.gratuitous, 6,
            "{}: 6 unsolicited NAs: {s:?}",
            r.name
        );
        assert!(s.total.na_replies >= 1, "{}: {s:?}", r.name);
        let own: u64 = s.addresses.values().map(|a| a.responses).sum();
        assert_eq!(own, s.total.na_replies, "{s:?}");
    }
}

/// The client reaches a backend through the owner (kube-proxy stand-in on both nodes); when the
/// owner dies, the survivor takes over and the client's neighbour entries (IPv4 and IPv6) move
/// to the survivor's MAC by its gratuitous burst alone, then TCP works via the survivor.
#[test]
fn failover_moves_the_client_to_the_new_owner() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let client = lab.client();
    let v4 = vip_owned_by(&lab, "node0", v4_candidates());
    // An IPv6 VIP owned by the same node, so one death moves both.
    let v6 = vip_owned_by(&lab, "node0", v6_candidates());
    let svc = service(&[v4, v6]);
    let mut backends = Vec::new();
    for h in lab.nodes() {
        for vip in [v4, v6] {
            let local = h.ip(vip.is_ipv6());
            backends.push(
                h.start_tcp_backend(SocketAddr::new(local, 8080), &h.name)
                    .unwrap(),
            );
            h.install_service_dnat(vip, 80, local, 8080).unwrap();
        }
    }
    let mut responders = start_all(&lab, &svc);

    for vip in [v4, v6] {
        let probe = client.tcp_probe(SocketAddr::new(vip, 80), T).unwrap();
        assert!(probe.ok, "{vip}: {probe:?}");
        assert!(
            probe.response.starts_with("node0 "),
            "{vip} via the owner: {probe:?}"
        );
        assert_eq!(
            client.neighbour_mac(vip).unwrap(),
            Some(mac_of(&lab, "node0"))
        );
    }

    // node0 dies: its responder stops and its link goes down. The survivor learns it from
    // membership (here: the test recomputes the election with node0 gone).
    let stop_took = responders[0].stop();
    assert!(
        stop_took < Duration::from_secs(1),
        "stopping took {stop_took:?}"
    );
    lab.node(0).link_down().unwrap();
    let killed = Instant::now();
    let survivor_plan = plan(&lab, &["node1"], &svc);
    assert_eq!(survivor_plan["node1"].len(), 2, "node1 now owns both");
    responders[1].announce(survivor_plan["node1"].clone());

    // No client traffic: only the gratuitous burst can move the entries.
    for vip in [v4, v6] {
        lab::wait_until(
            &format!("client's neighbour entry for {vip} moves to node1"),
            Duration::from_secs(3),
            || client.neighbour_mac(vip).ok().flatten() == Some(mac_of(&lab, "node1")),
        )
        .unwrap();
    }
    for vip in [v4, v6] {
        let probe = client.tcp_probe(SocketAddr::new(vip, 80), T).unwrap();
        assert!(probe.ok, "{vip}: {probe:?}");
        assert!(
            probe.response.starts_with("node1 "),
            "{vip} via the survivor: {probe:?}"
        );
    }
    eprintln!(
        "failover to a working TCP exchange (both families): {:?}",
        killed.elapsed()
    );

    // Nothing answers once the survivor stops too: the VIP was never on an interface.
    responders[1].stop();
    client.flush_neighbours().unwrap();
    let IpAddr::V4(v4addr) = v4 else {
        unreachable!()
    };
    assert_eq!(client.arping(v4addr, Duration::from_secs(1)).unwrap(), None);
    let IpAddr::V6(v6addr) = v6 else {
        unreachable!()
    };
    assert_eq!(
        client.ndisc(v6addr, Duration::from_millis(500)).unwrap(),
        None
    );
}

/// Losing ownership (the election moved the IP elsewhere) stops answers at once.
#[test]
fn a_node_that_loses_an_ip_stops_answering() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let client = lab.client();
    let vip = vip_owned_by(&lab, "node1", v4_candidates());
    let IpAddr::V4(v4) = vip else { unreachable!() };
    let responders = start_all(&lab, &service(&[vip]));
    assert_eq!(
        client.arping(v4, T).unwrap().map(|r| r.mac),
        Some(mac_of(&lab, "node1"))
    );
    // The Service loses its last endpoint: nobody announces.
    let mut gone = service(&[vip]);
    gone.has_serving_endpoint = false;
    let names = ["node0", "node1"];
    let p = plan(&lab, &names, &gone);
    for (r, n) in responders.iter().zip(names) {
        assert!(p[n].is_empty());
        r.announce(p[n].clone());
    }
    assert_eq!(client.arping(v4, Duration::from_secs(1)).unwrap(), None);
}

/// Announces `plan` on the responders (in node order) and returns what the client's arping sees.
fn apply_and_arp(
    lab: &Lab,
    responders: &[NodeResponder],
    plan: &BTreeMap<String, BTreeMap<IpAddr, Interfaces>>,
    vip: Ipv4Addr,
) -> Option<MacAddr> {
    for r in responders {
        r.announce(plan[&r.name].clone());
    }
    lab.client().flush_neighbours().unwrap();
    lab.client()
        .arping(vip, Duration::from_secs(1))
        .unwrap()
        .map(|r| r.mac)
}

/// externalTrafficPolicy=Local: only a node with a local endpoint announces, and the IP follows
/// the endpoint when it moves, whatever the hash prefers.
#[test]
fn etp_local_follows_the_endpoints() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    // The hash prefers node0, so the policy is what moves it to node1.
    let vip = vip_owned_by(&lab, "node0", v4_candidates());
    let IpAddr::V4(v4) = vip else { unreachable!() };
    let responders: Vec<NodeResponder> = lab.nodes().iter().map(NodeResponder::start).collect();
    let (cfg, nodes) = (config(), nodes(&lab));
    let live = ["node0", "node1"];
    let mut svc = service(&[vip]);
    svc.traffic_policy = election::TrafficPolicy::Local;
    svc.local_endpoint_nodes = BTreeSet::from(["node1".to_string()]);
    let p = plan_with(&cfg, &nodes, &live, &svc);
    assert_eq!(
        apply_and_arp(&lab, &responders, &p, v4),
        Some(mac_of(&lab, "node1"))
    );
    // The endpoint moves to node0.
    svc.local_endpoint_nodes = BTreeSet::from(["node0".to_string()]);
    let p = plan_with(&cfg, &nodes, &live, &svc);
    assert_eq!(
        apply_and_arp(&lab, &responders, &p, v4),
        Some(mac_of(&lab, "node0"))
    );
    // No endpoint anywhere: nobody answers.
    svc.local_endpoint_nodes.clear();
    svc.has_serving_endpoint = false;
    let p = plan_with(&cfg, &nodes, &live, &svc);
    assert_eq!(apply_and_arp(&lab, &responders, &p, v4), None);
}

/// nodeSelectors pick who may announce; the advertisement's interface list picks where.
#[test]
fn node_and_interface_selectors_are_honoured() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let vip = vip_owned_by(&lab, "node0", v4_candidates());
    let IpAddr::V4(v4) = vip else { unreachable!() };
    let responders: Vec<NodeResponder> = lab.nodes().iter().map(NodeResponder::start).collect();
    let mut nodes = nodes(&lab);
    nodes[1].labels.insert("edge".into(), "true".into());
    let live = ["node0", "node1"];
    let svc = service(&[vip]);
    let edge_only =
        ferrolb_config::selector::Selector::compile(&ferrolb_config::api::LabelSelector {
            match_labels: Some(BTreeMap::from([("edge".to_string(), "true".to_string())])),
            ..Default::default()
        })
        .unwrap();

    // Only node1 is selected, although the hash prefers node0.
    let mut cfg = config();
    cfg.l2_advertisements[0].node_selectors = vec![edge_only];
    let p = plan_with(&cfg, &nodes, &live, &svc);
    assert_eq!(
        apply_and_arp(&lab, &responders, &p, v4),
        Some(mac_of(&lab, "node1"))
    );

    // The advertisement names an interface the node does not have: the owner answers nowhere.
    cfg.l2_advertisements[0].interfaces = BTreeSet::from(["eth1".to_string()]);
    let p = plan_with(&cfg, &nodes, &live, &svc);
    let applied = responders[1].announce(p["node1"].clone());
    assert_eq!(applied.interfaces[&vip], BTreeSet::new());
    assert_eq!(
        applied.skipped.get("eth0"),
        Some(&ferrolb_announce::l2::iface::Skip::NotSelected)
    );
    assert_eq!(apply_and_arp(&lab, &responders, &p, v4), None);

    // Naming eth0 brings it back.
    cfg.l2_advertisements[0].interfaces = BTreeSet::from(["eth0".to_string()]);
    let p = plan_with(&cfg, &nodes, &live, &svc);
    assert_eq!(
        apply_and_arp(&lab, &responders, &p, v4),
        Some(mac_of(&lab, "node1"))
    );
}
