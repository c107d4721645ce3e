//! The per-node BGP speaker (`NodeSpeaker`) against BIRD: two nodes, each running the speaker
//! in its namespace on the same validated config (pool + BGPAdvertisement with a Community
//! alias + BGPPeer, iBGP), the router's view of what they announce and how it changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrolb_announce::bgp::{NodeSpeaker, SessionStatus, State};
use ferrolb_announce::election::{Node, Service, TrafficPolicy};
use ferrolb_config::{self as config, Config};
use ferrolb_tests::lab::{
    self, Afi, BgpConfig, BgpDaemon, Bird, Capture, Community, Host, Lab, LabSpec, LargeCommunity,
    Neighbor, NetnsThread, Route, wait_until,
};
use ipnet::IpNet;

const T: Duration = Duration::from_secs(10);
const ASN: u32 = 64512;

enum Cmd {
    Apply(Box<Config>, Node, Vec<Service>),
    Stop,
}

/// A `NodeSpeaker` on its own runtime inside a node's namespace.
struct NodeDriver {
    tx: tokio::sync::mpsc::UnboundedSender<Cmd>,
    status: Arc<Mutex<BTreeMap<String, SessionStatus>>>,
    thread: Option<NetnsThread<()>>,
}

impl NodeDriver {
    fn start(host: &Host) -> NodeDriver {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Cmd>();
        let status = Arc::new(Mutex::new(BTreeMap::new()));
        let st = status.clone();
        let ipv4 = host.ipv4;
        let thread = host
            .spawn_thread(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let mut speaker = NodeSpeaker::new(Some(ipv4));
                    let mut tick = tokio::time::interval(Duration::from_millis(50));
                    loop {
                        tokio::select! {
                            c = rx.recv() => match c {
                                Some(Cmd::Apply(cfg, node, services)) => {
                                    let a = speaker.apply(&cfg, &node, &services, false).await;
                                    assert!(a.errors.is_empty(), "{:?}", a.errors);
                                }
                                Some(Cmd::Stop) | None => { speaker.stop().await; break; }
                            },
                            _ = tick.tick() => { *st.lock().unwrap() = speaker.status(); }
                        }
                    }
                });
            })
            .unwrap();
        NodeDriver {
            tx,
            status,
            thread: Some(thread),
        }
    }

    fn apply(&self, cfg: &Config, node: &Node, services: &[Service]) {
        self.tx
            .send(Cmd::Apply(
                Box::new(cfg.clone()),
                node.clone(),
                services.to_vec(),
            ))
            .unwrap();
    }

    fn status(&self) -> SessionStatus {
        self.status
            .lock()
            .unwrap()
            .get("tor")
            .cloned()
            .expect("no session to tor")
    }

    fn wait_established(&self) {
        let ok = wait_until("speaker Established", T, || {
            self.status
                .lock()
                .unwrap()
                .get("tor")
                .is_some_and(|s| s.state == State::Established)
        });
        assert!(ok.is_ok(), "{:?}", self.status.lock().unwrap());
    }

    fn stop(mut self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for NodeDriver {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn config(router: &Host) -> Config {
    let yaml = format!(
        r#"
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {{name: web, namespace: ferrolb-system}}
spec: {{addresses: [10.96.0.0/28]}}
---
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {{name: agg, namespace: ferrolb-system}}
spec: {{addresses: [10.97.0.0/28]}}
---
apiVersion: ferrolb.io/v1beta1
kind: Community
metadata: {{name: communities, namespace: ferrolb-system}}
spec:
  communities:
    - {{name: no-export, value: "65535:65281"}}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: web, namespace: ferrolb-system}}
spec:
  ipAddressPools: [web]
  aggregationLength: 32
  localPref: 150
  communities: [no-export, "64512:7", "large:64512:1:2"]
---
apiVersion: ferrolb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: agg, namespace: ferrolb-system}}
spec:
  ipAddressPools: [agg]
  aggregationLength: 30
  communities: ["64512:30"]
---
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata: {{name: tor, namespace: ferrolb-system}}
spec: {{myASN: {ASN}, peerASN: {ASN}, peerAddress: {}, holdTime: 9s, connectTime: 1s}}
"#,
        router.ipv4
    );
    let docs = config::parse_documents(&yaml).unwrap();
    config::build(&docs.config).unwrap()
}

