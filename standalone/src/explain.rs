//! `ferrolb explain SERVICE`, pure: from the objects a cluster (read through kubectl) or a
//! standalone config directory holds, why the Service's address is what it is (pending, stale,
//! assigned), which pool and why that one, who announces it over ARP/NDP and BGP and the state
//! of those sessions, or why nobody does. The same model the controller and the speakers run
//! decides here (`LastGood`, the allocator, `ferrolb_announce::status`), so the words match the
//! Service's condition.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ferrolb_allocator::{
    Allocator, Assignment, Refusal, ServiceKey, ServiceRequest, StalePolicy, from_service, order,
};
use ferrolb_announce::election;
use ferrolb_announce::status::{self, SessionSeen, SessionsSeen};
use ferrolb_config::api::BGPSessionStateStatus;
use ferrolb_config::selector::Labels;
use ferrolb_config::{self as config, Config};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Serialize;

use crate::config_dir::Objects;
use crate::engine::Engine;
use crate::state::State;

/// Where the objects come from, and what only that place knows.
#[derive(Clone, Debug)]
pub enum Source {
    /// A cluster: Service statuses hold the addresses; EndpointSlices and BGPSessionStates are
    /// known; a node is taken as live while its Ready condition is True.
    Cluster {
        /// Labels of each namespace (for pools' namespace selectors).
        namespaces: BTreeMap<String, Labels>,
        /// EndpointSlices of the Service's namespace.
        slices: Vec<EndpointSlice>,
        /// Every node's sessions, as their objects say.
        sessions: Vec<BGPSessionStateStatus>,
        /// The controller's `--lb-class`, if any.
        lb_class: Option<String>,
    },
    /// A standalone directory and its state file: every host is taken as live and as serving
    /// every Service (no EndpointSlices); session states are only in each host's output.
    Standalone {
        /// The state file's assignments.
        held: State,
    },
}

/// Everything `explain` reads.
#[derive(Clone, Debug)]
pub struct World {
    /// Config objects (with their status: the last accepted specs), Services, Nodes.
    pub objects: Objects,
    /// What only the source knows.
    pub source: Source,
    /// The stale policy the controller (or host) runs with.
    pub stale_policy: StalePolicy,
}

/// Where the Service stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// Not a LoadBalancer Service of ferrolb's.
    NotOurs,
    /// No address, and why.
    Pending,
    /// It holds an address no pool in force contains any more.
    Stale,
    /// It has its addresses, but no node announces them.
    NotAnnounced,
    /// It has its addresses and some node announces them.
    Announced,
}

/// One BGP session that would carry the Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionLine {
    /// The node.
    pub node: String,
    /// The BGPPeer.
    pub peer: String,
    /// Its state as the node's BGPSessionState says (None: not known here).
    pub state: Option<String>,
    /// Why it is down, when it is.
    pub last_error: Option<String>,
}

/// The `ferrolb.io/Announced` condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// `True` or `False`.
    pub status: String,
    /// Its reason.
    pub reason: String,
    /// Its message.
    pub message: String,
}

/// The answer.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// `namespace/name`.
    pub service: String,
    /// Where it stands.
    pub verdict: Verdict,
    /// Its addresses (as its status says in a cluster; as the step decides standalone).
    pub addresses: Vec<IpAddr>,
    /// The pool they come from.
    pub pool: Option<String>,
    /// Why that pool.
    pub pool_reason: Option<String>,
    /// Why it has no address (pending).
    pub pending_reason: Option<String>,
    /// Why an address is stale.
    pub stale_reason: Option<String>,
    /// Layer 2: who answers ARP/NDP and where, or why nobody does (None: no L2Advertisement
    /// covers it).
    pub layer2: Option<String>,
    /// The BGP sessions that would carry it, with their state.
    pub bgp_sessions: Vec<SessionLine>,
    /// Why no node would advertise it over BGP (None when some would, or no
    /// BGPAdvertisement covers it).
    pub bgp_reason: Option<String>,
    /// What the Announced condition says, computed here.
    pub announced: Option<Condition>,
    /// What the speakers wrote on the Service (cluster), to compare.
    pub condition_written: Option<Condition>,
    /// Config objects that matter here and are refused, with why.
    pub refused_config: Vec<String>,
    /// What this answer assumes.
    pub assumptions: Vec<String>,
}

