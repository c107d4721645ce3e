//! The controller on a real kube-apiserver, as its own process with the chart's ServiceAccount
//! token: a restart with 1,000 Services in place moves no address (and writes none of them), and
//! leader hand-over between two replicas on the real Lease API when the leader is frozen
//! (SIGSTOP) rather than killed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ferrolb_tests::cluster::ferrolb::{NAMESPACE, RELEASE, ingress_of};
use ferrolb_tests::cluster::install::PodProcess;
use ferrolb_tests::cluster::{self, Cluster};
use ferrolb_tests::lab::{self, Signal};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

const POOL: &str = r#"
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: big, namespace: ferrolb-system}
spec: {addresses: ["10.20.0.0/20"]}
"#;

fn ready() -> bool {
    lab::require_lab() && cluster::require_cluster()
}

fn service(namespace: &str, name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
                 "ports": [{"port": 80, "protocol": "TCP"}]}
    }))
    .unwrap()
}

/// Every Service of `namespace` with its ingress IPs and resourceVersion.
fn snapshot(c: &Cluster, namespace: &str) -> BTreeMap<String, (Vec<IpAddr>, String)> {
    let api: Api<Service> = Api::namespaced(c.client(), namespace);
    let list = c.block_on(api.list(&ListParams::default())).unwrap();
    list.items
        .into_iter()
        .map(|s| {
            let rv = s.metadata.resource_version.clone().unwrap_or_default();
            (
                s.metadata.name.clone().unwrap_or_default(),
                (ingress_of(Some(&s)), rv),
            )
        })
        .collect()
}

fn wait_ready(controller: &PodProcess) {
    lab::wait_until("the controller's /readyz", Duration::from_secs(60), || {
        controller
            .http_get(7472, "/readyz")
            .is_some_and(|(code, _)| code == 200)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab::tail(&controller.process.log(), 30)));
}

fn lease_holder(c: &Cluster) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(c.client(), NAMESPACE);
    c.block_on(api.get_opt("ferrolb-controller"))
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

fn assert_unique(snap: &BTreeMap<String, (Vec<IpAddr>, String)>) {
    let mut seen: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for (name, (ips, _)) in snap {
        for ip in ips {
            if let Some(other) = seen.insert(*ip, name) {
                panic!("{ip} is held by both {other} and {name}");
            }
        }
    }
}

#[test]
fn a_restart_with_a_thousand_services_moves_and_rewrites_none() {
    if !ready() {
        return;
    }
    const COUNT: usize = 1000;
    let c = Cluster::start().unwrap();
    c.helm_install(RELEASE, NAMESPACE, &["controller.replicas=1"])
        .unwrap();
    c.apply_yaml(POOL).unwrap();
    c.create_namespace("bulk", &[]).unwrap();
    let mut controller = c.start_controller("ferrolb-controller-a").unwrap();
    wait_ready(&controller);
    let api: Api<Service> = Api::namespaced(c.client(), "bulk");
    c.block_on(async {
        for i in 0..COUNT {
            api.create(
                &PostParams::default(),
                &service("bulk", &format!("svc-{i:04}")),
            )
            .await
            .unwrap();
        }
    });
    let started = Instant::now();
    lab::wait_until(
        "every Service to get an address",
        Duration::from_secs(180),
        || snapshot(&c, "bulk").values().all(|(ips, _)| ips.len() == 1),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab::tail(&controller.process.log(), 30)));
    eprintln!(
        "{COUNT} Services assigned within {:?} of the last create",
        started.elapsed()
    );
    // Let the last writes (pool annotations, events) land, then take the picture.
    std::thread::sleep(Duration::from_secs(3));
    let before = snapshot(&c, "bulk");
    assert_eq!(before.len(), COUNT);
    assert_unique(&before);

    // A crash, and a new replica.
    controller.process.kill();
    let replacement = c.start_controller("ferrolb-controller-b").unwrap();
    wait_ready(&replacement);
    // It works: a new Service gets an address...
    c.block_on(api.create(&PostParams::default(), &service("bulk", "after")))
        .unwrap();
    c.wait_ingress("bulk", "after", Duration::from_secs(60))
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // ... and no Service it found was moved, or even written.
    let after = snapshot(&c, "bulk");
    assert_unique(&after);
    let mut moved = Vec::new();
    let mut rewritten = 0;
    for (name, (ips, rv)) in &before {
        let (ips_after, rv_after) = &after[name];
        if ips_after != ips {
            moved.push(format!("{name}: {ips:?} -> {ips_after:?}"));
        }
        if rv_after != rv {
            rewritten += 1;
        }
    }
    assert!(
        moved.is_empty(),
        "{} addresses moved: {:?}",
        moved.len(),
        &moved[..moved.len().min(5)]
    );
    assert_eq!(
        rewritten, 0,
        "the restarted controller rewrote {rewritten} Services that needed nothing"
    );
}

