//! Kubernetes mode: what the speaker DaemonSet reads (Services, EndpointSlices, Nodes, the ferrolb
//! config) turned into the election's inputs, and Events telling users which node announces.
//!
//! The conversions are pure; [`run`] is the thin loop around kube-runtime reflectors.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ferrolb_config::{self as config, Config};
use ferrolb_kubernetes::events::{Event, EventType, Publisher};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};

use crate::election::{self, TrafficPolicy};
use crate::l2::ResponderConfig;
use crate::l2::agent::{Agent, Inputs};
use crate::membership::{MembershipConfig, Timing};

/// The label EndpointSlices carry to name their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The election's view of a Node.
pub fn node(n: &Node) -> election::Node {
    let network_unavailable = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "NetworkUnavailable" && c.status == "True")
        });
    election::Node {
        name: n.name_any(),
        labels: n.labels().clone(),
        network_unavailable,
    }
}

/// A Node's InternalIP (the address speakers reach each other at, with hostNetwork).
pub fn internal_ip(n: &Node) -> Option<IpAddr> {
    n.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

/// The election's view of a LoadBalancer Service that has addresses, with its endpoints.
/// `None` for Services that are not ferrolb's (not LoadBalancer, other class) or have no address.
pub fn service(
    svc: &Service,
    slices: &[&EndpointSlice],
    lb_class: Option<&str>,
) -> Option<election::Service> {
    if !ferrolb_kubernetes::service::is_ours(svc, lb_class) {
        return None;
    }
    let ips: Vec<IpAddr> = svc
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .iter()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect();
    if ips.is_empty() {
        return None;
    }
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    let pool = ferrolb_kubernetes::annotations::lookup(&annotations, "ip-allocated-from-pool")
        .map(|f| f.value.to_string())
        .unwrap_or_default();
    let local = svc
        .spec
        .as_ref()
        .and_then(|s| s.external_traffic_policy.as_deref())
        == Some("Local");
    let mut local_endpoint_nodes = BTreeSet::new();
    let mut has_serving_endpoint = false;
    for slice in slices {
        for ep in slice.endpoints.iter().flatten() {
            let c = ep.conditions.as_ref();
            // As in Kubernetes: unset "ready" counts as ready; terminating-but-serving still serves.
            let serving = c.is_none_or(|c| c.ready.unwrap_or(true) || c.serving == Some(true));
            if serving {
                has_serving_endpoint = true;
                if let Some(n) = &ep.node_name {
                    local_endpoint_nodes.insert(n.clone());
                }
            }
        }
    }
    Some(election::Service {
        name: format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any()),
        ips,
        pool,
        labels: svc.labels().clone(),
        traffic_policy: if local {
            TrafficPolicy::Local
        } else {
            TrafficPolicy::Cluster
        },
        local_endpoint_nodes,
        has_serving_endpoint,
    })
}

