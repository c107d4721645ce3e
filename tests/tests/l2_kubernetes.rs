//! The speaker in Kubernetes mode, on real packets: speakers on two lab nodes read Services,
//! EndpointSlices, Nodes and the config from the in-process API server; one answers ARP for the
//! Service's address and says so (an Event and the `ferrolb.io/Announced` condition), both
//! advertise it to BIRD over BGP, and with externalTrafficPolicy Local both modes follow the
//! endpoint.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ferrolb_crds::api;
use ferrolb_fake_apiserver::FakeApiServer;
use ferrolb_speaker::kubernetes::{self, Settings};
use ferrolb_tests::lab::{self, Afi, BgpConfig, BgpDaemon, Bird, Lab, LabSpec, Neighbor};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;

fn obj<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap()
}

fn seed(server: &FakeApiServer, lab: &Lab, local: bool, endpoint_node: &str) {
    let ns = "ferrolb-system";
    server.upsert::<api::IPAddressPool>(&obj(json!({
        "metadata": {"name": "lan", "namespace": ns}, "spec": {"addresses": ["10.0.0.200-10.0.0.209"]}
    })));
    server.upsert::<api::L2Advertisement>(&obj(
        json!({"metadata": {"name": "lan", "namespace": ns}, "spec": {}}),
    ));
    server.upsert::<api::BGPAdvertisement>(&obj(json!({
        "metadata": {"name": "lan", "namespace": ns}, "spec": {"communities": ["65000:7"]}
    })));
    server.upsert::<api::BGPPeer>(&obj(json!({
        "metadata": {"name": "router", "namespace": ns},
        "spec": {"myASN": 64512, "peerASN": 64500, "peerAddress": "10.0.0.1", "holdTime": "9s"}
    })));
    for i in 0..2 {
        let n = lab.node(i);
        server.upsert::<Node>(&obj(json!({
            "metadata": {"name": n.name},
            "status": {"addresses": [{"type": "InternalIP", "address": n.ipv4.to_string()}]}
        })));
    }
    server.upsert::<Service>(&obj(json!({
        "metadata": {"name": "web", "namespace": "default", "annotations": {"ferrolb.io/ip-allocated-from-pool": "lan"}},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": if local { "Local" } else { "Cluster" }, "ports": [{"port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.200"}]}}
    })));
    server.upsert::<EndpointSlice>(&obj(json!({
        "metadata": {"name": "web-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": true}, "nodeName": endpoint_node}]
    })));
}

fn next_hops(bird: &Bird) -> Vec<IpAddr> {
    let mut hops: Vec<IpAddr> = bird
        .routes(Afi::Ipv4)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.prefix.to_string() == "10.0.0.200/32")
        .flat_map(|r| r.next_hops)
        .collect();
    hops.sort();
    hops.dedup();
    hops
}

fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn speakers_in_kubernetes_mode_answer_report_advertise_and_follow_endpoints() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let server = FakeApiServer::new();
    seed(&server, &lab, false, "node1");
    let mut bird_cfg = BgpConfig::new(64500, lab.router().ipv4);
    for i in 0..2 {
        bird_cfg = bird_cfg.neighbor(Neighbor::new(IpAddr::V4(lab.node(i).ipv4), 64512).passive());
    }
    let bird = Bird::start(lab.router(), &bird_cfg).unwrap();
    let mut stops = Vec::new();
    let mut threads = Vec::new();
    for i in 0..2 {
        let node = lab.node(i);
        let (tx, rx) = watch::channel(false);
        stops.push(tx);
        let server = server.clone();
        let settings = Settings {
            node: node.name.clone(),
            namespace: "ferrolb-system".into(),
            lb_class: None,
            membership_port: 7946,
            secret: b"k8s-secret".to_vec(),
            exclude: vec!["lo".into()],
            ignore_exclude_label: false,
            metrics: None,
            burst: Default::default(),
            l2: true,
            bgp: true,
            l2_quorum: 0,
        };
        threads.push(
            node.spawn_thread(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move { kubernetes::run(server.client(), settings, rx).await })
            })
            .unwrap(),
        );
    }
    let client = lab.client();
    let vip = Ipv4Addr::new(10, 0, 0, 200);
    let answered_by = |timeout: Duration| {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let _ = client.flush_neighbours();
            if let Ok(Some(reply)) = client.arping(vip, Duration::from_secs(1)) {
                return Some(reply.mac);
            }
        }
        None
    };
    let announced = |server: &FakeApiServer| -> Option<(String, String)> {
        let svc = server.get::<Service>(Some("default"), "web")?;
        let c = svc
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == kubernetes::ANNOUNCED_CONDITION)?;
        Some((c.status, c.message))
    };
    let condition_says = |status: &str, text: &str| {
        eventually(Duration::from_secs(10), || {
            announced(&server).is_some_and(|(s, m)| s == status && m.contains(text))
        })
    };

    // Layer 2: one node answers, an Event and the condition name it.
    let mac = answered_by(Duration::from_secs(15)).expect("someone answers ARP for the VIP");
    let owner = (0..2)
        .find(|i| lab.node(*i).mac == mac)
        .expect("a node's MAC answers");
    let owner_name = lab.node(owner).name.clone();
    let reported = eventually(Duration::from_secs(5), || {
        server.requests().iter().any(|r| {
            r.path.contains("/events")
                && r.body["reason"] == "nodeAssigned"
                && r.body["note"]
                    .as_str()
                    .is_some_and(|n| n.contains(&owner_name))
        })
    });
    let condition = condition_says("True", &format!("node {owner_name} announces 10.0.0.200"));
    // BGP: both nodes advertise the address to the router (ETP Cluster), with the community.
    let both = eventually(Duration::from_secs(15), || next_hops(&bird).len() == 2);
    let community = bird.routes(Afi::Ipv4).unwrap_or_default().iter().any(|r| {
        r.prefix.to_string() == "10.0.0.200/32"
            && r.communities.iter().any(|c| c.to_string() == "65000:7")
    });

    // ETP Local with the only endpoint on the other node: both modes move there.
    let other = 1 - owner;
    let other_name = lab.node(other).name.clone();
    seed(&server, &lab, true, &other_name);
    let moved = eventually(Duration::from_secs(10), || {
        answered_by(Duration::from_secs(2)) == Some(lab.node(other).mac)
    });
    let moved_condition = condition_says("True", &format!("node {other_name} announces"));
    let one = eventually(Duration::from_secs(15), || {
        next_hops(&bird) == vec![IpAddr::V4(lab.node(other).ipv4)]
    });

    // No endpoint anywhere: nobody announces, and the condition says why.
    server.upsert::<EndpointSlice>(&obj(json!({
        "metadata": {"name": "web-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "endpoints": []
    })));
    let silent = condition_says("False", "no node announces 10.0.0.200");
    let withdrawn = eventually(Duration::from_secs(10), || next_hops(&bird).is_empty());

    for tx in &stops {
        let _ = tx.send(true);
    }
    for t in threads {
        let _ = t.join();
    }
    assert!(reported, "an Event says which node announces");
    assert!(
        condition,
        "the Announced condition names the owner: {:?}",
        announced(&server)
    );
    assert!(
        both,
        "both nodes advertise over BGP with ETP Cluster: {:?}",
        next_hops(&bird)
    );
    assert!(community, "the route carries the advertisement's community");
    assert!(
        moved,
        "with externalTrafficPolicy Local the node with the endpoint answers ARP"
    );
    assert!(moved_condition, "the condition follows the owner");
    assert!(
        one,
        "with ETP Local only the endpoint's node advertises over BGP: {:?}",
        next_hops(&bird)
    );
    assert!(silent, "without endpoints the condition says why");
    assert!(withdrawn, "without endpoints the route is withdrawn");
}