#[test]
fn a_frozen_leader_hands_over_and_nothing_is_assigned_twice() {
    if !ready() {
        return;
    }
    let c = Cluster::start().unwrap();
    c.helm_install(RELEASE, NAMESPACE, &[]).unwrap();
    c.apply_yaml(POOL).unwrap();
    c.create_namespace("apps", &[]).unwrap();
    let a = c.start_controller("ferrolb-controller-a").unwrap();
    wait_ready(&a);
    lab::wait_until("a leader", Duration::from_secs(30), || {
        lease_holder(&c).is_some()
    })
    .unwrap();
    let b = c.start_controller("ferrolb-controller-b").unwrap();
    wait_ready(&b);
    let leader = lease_holder(&c).unwrap();
    let (frozen, standby) = if leader == a.name { (&a, &b) } else { (&b, &a) };
    let api: Api<Service> = Api::namespaced(c.client(), "apps");
    for i in 0..20 {
        c.block_on(api.create(
            &PostParams::default(),
            &service("apps", &format!("early-{i}")),
        ))
        .unwrap();
    }
    lab::wait_until(
        "the early Services to be assigned",
        Duration::from_secs(30),
        || snapshot(&c, "apps").values().all(|(ips, _)| ips.len() == 1),
    )
    .unwrap();
    let early = snapshot(&c, "apps");

    // Freeze the leader: it keeps its connections but does nothing, as on a stalled node.
    assert!(frozen.process.signal(Signal::Stop));
    let t0 = Instant::now();
    lab::wait_until(
        "the standby to take the lease",
        Duration::from_secs(60),
        || lease_holder(&c).as_deref() == Some(standby.name.as_str()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab::tail(&standby.process.log(), 20)));
    eprintln!("hand-over after {:?} (lease duration 15 s)", t0.elapsed());
    for i in 0..20 {
        c.block_on(api.create(
            &PostParams::default(),
            &service("apps", &format!("late-{i}")),
        ))
        .unwrap();
    }
    lab::wait_until(
        "the new leader to assign the late Services",
        Duration::from_secs(30),
        || snapshot(&c, "apps").values().all(|(ips, _)| ips.len() == 1),
    )
    .unwrap();
    // Thaw the old leader (20 s frozen in all): it must find it lost the lease, and nothing it
    // does may move or duplicate an address.
    let frozen_for = Duration::from_secs(20).saturating_sub(t0.elapsed());
    std::thread::sleep(frozen_for);
    assert!(frozen.process.signal(Signal::Continue));
    std::thread::sleep(Duration::from_secs(5));
    let end = snapshot(&c, "apps");
    assert_unique(&end);
    for (name, (ips, _)) in &early {
        assert_eq!(
            &end[name].0, ips,
            "{name} kept its address through the hand-over"
        );
    }
    assert_eq!(
        lease_holder(&c).as_deref(),
        Some(standby.name.as_str()),
        "the lease stays with the new leader"
    );
    let log = frozen.process.log();
    assert!(
        log.contains("lost the lease") || log.contains("stepping down"),
        "the thawed leader notices:\n{}",
        lab::tail(&log, 20)
    );
    let names: BTreeSet<&String> = end.keys().collect();
    assert_eq!(names.len(), 40);
}
