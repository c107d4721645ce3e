//! The BGP advertisement decision, pure: from the validated [`Config`], this [`Node`] and the
//! [`Service`]s, which peers this node opens sessions to and the [`Table`] each one gets, plus,
//! for status and `explain`, why a Service IP is not announced.
//!
//! Unlike the layer-2 election there is no owner: every node that qualifies announces (the
//! router spreads traffic over the nodes by ECMP). The rules:
//! - Peers: a `BGPPeer` is used by this node when one of its `nodeSelectors` matches the
//!   node's labels (none: every node).
//! - A Service IP is announced to a peer through every `BGPAdvertisement` that covers the
//!   Service's pool, matches the Service (`serviceSelectors`), selects the node
//!   (`nodeSelectors`) and the peer (`peers`, empty: all), as the IP masked to
//!   `aggregationLength` (IPv4) / `aggregationLengthV6` (IPv6). Several IPs, or several
//!   advertisements, giving the same prefix for the same peer merge into one route: the union
//!   of their communities and the highest LOCAL_PREF (the config model refuses conflicting
//!   values for advertisements of identical scope; taking the highest keeps the result
//!   independent of input order in any remaining overlap). LOCAL_PREF reaches iBGP peers only
//!   (the UPDATE builder drops it for eBGP).
//! - A session carries the address family of its peer's address (both with
//!   `dualStackAddressFamily`): an IPv6 address is not announced to an IPv4-only peer, and the
//!   decision says so (`noPeerOfAddressFamily`) rather than "announced".
//! - externalTrafficPolicy Cluster: announced while the Service has any serving endpoint;
//!   Local: only while this node has a local serving endpoint.
//! - A node that carries the exclude label (unless told to ignore it) or is NetworkUnavailable
//!   announces nothing; it keeps its sessions (with empty tables), so routes come back without
//!   a session setup when the condition clears.
//!
//! The checks run in the same order as the layer-2 election's, so both modes explain a Service
//! with the same words.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ferrolb_config::selector::any_matches;
use ferrolb_config::{BgpAdvertisement, CommunityValue, Config, Peer, PeerAddress};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::message::LargeCommunity;
use super::update::{RouteAttrs, Table};
use crate::election::{self, EXCLUDE_LABEL, Node, Service, TrafficPolicy};

/// This node's side of the decision.
#[derive(Clone, Copy, Debug)]
pub struct Local<'a> {
    /// The validated configuration.
    pub config: &'a Config,
    /// This node.
    pub node: &'a Node,
    /// Ignore [`EXCLUDE_LABEL`] (the speaker's override flag).
    pub ignore_exclude_label: bool,
}

/// Why this node does not announce a Service IP to any peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The Service has no ready or serving endpoint anywhere.
    NoEndpoints,
    /// No BGPAdvertisement covers the Service's pool and matches its labels.
    NoMatchingAdvertisement,
    /// No matching BGPAdvertisement selects this node.
    NodeNotSelected,
    /// The node has `NetworkUnavailable=True`.
    NetworkUnavailable,
    /// The node carries [`EXCLUDE_LABEL`].
    Excluded,
    /// externalTrafficPolicy=Local and this node has no ready or serving endpoint.
    NoLocalEndpoints,
    /// The matching advertisements name only peers this node has no session with (or the
    /// node has no peer at all).
    NoPeer,
    /// Every peer the address would go to has a session of the other address family, which
    /// does not carry it (an IPv6 address and only IPv4 peers, or the reverse).
    NoPeerOfFamily,
}