fn service(name: &str, pool: &str, ip: &str) -> Service {
    Service {
        name: format!("default/{name}"),
        ips: vec![ip.parse().unwrap()],
        pool: pool.into(),
        has_serving_endpoint: true,
        ..Default::default()
    }
}

fn local_service(on: &str) -> Service {
    let mut s = service("local", "web", "10.96.0.2");
    s.traffic_policy = TrafficPolicy::Local;
    s.local_endpoint_nodes = BTreeSet::from([on.to_string()]);
    s
}

fn node(h: &Host) -> Node {
    Node {
        name: h.name.clone(),
        labels: Default::default(),
        network_unavailable: false,
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// The sources (`from`) of the received paths for `prefix`.
fn sources(routes: &[Route], prefix: &str) -> BTreeSet<IpAddr> {
    routes
        .iter()
        .filter(|r| r.prefix == net(prefix))
        .filter_map(|r| r.from)
        .collect()
}

#[test]
fn bgp_speaker_two_nodes_ecmp_communities_etp_local_and_withdrawal() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let router = lab.router();
    let (h0, h1) = (lab.node(0), lab.node(1));
    let (a0, a1) = (IpAddr::from(h0.ipv4), IpAddr::from(h1.ipv4));
    // iBGP: BIRD resolves the next hops recursively, through the directly connected LAN.
    let bird = Bird::start_with(
        router,
        &BgpConfig::new(ASN, router.ipv4)
            .neighbor(Neighbor::new(h0.ipv4, ASN).passive())
            .neighbor(Neighbor::new(h1.ipv4, ASN).passive()),
        "protocol direct { ipv4; }\n",
    )
    .unwrap();
    let cfg = config(router);
    let mut services = vec![
        service("cluster", "web", "10.96.0.1"),
        local_service("node0"),
        service("agg1", "agg", "10.97.0.1"),
        service("agg2", "agg", "10.97.0.2"),
    ];
    let d0 = NodeDriver::start(h0);
    let d1 = NodeDriver::start(h1);
    d0.apply(&cfg, &node(h0), &services);
    d1.apply(&cfg, &node(h1), &services);
    bird.wait_established(a0, T).unwrap();
    bird.wait_established(a1, T).unwrap();
    d0.wait_established();
    d1.wait_established();

    // Both nodes' paths for the Cluster Service and the aggregate; the Local one from node0 only.
    let both = BTreeSet::from([a0, a1]);
    let routes = bird
        .wait_routes(Afi::Ipv4, "both nodes' paths", T, |rs| {
            sources(rs, "10.96.0.1/32") == both
                && sources(rs, "10.97.0.0/30") == both
                && !sources(rs, "10.96.0.2/32").is_empty()
        })
        .unwrap();
    assert_eq!(sources(&routes, "10.96.0.2/32"), BTreeSet::from([a0]));
    for r in routes.iter().filter(|r| r.prefix == net("10.96.0.1/32")) {
        assert_eq!(r.next_hops, vec![r.from.unwrap()], "next hop self: {r:?}");
        assert_eq!(r.local_pref, Some(150));
        assert_eq!(r.as_path, Vec::<u32>::new());
        assert_eq!(
            r.communities.iter().copied().collect::<BTreeSet<_>>(),
            BTreeSet::from([Community::new(65535, 65281), Community::new(64512, 7)]),
            "alias no-export resolved: {r:?}"
        );
        assert_eq!(r.large_communities, vec![LargeCommunity::new(64512, 1, 2)]);
    }
    for r in routes.iter().filter(|r| r.prefix == net("10.97.0.0/30")) {
        assert_eq!(r.communities, vec![Community::new(64512, 30)]);
        assert_eq!(r.local_pref, Some(100), "iBGP default LOCAL_PREF");
    }
    assert!(
        !routes
            .iter()
            .any(|r| r.prefix == net("10.97.0.1/32") || r.prefix == net("10.97.0.2/32")),
        "only the /30 aggregate"
    );
    let bird_up = |a: IpAddr| bird.session(a).unwrap().unwrap().uptime;
    let (up0, up1) = (bird_up(a0), bird_up(a1));

    // The Local Service's endpoint moves to node1: node0 withdraws, node1 announces.
    std::thread::sleep(Duration::from_millis(200));
    let before = (d0.status().updates_sent, d1.status().updates_sent);
    services[1] = local_service("node1");
    d0.apply(&cfg, &node(h0), &services);
    d1.apply(&cfg, &node(h1), &services);
    bird.wait_routes(Afi::Ipv4, "10.96.0.2/32 moved to node1", T, |rs| {
        sources(rs, "10.96.0.2/32") == BTreeSet::from([a1])
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(d0.status().updates_sent, before.0 + 1);
    assert_eq!(d1.status().updates_sent, before.1 + 1);

    // Deleting the Cluster Service withdraws it from both (one UPDATE each); deleting one of
    // the two aggregated Services keeps the /30. Sessions stay up.
    let before = (d0.status().updates_sent, d1.status().updates_sent);
    services.retain(|s| s.name != "default/cluster" && s.name != "default/agg1");
    d0.apply(&cfg, &node(h0), &services);
    d1.apply(&cfg, &node(h1), &services);
    let routes = bird
        .wait_routes(Afi::Ipv4, "10.96.0.1/32 withdrawn by both", T, |rs| {
            sources(rs, "10.96.0.1/32").is_empty()
        })
        .unwrap();
    assert_eq!(sources(&routes, "10.97.0.0/30"), both);
    assert_eq!(sources(&routes, "10.96.0.2/32"), BTreeSet::from([a1]));
    std::thread::sleep(Duration::from_millis(200));
    for (d, b) in [(&d0, before.0), (&d1, before.1)] {
        let st = d.status();
        assert_eq!(st.updates_sent, b + 1, "{st:?}");
        assert_eq!(st.flaps, 0);
        assert_eq!(st.state, State::Established);
    }
    for (a, before) in [(a0, up0), (a1, up1)] {
        let s = bird.session(a).unwrap().unwrap();
        assert!(s.is_established());
        if let (Some(now), Some(then)) = (s.uptime, before) {
            assert!(now >= then, "BIRD session with {a} was reset");
        }
    }

    // Shutdown: Cease from both, BIRD drops everything at once.
    d0.stop();
    d1.stop();
    bird.wait_routes(Afi::Ipv4, "all withdrawn", Duration::from_secs(3), |rs| {
        rs.iter().all(|r| r.from.is_none())
    })
    .unwrap();
}

/// BGPPeer `nodeSelectors` pick the nodes that peer; an excluded or NetworkUnavailable node
/// withdraws everything but keeps its session; deleting the BGPPeer sends a Cease.
#[test]
fn bgp_speaker_peer_selection_exclusion_and_peer_removal() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let router = lab.router();
    let (h0, h1) = (lab.node(0), lab.node(1));
    let (a0, a1) = (IpAddr::from(h0.ipv4), IpAddr::from(h1.ipv4));
    let bird = Bird::start_with(
        router,
        &BgpConfig::new(ASN, router.ipv4)
            .neighbor(Neighbor::new(h0.ipv4, ASN).passive())
            .neighbor(Neighbor::new(h1.ipv4, ASN).passive()),
        "protocol direct { ipv4; }\n",
    )
    .unwrap();
    // The peer only for nodes labelled bgp=on.
    let mut cfg = config(router);
    let sel = ferrolb_config::selector::Selector::compile(&ferrolb_config::api::LabelSelector {
        match_labels: Some([("bgp".to_string(), "on".to_string())].into()),
        ..Default::default()
    })
    .unwrap();
    cfg.peers.get_mut("tor").unwrap().node_selectors = vec![sel];
    let labelled = |h: &Host| {
        let mut n = node(h);
        n.labels.insert("bgp".into(), "on".into());
        n
    };
    let services = vec![service("cluster", "web", "10.96.0.1")];
    let d0 = NodeDriver::start(h0);
    let d1 = NodeDriver::start(h1);
    d0.apply(&cfg, &labelled(h0), &services);
    d1.apply(&cfg, &node(h1), &services);
    bird.wait_established(a0, T).unwrap();
    bird.wait_route(net("10.96.0.1/32"), T).unwrap();
    d0.wait_established();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        d1.status.lock().unwrap().is_empty(),
        "node1 is not selected: no session"
    );
    assert!(!bird.session(a1).unwrap().unwrap().is_established());

    // node1 gets the label: it peers and announces too.
    d1.apply(&cfg, &labelled(h1), &services);
    bird.wait_routes(Afi::Ipv4, "both paths", T, |rs| {
        sources(rs, "10.96.0.1/32") == BTreeSet::from([a0, a1])
    })
    .unwrap();
    d1.wait_established();

    // node0 excluded: it withdraws, its session stays; node1 NetworkUnavailable: same.
    let mut excluded = labelled(h0);
    excluded.labels.insert(
        ferrolb_announce::election::EXCLUDE_LABEL.into(),
        String::new(),
    );
    d0.apply(&cfg, &excluded, &services);
    bird.wait_routes(Afi::Ipv4, "node0 withdrew", T, |rs| {
        sources(rs, "10.96.0.1/32") == BTreeSet::from([a1])
    })
    .unwrap();
    let mut unavailable = labelled(h1);
    unavailable.network_unavailable = true;
    d1.apply(&cfg, &unavailable, &services);
    bird.wait_routes(Afi::Ipv4, "node1 withdrew", T, |rs| {
        sources(rs, "10.96.0.1/32").is_empty()
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for d in [&d0, &d1] {
        let st = d.status();
        assert_eq!((st.state, st.flaps), (State::Established, 0), "{st:?}");
    }
    // Back to normal: both announce again over the same sessions.
    d0.apply(&cfg, &labelled(h0), &services);
    d1.apply(&cfg, &labelled(h1), &services);
    bird.wait_routes(Afi::Ipv4, "both back", T, |rs| {
        sources(rs, "10.96.0.1/32") == BTreeSet::from([a0, a1])
    })
    .unwrap();

    // The BGPPeer is deleted: Cease from both, BIRD drops the routes at once.
    let mut no_peer = cfg.clone();
    no_peer.peers.clear();
    let t0 = std::time::Instant::now();
    d0.apply(&no_peer, &labelled(h0), &services);
    d1.apply(&no_peer, &labelled(h1), &services);
    bird.wait_routes(Afi::Ipv4, "all withdrawn", Duration::from_secs(3), |rs| {
        rs.iter().all(|r| r.from.is_none())
    })
    .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let ok = wait_until("speaker sessions removed", T, || {
        d0.status.lock().unwrap().is_empty() && d1.status.lock().unwrap().is_empty()
    });
    assert!(ok.is_ok());
    d0.stop();
    d1.stop();
}

/// A BGPPeer as users write it, through the config model and the per-node speaker: `peerPort`
/// (BIRD listens on 1179), the MD5 password from `passwordSecret` (a basic-auth Secret), eBGP,
/// and `ebgpMultiHop`: the SYNs the router receives carry TTL 255 from the node that sets it and
/// TTL 1 (a direct eBGP neighbor) from the node that does not.
#[test]
fn bgp_speaker_peer_port_password_secret_and_ebgp_multihop_ttl() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let router = lab.router();
    let (h0, h1) = (lab.node(0), lab.node(1));
    let bird = Bird::start(
        router,
        &BgpConfig::new(ASN, router.ipv4)
            .listen_port(1179)
            .neighbor(
                Neighbor::new(h0.ipv4, 64601)
                    .password("from-a-secret")
                    .passive(),
            )
            .neighbor(
                Neighbor::new(h1.ipv4, 64602)
                    .password("from-a-secret")
                    .passive(),
            ),
    )
    .unwrap();
    // The SYNs to port 1179, with their IP header (TTL) printed; listening before any is sent.
    let capture =
        Capture::start(router, "tcp dst port 1179 and tcp[tcpflags] & tcp-syn != 0").unwrap();
    let config_for = |my_asn: u32, multihop: bool| {
        let yaml = format!(
            r#"
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {{name: web, namespace: ferrolb-system}}
spec: {{addresses: [10.98.0.0/28]}}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: web, namespace: ferrolb-system}}
spec: {{ipAddressPools: [web]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: bgp-auth, namespace: ferrolb-system}}
type: kubernetes.io/basic-auth
stringData: {{password: from-a-secret}}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata: {{name: tor, namespace: ferrolb-system}}
spec:
  myASN: {my_asn}
  peerASN: {ASN}
  peerAddress: {}
  peerPort: 1179
  passwordSecret: {{name: bgp-auth}}
  ebgpMultiHop: {multihop}
  holdTime: 9s
  connectTime: 1s
"#,
            router.ipv4
        );
        let docs = config::parse_documents(&yaml).unwrap();
        config::build(&docs.config).unwrap()
    };
    let services = vec![service("web", "web", "10.98.0.1")];
    let d0 = NodeDriver::start(h0);
    let d1 = NodeDriver::start(h1);
    d0.apply(&config_for(64601, true), &node(h0), &services);
    d1.apply(&config_for(64602, false), &node(h1), &services);
    bird.wait_established(h0.ipv4.into(), T).unwrap();
    bird.wait_established(h1.ipv4.into(), T).unwrap();
    d0.wait_established();
    d1.wait_established();
    bird.wait_routes(Afi::Ipv4, "10.98.0.1/32 from both nodes", T, |rs| {
        sources(rs, "10.98.0.1/32") == BTreeSet::from([IpAddr::from(h0.ipv4), h1.ipv4.into()])
    })
    .unwrap();

    // TTL per source, from tcpdump's two lines per packet ("... ttl N, ..." then "SRC.PORT > ...").
    let log = capture.stop();
    let mut ttls: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    let mut ttl = None;
    for line in log.lines() {
        if let Some(rest) = line.split("ttl ").nth(1) {
            ttl = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|t| t.parse().ok());
        } else if let (Some(t), Some(src)) = (ttl.take(), line.trim().split(' ').next()) {
            let ip = src
                .rsplit_once('.')
                .map_or("", |(ip, _port)| ip)
                .to_string();
            ttls.entry(ip).or_default().insert(t);
        }
    }
    assert_eq!(
        ttls.get(&h0.ipv4.to_string()),
        Some(&BTreeSet::from([255])),
        "ebgpMultiHop: TTL 255 from node0\n{log}"
    );
    assert_eq!(
        ttls.get(&h1.ipv4.to_string()),
        Some(&BTreeSet::from([1])),
        "direct eBGP: TTL 1 from node1\n{log}"
    );
    d0.stop();
    d1.stop();
}