/// Why `explain` cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// No Service of that name.
    #[error("no Service {0}")]
    NotFound(String),
}

/// Explains Service `namespace/name` in `world`.
pub fn explain(world: &World, namespace: &str, name: &str) -> Result<Explanation, ExplainError> {
    let key = ServiceKey::new(namespace, name);
    let service = (world.objects.services.iter())
        .find(|s| from_service::key(&with_default_namespace(s)) == key)
        .map(with_default_namespace)
        .ok_or_else(|| ExplainError::NotFound(key.to_string()))?;
    let mut out = Explanation {
        service: key.to_string(),
        verdict: Verdict::NotOurs,
        addresses: Vec::new(),
        pool: None,
        pool_reason: None,
        pending_reason: None,
        stale_reason: None,
        layer2: None,
        bgp_sessions: Vec::new(),
        bgp_reason: None,
        announced: None,
        condition_written: written_condition(&service),
        refused_config: Vec::new(),
        assumptions: Vec::new(),
    };
    let lb_class = match &world.source {
        Source::Cluster { lb_class, .. } => lb_class.as_deref(),
        Source::Standalone { .. } => None,
    };
    if !from_service::is_ours(&service, lb_class) {
        out.pending_reason = Some(not_ours_reason(&service, lb_class));
        return Ok(out);
    }

    // Allocation, as the controller (or the standalone step) decides it.
    let decided = allocate(world);
    let refused = decided.verdicts.refused();
    out.refused_config = refused
        .iter()
        .map(|o| format!("{o}: {}", decided.verdicts.verdict(o).1))
        .collect();
    let request = decided.requests.get(&key);
    let outcome = decided.outcomes.get(&key);
    let held = match &world.source {
        Source::Cluster { .. } => request.map(|r| r.held_ips.clone()).unwrap_or_default(),
        Source::Standalone { .. } => match outcome {
            Some(Ok(a)) => a.ips.clone(),
            _ => Vec::new(),
        },
    };
    out.addresses = held.clone();
    match (outcome, held.is_empty()) {
        (None, _) => {
            out.verdict = Verdict::Pending;
            out.pending_reason = Some("the Service's request is refused before allocation".into());
        }
        (Some(Err(refusal)), _) => {
            out.verdict = Verdict::Pending;
            out.pending_reason = Some(refusal.to_string());
        }
        (Some(Ok(a)), true) => {
            out.verdict = Verdict::Pending;
            out.pool = Some(a.pool.clone());
            out.pending_reason = Some(format!(
                "the controller would assign {} from pool {} but has not written it: is it \
                 running and the leader? (its logs and the Service's Events say more)",
                join(&a.ips),
                a.pool
            ));
        }
        (Some(Ok(a)), false) => {
            out.pool = Some(a.pool.clone()).filter(|p| !p.is_empty());
            if let Some(r) = request {
                out.pool_reason = Some(pool_reason(&decided.config, r, a));
            }
            if !a.stale.is_empty() {
                out.verdict = Verdict::Stale;
                out.stale_reason = Some(format!(
                    "{} {} in no pool in force any more; the Service keeps {} under the stale \
                     policy keep (reassign would give it a new address)",
                    join(&a.stale),
                    if a.stale.len() == 1 { "is" } else { "are" },
                    if a.stale.len() == 1 { "it" } else { "them" },
                ));
            } else if a.ips != held {
                out.verdict = Verdict::Stale;
                out.stale_reason = Some(format!(
                    "the Service holds {} but the controller would give it {} from pool {}",
                    join(&held),
                    join(&a.ips),
                    a.pool
                ));
            }
        }
    }
    if out.addresses.is_empty() {
        return Ok(out);
    }
    if out.verdict == Verdict::NotOurs {
        // Assigned; announced only if what follows finds an announcer.
        out.verdict = Verdict::NotAnnounced;
    }

    // Announcement, as the speakers decide it.
    let (nodes, live, services, sessions) = announcer_inputs(world, &decided);
    let Some(view) = services.iter().find(|s| s.name == key.to_string()) else {
        return Ok(out);
    };
    let shared = election::SharedAddresses::of(&services);
    let cluster = election::Cluster {
        shared: &shared,
        config: &decided.config,
        nodes: &nodes,
        live: &live,
        ignore_exclude_label: false,
    };
    if let Some(&ip) = view.ips.first() {
        out.layer2 = match election::owner(&cluster, view, ip) {
            Ok(a) => Some(format!(
                "node {} answers ARP/NDP for {} on {}",
                a.node,
                join(&view.ips),
                match &a.interfaces {
                    election::Interfaces::All => "every suitable interface".to_string(),
                    election::Interfaces::Named(n) =>
                        n.iter().cloned().collect::<Vec<_>>().join(","),
                }
            )),
            Err(election::Reason::NoMatchingAdvertisement) => None,
            Err(r) => Some(format!("no node answers ARP/NDP for {ip}: {r}")),
        };
    }
    let (lines, reason) = bgp_lines(&cluster, view, sessions.as_ref());
    out.bgp_sessions = lines;
    out.bgp_reason = reason;
    match &sessions {
        Some(seen) => {
            if let Some(a) = status::announced_condition(&cluster, view, seen, None) {
                out.verdict = match (out.verdict, a.status) {
                    (Verdict::Stale, _) => Verdict::Stale,
                    (_, true) => Verdict::Announced,
                    (_, false) => Verdict::NotAnnounced,
                };
                out.announced = Some(Condition {
                    status: if a.status { "True" } else { "False" }.into(),
                    reason: a.reason,
                    message: a.message,
                });
            }
        }
        None => {
            let l2 = out
                .layer2
                .as_deref()
                .is_some_and(|l| l.starts_with("node "));
            if out.verdict != Verdict::Stale {
                out.verdict = if l2 || !out.bgp_sessions.is_empty() {
                    Verdict::Announced
                } else {
                    Verdict::NotAnnounced
                };
            }
        }
    }
    match &world.source {
        Source::Cluster { .. } => out.assumptions.push(
            "a node's speaker is taken as live while the Node is Ready (the speakers' \
             membership is not visible from outside)"
                .into(),
        ),
        Source::Standalone { .. } => out.assumptions.push(
            "every host is taken as live and serving; BGP session states are in each host's \
             output, not here"
                .into(),
        ),
    }
    Ok(out)
}