/// Every ferrolb Service with its EndpointSlices (matched by the service-name label and namespace).
pub fn services(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    lb_class: Option<&str>,
) -> Vec<election::Service> {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        if let Some(name) = s.labels().get(SERVICE_NAME_LABEL) {
            by_service
                .entry((s.namespace().unwrap_or_default(), name.clone()))
                .or_default()
                .push(s);
        }
    }
    let none = Vec::new();
    let mut out: Vec<election::Service> = services
        .iter()
        .filter_map(|svc| {
            let key = (svc.namespace().unwrap_or_default(), svc.name_any());
            service(svc, by_service.get(&key).unwrap_or(&none), lb_class)
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// How long a stopping speaker tries to publish its `nodeWithdrawn` Events.
const SHUTDOWN_REPORT_DEADLINE: Duration = Duration::from_secs(2);

/// The condition the speakers keep on each ferrolb Service: who announces its addresses.
pub const ANNOUNCED_CONDITION: &str = "ferrolb.io/Announced";

/// What the `ferrolb.io/Announced` condition should say, and which node writes it: the owner
/// of the Service's first address, or, when nobody announces it, the first live node by name.
/// Every speaker computes the same answer, so exactly one writes.
pub fn announced_condition(
    cluster: &election::Cluster<'_>,
    svc: &election::Service,
) -> Option<(String, bool, String, String)> {
    let ip = *svc.ips.first()?;
    match election::owner(cluster, svc, ip) {
        Ok(a) => {
            let interfaces = match &a.interfaces {
                election::Interfaces::All => "every suitable interface".to_string(),
                election::Interfaces::Named(n) => n.iter().cloned().collect::<Vec<_>>().join(","),
            };
            let ips: Vec<String> = svc.ips.iter().map(|ip| ip.to_string()).collect();
            Some((
                a.node.clone(),
                true,
                "Layer2".into(),
                format!(
                    "node {} announces {} on {interfaces} (ARP/NDP)",
                    a.node,
                    ips.join(", ")
                ),
            ))
        }
        Err(reason) => {
            let writer = cluster.live.iter().next()?.clone();
            Some((
                writer,
                false,
                reason.tag().to_string(),
                format!("no node announces {ip}: {reason}"),
            ))
        }
    }
}

/// The merge patch that sets the condition, keeping the others; `None` when it already says so.
fn condition_patch(
    svc: &Service,
    status: bool,
    reason: &str,
    message: &str,
) -> Option<serde_json::Value> {
    let mut conditions = svc
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let wanted = ferrolb_kubernetes::condition::Wanted {
        type_: ANNOUNCED_CONDITION,
        status,
        reason,
        message,
        observed_generation: svc.metadata.generation,
    };
    if !ferrolb_kubernetes::condition::set(
        &mut conditions,
        &wanted,
        k8s_openapi::jiff::Timestamp::now(),
    ) {
        return None;
    }
    Some(serde_json::json!({
        "metadata": {"resourceVersion": svc.metadata.resource_version},
        "status": {"conditions": conditions},
    }))
}

/// How the speaker runs in a cluster.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This Node's name.
    pub node: String,
    /// Namespace of the config objects.
    pub namespace: String,
    /// `--lb-class`.
    pub lb_class: Option<String>,
    /// UDP port for membership (on the Node's InternalIP).
    pub membership_port: u16,
    /// The shared membership secret.
    pub secret: Vec<u8>,
    /// Interface patterns never announced on.
    pub exclude: Vec<String>,
    /// Ignore the exclude-from-external-load-balancers label.
    pub ignore_exclude_label: bool,
    /// Where BGP session state is exported, if anywhere.
    pub metrics: Option<Arc<SpeakerMetrics>>,
    /// Gratuitous ARP / unsolicited NA rounds sent on takeover.
    pub burst: crate::l2::responder::Burst,
    /// Announce over ARP/NDP (L2Advertisements are ignored when false).
    pub l2: bool,
    /// Announce over BGP (no session is opened when false).
    pub bgp: bool,
    /// Split-brain guard for L2: announce only while this many speakers are live; 0: off.
    pub l2_quorum: usize,
}

/// A gauge per BGP peer.
type PeerGauge = prometheus_client::metrics::family::Family<
    PeerLabels,
    prometheus_client::metrics::gauge::Gauge,
>;

/// The speaker's BGP session metrics, per peer.
#[derive(Debug)]
pub struct SpeakerMetrics {
    registry: prometheus_client::registry::Registry,
    up: PeerGauge,
    prefixes: PeerGauge,
    updates: PeerGauge,
    flaps: PeerGauge,
    established_since: PeerGauge,
    failures: PeerGauge,
    last_error: prometheus_client::metrics::family::Family<
        ErrorLabels,
        prometheus_client::metrics::gauge::Gauge,
    >,
    /// The last error exported per peer, so a changed or gone one is removed, not left behind.
    exported_errors: std::sync::Mutex<BTreeMap<String, String>>,
}

/// A BGP peer and the last error of its session.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ErrorLabels {
    /// The BGPPeer's name.
    pub peer: String,
    /// The last failure, in words.
    pub error: String,
}

/// A BGP peer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PeerLabels {
    /// The BGPPeer's name.
    pub peer: String,
}