/// A config of one pool (`addresses`, YAML list items), a BGPAdvertisement of every pool, and
/// BGPPeer `tor` with `peer` as the rest of its spec (holdTime 9 s, connectTime 1 s).
fn one_peer_config(addresses: &str, peer: &str) -> Config {
    let yaml = format!(
        r#"
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {{name: web, namespace: ferrolb-system}}
spec: {{addresses: [{addresses}]}}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: web, namespace: ferrolb-system}}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata: {{name: tor, namespace: ferrolb-system}}
spec: {{myASN: {ASN}, {peer}, holdTime: 9s, connectTime: 1s}}
"#
    );
    config::build(&config::parse_documents(&yaml).unwrap().config).unwrap()
}

/// A lab with a router and one node, or None (said why) where there can be none.
fn one_node_lab() -> Option<Lab> {
    if !lab::require_lab() {
        return None;
    }
    Some(
        Lab::new(LabSpec {
            nodes: 1,
            ..Default::default()
        })
        .unwrap(),
    )
}

/// BIRD, then FRR, on `router` with `bgp`: the daemon to test against, by name.
fn start_daemon(kind: &str, router: &Host, bgp: &BgpConfig) -> Box<dyn BgpDaemon> {
    match kind {
        "bird" => Box::new(Bird::start(router, bgp).unwrap()),
        _ => Box::new(lab::Frr::start(router, bgp).unwrap()),
    }
}