fn with_default_namespace(s: &Service) -> Service {
    let mut s = s.clone();
    if s.metadata.namespace.is_none() {
        s.metadata.namespace = Some("default".into());
    }
    s
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn not_ours_reason(service: &Service, lb_class: Option<&str>) -> String {
    let spec = service.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return format!(
            "type {}: only LoadBalancer Services get an address",
            spec.type_.as_deref().unwrap_or("ClusterIP")
        );
    }
    match (spec.load_balancer_class.as_deref(), lb_class) {
        (Some(c), Some(ours)) => {
            format!("loadBalancerClass {c}: this ferrolb serves class {ours} only")
        }
        (Some(c), None) => {
            format!("loadBalancerClass {c}: this ferrolb serves Services without a class")
        }
        (None, Some(ours)) => {
            format!("no loadBalancerClass: this ferrolb serves class {ours} only")
        }
        (None, None) => "not a Service of ferrolb's".into(),
    }
}

fn written_condition(service: &Service) -> Option<Condition> {
    let c = (service.status.as_ref())
        .and_then(|s| s.conditions.as_ref())?
        .iter()
        .find(|c| c.type_ == "ferrolb.io/Announced")?;
    Some(Condition {
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
    })
}

/// The allocation every Service gets, and the config in force.
struct Decided {
    verdicts: config::Built,
    config: Config,
    requests: BTreeMap<ServiceKey, ServiceRequest>,
    outcomes: BTreeMap<ServiceKey, Result<Assignment, Refusal>>,
}

