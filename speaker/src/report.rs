//! What the speaker tells users, written by a task of its own so that a slow or hung API server
//! never stalls announcing: the `ferrolb.io/Announced` condition on the Services whose condition
//! this node writes, and `nodeAssigned`/`nodeWithdrawn` Events for the addresses this node starts
//! or stops announcing. The main loop hands over its latest state ([`Report`]); the writer works
//! from the newest one it has, so a backlog never grows. Every API call has a deadline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrolb_announce::election;
use ferrolb_announce::l2::agent::{Inputs, has_quorum};
use ferrolb_announce::status::{SessionsSeen, announced_condition};
use ferrolb_kubernetes::client;
use ferrolb_kubernetes::events::{Event, EventType, Publisher};
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::{Client, Resource};
use tokio::sync::watch;

/// The condition the speakers keep on each ferrolb Service: who announces its addresses.
pub const ANNOUNCED_CONDITION: &str = "ferrolb.io/Announced";

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

/// The speaker's state the writer reports from.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Addresses this node announces (L2), with their interfaces.
    pub announced: BTreeMap<IpAddr, BTreeSet<String>>,
    /// Live speakers.
    pub live: BTreeSet<String>,
    /// The announcer's inputs in force (config, Nodes, Service views).
    pub inputs: Option<Arc<Inputs>>,
    /// The Service objects the views were made from (for resourceVersion and conditions).
    pub services: Arc<Vec<Arc<Service>>>,
    /// Every node's BGP sessions, as their `BGPSessionState` objects say.
    pub sessions: Arc<SessionsSeen>,
    /// This node's BGP peers whose session is established.
    pub established: BTreeSet<String>,
    /// What this node advertises over established sessions: each address with its peers.
    pub advertised_bgp: BTreeMap<IpAddr, BTreeSet<String>>,
    /// Addresses this node owns but answers on no interface, with why.
    pub unanswered: ferrolb_announce::status::Unanswered,
}

/// What the writer needs to know about this speaker.
#[derive(Clone, Debug)]
pub struct WriterSettings {
    /// This Node's name.
    pub node: String,
    /// L2 enabled: without quorum, this speaker reports nothing (the majority side does).
    pub l2: bool,
    /// The split-brain guard's quorum.
    pub quorum: usize,
    /// Where the count of Services nobody announces goes (those this node writes for).
    pub metrics: Option<Arc<crate::metrics::SpeakerMetrics>>,
}

/// Writes what [`Report`]s say until the sender is dropped; then reports the final one (the
/// stopping speaker's withdrawals) and returns. The caller bounds that last step.
pub async fn write(
    client: Client,
    settings: WriterSettings,
    publisher: Publisher,
    mut reports: watch::Receiver<Report>,
) {
    let mut reported: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
    let mut reported_bgp: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
    loop {
        let closed = reports.changed().await.is_err();
        let report = reports.borrow_and_update().clone();
        if report.announced != reported {
            let protocol = Protocol::Layer2;
            events(
                &publisher,
                &settings.node,
                protocol,
                &reported,
                &report.announced,
                &report.services,
            )
            .await;
            reported = report.announced.clone();
        }
        let bgp_now = report.advertised_bgp.clone();
        if bgp_now != reported_bgp {
            let protocol = Protocol::Bgp;
            events(
                &publisher,
                &settings.node,
                protocol,
                &reported_bgp,
                &bgp_now,
                &report.services,
            )
            .await;
            reported_bgp = bgp_now;
        }
        if closed {
            return;
        }
        conditions(&client, &settings, &report).await;
    }
}

/// Writes `ferrolb.io/Announced` on the Services for which this node is the designated writer.
async fn conditions(client: &Client, settings: &WriterSettings, report: &Report) {
    let Some(inputs) = &report.inputs else { return };
    // Without quorum this speaker is on a minority side of a partition and announces nothing;
    // the majority side's speakers report.
    if settings.l2 && !has_quorum(settings.quorum, &report.live) {
        return;
    }
    let shared = election::SharedAddresses::of(&inputs.services);
    let cluster = election::Cluster {
        shared: &shared,
        config: &inputs.config,
        nodes: &inputs.nodes,
        live: &report.live,
        ignore_exclude_label: inputs.ignore_exclude_label,
    };
    let objects: HashMap<(&str, &str), &Arc<Service>> = (report.services.iter())
        .map(|s| {
            let key = (
                s.metadata.namespace.as_deref().unwrap_or_default(),
                s.metadata.name.as_deref().unwrap_or_default(),
            );
            (key, s)
        })
        .collect();
    let params = kube::api::PatchParams {
        field_manager: Some("ferrolb-speaker".into()),
        ..Default::default()
    };
    let mut not_announced = 0;
    let mut patches = Vec::new();
    for view in &inputs.services {
        let local = Some((settings.node.as_str(), &report.unanswered));
        let Some(a) = announced_condition(&cluster, view, &report.sessions, local) else {
            continue;
        };
        if a.writer != settings.node {
            continue;
        }
        if !a.status {
            not_announced += 1;
        }
        patches.push((view, a));
    }
    if let Some(m) = &settings.metrics {
        m.record_not_announced(not_announced);
    }
    for (view, a) in patches {
        let Some((namespace, name)) = view.name.split_once('/') else {
            continue;
        };
        let Some(object) = objects.get(&(namespace, name)) else {
            continue;
        };
        let Some(patch) = condition_patch(object, a.status, &a.reason, &a.message) else {
            continue;
        };
        let api: Api<Service> = Api::namespaced(client.clone(), namespace);
        let patch = kube::api::Patch::Merge(&patch);
        if let Err(e) = client::call(api.patch_status(name, &params, &patch)).await {
            // A conflict means the object moved on; the next change recomputes.
            tracing::debug!(error = %e, service = %view.name, "could not write the Announced condition");
        }
    }
}

/// How an address is announced, for Events.
#[derive(Clone, Copy, Debug)]
enum Protocol {
    /// ARP/NDP; the sets are interfaces.
    Layer2,
    /// BGP; the sets are peers.
    Bgp,
}

/// Events on the Services whose addresses this node started or stopped announcing.
async fn events(
    publisher: &Publisher,
    node: &str,
    protocol: Protocol,
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
            let event = match (before.get(&ip), now.get(&ip), protocol) {
                (None, Some(ifs), Protocol::Layer2) => Event {
                    type_: EventType::Normal,
                    reason: "nodeAssigned".into(),
                    note: format!(
                        "announcing {ip} from node {node} with protocol layer2 on {}",
                        ifs.iter().cloned().collect::<Vec<_>>().join(",")
                    ),
                    action: "Announce".into(),
                },
                (None, Some(peers), Protocol::Bgp) => Event {
                    type_: EventType::Normal,
                    reason: "nodeAssigned".into(),
                    note: format!(
                        "announcing {ip} from node {node} with protocol bgp to peers {}",
                        peers.iter().cloned().collect::<Vec<_>>().join(",")
                    ),
                    action: "Announce".into(),
                },
                (Some(_), None, Protocol::Layer2) => Event {
                    type_: EventType::Normal,
                    reason: "nodeWithdrawn".into(),
                    note: format!("node {node} no longer announces {ip}"),
                    action: "Announce".into(),
                },
                (Some(_), None, Protocol::Bgp) => Event {
                    type_: EventType::Normal,
                    reason: "nodeWithdrawn".into(),
                    note: format!("node {node} no longer advertises {ip} over BGP"),
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

/// How long a stopping speaker tries to publish its `nodeWithdrawn` Events.
pub const SHUTDOWN_REPORT_DEADLINE: Duration = Duration::from_secs(2);
