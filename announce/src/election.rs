//! The layer-2 announcer election: which node answers ARP/NDP for each LoadBalancer IP.
//!
//! Pure and stateless: every speaker runs [`decide`] on the same inputs and must reach the same
//! answer without talking to the others, so the result depends on nothing but the arguments
//! (no clock, no randomness, no hash-map order, no per-build hasher seed). Each eligible, live
//! node gets a rank for an IP from SHA-256 of `node name ‖ "#" ‖ IP`; the lowest rank announces.
//! Because the rank of a node does not depend on the other nodes, removing a node that does not
//! own an IP never moves that IP, and adding one moves it only if the newcomer ranks first.
//!
//! Services sharing an IP are announced by one node: the owner of a shared address is elected
//! among the nodes eligible for every Service on it that needs it announced ([`SharedAddresses`]),
//! so sharing Services that match different L2Advertisements (other `nodeSelectors` through
//! `serviceSelectors`) or have local endpoints on different nodes never get two nodes
//! answering ARP/NDP for one address (MetalLB issues #315, #558, #3025). When no node suits
//! them all, nobody answers and the reason says so.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ferrolb_config::selector::{Labels, any_matches};
use ferrolb_config::{Config, L2Advertisement};
use sha2::{Digest, Sha256};

/// Nodes carrying this label (any value) never announce, unless the speaker is told to ignore it
/// (kubeadm and Talos set it on control-plane nodes, which would leave one-node clusters silent).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// What the election needs to know about a Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The Node's name (also the member name in the membership protocol).
    pub name: String,
    /// The Node's labels (for `nodeSelectors` and [`EXCLUDE_LABEL`]).
    pub labels: Labels,
    /// The Node has the condition `NetworkUnavailable=True`.
    pub network_unavailable: bool,
}

impl Node {
    /// The election's view of a Kubernetes Node object (in a cluster, or a standalone host's
    /// YAML).
    pub fn from_object(n: &k8s_openapi::api::core::v1::Node) -> Node {
        let network_unavailable = (n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "NetworkUnavailable" && c.status == "True")
            });
        Node {
            name: n.metadata.name.clone().unwrap_or_default(),
            labels: n.metadata.labels.clone().unwrap_or_default(),
            network_unavailable,
        }
    }
}

/// A Service's `externalTrafficPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TrafficPolicy {
    /// Any node may receive the traffic; kube-proxy forwards it to an endpoint anywhere.
    #[default]
    Cluster,
    /// Only nodes with a local endpoint may receive the traffic.
    Local,
}

impl TrafficPolicy {
    /// The policy a Service object asks for (Cluster unless it says Local).
    pub fn of(service: &k8s_openapi::api::core::v1::Service) -> TrafficPolicy {
        let spec = service.spec.as_ref();
        match spec.and_then(|s| s.external_traffic_policy.as_deref()) {
            Some("Local") => TrafficPolicy::Local,
            _ => TrafficPolicy::Cluster,
        }
    }
}

/// What the election needs to know about a LoadBalancer Service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// `namespace/name`, for messages.
    pub name: String,
    /// Its LoadBalancer IPs (from the status).
    pub ips: Vec<IpAddr>,
    /// The pool the IPs came from.
    pub pool: String,
    /// The Service's labels (for `serviceSelectors`).
    pub labels: Labels,
    /// externalTrafficPolicy.
    pub traffic_policy: TrafficPolicy,
    /// Nodes hosting an endpoint that is ready or serving (EndpointSlices). Only consulted for
    /// [`TrafficPolicy::Local`].
    pub local_endpoint_nodes: BTreeSet<String>,
    /// Whether any endpoint anywhere is ready or serving. Without one, nobody announces: an
    /// answered ARP for a Service that cannot serve only turns a fast "no route" into a timeout.
    pub has_serving_endpoint: bool,
}