/// MetalLB drop-in (issue 13, dynamicASN) against BIRD and FRR: a peer with `dynamicASN:
/// external` learns the router's AS from its OPEN, comes up and announces (an eBGP session:
/// AS_PATH starts with our AS); with `dynamicASN: internal` the same router (another AS) is
/// refused with Bad Peer AS and nothing is announced.
#[test]
fn bgp_speaker_dynamic_asn_against_bird_and_frr() {
    if !lab::require_lab() {
        return;
    }
    const ROUTER_ASN: u32 = 64700;
    let lab = Lab::new(LabSpec {
        nodes: 1,
        ..Default::default()
    })
    .unwrap();
    let router = lab.router();
    let h0 = lab.node(0);
    let config_for = |dynamic: &str| {
        one_peer_config(
            "10.99.0.0/28",
            &format!("dynamicASN: {dynamic}, peerAddress: {}", router.ipv4),
        )
    };
    let services = vec![service("web", "web", "10.99.0.1")];
    let bgp = BgpConfig::new(ROUTER_ASN, router.ipv4).neighbor(Neighbor::new(h0.ipv4, ASN));
    for kind in ["bird", "frr"] {
        let daemon = start_daemon(kind, router, &bgp);
        // external: up, announced, as eBGP.
        let d0 = NodeDriver::start(h0);
        d0.apply(&config_for("external"), &node(h0), &services);
        daemon.wait_established(h0.ipv4.into(), T).unwrap();
        d0.wait_established();
        let route = daemon.wait_route(net("10.99.0.1/32"), T).unwrap();
        assert_eq!(route.as_path.first(), Some(&ASN), "{kind}: {route:?}");
        d0.stop();

        // internal: the router's AS is not ours, so its OPEN is refused (2/2).
        let d0 = NodeDriver::start(h0);
        d0.apply(&config_for("internal"), &node(h0), &services);
        let refused = wait_until("Bad Peer AS sent", T, || {
            d0.status
                .lock()
                .unwrap()
                .get("tor")
                .and_then(|s| s.last_notification.clone())
                .is_some_and(|n| n.contains("(2/2)"))
        });
        assert!(refused.is_ok(), "{kind}: {:?}", d0.status.lock().unwrap());
        assert_ne!(d0.status().state, State::Established, "{kind}");
        d0.stop();
        drop(daemon);
    }
}

