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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrolb_tests::cluster::ferrolb::{NAMESPACE, RELEASE, ingress_of};
use ferrolb_tests::cluster::{self, Cluster};
use ferrolb_tests::lab;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn proc_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with(field)).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `apiserver_request_total` summed per (verb, resource, subresource), for writes.
fn writes(c: &Cluster) -> BTreeMap<String, f64> {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = c.block_on(c.client().request_text(req)).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |k: &str| {
            line.split(&format!("{k}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        let verb = label("verb");
        if !["POST", "PATCH", "PUT", "DELETE"].contains(&verb.as_str()) {
            continue;
        }
        let key = format!(
            "{verb} {}{}",
            label("resource"),
            match label("subresource").as_str() {
                "" => String::new(),
                s => format!("/{s}"),
            }
        );
        let v: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(key).or_insert(0.0) += v;
    }
    out
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

    // A watch that notes when each Service is first seen at all (the API server's own share of
    // the latency: the create and its delivery to watchers) and first seen with an address.
    let seen: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let appeared: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let watch = {
        let (api, seen, appeared) = (api.clone(), Arc::clone(&seen), Arc::clone(&appeared));
        c.spawn(async move {
            {
                let mut events = watcher(api, watcher::Config::default())
                    .applied_objects()
                    .boxed();
                while let Some(Ok(svc)) = events.next().await {
                    let now = Instant::now();
                    let name = svc.metadata.name.clone().unwrap_or_default();
                    appeared
                        .lock()
                        .expect("lock")
                        .entry(name.clone())
                        .or_insert(now);
                    if !ingress_of(Some(&svc)).is_empty() {
                        seen.lock().expect("lock").entry(name).or_insert(now);
                    }
                }
            }
        })
    };
    let before = writes(&c);

    // Creates at a fixed rate, at most 32 in flight (a create takes a few ms on this server).
    let sent: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    c.block_on(async {
        let limit = Arc::new(tokio::sync::Semaphore::new(32));
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..count {
            let due = started + interval * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            let permit = Arc::clone(&limit).acquire_owned().await.expect("semaphore");
            let (api, sent) = (api.clone(), Arc::clone(&sent));
            tasks.spawn(async move {
                let svc = service(i);
                let name = svc.metadata.name.clone().unwrap_or_default();
                let t = Instant::now();
                api.create(&PostParams::default(), &svc)
                    .await
                    .expect("create");
                sent.lock().expect("lock").insert(name, t);
                drop(permit);
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    let created_in = started.elapsed();
    lab::wait_until(
        "every Service to be assigned",
        Duration::from_secs(600),
        || seen.lock().expect("lock").len() > count,
    )
    .expect("all assigned");
    let all_after = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let after = writes(&c);
    let rss_peak = proc_kib(pid, "VmHWM:");
    let cpu = cpu_seconds(pid) - cpu_before;
    watch.abort();

    let sent = sent.lock().expect("lock").clone();
    let seen_at = seen.lock().expect("lock").clone();
    let appeared_at = appeared.lock().expect("lock").clone();
    let since_sent = |at: &BTreeMap<String, Instant>| -> Vec<Duration> {
        let mut v: Vec<Duration> = (sent.iter())
            .filter_map(|(n, t)| at.get(n).map(|s| s.saturating_duration_since(*t)))
            .collect();
        v.sort();
        v
    };
    let latencies = since_sent(&seen_at);
    let watch_latencies = since_sent(&appeared_at);
    // The controller's own share: from the Service's first appearance to its address's.
    let mut controller_share: Vec<Duration> = (appeared_at.iter())
        .filter(|(n, _)| sent.contains_key(*n))
        .filter_map(|(n, a)| seen_at.get(n).map(|s| s.saturating_duration_since(*a)))
        .collect();
    controller_share.sort();
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
    let snapshot = || -> BTreeMap<String, Vec<std::net::IpAddr>> {
        c.block_on(api.list(&ListParams::default()))
            .expect("list")
            .items
            .iter()
            .map(|s| {
                (
                    s.metadata.name.clone().unwrap_or_default(),
                    ingress_of(Some(s)),
                )
            })
            .collect()
    };
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
