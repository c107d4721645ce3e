//! What the benchmark binaries on the real control plane share (`controller_bench`,
//! `metallb_bench`): command-line options, percentiles, a process's memory and CPU from /proc,
//! the API server's own count of writes, Services created or deleted at a fixed rate, and a
//! watch that notes when each Service is first seen and first seen with an address.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

use crate::cluster::Cluster;
use crate::cluster::ferrolb::ingress_of;

/// The value after `name` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// A number after `name` on the command line, or `default`.
pub fn arg_usize(name: &str, default: usize) -> usize {
    arg(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `p` quantile (0..=1) of sorted durations, nearest rank; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// A field of `/proc/PID/status` in KiB (`VmRSS:`, `VmHWM:`); 0 when the process is gone.
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with(field)).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The machine's load averages (1, 5, 15 minutes).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The API server's `apiserver_request_total` for writes, summed by
/// "VERB resource[/subresource]".
pub fn api_writes(c: &Cluster) -> BTreeMap<String, f64> {
    let Ok(req) = http::Request::get("/metrics").body(Vec::new()) else {
        return BTreeMap::new();
    };
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
        let key = match label("subresource").as_str() {
            "" => format!("{verb} {}", label("resource")),
            sub => format!("{verb} {}/{sub}", label("resource")),
        };
        let v: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(key).or_insert(0.0) += v;
    }
    out
}

/// What a request at a fixed rate does to each Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Create,
    Delete,
}

/// Sends `count` requests at `rate` per second, at most 32 in flight, for the Services
/// `make(0..count)`; returns when each was sent, by name, and how long sending all took.
/// Panics when the server refuses one (a benchmark that lost a request measures nothing).
pub fn at_rate(
    c: &Cluster,
    api: &Api<Service>,
    request: Request,
    count: usize,
    rate: usize,
    make: impl Fn(usize) -> Service,
) -> (BTreeMap<String, Instant>, Duration) {
    let sent: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    c.block_on(async {
        let limit = Arc::new(tokio::sync::Semaphore::new(32));
        let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..count {
            let due = started + interval * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            let permit = Arc::clone(&limit)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let (api, sent, svc) = (api.clone(), Arc::clone(&sent), make(i));
            tasks.spawn(async move {
                let name = svc.metadata.name.clone().unwrap_or_default();
                let t = Instant::now();
                match request {
                    Request::Create => {
                        api.create(&PostParams::default(), &svc)
                            .await
                            .expect("create");
                    }
                    Request::Delete => {
                        api.delete(&name, &DeleteParams::default())
                            .await
                            .expect("delete");
                    }
                }
                sent.lock().expect("lock").insert(name, t);
                drop(permit);
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    let elapsed = started.elapsed();
    let sent = sent.lock().expect("lock").clone();
    (sent, elapsed)
}

/// A watch on Services noting when each is first seen at all (the API server's share of the
/// latency: the create and its delivery to watchers) and first seen with an address.
pub struct AssignmentWatch {
    appeared: Arc<Mutex<BTreeMap<String, Instant>>>,
    assigned: Arc<Mutex<BTreeMap<String, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

/// When each Service was first seen, and first seen with an address.
pub struct Sightings {
    pub appeared: BTreeMap<String, Instant>,
    pub assigned: BTreeMap<String, Instant>,
}

impl AssignmentWatch {
    pub fn start(c: &Cluster, api: &Api<Service>) -> AssignmentWatch {
        let appeared: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
        let assigned: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
        let (api, seen, addr) = (api.clone(), Arc::clone(&appeared), Arc::clone(&assigned));
        let task = c.spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(Ok(svc)) = events.next().await {
                let now = Instant::now();
                let name = svc.metadata.name.clone().unwrap_or_default();
                seen.lock()
                    .expect("lock")
                    .entry(name.clone())
                    .or_insert(now);
                if !ingress_of(Some(&svc)).is_empty() {
                    addr.lock().expect("lock").entry(name).or_insert(now);
                }
            }
        });
        AssignmentWatch {
            appeared,
            assigned,
            task,
        }
    }

    /// How many Services have been seen with an address.
    pub fn assigned(&self) -> usize {
        self.assigned.lock().expect("lock").len()
    }

    /// Stops the watch.
    pub fn stop(self) -> Sightings {
        self.task.abort();
        Sightings {
            appeared: self.appeared.lock().expect("lock").clone(),
            assigned: self.assigned.lock().expect("lock").clone(),
        }
    }
}

impl Sightings {
    /// From each request in `sent` to the Service's address seen (create -> IP), sorted.
    pub fn create_to_ip(&self, sent: &BTreeMap<String, Instant>) -> Vec<Duration> {
        since(sent, &self.assigned)
    }

    /// From each request in `sent` to the Service seen at all (the API server alone), sorted.
    pub fn create_to_seen(&self, sent: &BTreeMap<String, Instant>) -> Vec<Duration> {
        since(sent, &self.appeared)
    }

    /// From each Service of `sent` seen to its address seen (the controller's share), sorted.
    pub fn controller_share(&self, sent: &BTreeMap<String, Instant>) -> Vec<Duration> {
        let mut v: Vec<Duration> = (self.appeared.iter())
            .filter(|(n, _)| sent.contains_key(*n))
            .filter_map(|(n, a)| {
                self.assigned
                    .get(n)
                    .map(|s| s.saturating_duration_since(*a))
            })
            .collect();
        v.sort();
        v
    }
}

fn since(sent: &BTreeMap<String, Instant>, at: &BTreeMap<String, Instant>) -> Vec<Duration> {
    let mut v: Vec<Duration> = (sent.iter())
        .filter_map(|(n, t)| at.get(n).map(|s| s.saturating_duration_since(*t)))
        .collect();
    v.sort();
    v
}

/// Every Service's addresses in `api`'s namespace, by name.
pub fn addresses(c: &Cluster, api: &Api<Service>) -> BTreeMap<String, Vec<IpAddr>> {
    c.block_on(api.list(&Default::default()))
        .expect("list Services")
        .items
        .iter()
        .map(|s| {
            (
                s.metadata.name.clone().unwrap_or_default(),
                ingress_of(Some(s)),
            )
        })
        .collect()
}