/// MetalLB drop-in (issue 13, dualStackAddressFamily) against BIRD and FRR: one IPv4 session
/// carries a dual-stack Service's IPv4 and IPv6 addresses (MP-BGP, RFC 4760); the IPv6 route's
/// next hop is the node's IPv6 address on the session's interface. Without the flag the IPv6
/// address is not sent over the IPv4 session.
#[test]
fn bgp_speaker_dual_stack_address_family_against_bird_and_frr() {
    let Some(lab) = one_node_lab() else { return };
    let (router, h0) = (lab.router(), lab.node(0));
    let config_for = |dual: bool| {
        one_peer_config(
            "10.99.1.0/28, \"fd00:99:1::/120\"",
            &format!(
                "peerASN: 64700, peerAddress: {}, dualStackAddressFamily: {dual}",
                router.ipv4
            ),
        )
    };
    let mut web = service("web", "web", "10.99.1.1");
    web.ips.push("fd00:99:1::1".parse().unwrap());
    let services = vec![web];
    let bgp =
        BgpConfig::new(64700, router.ipv4).neighbor(Neighbor::new(h0.ipv4, ASN).both_families());
    for kind in ["bird", "frr"] {
        let daemon = start_daemon(kind, router, &bgp);
        // Without the flag: IPv4 only (the IPv4 session does not carry IPv6).
        let d0 = NodeDriver::start(h0);
        d0.apply(&config_for(false), &node(h0), &services);
        daemon.wait_established(h0.ipv4.into(), T).unwrap();
        daemon.wait_route(net("10.99.1.1/32"), T).unwrap();
        std::thread::sleep(Duration::from_secs(1));
        let v6 = daemon.routes(Afi::Ipv6).unwrap();
        assert!(
            !v6.iter().any(|r| r.prefix == net("fd00:99:1::1/128")),
            "{kind}: {v6:?}"
        );
        d0.stop();

        // With it: both, the IPv6 one with the node's IPv6 address as next hop.
        let d0 = NodeDriver::start(h0);
        d0.apply(&config_for(true), &node(h0), &services);
        daemon.wait_established(h0.ipv4.into(), T).unwrap();
        let v4 = daemon.wait_route(net("10.99.1.1/32"), T).unwrap();
        assert_eq!(v4.from, Some(h0.ipv4.into()), "{kind}: {v4:?}");
        let v6 = daemon.wait_route(net("fd00:99:1::1/128"), T).unwrap();
        assert_eq!(
            v6.from,
            Some(h0.ipv4.into()),
            "{kind}: learned over the IPv4 session"
        );
        assert!(
            v6.next_hops.contains(&h0.ip(true)),
            "{kind}: next hop {:?}, node {}",
            v6.next_hops,
            h0.ip(true)
        );
        d0.stop();
        drop(daemon);
    }
}

