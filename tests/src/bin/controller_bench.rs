//! Controller benchmark on a real kube-apiserver: the release `ferrolb-controller`, installed by
//! Helm and run from its Deployment with its ServiceAccount token, against a fresh control plane
//! (etcd, kube-apiserver, kube-controller-manager) per trial. Creates LoadBalancer Services
//! (`allocateLoadBalancerNodePorts: false`, so node ports do not run out) at a fixed rate and
//! reports create -> IP latency (from the create call to the moment a watch sees the address),
//! the time until all are assigned, the API writes per Service (from the API server's own
//! `apiserver_request_total`), the controller's peak RSS and CPU seconds; then a controller
//! restart with every Service in place: time until ready, addresses moved, Services written.
//!
//! Run (root: the controller's pod gets a network namespace):
//!
//! ```text
//! cargo build --release -p ferrolb-controller -p ferrolb-tests --bin controller_bench
//! target/release/controller_bench [--services 10000] [--rate 500] [--trials 3]
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferrolb_tests::bench::{
    self, AssignmentWatch, Request, api_writes as writes, arg_usize as arg, cpu_seconds,
    load_average, percentile, proc_kib,
};
use ferrolb_tests::cluster::ferrolb::{NAMESPACE, RELEASE};
use ferrolb_tests::cluster::{self, Cluster};
use ferrolb_tests::lab;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use serde_json::json;

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

fn service(i: usize) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{i:05}"), "namespace": "bench"},
        "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
                 "ipFamilies": ["IPv4"], "ports": [{"port": 80, "protocol": "TCP"}]}
    }))
    .expect("a valid Service")
}