/// The Services on each address that more than one Service holds (allow-shared-ip).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedAddresses(BTreeMap<IpAddr, Vec<Service>>);

impl SharedAddresses {
    /// Finds the shared addresses among `services`.
    pub fn of(services: &[Service]) -> SharedAddresses {
        let mut by_ip: BTreeMap<IpAddr, Vec<&Service>> = BTreeMap::new();
        for s in services {
            for ip in &s.ips {
                by_ip.entry(*ip).or_default().push(s);
            }
        }
        SharedAddresses(
            (by_ip.into_iter())
                .filter(|(_, holders)| holders.len() > 1)
                .map(|(ip, holders)| (ip, holders.into_iter().cloned().collect()))
                .collect(),
        )
    }

    /// The Services other than `name` that hold `ip`.
    fn others<'s>(&'s self, ip: IpAddr, name: &'s str) -> impl Iterator<Item = &'s Service> {
        (self.0.get(&ip).into_iter().flatten()).filter(move |s| s.name != name)
    }
}

/// The cluster-wide inputs shared by every Service's decision.
#[derive(Clone, Copy, Debug)]
pub struct Cluster<'a> {
    /// Addresses held by more than one Service ([`SharedAddresses::of`] the Services).
    pub shared: &'a SharedAddresses,
    /// The validated configuration.
    pub config: &'a Config,
    /// Every Node the speaker knows about.
    pub nodes: &'a [Node],
    /// Names of the nodes whose speaker is alive (the membership view; all nodes when no
    /// membership protocol runs).
    pub live: &'a BTreeSet<String>,
    /// Ignore [`EXCLUDE_LABEL`] (the speaker's override flag).
    pub ignore_exclude_label: bool,
}

/// Where an IP is announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interfaces {
    /// Every suitable interface of the node (some matching advertisement lists none).
    All,
    /// Only these interfaces (the union of the matching advertisements' lists).
    Named(BTreeSet<String>),
}

impl Interfaces {
    /// Whether `ifname` is included.
    pub fn includes(&self, ifname: &str) -> bool {
        match self {
            Interfaces::All => true,
            Interfaces::Named(names) => names.contains(ifname),
        }
    }
}

/// One IP's announcement: who announces it and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The LoadBalancer IP.
    pub ip: IpAddr,
    /// The node that answers for it.
    pub node: String,
    /// The interfaces it answers on.
    pub interfaces: Interfaces,
    /// The L2Advertisements that select the node for this Service, by name.
    pub advertisements: Vec<String>,
}

/// Why a node does not announce an IP (for logs, metrics and the Service's status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The Service has no ready or serving endpoint anywhere.
    NoEndpoints,
    /// No L2Advertisement covers the Service's pool and matches its labels.
    NoMatchingAdvertisement,
    /// The node is not in the list of Nodes.
    UnknownNode,
    /// No matching L2Advertisement selects this node.
    NodeNotSelected,
    /// The node has `NetworkUnavailable=True`.
    NodeNetworkUnavailable,
    /// The node carries [`EXCLUDE_LABEL`].
    Excluded,
    /// externalTrafficPolicy=Local and the node has no ready or serving endpoint.
    NoLocalEndpoints,
    /// The node's speaker is not in the live member set.
    NotLive,
    /// The node is eligible but another node ranks first for this IP.
    NotOwner {
        /// The node that announces.
        owner: String,
    },
    /// Nobody is eligible and live (only from [`owner`]).
    NoEligibleNode,
    /// The address is shared, and no live node is eligible for every Service on it that needs
    /// it announced (only from [`owner`]).
    NoCommonNode {
        /// The other Services on the address, `namespace/name`.
        sharing_with: Vec<String>,
    },
}