/// BGPPeer `vrf` (issue 13): the session's socket is bound to the named device. This kernel
/// has no VRF support (CONFIG_NET_VRF unset), so the lab checks the binding with plain
/// devices, against BIRD and FRR: bound to the LAN interface the session comes up; bound to
/// an existing device that does not reach the router it does not, though the default table
/// would; a device the node lacks is named in the session's error.
#[test]
fn bgp_speaker_vrf_binds_the_session_to_the_device() {
    let Some(lab) = one_node_lab() else { return };
    let (router, h0) = (lab.router(), lab.node(0));
    // A device that leads nowhere (the kernel here has no dummy devices either: a veth pair).
    h0.exec_ok(&[
        "ip",
        "link",
        "add",
        "elsewhere",
        "type",
        "veth",
        "peer",
        "name",
        "nowhere",
    ])
    .unwrap();
    h0.exec_ok(&["ip", "link", "set", "elsewhere", "up"])
        .unwrap();
    let config_for = |vrf: &str| {
        one_peer_config(
            "10.99.2.0/28",
            &format!("peerASN: 64700, peerAddress: {}, vrf: {vrf}", router.ipv4),
        )
    };
    let services = vec![service("web", "web", "10.99.2.1")];
    let bgp = BgpConfig::new(64700, router.ipv4).neighbor(Neighbor::new(h0.ipv4, ASN));
    for kind in ["bird", "frr"] {
        let daemon = start_daemon(kind, router, &bgp);
        let d0 = NodeDriver::start(h0);
        d0.apply(&config_for(&h0.ifname), &node(h0), &services);
        daemon.wait_established(h0.ipv4.into(), T).unwrap();
        daemon.wait_route(net("10.99.2.1/32"), T).unwrap();
        d0.stop();

        for (device, error) in [
            ("elsewhere", "connecting to"),
            ("red", "binding to VRF red"),
        ] {
            let d0 = NodeDriver::start(h0);
            d0.apply(&config_for(device), &node(h0), &services);
            let failed = wait_until("the session's error", T, || {
                d0.status
                    .lock()
                    .unwrap()
                    .get("tor")
                    .and_then(|s| s.last_error.clone())
                    .is_some_and(|e| e.contains(error))
            });
            assert!(
                failed.is_ok(),
                "{kind} {device}: {:?}",
                d0.status.lock().unwrap()
            );
            assert_ne!(d0.status().state, State::Established, "{kind} {device}");
            d0.stop();
        }
        drop(daemon);
    }
}