fn main() {
    let count = arg("--services", 10_000);
    let rate = arg("--rate", 500).max(1);
    let trials = arg("--trials", 3).max(1);
    if !(lab::require_lab() && cluster::require_cluster()) {
        std::process::exit(2);
    }
    let tools = cluster::tools().expect("tools");
    println!(
        "ferrolb-controller on a real kube-apiserver ({}): {count} Services at {rate}/s, {trials} trials, {} CPUs",
        tools.apiserver.display(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    for trial in 1..=trials {
        println!("trial {trial} (load average before: {})", load_average());
        trial_run(count, rate);
    }
}

fn trial_run(count: usize, rate: usize) {
    let c = Cluster::start().expect("control plane");
    c.helm_install(
        RELEASE,
        NAMESPACE,
        &["controller.replicas=1", "logging.level=warn"],
    )
    .expect("helm install");
    c.apply_yaml(
        "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: bench, namespace: ferrolb-system}\nspec: {addresses: [10.100.0.0/16, fd00:100::/64]}\n",
    )
    .expect("pool");
    c.create_namespace("bench", &[]).expect("namespace");
    let mut controller = c
        .start_controller("ferrolb-controller-bench")
        .expect("controller");
    let pid = controller.process.pid();
    let ready = |p: &cluster::install::PodProcess| {
        p.http_get(7472, "/readyz")
            .is_some_and(|(code, _)| code == 200)
    };
    lab::wait_until(
        "the controller to be ready",
        Duration::from_secs(60),
        || ready(&controller),
    )
    .expect("ready");
    let api: Api<Service> = Api::namespaced(c.client(), "bench");
    let mut warm = service(0);
    warm.metadata.name = Some("warm-up".into());
    c.block_on(api.create(&PostParams::default(), &warm))
        .expect("warm-up");
    c.wait_ingress("bench", "warm-up", Duration::from_secs(60))
        .expect("warm-up assigned");
    let rss_idle = proc_kib(pid, "VmRSS:");
    let cpu_before = cpu_seconds(pid);

    let watch = AssignmentWatch::start(&c, &api);
    let before = writes(&c);
    let started = Instant::now();
    // Creates at a fixed rate, at most 32 in flight (a create takes a few ms on this server).
    let (sent, created_in) = bench::at_rate(&c, &api, Request::Create, count, rate, service);
    lab::wait_until(
        "every Service to be assigned",
        Duration::from_secs(600),
        || watch.assigned() > count,
    )
    .expect("all assigned");
    let all_after = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let after = writes(&c);
    let rss_peak = proc_kib(pid, "VmHWM:");
    let cpu = cpu_seconds(pid) - cpu_before;
    let sightings = watch.stop();
    let latencies = sightings.create_to_ip(&sent);
    let watch_latencies = sightings.create_to_seen(&sent);
    // The controller's own share: from the Service's first appearance to its address's.
    let controller_share = sightings.controller_share(&sent);
    let per = |key: &str| delta(&after, &before, key) / count as f64;
    println!(
        "  created in {:.2} s ({:.0}/s achieved); all assigned after {:.2} s",
        created_in.as_secs_f64(),
        count as f64 / created_in.as_secs_f64(),
        all_after.as_secs_f64()
    );
    println!(
        "  create -> IP seen p50 / p99 / max: {} / {} / {} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "  create -> Service seen by a watch (the API server alone) p50 / p99 / max: {} / {} / {} ms",
        ms(percentile(&watch_latencies, 0.5)),
        ms(percentile(&watch_latencies, 0.99)),
        ms(watch_latencies.last().copied().unwrap_or_default())
    );
    println!(
        "  Service seen -> its IP seen (the controller's share) p50 / p99 / max: {} / {} / {} ms",
        ms(percentile(&controller_share, 0.5)),
        ms(percentile(&controller_share, 0.99)),
        ms(controller_share.last().copied().unwrap_or_default())
    );
    println!(
        "  writes per Service: status {:.3}, metadata {:.3}, events {:.3} (all writes to the server: {:.0})",
        per("PATCH services/status"),
        per("PATCH services"),
        per("POST events"),
        after.values().sum::<f64>() - before.values().sum::<f64>()
    );
    let mut kinds: Vec<(String, f64)> = (after.keys())
        .map(|k| (k.clone(), delta(&after, &before, k)))
        .filter(|(_, n)| *n >= count as f64 / 100.0)
        .collect();
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n:.0}")).collect();
    println!(
        "  writes the server received, by kind: {}",
        kinds.join(", ")
    );
    println!(
        "  controller RSS idle / peak: {:.1} / {:.1} MiB; CPU {cpu:.1} s over the burst",
        rss_idle as f64 / 1024.0,
        rss_peak as f64 / 1024.0
    );

    // Restart with everything in place.
    let snapshot = || bench::addresses(&c, &api);
    let held = snapshot();
    let before = writes(&c);
    controller.process.kill();
    let t = Instant::now();
    let replacement = c
        .start_controller("ferrolb-controller-bench-2")
        .expect("controller");
    lab::wait_until(
        "the new controller to be ready",
        Duration::from_secs(300),
        || ready(&replacement),
    )
    .expect("ready");
    let ready_after = t.elapsed();
    // A killed leader does not release its Lease: the new replica leads once it expires.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(c.client(), NAMESPACE);
    lab::wait_until(
        "the new controller to lead",
        Duration::from_secs(120),
        || {
            c.block_on(leases.get_opt("ferrolb-controller"))
                .ok()
                .flatten()
                .and_then(|l| l.spec?.holder_identity)
                .is_some_and(|h| h == replacement.name)
        },
    )
    .expect("leader");
    let leader_after = t.elapsed();
    let mut probe = service(0);
    probe.metadata.name = Some("after-restart".into());
    c.block_on(api.create(&PostParams::default(), &probe))
        .expect("create");
    c.wait_ingress("bench", "after-restart", Duration::from_secs(120))
        .expect("assigned after restart");
    let working_after = t.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let now = snapshot();
    let moved = held
        .iter()
        .filter(|(n, ips)| now.get(*n) != Some(ips))
        .count();
    let after = writes(&c);
    println!(
        "  restart: ready (caches synced) after {:.2} s, leader after {:.2} s (the killed leader's Lease expires), a new Service assigned after {:.2} s; addresses moved: {moved}; Services written: {:.0} status, {:.0} metadata (1 of them the new one); peak RSS {:.1} MiB",
        ready_after.as_secs_f64(),
        leader_after.as_secs_f64(),
        working_after.as_secs_f64(),
        delta(&after, &before, "PATCH services/status"),
        delta(&after, &before, "PATCH services"),
        proc_kib(replacement.process.pid(), "VmHWM:") as f64 / 1024.0
    );
}