impl Reason {
    /// A short camelCase tag for metrics labels and status fields.
    pub fn tag(&self) -> &'static str {
        match self {
            Reason::NoEndpoints => "noEndpoints",
            Reason::NoMatchingAdvertisement => "noMatchingAdvertisement",
            Reason::UnknownNode => "unknownNode",
            Reason::NodeNotSelected => "nodeNotSelected",
            Reason::NodeNetworkUnavailable => "nodeNetworkUnavailable",
            Reason::Excluded => "excluded",
            Reason::NoLocalEndpoints => "noLocalEndpoints",
            Reason::NotLive => "notLive",
            Reason::NotOwner { .. } => "notOwner",
            Reason::NoEligibleNode => "noEligibleNode",
            Reason::NoCommonNode { .. } => "noCommonNodeForSharedAddress",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotOwner { owner } => write!(f, "notOwner (announced by {owner})"),
            Reason::NoCommonNode { sharing_with } => write!(
                f,
                "noCommonNodeForSharedAddress (no live node is eligible for this Service and for {}, which share the address)",
                sharing_with.join(", ")
            ),
            other => f.write_str(other.tag()),
        }
    }
}

/// The decision for one IP on one node.
pub type Decision = Result<Announcement, Reason>;

/// For each of the Service's IPs, whether `this_node` announces it (`Ok`) or why not (`Err`).
/// Every node that runs this with the same inputs agrees on who the owner is.
pub fn decide(
    cluster: &Cluster<'_>,
    service: &Service,
    this_node: &str,
) -> Vec<(IpAddr, Decision)> {
    service
        .ips
        .iter()
        .map(|&ip| (ip, decide_ip(cluster, service, this_node, ip)))
        .collect()
}

/// Who announces `ip` of `service`, cluster-wide (what a status writer or a test wants).
pub fn owner(cluster: &Cluster<'_>, service: &Service, ip: IpAddr) -> Decision {
    if !service.has_serving_endpoint {
        return Err(Reason::NoEndpoints);
    }
    let ads = matching_ads(cluster.config, service);
    if ads.is_empty() {
        return Err(Reason::NoMatchingAdvertisement);
    }
    let nodes = nodes_by_name(cluster.nodes);
    // The other Services on a shared address that need it announced: the owner must suit them
    // all, or two nodes would answer for one address.
    // A Service that no live node can serve anyway holds nobody back.
    let others: Vec<(&Service, Vec<&L2Advertisement>)> = (cluster.shared)
        .others(ip, &service.name)
        .filter(|o| o.has_serving_endpoint)
        .map(|o| (o, matching_ads(cluster.config, o)))
        .filter(|(_, ads)| !ads.is_empty())
        .filter(|(o, ads)| {
            (nodes.values())
                .any(|n| cluster.live.contains(&n.name) && eligibility(cluster, o, ads, n).is_ok())
        })
        .collect();
    // Every address of a Service is elected by its first one (as MetalLB does): a dual-stack
    // Service's IPv4 and IPv6 addresses are answered by the same node. A shared address whose
    // Services do not agree on their first address is elected by itself, so they agree on it;
    // all holders count here, endpoints or not, so that one coming and going moves nothing.
    let first = service.ips.first().copied();
    let key = match first {
        Some(first)
            if (cluster.shared.others(ip, &service.name))
                .all(|o| o.ips.first() == Some(&first)) =>
        {
            first
        }
        _ => ip,
    };
    let candidates: Vec<&&Node> = (nodes.values())
        .filter(|n| eligibility(cluster, service, &ads, n).is_ok())
        .filter(|n| cluster.live.contains(&n.name))
        .collect();
    let winner = (candidates.iter())
        .filter(|n| (others.iter()).all(|(o, ads)| eligibility(cluster, o, ads, n).is_ok()))
        .min_by(|a, b| {
            rank(&a.name, key)
                .cmp(&rank(&b.name, key))
                .then(a.name.cmp(&b.name))
        });
    match winner {
        Some(winner) => Ok(announcement(ip, winner, &ads)),
        None if candidates.is_empty() || others.is_empty() => Err(Reason::NoEligibleNode),
        None => Err(Reason::NoCommonNode {
            sharing_with: others.iter().map(|(o, _)| o.name.clone()).collect(),
        }),
    }
}