/// The node's IPv6 link-local address on its LAN interface.
fn link_local(h: &Host) -> std::net::Ipv6Addr {
    let out = h
        .exec_ok(&[
            "ip", "-6", "-o", "addr", "show", "dev", &h.ifname, "scope", "link",
        ])
        .unwrap();
    out.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no link-local address on {}: {out}", h.ifname))
}

/// MetalLB drop-in (issue 13, unnumbered peering) against BIRD and FRR: a BGPPeer with
/// `interface` and no address. The speaker learns the router's link-local address from its
/// router advertisements (FRR's zebra, BIRD's radv), advertises itself (lifetime 0), and
/// announces a dual-stack Service over the one link-local session: the IPv6 route and the
/// IPv4 one (RFC 8950), both with the node's link-local address as next hop.
#[test]
fn bgp_speaker_unnumbered_against_bird_and_frr() {
    let Some(lab) = one_node_lab() else { return };
    let (router, h0) = (lab.router(), lab.node(0));
    let cfg = one_peer_config(
        "10.99.3.0/28, \"fd00:99:3::/120\"",
        &format!("dynamicASN: external, interface: {}", h0.ifname),
    );
    let mut web = service("web", "web", "10.99.3.1");
    web.ips.push("fd00:99:3::1".parse().unwrap());
    let services = vec![web];
    let node_ll = link_local(h0);
    let bgp = BgpConfig::new(64700, router.ipv4).neighbor(Neighbor::unnumbered(
        &router.ifname,
        node_ll,
        ASN,
    ));
    for kind in ["bird", "frr"] {
        let daemon = start_daemon(kind, router, &bgp);
        let d0 = NodeDriver::start(h0);
        d0.apply(&cfg, &node(h0), &services);
        let up = wait_until("the unnumbered session", Duration::from_secs(30), || {
            d0.status
                .lock()
                .unwrap()
                .get("tor")
                .is_some_and(|s| s.state == State::Established)
        });
        assert!(
            up.is_ok(),
            "{kind}: {:?}\n{}",
            d0.status.lock().unwrap(),
            daemon.log_tail()
        );
        let v6 = daemon
            .wait_route(net("fd00:99:3::1/128"), T)
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let v4 = daemon
            .wait_route(net("10.99.3.1/32"), T)
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        for r in [&v6, &v4] {
            assert_eq!(r.as_path.first(), Some(&ASN), "{kind}: {r:?}");
            assert!(
                r.next_hops.contains(&IpAddr::V6(node_ll)),
                "{kind}: next hop {:?}, node {node_ll}",
                r.next_hops
            );
        }
        d0.stop();
        drop(daemon);
    }
}
