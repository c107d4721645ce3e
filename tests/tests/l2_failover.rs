//! Layer 2 failover end to end: a speaker agent (SWIM membership + election + responder) on
//! each node, kube-proxy stand-ins and backends on both, and the client's TCP probes deciding
//! when service is back via the new owner.
//!
//! `failover_measurement` is the benchmark behind BENCHMARKS.md; it is ignored by default:
//! `cargo test -p ferrolb-tests --test l2_failover -- --ignored --nocapture`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ferrolb_announce::election::{self, Cluster, Node, Service};
use ferrolb_announce::l2::ResponderConfig;
use ferrolb_announce::l2::agent::{Agent, Inputs};
use ferrolb_announce::membership::{MembershipConfig, Timing};
use ferrolb_config::{Config, L2Advertisement};
use ferrolb_tests::lab::{self, Capture, Host, Lab, LabSpec, TcpBackend, arp_repliers};

const PORT: u16 = 7946;

fn inputs(lab: &Lab, vip: IpAddr) -> Inputs {
    Inputs {
        config: Config {
            l2_advertisements: vec![L2Advertisement {
                name: "lan".into(),
                pools: BTreeSet::from(["lan".to_string()]),
                node_selectors: vec![],
                interfaces: BTreeSet::new(),
                service_selectors: vec![],
            }],
            ..Default::default()
        },
        nodes: lab
            .nodes()
            .iter()
            .map(|h| Node {
                name: h.name.clone(),
                labels: Default::default(),
                network_unavailable: false,
            })
            .collect(),
        services: vec![Service {
            name: "default/web".into(),
            ips: vec![vip],
            pool: "lan".into(),
            has_serving_endpoint: true,
            ..Default::default()
        }],
        ignore_exclude_label: false,
        quorum: 0,
    }
}

