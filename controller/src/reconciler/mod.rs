//! The reconciler: one task that owns the allocator and turns watch events into Service status.
//!
//! Watches (kube-runtime watchers and reflectors) feed one queue of [`Input`]s; the loop handles
//! them one at a time, so the allocator needs no locks and its decisions are in event order. Writes
//! go out on their own tasks (several at once), never block the loop, and are retried with backoff.
//! Only the leader allocates and writes; every replica keeps its caches warm.

use crate::leader::Term;
use ferrolb_kubernetes::client;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrolb_config::api::{self, CONDITION_VALID};
use ferrolb_config::selector::Labels;
use ferrolb_config::{self as config, Config, Kind, ObjectRef};
use ferrolb_kubernetes::condition;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::metrics::{Metrics, ReasonLabels};
use crate::service_status::{self, Desired, Outcome};
use ferrolb_allocator::from_service;
use ferrolb_allocator::{Allocator, Refusal, ServiceKey, StalePolicy};
use ferrolb_kubernetes::config_source::{self, ConfigStores};
use ferrolb_kubernetes::events::{Event, EventType, Publisher};

mod config_status;
mod write;

pub use config_status::HasConfigStatus;
use config_status::truncate;
use write::caught_up;

/// How the reconciler runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace of the config objects (and of the Lease).
    pub namespace: String,
    /// `--lb-class`: handle only Services of this class; `None`: only Services without a class.
    pub lb_class: Option<String>,
    /// What to do with an address that config no longer covers.
    pub stale_policy: StalePolicy,
    /// Field manager of every write, and the reporting controller of events.
    pub manager: String,
    /// This replica's name (the pod name), for events.
    pub instance: String,
    /// How many writes may be in flight at once.
    pub max_concurrent_writes: usize,
    /// The leader's term: every write is made under it ([`Term::always`] without election).
    pub term: Term,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: "ferrolb-system".into(),
            lb_class: None,
            stale_policy: StalePolicy::default(),
            manager: "ferrolb-controller".into(),
            instance: "ferrolb-controller".into(),
            max_concurrent_writes: 32,
            term: Term::always(),
        }
    }
}

// One Input is in flight at a time (a merged stream, not a buffered queue): its size is harmless.
#[allow(clippy::large_enum_variant)]
enum Input {
    Service(watcher::Event<Service>),
    Namespace(watcher::Event<Namespace>),
    ConfigChanged,
    ConfigReady,
    Leader(bool),
    /// A write finished: the resourceVersion it produced, or `None` when it failed.
    Written {
        key: ServiceKey,
        written: Option<String>,
    },
    Retry(ServiceKey),
    FlushStatuses,
}

/// One Service write: the patches that take it to the desired state, and the events to publish.
struct Write {
    service: Service,
    status: Option<Value>,
    annotations: Option<Value>,
    events: Vec<Event>,
}

struct Reconciler {
    settings: Settings,
    client: Client,
    metrics: Arc<Metrics>,
    recorder: Arc<Publisher>,
    tx: mpsc::UnboundedSender<Input>,
    stores: ConfigStores,

    services: BTreeMap<ServiceKey, Service>,
    relist: Option<BTreeMap<ServiceKey, Service>>,
    namespaces: BTreeMap<String, Labels>,
    namespace_relist: Option<BTreeMap<String, Labels>>,
    services_synced: bool,
    namespaces_synced: bool,
    config_synced: bool,

    config: Option<Config>,
    /// Each config object accepted or refused on its own, refused ones' last accepted versions
    /// kept in force (issue 13, class 2).
    config_model: config::LastGood,
    /// The last verdicts: errors, kept versions and notes, for the objects' Valid conditions.
    built: Option<config::Built>,
    leader: bool,
    allocator: Option<Allocator>,