impl Default for SpeakerMetrics {
    fn default() -> Self {
        let mut registry =
            prometheus_client::registry::Registry::with_prefix("ferrolb_speaker_bgp");
        let m = SpeakerMetrics {
            registry: Default::default(),
            up: Default::default(),
            prefixes: Default::default(),
            updates: Default::default(),
            flaps: Default::default(),
            established_since: Default::default(),
            failures: Default::default(),
            last_error: Default::default(),
            exported_errors: Default::default(),
        };
        registry.register(
            "session_up",
            "1 while the session to the peer is Established",
            m.up.clone(),
        );
        registry.register(
            "prefixes_sent",
            "Prefixes the peer holds from this node",
            m.prefixes.clone(),
        );
        registry.register(
            "updates_sent",
            "UPDATE messages sent to the peer",
            m.updates.clone(),
        );
        registry.register(
            "session_flaps",
            "Times the session went down from Established",
            m.flaps.clone(),
        );
        registry.register(
            "session_established_since_seconds",
            "Unix time the session last became Established; 0 while it is down",
            m.established_since.clone(),
        );
        registry.register(
            "session_failures",
            "Consecutive failed attempts to establish the session (the retry backoff grows with it)",
            m.failures.clone(),
        );
        registry.register(
            "session_last_error_info",
            "1, labelled with the session's last failure in words (kept after recovery)",
            m.last_error.clone(),
        );
        SpeakerMetrics { registry, ..m }
    }
}

impl SpeakerMetrics {
    /// Copies the sessions' state into the gauges; a peer no longer in `sessions` loses its
    /// series.
    pub fn record(&self, sessions: &BTreeMap<String, crate::bgp::SessionStatus>) {
        let mut exported = self
            .exported_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> = (exported.keys())
            .filter(|p| !sessions.contains_key(*p))
            .cloned()
            .collect();
        for peer in gone {
            if let Some(error) = exported.remove(&peer) {
                self.last_error.remove(&ErrorLabels {
                    peer: peer.clone(),
                    error,
                });
            }
            let l = PeerLabels { peer };
            for family in [
                &self.up,
                &self.prefixes,
                &self.updates,
                &self.flaps,
                &self.established_since,
                &self.failures,
            ] {
                family.remove(&l);
            }
        }
        for (peer, s) in sessions {
            // Keep a placeholder for every live peer so its other series are cleared when it goes.
            let error = s.last_error.clone().unwrap_or_default();
            match exported.insert(peer.clone(), error.clone()) {
                Some(old) if old == error => {}
                Some(old) => {
                    self.last_error.remove(&ErrorLabels {
                        peer: peer.clone(),
                        error: old,
                    });
                }
                None => {}
            }
            if !error.is_empty() {
                self.last_error
                    .get_or_create(&ErrorLabels {
                        peer: peer.clone(),
                        error,
                    })
                    .set(1);
            }
            let l = PeerLabels { peer: peer.clone() };
            let since = (s.established_at)
                .filter(|_| s.is_up())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            self.established_since.get_or_create(&l).set(since);
            self.failures.get_or_create(&l).set(i64::from(s.failures));
            self.up.get_or_create(&l).set(i64::from(s.is_up()));
            self.prefixes
                .get_or_create(&l)
                .set(i64::try_from(s.prefixes_sent).unwrap_or(i64::MAX));
            self.updates
                .get_or_create(&l)
                .set(i64::try_from(s.updates_sent).unwrap_or(i64::MAX));
            self.flaps
                .get_or_create(&l)
                .set(i64::try_from(s.flaps).unwrap_or(i64::MAX));
        }
    }
}

impl ferrolb_kubernetes::serve::Exporter for SpeakerMetrics {
    fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    fn is_ready(&self) -> bool {
        true
    }
}

fn reflect<K>(api: Api<K>) -> (Store<K>, futures::stream::BoxStream<'static, ()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .backoff(ferrolb_kubernetes::watch_backoff::WatchBackoff::default())
        .filter_map(|e| async move {
            match e {
                Ok(
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone,
                ) => Some(()),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "watch failed; retrying");
                    None
                }
            }
        })
        .boxed();
    (reader, stream)
}