fn decide_ip(cluster: &Cluster<'_>, service: &Service, this_node: &str, ip: IpAddr) -> Decision {
    if !service.has_serving_endpoint {
        return Err(Reason::NoEndpoints);
    }
    let ads = matching_ads(cluster.config, service);
    if ads.is_empty() {
        return Err(Reason::NoMatchingAdvertisement);
    }
    let nodes = nodes_by_name(cluster.nodes);
    let me = nodes.get(this_node).ok_or(Reason::UnknownNode)?;
    eligibility(cluster, service, &ads, me)?;
    if !cluster.live.contains(this_node) {
        return Err(Reason::NotLive);
    }
    let announcement = owner(cluster, service, ip)?;
    if announcement.node == this_node {
        Ok(announcement)
    } else {
        Err(Reason::NotOwner {
            owner: announcement.node,
        })
    }
}

/// The rank of `node` for `ip` (a Service's first address, or a shared address whose holders
/// disagree on their first one): lower wins. The same formula as
/// MetalLB's (SHA-256 of `node#ip`), so the same node wins as under MetalLB. SHA-256 so that every build and every version of
/// the speaker ranks alike (`std`'s `DefaultHasher` is allowed to change between releases).
pub fn rank(node: &str, ip: IpAddr) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update(b"#");
    h.update(ip.to_string().as_bytes());
    h.finalize().into()
}

/// Nodes by name, so that input order cannot matter (duplicates: the first wins).
fn nodes_by_name(nodes: &[Node]) -> BTreeMap<&str, &Node> {
    let mut map = BTreeMap::new();
    for n in nodes {
        map.entry(n.name.as_str()).or_insert(n);
    }
    map
}

/// The L2Advertisements that cover the Service's pool and match its labels.
fn matching_ads<'c>(config: &'c Config, service: &Service) -> Vec<&'c L2Advertisement> {
    config
        .l2_advertisements
        .iter()
        .filter(|ad| ad.pools.contains(&service.pool))
        .filter(|ad| any_matches(&ad.service_selectors, &service.labels))
        .collect()
}

/// Whether `node` may announce the Service at all (liveness aside).
fn eligibility(
    cluster: &Cluster<'_>,
    service: &Service,
    ads: &[&L2Advertisement],
    node: &Node,
) -> Result<(), Reason> {
    if !ads
        .iter()
        .any(|ad| any_matches(&ad.node_selectors, &node.labels))
    {
        return Err(Reason::NodeNotSelected);
    }
    if node.network_unavailable {
        return Err(Reason::NodeNetworkUnavailable);
    }
    if !cluster.ignore_exclude_label && node.labels.contains_key(EXCLUDE_LABEL) {
        return Err(Reason::Excluded);
    }
    if service.traffic_policy == TrafficPolicy::Local
        && !service.local_endpoint_nodes.contains(&node.name)
    {
        return Err(Reason::NoLocalEndpoints);
    }
    Ok(())
}

fn announcement(ip: IpAddr, node: &Node, ads: &[&L2Advertisement]) -> Announcement {
    let selecting: Vec<&L2Advertisement> = ads
        .iter()
        .copied()
        .filter(|ad| any_matches(&ad.node_selectors, &node.labels))
        .collect();
    let interfaces = if selecting.iter().any(|ad| ad.interfaces.is_empty()) {
        Interfaces::All
    } else {
        Interfaces::Named(
            selecting
                .iter()
                .flat_map(|ad| ad.interfaces.iter().cloned())
                .collect(),
        )
    };
    Announcement {
        ip,
        node: node.name.clone(),
        interfaces,
        advertisements: selecting.iter().map(|ad| ad.name.clone()).collect(),
    }
}

#[cfg(test)]
mod tests;