    in_flight: BTreeMap<ServiceKey, Desired>,
    /// Written, and not yet seen back through the watch: (resourceVersion it produced, what it said).
    echo: BTreeMap<ServiceKey, (String, Desired)>,
    /// Waiting for a write slot (more than `max_concurrent_writes` in flight).
    backlog: std::collections::VecDeque<ServiceKey>,
    again: BTreeSet<ServiceKey>,
    waiting: BTreeSet<ServiceKey>,
    attempts: BTreeMap<ServiceKey, u32>,
    statuses_dirty: bool,
    flush_scheduled: bool,
}

/// Runs the controller until `shutdown` fires.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    mut leader: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stores, config_changes) = config_source::watch(
        &client,
        &settings.namespace,
        config_source::Scope::AllNamespaces,
    );

    let services = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(ferrolb_kubernetes::watch_backoff::WatchBackoff::default());
    let namespaces = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(ferrolb_kubernetes::watch_backoff::WatchBackoff::default());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(forward(
        services.map(|e| e.map(Input::Service)).boxed(),
        tx.clone(),
        "services",
    ));
    tasks.spawn(forward(
        namespaces.map(|e| e.map(Input::Namespace)).boxed(),
        tx.clone(),
        "namespaces",
    ));
    tasks.spawn(forward(
        config_changes
            .map(|()| Ok::<_, watcher::Error>(Input::ConfigChanged))
            .boxed(),
        tx.clone(),
        "config",
    ));
    {
        let stores = stores.clone();
        let tx = tx.clone();
        tasks.spawn(async move {
            if stores.wait_until_ready().await {
                let _ = tx.send(Input::ConfigReady);
            }
        });
    }
    {
        let tx = tx.clone();
        let mut leader = leader.clone();
        tasks.spawn(async move {
            let _ = tx.send(Input::Leader(*leader.borrow_and_update()));
            while leader.changed().await.is_ok() {
                if tx.send(Input::Leader(*leader.borrow_and_update())).is_err() {
                    break;
                }
            }
        });
    }
    let _ = leader.borrow_and_update();

    let mut r = Reconciler {
        recorder: Arc::new(Publisher::new(
            client.clone(),
            &settings.manager,
            &settings.instance,
            1024,
        )),
        settings,
        client,
        metrics,
        tx,
        stores,
        services: BTreeMap::new(),
        relist: None,
        namespaces: BTreeMap::new(),
        namespace_relist: None,
        services_synced: false,
        namespaces_synced: false,
        config_synced: false,
        config: None,
        config_model: config::LastGood::default(),
        built: None,
        leader: false,
        allocator: None,
        in_flight: BTreeMap::new(),
        echo: BTreeMap::new(),
        backlog: std::collections::VecDeque::new(),
        again: BTreeSet::new(),
        waiting: BTreeSet::new(),
        attempts: BTreeMap::new(),
        statuses_dirty: false,
        flush_scheduled: false,
    };
    loop {
        tokio::select! {
            input = rx.recv() => match input {
                Some(input) => r.handle(input),
                None => break,
            },
            _ = shutdown.changed() => break,
        }
    }
    tasks.abort_all();
}

async fn forward<S>(mut stream: S, tx: mpsc::UnboundedSender<Input>, what: &'static str)
where
    S: futures::Stream<Item = Result<Input, watcher::Error>> + Unpin,
{
    while let Some(item) = stream.next().await {
        match item {
            Ok(input) => {
                if tx.send(input).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, watch = what, "watch failed; retrying with backoff")
            }
        }
    }
}