/// Runs layer-2 announcing for this Node until `shutdown` fires; a shutdown leaves the
/// membership gracefully so another node takes over at once.
pub async fn run(
    client: Client,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let (svc_store, a) = reflect(Api::<Service>::all(client.clone()));
    let (slice_store, b) = reflect(Api::<EndpointSlice>::all(client.clone()));
    let (node_store, c) = reflect(Api::<Node>::all(client.clone()));
    let (config_stores, d) = ferrolb_kubernetes::config_source::watch(
        &client,
        &settings.namespace,
        ferrolb_kubernetes::config_source::Scope::Namespace,
    );
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut changes = futures::stream::select_all([a, b, c, d.boxed()]);
    tokio::spawn(async move {
        while changes.next().await.is_some() {
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    let ready = svc_store.wait_until_ready().await.is_ok()
        && slice_store.wait_until_ready().await.is_ok()
        && node_store.wait_until_ready().await.is_ok()
        && config_stores.wait_until_ready().await;
    if !ready {
        return Err("watches ended before their first list".into());
    }
    let publisher = Publisher::new(client.clone(), "ferrolb-speaker", &settings.node, 1024);
    let mut last_good: Option<Config> = None;
    let mut agent: Option<Agent> = None;
    let mut announced: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
    let mut conditions_for: Option<(BTreeSet<String>, u64)> = None;
    let my_ipv4 = node_store
        .state()
        .iter()
        .find(|n| n.name_any() == settings.node)
        .and_then(|n| internal_ip(n))
        .and_then(|ip| match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        });
    let mut bgp = crate::bgp::NodeSpeaker::new(my_ipv4);
    let mut generation: u64 = 0;
    loop {
        generation += 1;
        match config::build(&config_stores.snapshot()) {
            Ok(c) => last_good = Some(enabled_modes_only(c, settings.l2, settings.bgp)),
            Err(e) => {
                tracing::warn!(errors = %e, "configuration refused; keeping the last good one")
            }
        }
        let nodes: Vec<election::Node> = node_store.state().iter().map(|n| node(n)).collect();
        let inputs = Inputs {
            config: last_good.clone().unwrap_or_default(),
            nodes,
            services: services(
                &svc_store.state(),
                &slice_store.state(),
                settings.lb_class.as_deref(),
            ),
            ignore_exclude_label: settings.ignore_exclude_label,
            quorum: settings.l2_quorum,
        };
        // BGP: this node's sessions to its selected peers follow the same inputs.
        if let Some(config) = &last_good {
            let me = inputs
                .nodes
                .iter()
                .find(|n| n.name == settings.node)
                .cloned();
            if let Some(me) = me {
                let applied = bgp
                    .apply(config, &me, &inputs.services, settings.ignore_exclude_label)
                    .await;
                for e in &applied.errors {
                    tracing::warn!(error = %e, "BGP peer skipped");
                }
            }
        }
        match &agent {
            Some(a) => a.update(inputs),
            None => {
                let me = node_store
                    .state()
                    .iter()
                    .find(|n| n.name_any() == settings.node)
                    .and_then(|n| internal_ip(n));
                let Some(my_ip) = me else {
                    tracing::warn!(node = %settings.node, "this Node has no InternalIP yet; waiting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                let seeds: Vec<SocketAddr> = node_store
                    .state()
                    .iter()
                    .filter(|n| n.name_any() != settings.node)
                    .filter_map(|n| internal_ip(n))
                    .map(|ip| SocketAddr::new(ip, settings.membership_port))
                    .collect();
                let membership = MembershipConfig {
                    name: settings.node.clone(),
                    bind: SocketAddr::new(my_ip, settings.membership_port),
                    seeds,
                    secret: settings.secret.clone(),
                    timing: Timing::default(),
                    cluster_size: u8::try_from(inputs.nodes.len().max(1)).unwrap_or(u8::MAX),
                };
                let responder = ResponderConfig {
                    exclude: settings.exclude.clone(),
                    burst: settings.burst,
                    ..ResponderConfig::default()
                };
                agent = Some(
                    Agent::start(settings.node.clone(), inputs, membership, responder)
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        // Wait for a change, telling users what this node announces as it changes.
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                got = rx.recv() => {
                    if got.is_none() { return Ok(()); }
                    // Let a burst of changes settle into one update.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while rx.try_recv().is_ok() {}
                    break;
                }
                _ = tick.tick() => {
                    if let Some(m) = &settings.metrics {
                        m.record(&bgp.status());
                    }
                    if let Some(a) = &agent {
                        let status = a.status();
                        if status.announced != announced {
                            report(&publisher, &settings.node, &announced, &status.announced, &svc_store.state()).await;
                            announced = status.announced;
                        }
                        // Conditions: recomputed when the inputs or the live set change.
                        let key = (status.live.clone(), generation);
                        if conditions_for.as_ref() != Some(&key) {
                            write_conditions(&client, &settings, last_good.as_ref(), &node_store.state(), &svc_store.state(), &slice_store.state(), &status.live).await;
                            conditions_for = Some(key);
                        }
                    }
                }
                _ = shutdown.changed() => {
                    // Cease first, so routers withdraw at once, then leave the membership.
                    bgp.stop().await;
                    if let Some(a) = agent.take() {
                        tokio::task::spawn_blocking(move || a.leave()).await.ok();
                    }
                    // Then tell users this node no longer announces; bounded, so that an API
                    // server that does not answer cannot hold the exit.
                    let (none, services) = (BTreeMap::new(), svc_store.state());
                    let withdrawn = tokio::time::timeout(
                        SHUTDOWN_REPORT_DEADLINE,
                        report(&publisher, &settings.node, &announced, &none, &services),
                    );
                    if withdrawn.await.is_err() {
                        tracing::warn!("could not report the withdrawals before exiting");
                    }
                    return Ok(());
                }
            }
        }
    }
}

/// The config with the objects of a mode switched off on this speaker set aside, as if absent:
/// no L2Advertisement without L2, no BGPAdvertisement or BGPPeer without BGP.
pub fn enabled_modes_only(mut config: Config, l2: bool, bgp: bool) -> Config {
    if !l2 {
        config.l2_advertisements.clear();
    }
    if !bgp {
        config.bgp_advertisements.clear();
        config.peers.clear();
    }
    config
}

/// Writes `ferrolb.io/Announced` on the Services for which this node is the designated writer.
async fn write_conditions(
    client: &Client,
    settings: &Settings,
    config: Option<&Config>,
    nodes: &[Arc<Node>],
    svcs: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    live: &BTreeSet<String>,
) {
    let Some(config) = config else { return };
    // Without quorum this speaker is on a minority side of a partition and announces nothing;
    // the majority side's speakers report.
    if settings.l2 && !crate::l2::agent::has_quorum(settings.l2_quorum, live) {
        return;
    }
    let nodes: Vec<election::Node> = nodes.iter().map(|n| node(n)).collect();
    let cluster = election::Cluster {
        config,
        nodes: &nodes,
        live,
        ignore_exclude_label: settings.ignore_exclude_label,
    };
    let views = services(svcs, slices, settings.lb_class.as_deref());
    for view in &views {
        let Some((writer, status, reason, message)) = announced_condition(&cluster, view) else {
            continue;
        };
        if writer != settings.node {
            continue;
        }
        let Some(object) = svcs.iter().find(|s| {
            format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()) == view.name
        }) else {
            continue;
        };
        let Some(patch) = condition_patch(object, status, &reason, &message) else {
            continue;
        };
        let api: Api<Service> =
            Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
        let params = kube::api::PatchParams {
            field_manager: Some("ferrolb-speaker".into()),
            ..Default::default()
        };
        if let Err(e) = api
            .patch_status(
                &object.name_any(),
                &params,
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            // A conflict means the object moved on; the next change recomputes.
            tracing::debug!(error = %e, service = %view.name, "could not write the Announced condition");
        }
    }
}

/// Events on the Services whose addresses this node started or stopped announcing.
async fn report(
    publisher: &Publisher,
    node: &str,
    before: &BTreeMap<IpAddr, BTreeSet<String>>,
    now: &BTreeMap<IpAddr, BTreeSet<String>>,
    services: &[Arc<Service>],
) {
    for svc in services {
        let ips: Vec<IpAddr> = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .map(|i| {
                i.iter()
                    .filter_map(|x| x.ip.as_deref()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for ip in ips {
            let (was, is) = (before.get(&ip), now.get(&ip));
            let event = match (was, is) {
                (None, Some(ifs)) => Event {
                    type_: EventType::Normal,
                    reason: "nodeAssigned".into(),
                    note: format!(
                        "announcing {ip} from node {node} with protocol layer2 on {}",
                        ifs.iter().cloned().collect::<Vec<_>>().join(",")
                    ),
                    action: "Announce".into(),
                },
                (Some(_), None) => Event {
                    type_: EventType::Normal,
                    reason: "nodeWithdrawn".into(),
                    note: format!("node {node} no longer announces {ip}"),
                    action: "Announce".into(),
                },
                _ => continue,
            };
            if let Err(e) = publisher.publish(&event, &svc.object_ref(&())).await {
                tracing::debug!(error = %e, "could not publish event");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(spec: serde_json::Value, ingress: &[&str]) -> Service {
        let ingress: Vec<_> = ingress.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                         "annotations": {"metallb.io/ip-allocated-from-pool": "lan"}},
            "spec": spec,
            "status": {"loadBalancer": {"ingress": ingress}}
        }))
        .unwrap()
    }

    fn slice(endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4", "endpoints": endpoints
        }))
        .unwrap()
    }

    #[test]
    fn services_carry_ips_pool_policy_and_serving_endpoints() {
        let s = svc(
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local"}),
            &["10.0.0.200"],
        );
        let sl = slice(json!([
            {"addresses": ["10.244.0.1"], "nodeName": "a", "conditions": {"ready": true}},
            {"addresses": ["10.244.0.2"], "nodeName": "b", "conditions": {"ready": false, "serving": true}},
            {"addresses": ["10.244.0.3"], "nodeName": "c", "conditions": {"ready": false, "serving": false}},
            {"addresses": ["10.244.0.4"], "nodeName": "d"}
        ]));
        let e = service(&s, &[&sl], None).unwrap();
        assert_eq!(e.name, "shop/web");
        assert_eq!(e.ips, vec!["10.0.0.200".parse::<IpAddr>().unwrap()]);
        assert_eq!(e.pool, "lan", "MetalLB's annotation is read too");
        assert_eq!(e.traffic_policy, TrafficPolicy::Local);
        assert!(e.has_serving_endpoint);
        assert_eq!(
            e.local_endpoint_nodes,
            BTreeSet::from(["a".into(), "b".into(), "d".into()])
        );
    }

    #[test]
    fn not_ours_or_unassigned_services_are_skipped() {
        let lb = json!({"type": "LoadBalancer"});
        assert!(
            service(&svc(lb.clone(), &[]), &[], None).is_none(),
            "no address yet"
        );
        assert!(service(&svc(json!({"type": "ClusterIP"}), &["10.0.0.1"]), &[], None).is_none());
        assert!(
            service(&svc(lb.clone(), &["10.0.0.1"]), &[], Some("other")).is_none(),
            "another class"
        );
        let e = service(&svc(lb, &["10.0.0.1"]), &[], None).unwrap();
        assert!(!e.has_serving_endpoint, "no EndpointSlice: nothing serves");
    }

    #[test]
    fn slices_are_matched_to_their_service_by_label_and_namespace() {
        let s = Arc::new(svc(json!({"type": "LoadBalancer"}), &["10.0.0.1"]));
        let mine = Arc::new(slice(
            json!([{"addresses": ["10.244.0.1"], "nodeName": "a"}]),
        ));
        let mut elsewhere = slice(json!([{"addresses": ["10.244.0.9"], "nodeName": "z"}]));
        elsewhere.metadata.namespace = Some("other".into());
        let out = services(&[s], &[mine, Arc::new(elsewhere)], None);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].local_endpoint_nodes, BTreeSet::from(["a".into()]));
    }

    #[test]
    fn a_mode_switched_off_sets_its_objects_aside() {
        let yaml = r#"
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: ferrolb-system}
spec: {addresses: ["10.0.0.0/28"]}
---
apiVersion: ferrolb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2, namespace: ferrolb-system}
spec: {}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: bgp, namespace: ferrolb-system}
spec: {}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata: {name: tor, namespace: ferrolb-system}
spec: {myASN: 64512, peerASN: 64513, peerAddress: 10.0.0.254}
"#;
        let docs = config::parse_documents(yaml).unwrap();
        let full = config::build(&docs.config).unwrap();
        let counts = |c: &Config| {
            (
                c.pools.len(),
                c.l2_advertisements.len(),
                c.bgp_advertisements.len(),
                c.peers.len(),
            )
        };
        assert_eq!(counts(&full), (1, 1, 1, 1));
        assert_eq!(
            counts(&enabled_modes_only(full.clone(), true, true)),
            (1, 1, 1, 1)
        );
        assert_eq!(
            counts(&enabled_modes_only(full.clone(), false, true)),
            (1, 0, 1, 1)
        );
        assert_eq!(
            counts(&enabled_modes_only(full.clone(), true, false)),
            (1, 1, 0, 0)
        );
        assert_eq!(
            counts(&enabled_modes_only(full, false, false)),
            (1, 0, 0, 0)
        );
    }

    #[test]
    fn bgp_session_metrics() {
        use ferrolb_kubernetes::serve::Exporter;
        let m = SpeakerMetrics::default();
        let status = crate::bgp::SessionStatus {
            state: crate::bgp::State::Established,
            established_at: None,
            prefixes_sent: 3,
            updates_sent: 5,
            flaps: 1,
            last_error: None,
            failures: 0,
        };
        m.record(&BTreeMap::from([("tor".to_string(), status)]));
        let text = m.encode();
        assert!(
            text.contains("ferrolb_speaker_bgp_session_up{peer=\"tor\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ferrolb_speaker_bgp_prefixes_sent{peer=\"tor\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ferrolb_speaker_bgp_session_established_since_seconds{peer=\"tor\"} 0"),
            "{text}"
        );
        assert!(!text.contains("last_error_info{"), "{text}");

        // A failure: its words as a label, the old words gone when they change.
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let failing = |error: &str| crate::bgp::SessionStatus {
            state: crate::bgp::State::Active,
            established_at: Some(at),
            prefixes_sent: 0,
            updates_sent: 5,
            flaps: 2,
            last_error: Some(error.into()),
            failures: 3,
        };
        m.record(&BTreeMap::from([(
            "tor".to_string(),
            failing("hold timer expired"),
        )]));
        m.record(&BTreeMap::from([(
            "tor".to_string(),
            failing("peer sent NOTIFICATION: bad peer AS"),
        )]));
        let text = m.encode();
        assert!(
            text.contains("ferrolb_speaker_bgp_session_last_error_info{peer=\"tor\",error=\"peer sent NOTIFICATION: bad peer AS\"} 1"),
            "{text}"
        );
        assert!(!text.contains("hold timer expired"), "{text}");
        assert!(
            text.contains("ferrolb_speaker_bgp_session_failures{peer=\"tor\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ferrolb_speaker_bgp_session_established_since_seconds{peer=\"tor\"} 0"),
            "down: 0 whatever the stale time says\n{text}"
        );
        let mut up = failing("hold timer expired");
        up.state = crate::bgp::State::Established;
        m.record(&BTreeMap::from([("tor".to_string(), up)]));
        let text = m.encode();
        assert!(
            text.contains(
                "ferrolb_speaker_bgp_session_established_since_seconds{peer=\"tor\"} 1700000000"
            ),
            "{text}"
        );

        // The peer removed: all of its series go.
        m.record(&BTreeMap::new());
        let text = m.encode();
        assert!(!text.contains("peer=\"tor\""), "{text}");
    }

    #[test]
    fn nodes() {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"zone": "a"}},
            "status": {"conditions": [{"type": "NetworkUnavailable", "status": "True"}],
                       "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.11"}]}
        }))
        .unwrap();
        let e = node(&n);
        assert!(e.network_unavailable && e.labels["zone"] == "a");
        assert_eq!(internal_ip(&n), Some("10.0.0.11".parse().unwrap()));
    }
}