impl Reason {
    /// A short camelCase tag for metrics labels and status fields; the same words as the
    /// layer-2 election's [`election::Reason::tag`] where the reasons are shared.
    pub fn tag(&self) -> &'static str {
        match self {
            Reason::NoEndpoints => election::Reason::NoEndpoints.tag(),
            Reason::NoMatchingAdvertisement => election::Reason::NoMatchingAdvertisement.tag(),
            Reason::NodeNotSelected => election::Reason::NodeNotSelected.tag(),
            Reason::NetworkUnavailable => election::Reason::NodeNetworkUnavailable.tag(),
            Reason::Excluded => election::Reason::Excluded.tag(),
            Reason::NoLocalEndpoints => election::Reason::NoLocalEndpoints.tag(),
            Reason::NoPeer => "noPeer",
            Reason::NoPeerOfFamily => "noPeerOfAddressFamily",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// How one Service IP is announced by this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// Peer name -> the prefixes carrying this IP to it (one per advertisement aggregation
    /// length; usually one).
    pub peers: BTreeMap<String, BTreeSet<IpNet>>,
    /// The BGPAdvertisements that announce it, by name.
    pub advertisements: Vec<String>,
}

/// The decision for one Service IP on this node.
pub type Decision = Result<Announcement, Reason>;

/// One Service IP's decision (for status and `explain`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpDecision {
    /// The Service, `namespace/name`.
    pub service: String,
    /// The LoadBalancer IP.
    pub ip: IpAddr,
    /// Announced, or why not.
    pub decision: Decision,
}

/// Everything this node advertises.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every peer this node opens a session to (by name), with the table it gets (possibly
    /// empty: a selected peer keeps its session even with nothing to announce).
    pub tables: BTreeMap<String, Table>,
    /// Per Service IP, in input order.
    pub decisions: Vec<IpDecision>,
}

/// The peers this node opens sessions to: their `nodeSelectors` match the node's labels
/// (none: every node). In name order.
pub fn selected_peers<'c>(config: &'c Config, node: &Node) -> Vec<&'c Peer> {
    config
        .peers
        .values()
        .filter(|p| any_matches(&p.node_selectors, &node.labels))
        .collect()
}

/// The tables for every selected peer and the decision for every Service IP.
pub fn plan(local: &Local<'_>, services: &[Service]) -> Plan {
    let peers = selected_peers(local.config, local.node);
    let mut tables: BTreeMap<String, Table> = peers
        .iter()
        .map(|p| (p.name.clone(), Table::new()))
        .collect();
    let mut decisions = Vec::new();
    for service in services {
        let routes = service_routes(local, &peers, service);
        for (ip, routes) in routes {
            let decision = match routes {
                Ok(routes) => {
                    let mut ann = Announcement {
                        peers: BTreeMap::new(),
                        advertisements: Vec::new(),
                    };
                    for r in routes {
                        merge(
                            tables.entry(r.peer.to_string()).or_default(),
                            r.prefix,
                            r.ad,
                        );
                        ann.peers
                            .entry(r.peer.to_string())
                            .or_default()
                            .insert(r.prefix);
                        if !ann.advertisements.iter().any(|a| a == &r.ad.name) {
                            ann.advertisements.push(r.ad.name.clone());
                        }
                    }
                    Ok(ann)
                }
                Err(reason) => Err(reason),
            };
            decisions.push(IpDecision {
                service: service.name.clone(),
                ip,
                decision,
            });
        }
    }
    Plan { tables, decisions }
}

/// For each of the Service's IPs, how this node announces it or why not (what `explain`
/// shows). Same answer as the Service's entries in [`plan`].
pub fn explain(local: &Local<'_>, service: &Service) -> Vec<IpDecision> {
    plan(local, std::slice::from_ref(service)).decisions
}

/// One route contribution: this IP goes to `peer` as `prefix` because of `ad`.
struct Contribution<'c> {
    peer: &'c str,
    prefix: IpNet,
    ad: &'c BgpAdvertisement,
}

type IpRoutes<'c> = Vec<(IpAddr, Result<Vec<Contribution<'c>>, Reason>)>;