impl Reconciler {
    fn handle(&mut self, input: Input) {
        match input {
            Input::Service(event) => self.on_service_event(event),
            Input::Namespace(event) => self.on_namespace_event(event),
            // A snapshot taken before every kind is listed could refer to objects not yet seen.
            Input::ConfigChanged => self.on_config_changed(),
            Input::ConfigReady => {
                self.config_synced = true;
                self.on_config_changed();
            }
            Input::Leader(leader) => {
                self.leader = leader;
                self.metrics.leader.set(i64::from(leader));
                if !leader {
                    // Only the leader allocates; a new leader rebuilds from what Services hold.
                    self.allocator = None;
                }
                self.maybe_start();
            }
            Input::Written { key, written } => self.on_written(key, written),
            Input::Retry(key) => {
                self.waiting.remove(&key);
                self.reconcile(&key);
            }
            Input::FlushStatuses => {
                self.flush_scheduled = false;
                self.flush_statuses();
            }
        }
        self.metrics
            .set_ready(self.services_synced && self.namespaces_synced && self.config_synced);
    }

    fn synced(&self) -> bool {
        self.services_synced && self.namespaces_synced && self.config_synced
    }

    fn on_service_event(&mut self, event: watcher::Event<Service>) {
        match event {
            watcher::Event::Init => self.relist = Some(BTreeMap::new()),
            watcher::Event::InitApply(mut s) => {
                s.metadata.managed_fields = None;
                if let Some(relist) = self.relist.as_mut() {
                    relist.insert(from_service::key(&s), s);
                }
            }
            watcher::Event::InitDone => {
                let fresh = self.relist.take().unwrap_or_default();
                let gone: Vec<ServiceKey> = self
                    .services
                    .keys()
                    .filter(|k| !fresh.contains_key(*k))
                    .cloned()
                    .collect();
                let changed: Vec<ServiceKey> = fresh
                    .iter()
                    .filter(|(k, s)| {
                        self.services
                            .get(*k)
                            .map(|o| o.metadata.resource_version.clone())
                            != Some(s.metadata.resource_version.clone())
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                self.services = fresh;
                let first = !self.services_synced;
                self.services_synced = true;
                if first {
                    self.maybe_start();
                } else {
                    for key in gone {
                        self.on_deleted(&key);
                    }
                    for key in changed {
                        self.reconcile(&key);
                    }
                }
            }
            watcher::Event::Apply(mut s) => {
                let key = from_service::key(&s);
                if self
                    .echo
                    .get(&key)
                    .is_some_and(|(rv, _)| caught_up(s.metadata.resource_version.as_deref(), rv))
                {
                    self.echo.remove(&key);
                }
                // Managed fields can be most of an object's size, and nothing here reads them.
                s.metadata.managed_fields = None;
                self.services.insert(key.clone(), s);
                self.reconcile(&key);
            }
            watcher::Event::Delete(s) => {
                let key = from_service::key(&s);
                self.services.remove(&key);
                self.on_deleted(&key);
            }
        }
    }

    fn on_namespace_event(&mut self, event: watcher::Event<Namespace>) {
        let labels_of = |ns: &Namespace| ns.metadata.labels.clone().unwrap_or_default();
        match event {
            watcher::Event::Init => self.namespace_relist = Some(BTreeMap::new()),
            watcher::Event::InitApply(ns) => {
                if let Some(relist) = self.namespace_relist.as_mut() {
                    relist.insert(ns.name_any(), labels_of(&ns));
                }
            }
            watcher::Event::InitDone => {
                let fresh = self.namespace_relist.take().unwrap_or_default();
                let changed: Vec<String> = fresh
                    .iter()
                    .filter(|(n, l)| self.namespaces.get(*n) != Some(*l))
                    .map(|(n, _)| n.clone())
                    .collect();
                self.namespaces = fresh;
                let first = !self.namespaces_synced;
                self.namespaces_synced = true;
                if first {
                    self.maybe_start();
                } else {
                    changed.iter().for_each(|n| self.reconcile_namespace(n));
                }
            }
            watcher::Event::Apply(ns) => {
                let name = ns.name_any();
                let labels = labels_of(&ns);
                if self.namespaces.get(&name) != Some(&labels) {
                    self.namespaces.insert(name.clone(), labels);
                    self.reconcile_namespace(&name);
                }
            }
            watcher::Event::Delete(ns) => {
                self.namespaces.remove(&ns.name_any());
            }
        }
    }

    /// Namespace labels feed pool selection: re-decide every Service of the namespace.
    fn reconcile_namespace(&mut self, namespace: &str) {
        let keys: Vec<ServiceKey> = self
            .services
            .keys()
            .filter(|k| k.namespace() == namespace)
            .cloned()
            .collect();
        keys.iter().for_each(|k| self.reconcile(k));
    }

    fn on_config_changed(&mut self) {
        if !self.config_synced {
            return;
        }
        let raw = self.stores.snapshot();
        let built = self.config_model.build(&raw);
        let refused = built.refused();
        self.metrics.set_config(refused.len());
        let previous = self.built.take();
        if previous.as_ref().map(|b| &b.errors) != Some(&built.errors) && !refused.is_empty() {
            // Each refused object alone; everything else is in force.
            tracing::warn!(
                errors = %built.errors,
                refused = refused.len(),
                kept = built.kept.len(),
                "configuration objects refused; each keeps its last accepted version, if any"
            );
        }
        self.report_config_events(&raw, previous.as_ref(), &built);
        let changed = self.config.as_ref() != Some(&built.config);
        self.config = Some(built.config.clone());
        if changed && let Some(allocator) = self.allocator.as_mut() {
            let change = allocator.set_config(built.config.clone());
            let mut keys: BTreeSet<ServiceKey> = change.affected().into_iter().collect();
            keys.extend(allocator.pending());
            keys.iter().for_each(|k| self.reconcile(k));
        }
        self.built = Some(built);
        self.statuses_dirty = true;
        self.maybe_start();
        self.schedule_flush();
    }

    /// Start-up (or leadership): once every cache is synced, rebuild the allocator from what the
    /// Services hold, re-claiming every held address before any pending Service allocates.
    fn maybe_start(&mut self) {
        if self.allocator.is_some() || !self.leader || !self.synced() {
            return;
        }
        // Set by every config build, which comes before the config counts as synced.
        let Some(config) = self.config.clone() else {
            return;
        };
        let mut allocator = Allocator::new(config, self.settings.stale_policy);
        let requests: Vec<_> = self
            .services
            .values()
            .filter(|s| from_service::is_ours(s, self.settings.lb_class.as_deref()))
            .filter_map(|s| from_service::request(s, self.namespace_labels(s)).ok())
            .collect();
        let report = allocator.restore(&requests);
        tracing::info!(
            services = requests.len(),
            "allocator restored from Service status: {}",
            report.summary()
        );
        self.allocator = Some(allocator);
        let keys: Vec<ServiceKey> = self.services.keys().cloned().collect();
        keys.iter().for_each(|k| self.reconcile(k));
        self.statuses_dirty = true;
        self.schedule_flush();
    }

    fn namespace_labels(&self, service: &Service) -> &Labels {
        static EMPTY: std::sync::OnceLock<Labels> = std::sync::OnceLock::new();
        service
            .metadata
            .namespace
            .as_ref()
            .and_then(|ns| self.namespaces.get(ns))
            .unwrap_or_else(|| EMPTY.get_or_init(Labels::new))
    }

    fn on_deleted(&mut self, key: &ServiceKey) {
        let Some(allocator) = self.allocator.as_mut() else {
            return;
        };
        let retry = allocator.release(key);
        self.statuses_dirty = true;
        retry.iter().for_each(|k| self.reconcile(k));
        self.schedule_flush();
    }

    /// Decides a Service and sends what changed, then every Service its decision made worth
    /// retrying (an address it freed), each once.
    fn reconcile(&mut self, key: &ServiceKey) {
        let mut queue = std::collections::VecDeque::from([key.clone()]);
        let mut done = BTreeSet::new();
        while let Some(key) = queue.pop_front() {
            if done.insert(key.clone()) {
                queue.extend(self.reconcile_one(&key));
            }
        }
    }

    /// Decides one Service; returns the Services to retry because of it.
    fn reconcile_one(&mut self, key: &ServiceKey) -> Vec<ServiceKey> {
        if !self.leader || !self.synced() {
            return Vec::new();
        }
        let Some(service) = self.services.get(key).cloned() else {
            return Vec::new();
        };
        let ours = from_service::is_ours(&service, self.settings.lb_class.as_deref());
        let request =
            ours.then(|| from_service::request(&service, self.namespace_labels(&service)));
        let Some(allocator) = self.allocator.as_mut() else {
            return Vec::new();
        };
        let started = Instant::now();
        self.statuses_dirty = true;
        let (outcome, retry) = match request {
            Some(request) => {
                let decided = request.and_then(|r| allocator.ensure(&r));
                // An ensure that moved a Service frees addresses others may be waiting for.
                let retry = allocator.take_retry();
                let outcome = match decided {
                    Ok(assignment) => {
                        let (reason, message) = if assignment.stale.is_empty() {
                            (
                                "Allocated".to_string(),
                                format!(
                                    "assigned {} from pool {}",
                                    join(&assignment.ips),
                                    assignment.pool
                                ),
                            )
                        } else {
                            (
                                "IPStale".to_string(),
                                format!(
                                    "{} is no longer in any address pool; kept by the stale policy (set it to reassign to move it)",
                                    join(&assignment.stale)
                                ),
                            )
                        };
                        Outcome::Assigned {
                            ips: assignment.ips,
                            pool: assignment.pool,
                            reason,
                            message,
                        }
                    }
                    Err(refusal) => {
                        let reason = reason_name(&refusal);
                        self.metrics
                            .allocation_failures
                            .get_or_create(&ReasonLabels {
                                reason: reason.into(),
                            })
                            .inc();
                        Outcome::Refused {
                            reason: reason.to_string(),
                            message: refusal.to_string(),
                        }
                    }
                };
                (outcome, retry)
            }
            // Gone from our scope (type change, class change): free its addresses.
            None => (Outcome::NotOurs, allocator.release(key)),
        };
        self.metrics
            .reconcile_seconds
            .observe(started.elapsed().as_secs_f64());
        self.write_outcome(key, &service, outcome);
        self.schedule_flush();
        retry.into_iter().filter(|k| k != key).collect()
    }
}

/// The CamelCase name of a refusal, for conditions and metrics.
pub fn reason_name(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::PoolExhausted { .. } => "PoolExhausted",
        Refusal::FamilyNotOffered { .. } => "FamilyNotOffered",
        Refusal::OutsidePools { .. } => "IPOutsidePools",
        Refusal::BuggyIp { .. } => "BuggyIP",
        Refusal::UnknownPool { .. } => "UnknownPool",
        Refusal::PoolMismatch { .. } => "PoolMismatch",
        Refusal::DifferentPools { .. } => "DifferentPools",
        Refusal::NamespaceNotAllowed { .. } => "NamespaceNotAllowed",
        Refusal::ServiceNotSelected { .. } => "ServiceNotSelected",
        Refusal::AutoAssignDisabled { .. } => "AutoAssignDisabled",
        Refusal::IpInUse { .. } => "IPInUse",
        Refusal::SharingKeyMismatch { .. } => "SharingKeyMismatch",
        Refusal::PortConflict { .. } => "PortConflict",
        Refusal::TrafficPolicyMismatch { .. } => "TrafficPolicyMismatch",
        Refusal::InvalidRequest { .. } => "InvalidRequest",
        Refusal::HeldMismatch { .. } => "HeldMismatch",
        Refusal::RemovedFromPools { .. } => "IPRemovedFromPools",
        Refusal::NoPools => "NoPools",
        Refusal::NoPoolCouldServe { .. } => "NoPoolCouldServe",
    }
}

fn join(ips: &[std::net::IpAddr]) -> String {
    ips.iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
