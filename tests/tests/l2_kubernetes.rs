//! The speaker in Kubernetes mode, on real packets: speakers on two lab nodes read Services,
//! EndpointSlices, Nodes and the config from the in-process API server, one answers ARP for the
//! Service's address and says so with an Event, and ownership follows the endpoints for
//! externalTrafficPolicy Local.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ferrolb_crds::api;
use ferrolb_fake_apiserver::FakeApiServer;
use ferrolb_speaker::kubernetes::{self, Settings};
use ferrolb_tests::lab::{self, Lab, LabSpec};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use tokio::sync::watch;

fn seed(server: &FakeApiServer, lab: &Lab, local: bool, endpoint_node: &str) {
    let pool: api::IPAddressPool = serde_json::from_value(json!({
        "metadata": {"name": "lan", "namespace": "ferrolb-system"}, "spec": {"addresses": ["10.0.0.200-10.0.0.209"]}
    }))
    .unwrap();
    server.upsert(&pool);
    let ad: api::L2Advertisement = serde_json::from_value(
        json!({"metadata": {"name": "lan", "namespace": "ferrolb-system"}, "spec": {}}),
    )
    .unwrap();
    server.upsert(&ad);
    for i in 0..2 {
        let n = lab.node(i);
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": n.name},
            "status": {"addresses": [{"type": "InternalIP", "address": n.ipv4.to_string()}]}
        }))
        .unwrap();
        server.upsert(&node);
    }
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "annotations": {"ferrolb.io/ip-allocated-from-pool": "lan"}},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": if local { "Local" } else { "Cluster" }, "ports": [{"port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.200"}]}}
    }))
    .unwrap();
    server.upsert(&svc);
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": true}, "nodeName": endpoint_node}]
    }))
    .unwrap();
    server.upsert(&slice);
}

#[test]
fn speakers_in_kubernetes_mode_answer_report_and_follow_endpoints() {
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
    let mac = answered_by(Duration::from_secs(15)).expect("someone answers ARP for the VIP");
    let owner = (0..2)
        .find(|i| lab.node(*i).mac == mac)
        .expect("a node's MAC answers");
    let owner_name = lab.node(owner).name.clone();
    let reported = server.requests().iter().any(|r| {
        r.path.contains("/events")
            && r.body["reason"] == "nodeAssigned"
            && r.body["note"]
                .as_str()
                .is_some_and(|n| n.contains(&owner_name))
    });
    let reported = reported || {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = false;
        while !seen && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            seen = server
                .requests()
                .iter()
                .any(|r| r.path.contains("/events") && r.body["reason"] == "nodeAssigned");
        }
        seen
    };
    assert!(reported, "an Event says which node announces");
    let announced = |server: &FakeApiServer| -> Option<(String, String)> {
        let svc = server.get::<Service>(Some("default"), "web")?;
        let c = svc
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == kubernetes::ANNOUNCED_CONDITION)?;
        Some((c.status, c.message))
    };
    let wait_condition = |want_status: &str, want_text: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if announced(&server).is_some_and(|(s, m)| s == want_status && m.contains(want_text)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    };
    assert!(
        wait_condition("True", &format!("node {owner_name} announces 10.0.0.200")),
        "condition: {:?}",
        announced(&server)
    );

    // ETP Local with the only endpoint on the other node: ownership moves there.
    let other = 1 - owner;
    seed(&server, &lab, true, &lab.node(other).name.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut moved = false;
    while Instant::now() < deadline && !moved {
        moved = answered_by(Duration::from_secs(2)) == Some(lab.node(other).mac);
    }
    let other_name = lab.node(other).name.clone();
    let moved_condition = wait_condition("True", &format!("node {other_name} announces"));
    // No endpoint anywhere: nobody announces, and the condition says why.
    let empty: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "endpoints": []
    }))
    .unwrap();
    server.upsert(&empty);
    let silent_condition = wait_condition("False", "no node announces 10.0.0.200");
    for tx in &stops {
        let _ = tx.send(true);
    }
    for t in threads {
        let _ = t.join();
    }
    assert!(
        moved,
        "with externalTrafficPolicy Local the node with the endpoint answers"
    );
    assert!(moved_condition, "the condition follows the owner");
    assert!(silent_condition, "without endpoints the condition says why");
}
