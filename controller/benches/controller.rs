//! Controller benchmark: the `ferrolb-controller` binary, as its own process, against the fake
//! API server over HTTP on loopback. Creates LoadBalancer Services at a steady rate and reports
//! the time from each create to its status patch (p50/p99), the API requests sent per Service,
//! and the controller's peak RSS.
//!
//! Run: `cargo bench -p ferrolb-controller --bench controller` (env `SERVICES`, default 10000;
//! `RATE` per second, default 2000; `TRIALS`, default 3). Each trial is a fresh API server and a
//! fresh controller process; the machine's load average is printed with each, since a shared
//! 2-core machine makes latency noisy.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferrolb_config::api;
use ferrolb_fake_apiserver::FakeApiServer;
use http::Method;
use k8s_openapi::api::core::v1::Service;
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn service(i: usize) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{i:05}"), "namespace": "bench"},
        "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv4"], "ports": [{"port": 80, "protocol": "TCP"}]}
    }))
    .expect("valid service")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let count = env_usize("SERVICES", 10_000);
    let rate = env_usize("RATE", 2_000).max(1);
    let trials = env_usize("TRIALS", 3).max(1);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "ferrolb-controller benchmark: {count} LoadBalancer Services created at {rate}/s, {trials} trials; {} CPUs ({cpu})",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    for trial in 1..=trials {
        println!("trial {trial} (load average before: {})", load_average());
        run_trial(count, rate).await;
    }
}

async fn run_trial(count: usize, rate: usize) {
    let server = FakeApiServer::new();
    let pool: api::IPAddressPool = serde_json::from_value(json!({
        "apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "bench", "namespace": "ferrolb-system"},
        "spec": {"addresses": ["10.100.0.0/16", "fd00:100::/64"]}
    }))
    .expect("valid pool");
    server.upsert(&pool);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(server.clone().serve_http(listener));
    let dir = std::env::temp_dir().join(format!("ferrolb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://{addr}\"}}\nusers:\n- name: bench\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: bench, namespace: default}}\ncurrent-context: fake\n"
        ),
    )
    .expect("kubeconfig");

    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrolb-controller"))
        .args([
            "--leader-elect=false",
            "--metrics-addr=127.0.0.1:0",
            "--namespace=ferrolb-system",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ferrolb-controller");
    let pid = child.id();

    // Warm-up: the controller is up once it assigns a first Service.
    let mut warm = service(0);
    warm.metadata.name = Some("warm-up".into());
    server.upsert(&warm);
    let up = server
        .wait_until(Duration::from_secs(60), |s| {
            s.get::<Service>(Some("bench"), "warm-up")
                .and_then(|s| s.status?.load_balancer?.ingress)
                .is_some_and(|i| !i.is_empty())
        })
        .await;
    assert!(up, "controller did not come up");
    let rss_idle = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    server.clear_requests();

    // Create Services at a steady rate.
    let started = Instant::now();
    let mut created: BTreeMap<String, Instant> = BTreeMap::new();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    for i in 0..count {
        let due = started + interval * i as u32;
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        }
        let svc = service(i);
        let name = svc.metadata.name.clone().unwrap_or_default();
        created.insert(name, Instant::now());
        server.upsert(&svc);
    }
    let all = server
        .wait_until(Duration::from_secs(300), |s| {
            s.list_json::<Service>()
                .iter()
                .filter(|v| v["status"]["loadBalancer"]["ingress"].is_array())
                .count()
                > count
        })
        .await;
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_peak = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(all, "not every Service got an address");

    let requests = server.requests();
    let mut latencies = Vec::new();
    let mut status_writes: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut annotation_writes, mut events, mut other_writes, mut reads) =
        (0usize, 0usize, 0usize, 0usize);
    for r in &requests {
        let service = r.path.strip_prefix("/api/v1/namespaces/bench/services/");
        match (&r.method, service) {
            (&Method::PATCH, Some(rest)) if rest.ends_with("/status") => {
                let name = rest.trim_end_matches("/status");
                let n = status_writes.entry(name).or_insert(0);
                *n += 1;
                if *n == 1
                    && let Some(t0) = created.get(name)
                {
                    latencies.push(r.received_at.saturating_duration_since(*t0));
                }
            }
            (&Method::PATCH, Some(_)) => annotation_writes += 1,
            (_, _) if r.path.contains("/events") => events += 1,
            (&Method::GET, _) => reads += 1,
            _ => other_writes += 1,
        }
    }
    latencies.sort();
    let max_status = status_writes.values().copied().max().unwrap_or(0);
    let total_status: usize = status_writes.values().sum();
    println!(
        "  all assigned after          {:.2} s",
        elapsed.as_secs_f64()
    );
    println!(
        "  create -> status patch p50  {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3
    );
    println!(
        "  create -> status patch p99  {:.2} ms",
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "  create -> status patch max  {:.2} ms",
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "  status writes per Service   {:.3} (max {max_status})",
        total_status as f64 / count as f64
    );
    println!(
        "  annotation writes/Service   {:.3}",
        annotation_writes as f64 / count as f64
    );
    println!(
        "  events per Service          {:.3}",
        events as f64 / count as f64
    );
    println!("  other writes                {other_writes}; reads (list/watch/get) {reads}");
    println!(
        "  controller RSS idle / peak  {:.1} MiB / {:.1} MiB",
        rss_idle as f64 / 1024.0,
        rss_peak as f64 / 1024.0
    );
}