/// A VIP that the election gives to node0 when every node of the lab is live (so node0 is the
/// one to kill or cut off).
fn vip_for_node0(lab: &Lab) -> IpAddr {
    let live: BTreeSet<String> = lab.nodes().iter().map(|h| h.name.clone()).collect();
    (200..=250u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
        .find(|ip| {
            let inp = inputs(lab, *ip);
            let cluster = Cluster {
                shared: &Default::default(),
                config: &inp.config,
                nodes: &inp.nodes,
                live: &live,
                ignore_exclude_label: false,
            };
            election::owner(&cluster, &inp.services[0], *ip).is_ok_and(|a| a.node == "node0")
        })
        .expect("a VIP owned by node0")
}

fn start_agent(lab: &Lab, host: &Host, vip: IpAddr) -> Agent {
    start_agent_with_quorum(lab, host, vip, 0)
}

fn start_agent_with_quorum(lab: &Lab, host: &Host, vip: IpAddr, quorum: usize) -> Agent {
    let seeds = lab
        .nodes()
        .iter()
        .map(|h| SocketAddr::new(h.ipv4.into(), PORT))
        .collect();
    let membership = MembershipConfig {
        name: host.name.clone(),
        bind: SocketAddr::new(host.ipv4.into(), PORT),
        seeds,
        secret: b"lab-secret".to_vec(),
        timing: Timing::default(),
        cluster_size: u8::try_from(lab.nodes().len()).unwrap_or(u8::MAX),
    };
    let (name, mut inp) = (host.name.clone(), inputs(lab, vip));
    inp.quorum = quorum;
    host.in_netns(move || Agent::start(name, inp, membership, ResponderConfig::default()))
        .unwrap()
        .unwrap()
}

/// Backends and the DNAT stand-in on every node: a probe's answer names the node it went through.
fn serve(lab: &Lab, vip: IpAddr) -> Vec<TcpBackend> {
    lab.nodes()
        .iter()
        .map(|h| {
            let local = IpAddr::V4(h.ipv4);
            h.install_service_dnat(vip, 80, local, 8080).unwrap();
            h.start_tcp_backend(SocketAddr::new(local, 8080), &h.name)
                .unwrap()
        })
        .collect()
}

/// Probes VIP:80 from the client every few ms until a response comes through `via`; returns
/// the time since `since`. Bounded by `within`.
fn until_served_via(
    lab: &Lab,
    vip: IpAddr,
    via: &str,
    since: Instant,
    within: Duration,
) -> Duration {
    let prefix = format!("{via} ");
    let mut last = None;
    while since.elapsed() < within {
        let p = lab
            .client()
            .tcp_probe(SocketAddr::new(vip, 80), Duration::from_millis(50))
            .unwrap();
        if p.ok && p.response.starts_with(&prefix) {
            return since.elapsed();
        }
        last = Some(p);
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("{vip} not served via {via} within {within:?}; last probe {last:?}");
}

/// Both agents up, node0 announcing, the client served via node0.
fn settle(lab: &Lab, vip: IpAddr, agents: &[&Agent]) {
    let both = BTreeSet::from(["node0".to_string(), "node1".to_string()]);
    lab::wait_until(
        "both speakers see each other",
        Duration::from_secs(5),
        || agents.iter().all(|a| a.status().live == both),
    )
    .unwrap();
    lab::wait_until("node0 announces the VIP", Duration::from_secs(5), || {
        agents[0].status().announced.contains_key(&vip)
            && !agents[1].status().announced.contains_key(&vip)
    })
    .unwrap();
    until_served_via(lab, vip, "node0", Instant::now(), Duration::from_secs(5));
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Death {
    /// The node vanishes from the LAN and its speaker stops without a word.
    Crash,
    /// The speaker shuts down gracefully (leave message); the node stays up.
    Leave,
}

/// One failover: node0 dies (or leaves), the time until the client is served via node1.
/// Restores the lab afterwards (node0 back, announcing again).
fn trial(
    lab: &Lab,
    vip: IpAddr,
    agent0: &mut Option<Agent>,
    agent1: &Agent,
    death: Death,
) -> Duration {
    let a0 = agent0.take().unwrap();
    settle(lab, vip, &[&a0, agent1]);
    let start = Instant::now();
    match death {
        Death::Crash => {
            lab.node(0).link_down().unwrap();
            a0.crash();
        }
        Death::Leave => {
            a0.leave();
        }
    }
    let took = until_served_via(lab, vip, "node1", start, Duration::from_secs(5));
    if death == Death::Crash {
        lab.node(0).link_up().unwrap();
    }
    *agent0 = Some(start_agent(lab, lab.node(0), vip));
    took
}

fn lab_with_service() -> (Lab, IpAddr, Vec<TcpBackend>) {
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let vip = vip_for_node0(&lab);
    let backends = serve(&lab, vip);
    (lab, vip, backends)
}

/// The two-node lab with its Service, an agent on each node (node1's started first), settled:
/// node0 announces and serves the client.
fn settled_pair() -> (Lab, IpAddr, Vec<TcpBackend>, Agent, Agent) {
    let (lab, vip, backends) = lab_with_service();
    let agent1 = start_agent(&lab, lab.node(1), vip);
    let agent0 = start_agent(&lab, lab.node(0), vip);
    settle(&lab, vip, &[&agent0, &agent1]);
    (lab, vip, backends, agent0, agent1)
}

#[test]
fn crash_and_graceful_leave_fail_over_within_a_second() {
    if !lab::require_lab() {
        return;
    }
    let (lab, vip, _backends) = lab_with_service();
    let agent1 = start_agent(&lab, lab.node(1), vip);
    let mut agent0 = Some(start_agent(&lab, lab.node(0), vip));
    let crash = trial(&lab, vip, &mut agent0, &agent1, Death::Crash);
    let leave = trial(&lab, vip, &mut agent0, &agent1, Death::Leave);
    eprintln!("crash: {crash:?}, graceful leave: {leave:?}");
    assert!(
        crash < Duration::from_millis(1500),
        "crash failover took {crash:?}"
    );
    assert!(
        leave < Duration::from_millis(700),
        "graceful failover took {leave:?}"
    );
    // After the trials node0 is back and announcing again (failback), node1 quiet.
    let a0 = agent0.take().unwrap();
    settle(&lab, vip, &[&a0, &agent1]);
    assert_eq!(agent1.status().error, None);
}

/// A graceful leave hands over before going quiet: when `leave` returns, the successor has
/// confirmed and already announces the VIP (it never waits for a failure detector), while the
/// leaver answered until then.
#[test]
fn a_graceful_leave_hands_over_before_going_quiet() {
    if !lab::require_lab() {
        return;
    }
    let (lab, vip, _backends, agent0, agent1) = settled_pair();
    let h = agent0.leave();
    // Read at once: no waiting for node1 to notice.
    let s1 = agent1.status();
    let node1 = BTreeSet::from(["node1".to_string()]);
    assert_eq!(h.successors, node1, "{h:?}");
    assert_eq!(h.confirmed, node1, "{h:?}");
    assert!(
        s1.announced.contains_key(&vip),
        "node1 confirmed but does not announce {vip}: {s1:?}"
    );
    until_served_via(&lab, vip, "node1", Instant::now(), Duration::from_secs(5));
}

/// The speaker process dies on a node that stays up: its host answers the survivor's probes
/// with ICMP port unreachable, and the survivor's check (not the suspicion timeout) declares it
/// down.
#[test]
fn a_speaker_process_crash_on_a_live_node_is_confirmed_by_a_check() {
    if !lab::require_lab() {
        return;
    }
    let (lab, vip, _backends, agent0, agent1) = settled_pair();
    agent0.crash();
    until_served_via(&lab, vip, "node1", Instant::now(), Duration::from_secs(5));
    let m = agent1.status().membership;
    assert!(
        m.unreachable_downs >= 1,
        "node0 went down by timeout, not by the port-unreachable check: {m:?}"
    );
    assert_eq!(m.unreachable_refuted, 0, "{m:?}");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The measurement for BENCHMARKS.md (ignored by default; see the module doc).
#[test]
#[ignore]
fn failover_measurement() {
    if !lab::require_lab() {
        return;
    }
    let trials: usize = std::env::var("FAILOVER_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let (lab, vip, _backends) = lab_with_service();
    let agent1 = start_agent(&lab, lab.node(1), vip);
    let mut agent0 = Some(start_agent(&lab, lab.node(0), vip));
    for death in [Death::Crash, Death::Leave] {
        let mut times: Vec<Duration> = (0..trials)
            .map(|_| trial(&lab, vip, &mut agent0, &agent1, death))
            .collect();
        times.sort();
        println!(
            "{death:?}: n={} min={:?} p50={:?} p99={:?} max={:?}",
            times.len(),
            times[0],
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times[times.len() - 1]
        );
    }
}

/// Drops (or, with `heal`, lets through again) membership datagrams to and from `host`.
fn partition(host: &Host, heal: bool) {
    let rules = if heal {
        "table inet flb_partition {}\ndelete table inet flb_partition\n".to_string()
    } else {
        format!(
            "table inet flb_partition {{\n chain input {{ type filter hook input priority 0; udp dport {PORT} drop; }}\n chain output {{ type filter hook output priority 0; udp dport {PORT} drop; }}\n}}\n"
        )
    };
    let file = host.unique_path("partition.nft");
    std::fs::write(&file, rules).unwrap();
    host.exec_ok(&["nft", "-f", file.to_str().unwrap()])
        .unwrap();
}

/// Asks the client's ARP for `vip` `asks` times (each must get an answer) with tcpdump watching:
/// the MACs of every ARP reply about `vip` on the wire, and tcpdump's log.
fn repliers(lab: &Lab, vip: IpAddr, asks: usize) -> (BTreeSet<String>, String) {
    let IpAddr::V4(vip4) = vip else {
        unreachable!("the lab VIP is IPv4")
    };
    let capture = Capture::start(lab.client(), "arp").unwrap();
    for _ in 0..asks {
        let reply = lab.client().arping(vip4, Duration::from_secs(1)).unwrap();
        assert!(reply.is_some(), "nobody answers {vip}");
    }
    let log = capture.stop();
    (arp_repliers(&log, vip), log)
}

/// A partition between the speakers (membership datagrams dropped, the LAN itself up) must not
/// leave the VIP unannounced: each side elects an owner among the members it sees, so both
/// answer (the documented split-brain behaviour). When the partition heals the two sides merge
/// again and exactly one node, the first-ranked, answers.
#[test]
fn a_partition_never_leaves_the_vip_unannounced_and_heals_to_one_owner() {
    if !lab::require_lab() {
        return;
    }
    let (lab, vip, _backends, agent0, agent1) = settled_pair();

    partition(lab.node(1), false);
    // node0 must never stop answering: sampled at every poll of the wait below.
    let node0_quiet = std::cell::Cell::new(false);
    lab::wait_until(
        "each side sees only itself and announces the VIP",
        Duration::from_secs(5),
        || {
            let s0 = agent0.status();
            node0_quiet.set(node0_quiet.get() || !s0.announced.contains_key(&vip));
            s0.live == BTreeSet::from(["node0".to_string()])
                && agent1.status().live == BTreeSet::from(["node1".to_string()])
                && agent1.status().announced.contains_key(&vip)
        },
    )
    .unwrap();
    assert!(
        !node0_quiet.get(),
        "node0 stopped answering during the partition"
    );
    // On the wire both sides answer the client (the documented split brain without a quorum).
    let (mac0, mac1) = (lab.node(0).mac.to_string(), lab.node(1).mac.to_string());
    let (seen, log) = repliers(&lab, vip, 3);
    assert_eq!(seen, BTreeSet::from([mac0.clone(), mac1]), "{log}");

    partition(lab.node(1), true);
    let both = BTreeSet::from(["node0".to_string(), "node1".to_string()]);
    lab::wait_until(
        "the sides merge and node1 stops answering",
        Duration::from_secs(10),
        || {
            agent0.status().live == both
                && agent1.status().live == both
                && agent0.status().announced.contains_key(&vip)
                && !agent1.status().announced.contains_key(&vip)
        },
    )
    .unwrap();
    // Only node0's MAC answers again, seen on the wire.
    let (seen, log) = repliers(&lab, vip, 3);
    assert_eq!(seen, BTreeSet::from([mac0]), "{log}");
    until_served_via(&lab, vip, "node0", Instant::now(), Duration::from_secs(5));
}

/// After a partition the owner announces its address again, so a client that followed the
/// other side's takeover comes back to it without asking (the owner's set of addresses never
/// changed, so only its return to the group can tell it to). Without that, the client keeps
/// sending to the other node until its cache entry ages.
#[test]
fn after_a_partition_the_owner_announces_again_and_the_client_follows() {
    if !lab::require_lab() {
        return;
    }
    let (lab, vip, _backends, _agent0, agent1) = settled_pair();
    let (mac0, mac1) = (lab.node(0).mac, lab.node(1).mac);
    let client_mac = || lab.client().neighbour_mac(vip).unwrap();
    // Past node0's take-over burst (1 s), so that only what happens later can move the client.
    std::thread::sleep(Duration::from_millis(1500));
    partition(lab.node(1), false);
    lab::wait_until(
        "node1 takes over on its side and the client follows its gratuitous ARP",
        Duration::from_secs(5),
        || agent1.status().announced.contains_key(&vip) && client_mac() == Some(mac1),
    )
    .unwrap();
    // Past node1's burst too.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(client_mac(), Some(mac1));
    partition(lab.node(1), true);
    lab::wait_until(
        "healed: node1 quiet, and the client back on node0's MAC without asking",
        Duration::from_secs(5),
        || !agent1.status().announced.contains_key(&vip) && client_mac() == Some(mac0),
    )
    .unwrap();
}

/// The owner's successor watches it (direct pings every half probe period) and the others do
/// not: when the owner's membership traffic stops, the successor's watch checks it, and no
/// other speaker spends a ping on it.
#[test]
fn only_the_successor_watches_the_owner() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 3,
        ..Default::default()
    })
    .unwrap();
    let all: BTreeSet<String> = lab.nodes().iter().map(|h| h.name.clone()).collect();
    let vip = vip_for_node0(&lab);
    let agents: Vec<Agent> = lab
        .nodes()
        .iter()
        .map(|h| start_agent(&lab, h, vip))
        .collect();
    lab::wait_until("all three live", Duration::from_secs(5), || {
        agents.iter().all(|a| a.status().live == all)
    })
    .unwrap();
    // The successor: who announces the VIP once node0 is gone.
    let inp = inputs(&lab, vip);
    let mut rest = all.clone();
    rest.remove("node0");
    let cluster = Cluster {
        shared: &Default::default(),
        config: &inp.config,
        nodes: &inp.nodes,
        live: &rest,
        ignore_exclude_label: false,
    };
    let next = election::owner(&cluster, &inp.services[0], vip)
        .unwrap()
        .node;
    let s = lab.nodes().iter().position(|h| h.name == next).unwrap();
    let other = 3 - s;
    partition(lab.node(0), false);
    lab::wait_until("the successor takes over", Duration::from_secs(5), || {
        agents[s].status().announced.contains_key(&vip)
    })
    .unwrap();
    let (ms, mo) = (
        agents[s].status().membership,
        agents[other].status().membership,
    );
    assert!(
        ms.watch_checks >= 1,
        "the successor did not watch node0: {ms:?}"
    );
    assert_eq!(mo.watch_checks, 0, "node{other} watched node0: {mo:?}");
    partition(lab.node(0), true);
}

/// The split-brain guard: three speakers with a quorum of 2. The owner cut off from the other
/// two (its membership datagrams dropped, its link up) stops answering, and exactly one of the
/// two others answers instead: the client sees one MAC, never two. After the heal the first-ranked
/// owner answers again.
#[test]
fn with_a_quorum_only_the_majority_side_of_a_partition_answers() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 3,
        ..Default::default()
    })
    .unwrap();
    let all: BTreeSet<String> = lab.nodes().iter().map(|h| h.name.clone()).collect();
    let vip = vip_for_node0(&lab);
    let agents: Vec<Agent> = lab
        .nodes()
        .iter()
        .map(|h| start_agent_with_quorum(&lab, h, vip, 2))
        .collect();
    let owners = || -> Vec<usize> {
        (0..agents.len())
            .filter(|i| agents[*i].status().announced.contains_key(&vip))
            .collect()
    };
    lab::wait_until(
        "all three live, node0 answers",
        Duration::from_secs(5),
        || agents.iter().all(|a| a.status().live == all) && owners() == vec![0],
    )
    .unwrap();

    partition(lab.node(0), false);
    let majority = BTreeSet::from(["node1".to_string(), "node2".to_string()]);
    lab::wait_until(
        "node0 alone and silent, one of node1/node2 answers",
        Duration::from_secs(5),
        || {
            agents[0].status().live == BTreeSet::from(["node0".to_string()])
                && agents[1].status().live == majority
                && agents[2].status().live == majority
                && owners().len() == 1
                && owners()[0] != 0
        },
    )
    .unwrap();
    let new_owner = owners()[0];
    let (seen, log) = repliers(&lab, vip, 3);
    assert_eq!(
        seen,
        BTreeSet::from([lab.node(new_owner).mac.to_string()]),
        "during the partition only node{new_owner} answers {vip}:\n{log}"
    );

    partition(lab.node(0), true);
    lab::wait_until(
        "healed: node0 answers again, alone",
        Duration::from_secs(10),
        || agents.iter().all(|a| a.status().live == all) && owners() == vec![0],
    )
    .unwrap();
    let (seen, log) = repliers(&lab, vip, 1);
    assert_eq!(seen, BTreeSet::from([lab.node(0).mac.to_string()]), "{log}");
}