fn allocate(world: &World) -> Decided {
    match &world.source {
        Source::Standalone { held } => {
            let step = Engine::new(world.stale_policy).step(&world.objects, held);
            let requests = step.requests;
            let mut outcomes: BTreeMap<ServiceKey, Result<Assignment, Refusal>> =
                step.assigned.into_iter().map(|(k, a)| (k, Ok(a))).collect();
            outcomes.extend(step.refused.into_iter().map(|(k, r)| (k, Err(r))));
            let config = step.verdicts.config.clone();
            Decided {
                verdicts: step.verdicts,
                config,
                requests,
                outcomes,
            }
        }
        Source::Cluster {
            namespaces,
            lb_class,
            ..
        } => {
            let verdicts = config::LastGood::default().build(&world.objects.config);
            let config = verdicts.config.clone();
            let mut requests = BTreeMap::new();
            let mut outcomes = BTreeMap::new();
            for s in &world.objects.services {
                if !from_service::is_ours(s, lb_class.as_deref()) {
                    continue;
                }
                let labels = (s.metadata.namespace.as_ref())
                    .and_then(|n| namespaces.get(n))
                    .cloned()
                    .unwrap_or_default();
                match from_service::request(s, &labels) {
                    Ok(r) => {
                        requests.insert(r.key.clone(), r);
                    }
                    Err(refusal) => {
                        outcomes.insert(from_service::key(s), Err(refusal));
                    }
                }
            }
            let all: Vec<ServiceRequest> = requests.values().cloned().collect();
            let mut allocator = Allocator::new(config.clone(), world.stale_policy);
            outcomes.extend(allocator.restore(&all).outcomes);
            Decided {
                verdicts,
                config,
                requests,
                outcomes,
            }
        }
    }
}

/// Why the Service's addresses come from `a.pool`.
fn pool_reason(config: &Config, r: &ServiceRequest, a: &Assignment) -> String {
    if !r.requested_ips.is_empty() {
        return format!(
            "it asks for {} (spec.loadBalancerIP or the loadBalancerIPs annotation), which pool {} holds",
            join(&r.requested_ips),
            a.pool
        );
    }
    if let Some(p) = &r.requested_pool {
        return format!("the address-pool annotation names pool {p}");
    }
    let (order, excluded) = order::auto_order(config, r);
    let names: Vec<&str> = order.iter().map(|p| p.name.as_str()).collect();
    let mut reason = if names.first() == Some(&a.pool.as_str()) {
        format!(
            "pool {} comes first of the pools that admit it (restricted pools by priority, then \
             open ones by name: {})",
            a.pool,
            names.join(", ")
        )
    } else if names.contains(&a.pool.as_str()) {
        format!(
            "pools before {} in order ({}) had no room or address of its family",
            a.pool,
            names.join(", ")
        )
    } else {
        format!("it held an address of pool {} already", a.pool)
    };
    if let Some(k) = &r.sharing_key {
        reason.push_str(&format!("; it shares addresses under key {k}"));
    }
    if !excluded.is_empty() {
        let skipped: Vec<String> = excluded
            .iter()
            .take(5)
            .map(|e| format!("{} ({})", e.pool, e.reason))
            .collect();
        reason.push_str(&format!("; not considered: {}", skipped.join(", ")));
    }
    reason
}

type AnnouncerInputs = (
    Vec<election::Node>,
    BTreeSet<String>,
    Vec<election::Service>,
    Option<SessionsSeen>,
);

fn announcer_inputs(world: &World, decided: &Decided) -> AnnouncerInputs {
    let nodes: Vec<election::Node> = (world.objects.nodes.iter())
        .map(election::Node::from_object)
        .collect();
    match &world.source {
        Source::Cluster {
            slices,
            sessions,
            lb_class,
            ..
        } => {
            let live = (world.objects.nodes.iter())
                .filter(|n| is_ready(n))
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            let services: Vec<Arc<Service>> = world
                .objects
                .services
                .iter()
                .cloned()
                .map(Arc::new)
                .collect();
            let slices: Vec<Arc<EndpointSlice>> = slices.iter().cloned().map(Arc::new).collect();
            let views = ferrolb_announce::views::services(&services, &slices, lb_class.as_deref());
            let seen = (sessions.iter())
                .map(|s| {
                    let seen = SessionSeen {
                        state: s.bgp_status.clone(),
                        last_error: s.last_error.clone(),
                    };
                    ((s.node.clone(), s.peer_name.clone()), seen)
                })
                .collect();
            (nodes, live, views, Some(seen))
        }
        Source::Standalone { .. } => {
            let live = nodes.iter().map(|n| n.name.clone()).collect();
            let step = crate::engine::Step {
                assigned: (decided.outcomes.iter())
                    .filter_map(|(k, o)| Some((k.clone(), o.as_ref().ok()?.clone())))
                    .collect(),
                ..Default::default()
            };
            let inputs = crate::announce::inputs(&world.objects, &step, decided.config.clone());
            (nodes, live, inputs.services, None)
        }
    }
}