fn service_routes<'c>(local: &Local<'c>, peers: &[&'c Peer], service: &Service) -> IpRoutes<'c> {
    match eligible_ads(local, service) {
        Err(reason) => service
            .ips
            .iter()
            .map(|&ip| (ip, Err(reason.clone())))
            .collect(),
        Ok(ads) => service
            .ips
            .iter()
            .map(|&ip| {
                let routes: Vec<Contribution<'c>> = peers
                    .iter()
                    .filter(|peer| carries(peer, ip))
                    .flat_map(|peer| {
                        ads.iter()
                            .filter(|ad| ad.peers.is_empty() || ad.peers.contains(&peer.name))
                            .map(move |ad| Contribution {
                                peer: peer.name.as_str(),
                                prefix: prefix(ip, ad),
                                ad,
                            })
                    })
                    .collect();
                let named = |peer: &&&Peer| {
                    (ads.iter()).any(|ad| ad.peers.is_empty() || ad.peers.contains(&peer.name))
                };
                if routes.is_empty() && peers.iter().any(|p| named(&p)) {
                    (ip, Err(Reason::NoPeerOfFamily))
                } else if routes.is_empty() {
                    (ip, Err(Reason::NoPeer))
                } else {
                    (ip, Ok(routes))
                }
            })
            .collect(),
    }
}

/// Whether a session with `peer` carries `ip`: a session carries the address family of its
/// peer's address (its next hop is this node's address of that family on the connection), and
/// with `dualStackAddressFamily` the other one too.
pub fn carries(peer: &Peer, ip: IpAddr) -> bool {
    match &peer.address {
        PeerAddress::Ip(address) => peer.dual_stack || address.is_ipv4() == ip.is_ipv4(),
        // Unnumbered: IPv6 natively, IPv4 with IPv6 next hops (RFC 8950).
        PeerAddress::Interface(_) => true,
    }
}

/// The advertisements through which this node may announce the Service (peers aside), or why
/// there are none. The order of the checks follows the layer-2 election.
fn eligible_ads<'c>(
    local: &Local<'c>,
    service: &Service,
) -> Result<Vec<&'c BgpAdvertisement>, Reason> {
    if !service.has_serving_endpoint {
        return Err(Reason::NoEndpoints);
    }
    let ads: Vec<&BgpAdvertisement> = local
        .config
        .bgp_advertisements
        .iter()
        .filter(|ad| ad.pools.contains(&service.pool))
        .filter(|ad| any_matches(&ad.service_selectors, &service.labels))
        .collect();
    if ads.is_empty() {
        return Err(Reason::NoMatchingAdvertisement);
    }
    let node = local.node;
    let ads: Vec<&BgpAdvertisement> = ads
        .into_iter()
        .filter(|ad| any_matches(&ad.node_selectors, &node.labels))
        .collect();
    if ads.is_empty() {
        return Err(Reason::NodeNotSelected);
    }
    if node.network_unavailable {
        return Err(Reason::NetworkUnavailable);
    }
    if !local.ignore_exclude_label && node.labels.contains_key(EXCLUDE_LABEL) {
        return Err(Reason::Excluded);
    }
    if service.traffic_policy == TrafficPolicy::Local
        && !service.local_endpoint_nodes.contains(&node.name)
    {
        return Err(Reason::NoLocalEndpoints);
    }
    Ok(ads)
}

/// `ip` masked to the advertisement's aggregation length for its family. Lengths beyond the
/// family's width (which the config model refuses) are taken as the full width.
pub fn prefix(ip: IpAddr, ad: &BgpAdvertisement) -> IpNet {
    match ip {
        IpAddr::V4(a) => IpNet::V4(
            Ipv4Net::new(a, ad.aggregation_length.min(32))
                .map(|n| n.trunc())
                .unwrap_or_else(|_| Ipv4Net::from(a)),
        ),
        IpAddr::V6(a) => IpNet::V6(
            Ipv6Net::new(a, ad.aggregation_length_v6.min(128))
                .map(|n| n.trunc())
                .unwrap_or_else(|_| Ipv6Net::from(a)),
        ),
    }
}

/// The route attributes one advertisement gives.
pub fn attrs(ad: &BgpAdvertisement) -> RouteAttrs {
    let mut a = RouteAttrs {
        local_pref: ad.local_pref,
        ..Default::default()
    };
    for c in &ad.communities {
        match *c {
            CommunityValue::Standard(hi, lo) => {
                a.communities.insert((u32::from(hi) << 16) | u32::from(lo));
            }
            CommunityValue::Large(global, local1, local2) => {
                a.large_communities.insert(LargeCommunity {
                    global,
                    local1,
                    local2,
                });
            }
        }
    }
    a
}

fn merge(table: &mut Table, prefix: IpNet, ad: &BgpAdvertisement) {
    let add = attrs(ad);
    let route = table.entry(prefix).or_default();
    route.local_pref = route.local_pref.max(add.local_pref);
    route.communities.extend(add.communities);
    route.large_communities.extend(add.large_communities);
}

#[cfg(test)]
mod tests;
