//! Standalone mode on real packets: two lab nodes run the `ferrolb` binary on one config
//! directory; the client reaches a VIP over ARP through the elected node, a Service added while
//! running is announced, and when the announcing host is killed (SIGKILL and its link cut) the
//! other takes over.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ferrolb_tests::l2bench::{ferrolb_bin, spawn_standalone};
use ferrolb_tests::lab::{self, Lab, LabSpec};

fn config(dir: &std::path::Path) {
    let objects = r#"
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: lab}
spec: {addresses: [10.0.0.200-10.0.0.209]}
---
apiVersion: ferrolb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan}
spec: {interfaces: [eth0]}
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
metadata: {name: web}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"#;
    std::fs::write(dir.join("config.yaml"), objects).unwrap();
}

#[test]
fn two_hosts_announce_over_arp_pick_up_edits_and_fail_over() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let conf = lab.dir().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    config(&conf);
    let secret = lab.dir().join("secret");
    std::fs::write(&secret, "lab-secret").unwrap();
    let bin = ferrolb_bin();
    let vip: IpAddr = "10.0.0.200".parse().unwrap();
    let mut procs = Vec::new();
    let mut backends = Vec::new();
    for i in 0..2 {
        let node = lab.node(i);
        procs.push(spawn_standalone(&lab, node, &bin, &conf, &secret).unwrap());
        let backend_addr = SocketAddr::new(IpAddr::V4(node.ipv4), 8080);
        backends.push(node.start_tcp_backend(backend_addr, &node.name).unwrap());
        for v in ["10.0.0.200", "10.0.0.201"] {
            node.install_service_dnat(v.parse().unwrap(), 80, IpAddr::V4(node.ipv4), 8080)
                .unwrap();
        }
    }
    let client = lab.client();
    let served_by = |target: IpAddr, timeout: Duration| -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let _ = client.flush_neighbours();
            let probe = client
                .tcp_probe(SocketAddr::new(target, 80), Duration::from_millis(300))
                .unwrap();
            if probe.ok {
                return probe.response.split_whitespace().next().map(str::to_string);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    };

    // One host answers for the VIP, and the client's traffic reaches that host.
    let owner = served_by(vip, Duration::from_secs(15)).expect("the VIP is reachable");
    let IpAddr::V4(vip4) = vip else {
        unreachable!()
    };
    let reply = client
        .arping(vip4, Duration::from_secs(2))
        .unwrap()
        .expect("ARP answered");
    let owner_host = if owner == "node0" {
        lab.node(0)
    } else {
        lab.node(1)
    };
    assert_eq!(
        reply.mac, owner_host.mac,
        "the MAC that answers ARP is the serving host's"
    );

    // A Service added while running is picked up and announced.
    let more = "---\napiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n";
    std::fs::write(conf.join("api.yaml"), more).unwrap();
    assert!(
        served_by("10.0.0.201".parse().unwrap(), Duration::from_secs(10)).is_some(),
        "the new Service is announced"
    );

    // Kill the host that announces the first VIP: SIGKILL its ferrolb and cut its link.
    let (dead, survivor) = if owner == "node0" {
        (0, "node1")
    } else {
        (1, "node0")
    };
    let killed = Instant::now();
    procs[dead].kill();
    lab.node(dead).link_down().unwrap();
    let after = served_by(vip, Duration::from_secs(10));
    let took = killed.elapsed();
    assert_eq!(after.as_deref(), Some(survivor), "the other host took over");
    println!("failover after SIGKILL + link down: {took:?}");
    assert!(took < Duration::from_secs(5), "failover took {took:?}");
}