fn is_ready(n: &Node) -> bool {
    (n.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The (node, peer) sessions that would carry the Service, with their state when known; or why
/// no node would.
fn bgp_lines(
    cluster: &election::Cluster<'_>,
    view: &election::Service,
    sessions: Option<&SessionsSeen>,
) -> (Vec<SessionLine>, Option<String>) {
    let carriers = status::bgp_carriers(cluster, view);
    let lines = (carriers.pairs.into_iter())
        .map(|(node, peer)| {
            let seen = sessions.and_then(|s| s.get(&(node.clone(), peer.clone())));
            SessionLine {
                state: seen.map(|s| s.state.clone()),
                last_error: seen.and_then(|s| s.last_error.clone()),
                node,
                peer,
            }
        })
        .collect();
    (lines, carriers.reason.map(|r| r.tag().to_string()))
}

impl Explanation {
    /// The answer in words, one line per fact.
    pub fn text(&self) -> String {
        let mut out = format!("Service {}: {}\n", self.service, self.headline());
        let mut line = |k: &str, v: &str| out.push_str(&format!("  {k:<11} {v}\n"));
        if !self.addresses.is_empty() {
            line("Addresses:", &join(&self.addresses));
        }
        if let Some(p) = &self.pool {
            line("Pool:", p);
        }
        if let Some(r) = &self.pool_reason {
            line("Why:", r);
        }
        if let Some(r) = &self.pending_reason {
            line("Pending:", r);
        }
        if let Some(r) = &self.stale_reason {
            line("Stale:", r);
        }
        if let Some(l) = &self.layer2 {
            line("Layer 2:", l);
        }
        for s in &self.bgp_sessions {
            let state = match (&s.state, &s.last_error) {
                (None, _) => "state not known here".to_string(),
                (Some(st), Some(e)) if st != "Established" => format!("{st} ({e})"),
                (Some(st), _) => st.clone(),
            };
            line(
                "BGP:",
                &format!("node {} to peer {}: {state}", s.node, s.peer),
            );
        }
        if let Some(r) = &self.bgp_reason {
            line("BGP:", &format!("no node advertises it: {r}"));
        }
        if let Some(c) = &self.announced {
            line(
                "Announced:",
                &format!("{} ({}): {}", c.status, c.reason, c.message),
            );
        }
        match (&self.condition_written, &self.announced) {
            (Some(w), Some(a)) if w == a => {
                line("Condition:", "the Service's condition says the same")
            }
            (Some(w), _) => line(
                "Condition:",
                &format!(
                    "the speakers wrote {} ({}): {} (not yet updated, or no speaker is live)",
                    w.status, w.reason, w.message
                ),
            ),
            (None, _) => {}
        }
        for r in &self.refused_config {
            line("Refused:", r);
        }
        for a in &self.assumptions {
            line("Assumes:", a);
        }
        out
    }

    fn headline(&self) -> &'static str {
        match self.verdict {
            Verdict::NotOurs => "not ferrolb's",
            Verdict::Pending => "pending (no address)",
            Verdict::Stale => "stale (its address is outside the pools in force)",
            Verdict::NotAnnounced => "assigned, but no node announces it",
            Verdict::Announced => "announced",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Held, VERSION};

    const DIR: &str = r#"
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: ferrolb-system}
spec: {addresses: ["10.0.0.0/30"]}
---
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: routed, namespace: ferrolb-system}
spec: {addresses: ["10.100.0.0/28"], autoAssign: false}
---
apiVersion: ferrolb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan, namespace: ferrolb-system}
spec: {ipAddressPools: [lan]}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: routed, namespace: ferrolb-system}
spec: {ipAddressPools: [routed]}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata: {name: tor, namespace: ferrolb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 10.0.0.254}
---
apiVersion: v1
kind: Node
metadata: {name: host-a}
---
apiVersion: v1
kind: Node
metadata: {name: host-b}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop, annotations: {ferrolb.io/address-pool: routed}}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: lost, namespace: shop, annotations: {ferrolb.io/address-pool: nowhere}}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: old, namespace: shop}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: shop}
spec: {type: ClusterIP, ports: [{port: 80}]}
"#;

    fn world() -> World {
        let objects = crate::config_dir::parse_file(std::path::Path::new("x.yaml"), DIR).unwrap();
        let held = State {
            version: VERSION,
            services: [(
                "shop/old".to_string(),
                Held {
                    pool: "gone".into(),
                    ips: vec!["10.9.0.1".parse().unwrap()],
                },
            )]
            .into(),
            ..State::default()
        };
        World {
            objects,
            source: Source::Standalone { held },
            stale_policy: StalePolicy::Keep,
        }
    }

    #[test]
    fn an_announced_service_names_its_pool_and_its_announcers() {
        let e = explain(&world(), "shop", "web").unwrap();
        assert_eq!(e.verdict, Verdict::Announced, "{}", e.text());
        assert_eq!(e.pool.as_deref(), Some("lan"));
        assert!(
            e.pool_reason
                .as_deref()
                .unwrap()
                .contains("pool lan comes first"),
            "{}",
            e.text()
        );
        assert!(
            e.layer2
                .as_deref()
                .unwrap()
                .contains("answers ARP/NDP for 10.0.0."),
            "{}",
            e.text()
        );
        assert!(e.bgp_sessions.is_empty());

        let e = explain(&world(), "shop", "api").unwrap();
        assert_eq!(e.verdict, Verdict::Announced, "{}", e.text());
        assert!(
            e.pool_reason
                .as_deref()
                .unwrap()
                .contains("annotation names pool routed")
        );
        assert_eq!(e.layer2, None, "no L2Advertisement covers routed");
        let pairs: Vec<(&str, &str)> = (e.bgp_sessions.iter())
            .map(|s| (s.node.as_str(), s.peer.as_str()))
            .collect();
        assert_eq!(pairs, [("host-a", "tor"), ("host-b", "tor")]);
        assert!(
            e.text()
                .contains("node host-a to peer tor: state not known here"),
            "{}",
            e.text()
        );
    }

    #[test]
    fn a_pending_service_says_why() {
        let e = explain(&world(), "shop", "lost").unwrap();
        assert_eq!(e.verdict, Verdict::Pending);
        assert!(e.addresses.is_empty());
        assert!(
            e.pending_reason.as_deref().unwrap().contains("nowhere"),
            "{}",
            e.text()
        );
        assert!(
            e.text().starts_with("Service shop/lost: pending"),
            "{}",
            e.text()
        );
    }

    #[test]
    fn a_stale_service_says_its_address_is_outside_the_pools() {
        let e = explain(&world(), "shop", "old").unwrap();
        assert_eq!(e.verdict, Verdict::Stale, "{}", e.text());
        assert_eq!(e.addresses, vec!["10.9.0.1".parse::<IpAddr>().unwrap()]);
        assert!(
            e.stale_reason
                .as_deref()
                .unwrap()
                .contains("10.9.0.1 is in no pool in force"),
            "{}",
            e.text()
        );
    }

    #[test]
    fn other_services_are_not_ours_and_unknown_ones_are_an_error() {
        let e = explain(&world(), "shop", "internal").unwrap();
        assert_eq!(e.verdict, Verdict::NotOurs);
        assert!(
            e.pending_reason
                .as_deref()
                .unwrap()
                .contains("type ClusterIP")
        );
        assert!(matches!(
            explain(&world(), "shop", "nope"),
            Err(ExplainError::NotFound(_))
        ));
        let json = serde_json::to_value(explain(&world(), "shop", "web").unwrap()).unwrap();
        assert_eq!(json["verdict"], "announced");
        assert_eq!(json["pool"], "lan");
    }
}
