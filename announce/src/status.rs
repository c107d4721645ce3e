//! What a Service's announcement looks like across the cluster, pure: which node answers
//! ARP/NDP for it on which interfaces, which nodes advertise it to which BGP peers (from every
//! node's reported sessions), or why nobody does. The speaker writes it as the
//! `ferrolb.io/Announced` condition; `ferrolb explain` shows the same words.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::l2::agent::Inputs;
use crate::{bgp, election};

/// What one node's speaker reports about one of its BGP sessions (its `BGPSessionState`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSeen {
    /// The RFC 4271 state, as the object spells it.
    pub state: String,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// Every node's sessions as their objects say, by (node, BGPPeer name).
pub type SessionsSeen = BTreeMap<(String, String), SessionSeen>;

/// What the `ferrolb.io/Announced` condition says, and which node writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announced {
    /// The node that writes the condition: the owner of the first address over ARP/NDP, or,
    /// when nobody announces it there, the first live node by name. Every speaker computes the
    /// same answer, so exactly one writes.
    pub writer: String,
    /// Some node announces the Service.
    pub status: bool,
    /// `Layer2`, `BGP` or `Layer2AndBGP` when announced; otherwise why not.
    pub reason: String,
    /// Who announces which addresses where, or why nobody does; bounded whatever the cluster
    /// size (the first few of each list, then a count).
    pub message: String,
}

/// The reason when no BGP session that should carry a Service is established.
pub const NO_ESTABLISHED_SESSION: &str = "noEstablishedSession";
/// The reason when the ARP/NDP owner answers for the address on no interface (those its
/// advertisement names are missing, down or enslaved).
pub const NO_USABLE_INTERFACE: &str = "noUsableInterface";

/// What the writing node knows of its own responder: the owned addresses it answers on no
/// interface, with why.
pub type Unanswered = BTreeMap<IpAddr, String>;

/// How many (node, peer) pairs a message names before it counts the rest.
const NAMED_PAIRS: usize = 6;

/// The BGP sessions that would carry a Service, whatever their state.
#[derive(Debug, Default)]
pub struct BgpCarriers {
    /// Some BGPAdvertisement covers the Service's pool (the mode applies to it).
    pub applies: bool,
    /// (node, peer), by node name then peer name: each node whose advertisements and peers
    /// select the Service, with each peer it would send it to.
    pub pairs: Vec<(String, String)>,
    /// Why no node would advertise it (the first node's reason, by name), when the mode
    /// applies and no node would.
    pub reason: Option<bgp::announce::Reason>,
}

/// Which nodes would advertise `svc` to which peers (every node's own BGP decision), or why
/// none would. Pure; the Announced condition and `explain` both start from it.
pub fn bgp_carriers(cluster: &election::Cluster<'_>, svc: &election::Service) -> BgpCarriers {
    let mut out = BgpCarriers {
        applies: (cluster.config.bgp_advertisements.iter()).any(|a| a.pools.contains(&svc.pool)),
        ..BgpCarriers::default()
    };
    let mut nodes: Vec<&election::Node> = cluster.nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    for node in nodes {
        let local = bgp::announce::Local {
            config: cluster.config,
            node,
            ignore_exclude_label: cluster.ignore_exclude_label,
        };
        let mut peers = BTreeSet::new();
        for d in bgp::announce::explain(&local, svc) {
            match d.decision {
                Ok(a) => peers.extend(a.peers.into_keys()),
                Err(r) => {
                    if out.reason.is_none() && r != bgp::announce::Reason::NodeNotSelected {
                        out.reason = Some(r);
                    }
                }
            }
        }
        out.pairs
            .extend(peers.into_iter().map(|p| (node.name.clone(), p)));
    }
    if !out.applies || !out.pairs.is_empty() {
        out.reason = None;
    } else if out.reason.is_none() {
        out.reason = Some(bgp::announce::Reason::NodeNotSelected);
    }
    out
}

/// The BGP side of a Service: which live nodes advertise it to which peers, which should but
/// their session is not established, or why no node would.
#[derive(Debug, Default)]
struct BgpSide {
    /// Some BGPAdvertisement covers the Service (the mode applies to it).
    applies: bool,
    /// (node, peer) over an established session.
    up: Vec<(String, String)>,
    /// (node, peer, why not): a session that should carry it but is not established.
    down: Vec<(String, String, String)>,
    /// Why no node would advertise it, when none would.
    reason: Option<bgp::announce::Reason>,
}

fn bgp_side(
    cluster: &election::Cluster<'_>,
    svc: &election::Service,
    sessions: &SessionsSeen,
) -> BgpSide {
    let carriers = bgp_carriers(cluster, svc);
    let mut side = BgpSide {
        applies: carriers.applies,
        reason: carriers.reason,
        ..BgpSide::default()
    };
    for (node, peer) in carriers.pairs {
        if !cluster.live.contains(&node) {
            side.down
                .push((node, peer, "its speaker is not live".into()));
            continue;
        }
        match sessions.get(&(node.clone(), peer.clone())) {
            Some(s) if s.state == "Established" => side.up.push((node, peer)),
            Some(s) => {
                let why = match &s.last_error {
                    Some(e) => format!("{}: {e}", s.state),
                    None => s.state.clone(),
                };
                side.down.push((node, peer, why));
            }
            None => side
                .down
                .push((node, peer, "no session reported yet".into())),
        }
    }
    side
}

/// The first [`NAMED_PAIRS`] items joined, then how many more.
fn bounded(items: impl ExactSizeIterator<Item = String>) -> String {
    let total = items.len();
    let mut out: Vec<String> = items.take(NAMED_PAIRS).collect();
    if total > NAMED_PAIRS {
        out.push(format!("and {} more", total - NAMED_PAIRS));
    }
    out.join(", ")
}

/// What the `ferrolb.io/Announced` condition should say for `svc`, in both modes: which node
/// answers ARP/NDP on which interfaces, which nodes advertise to which peers, or why nobody
/// does (no advertisement, no eligible node, sessions down). `None` when the Service has no
/// address or no node is live.
pub fn announced_condition(
    cluster: &election::Cluster<'_>,
    svc: &election::Service,
    sessions: &SessionsSeen,
    local: Option<(&str, &Unanswered)>,
) -> Option<Announced> {
    let ip = *svc.ips.first()?;
    let ips: Vec<String> = svc.ips.iter().map(|ip| ip.to_string()).collect();
    let ips = ips.join(", ");
    let l2 = election::owner(cluster, svc, ip);
    // A mode applies when one of its advertisements covers the Service's pool.
    let l2_applies = (cluster.config.l2_advertisements.iter()).any(|a| a.pools.contains(&svc.pool));
    let bgp = bgp_side(cluster, svc, sessions);
    let mut parts = Vec::new();
    // The owner writes; when that is this node and its responder answers on no interface,
    // the address is owned but not announced.
    let no_interface = match (&l2, local) {
        (Ok(a), Some((node, unanswered))) if a.node == node => unanswered.get(&ip),
        _ => None,
    };
    let writer = match &l2 {
        Ok(a) if no_interface.is_some() => a.node.clone(),
        Ok(a) => {
            let interfaces = match &a.interfaces {
                election::Interfaces::All => "every suitable interface".to_string(),
                election::Interfaces::Named(n) => n.iter().cloned().collect::<Vec<_>>().join(","),
            };
            parts.push(format!(
                "node {} announces {ips} on {interfaces} (ARP/NDP)",
                a.node
            ));
            a.node.clone()
        }
        Err(_) => cluster.live.iter().next()?.clone(),
    };
    let announced_l2 = l2.is_ok() && no_interface.is_none();
    let no_interface_part = no_interface.map(|why| {
        let owner = l2.as_ref().map(|a| a.node.as_str()).unwrap_or_default();
        format!("node {owner} owns {ip} but answers ARP/NDP on no interface ({why})")
    });
    let announced_bgp = !bgp.up.is_empty();
    if announced_bgp {
        parts.push(format!(
            "advertised over BGP by {}",
            bounded(bgp.up.iter().map(|(n, p)| format!("node {n} to peer {p}")))
        ));
    }
    if announced_l2 || announced_bgp {
        if let (Err(reason), true) = (&l2, l2_applies) {
            parts.push(format!("not over ARP/NDP: {reason}"));
        }
        if let Some(p) = &no_interface_part {
            parts.push(format!("not over ARP/NDP: {p}"));
        }
        if !bgp.down.is_empty() {
            parts.push(format!(
                "not yet by {}",
                bounded(
                    bgp.down
                        .iter()
                        .map(|(n, p, why)| format!("node {n} to peer {p} ({why})"))
                )
            ));
        }
        let reason = match (announced_l2, announced_bgp) {
            (true, true) => "Layer2AndBGP",
            (true, false) => "Layer2",
            _ => "BGP",
        };
        return Some(Announced {
            writer,
            status: true,
            reason: reason.into(),
            message: parts.join("; "),
        });
    }
    // Nobody announces it: say why, for each mode that applies to it (the layer-2 reason
    // alone when neither does: no advertisement of either kind covers it).
    let mut reason = None;
    if bgp.applies && !bgp.down.is_empty() {
        reason = Some(NO_ESTABLISHED_SESSION.to_string());
        parts.push(format!(
            "no BGP session that would carry it is established: {}",
            bounded(
                bgp.down
                    .iter()
                    .map(|(n, p, why)| format!("node {n} to peer {p} ({why})"))
            )
        ));
    } else if let (true, Some(r)) = (bgp.applies, &bgp.reason) {
        parts.push(format!("over BGP: {r}"));
        if !l2_applies {
            reason = Some(r.tag().to_string());
        }
    }
    if let Err(r) = &l2
        && (l2_applies || !bgp.applies)
    {
        parts.push(format!("over ARP/NDP: {r}"));
        reason.get_or_insert_with(|| r.tag().to_string());
    }
    if let Some(p) = no_interface_part {
        parts.push(format!("over ARP/NDP: {p}"));
        reason.get_or_insert_with(|| NO_USABLE_INTERFACE.to_string());
    }
    Some(Announced {
        writer,
        status: false,
        reason: reason.unwrap_or_else(|| NO_ESTABLISHED_SESSION.to_string()),
        message: format!("no node announces {ip}: {}", parts.join("; ")),
    })
}

/// The addresses this node advertises over BGP, each with the peers (established sessions)
/// it goes to. Pure.
pub fn advertised_over_bgp(
    inputs: &Inputs,
    node: &str,
    established: &BTreeSet<String>,
) -> BTreeMap<IpAddr, BTreeSet<String>> {
    let mut out: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
    let Some(me) = inputs.nodes.iter().find(|n| n.name == node) else {
        return out;
    };
    let local = bgp::announce::Local {
        config: &inputs.config,
        node: me,
        ignore_exclude_label: inputs.ignore_exclude_label,
    };
    for d in bgp::announce::plan(&local, &inputs.services).decisions {
        if let Ok(a) = d.decision {
            let peers: BTreeSet<String> = (a.peers.into_keys())
                .filter(|p| established.contains(p))
                .collect();
            if !peers.is_empty() {
                out.entry(d.ip).or_default().extend(peers);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::{Node, Service, TrafficPolicy};
    use ferrolb_config::Config;

    const CONFIG: &str = r#"
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: ferrolb-system}
spec: {addresses: ["10.0.0.0/28"]}
---
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: routed, namespace: ferrolb-system}
spec: {addresses: ["10.100.0.0/28"]}
---
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: both, namespace: ferrolb-system}
spec: {addresses: ["10.200.0.0/28"]}
---
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: none, namespace: ferrolb-system}
spec: {addresses: ["10.201.0.0/28"]}
---
apiVersion: ferrolb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2, namespace: ferrolb-system}
spec: {ipAddressPools: [lan, both]}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: bgp, namespace: ferrolb-system}
spec: {ipAddressPools: [routed, both]}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata: {name: tor, namespace: ferrolb-system}
spec: {myASN: 64512, peerASN: 64513, peerAddress: 10.0.0.254}
"#;

    fn config() -> Config {
        let docs = ferrolb_config::parse_documents(CONFIG).unwrap();
        ferrolb_config::build(&docs.config).unwrap()
    }

    fn nodes(n: usize) -> Vec<Node> {
        (0..n)
            .map(|i| Node {
                name: format!("node{i:02}"),
                labels: Default::default(),
                network_unavailable: false,
            })
            .collect()
    }

    fn service(pool: &str, ip: &str) -> Service {
        Service {
            name: "shop/api".into(),
            ips: vec![ip.parse().unwrap()],
            pool: pool.into(),
            labels: Default::default(),
            traffic_policy: TrafficPolicy::Cluster,
            local_endpoint_nodes: Default::default(),
            has_serving_endpoint: true,
        }
    }

    fn sessions(nodes: &[Node], state: &str) -> SessionsSeen {
        nodes
            .iter()
            .map(|n| {
                let seen = SessionSeen {
                    state: state.into(),
                    last_error: (state != "Established").then(|| "connection refused".into()),
                };
                ((n.name.clone(), "tor".to_string()), seen)
            })
            .collect()
    }

    fn condition(pool: &str, ip: &str, n: usize, state: &str) -> Announced {
        let config = config();
        let nodes = nodes(n);
        let live: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let svc = service(pool, ip);
        let shared = election::SharedAddresses::of(std::slice::from_ref(&svc));
        let cluster = election::Cluster {
            shared: &shared,
            config: &config,
            nodes: &nodes,
            live: &live,
            ignore_exclude_label: false,
        };
        announced_condition(&cluster, &svc, &sessions(&nodes, state), None).unwrap()
    }

    #[test]
    fn a_bgp_only_service_names_its_nodes_and_peers() {
        let a = condition("routed", "10.100.0.1", 2, "Established");
        assert!(a.status, "{a:?}");
        assert_eq!(a.reason, "BGP");
        assert_eq!(
            a.message,
            "advertised over BGP by node node00 to peer tor, node node01 to peer tor"
        );
        assert_eq!(a.writer, "node00", "the first live node writes");
    }

    #[test]
    fn sessions_down_say_so_with_their_state_and_error() {
        let a = condition("routed", "10.100.0.1", 2, "Active");
        assert!(!a.status);
        assert_eq!(a.reason, NO_ESTABLISHED_SESSION);
        assert_eq!(
            a.message,
            "no node announces 10.100.0.1: no BGP session that would carry it is established: \
             node node00 to peer tor (Active: connection refused), node node01 to peer tor \
             (Active: connection refused)"
        );
    }

    #[test]
    fn both_modes_are_named_together() {
        let a = condition("both", "10.200.0.1", 2, "Established");
        assert!(a.status);
        assert_eq!(a.reason, "Layer2AndBGP");
        assert!(
            a.message
                .contains("announces 10.200.0.1 on every suitable interface (ARP/NDP)"),
            "{}",
            a.message
        );
        assert!(
            a.message
                .contains("; advertised over BGP by node node00 to peer tor"),
            "{}",
            a.message
        );
        // The layer-2 owner writes.
        assert!(
            a.message
                .starts_with(&format!("node {} announces", a.writer))
        );
        // Layer 2 alone still announces while the sessions are down, and says what is missing.
        let a = condition("both", "10.200.0.1", 2, "Connect");
        assert!(a.status);
        assert_eq!(a.reason, "Layer2");
        assert!(
            a.message
                .contains("; not yet by node node00 to peer tor (Connect: connection refused)"),
            "{}",
            a.message
        );
    }

    #[test]
    fn without_any_advertisement_the_reason_is_the_same_as_before() {
        let a = condition("none", "10.201.0.1", 2, "Established");
        assert!(!a.status);
        assert_eq!(a.reason, "noMatchingAdvertisement");
        assert_eq!(
            a.message,
            "no node announces 10.201.0.1: over ARP/NDP: noMatchingAdvertisement"
        );
        let a = condition("lan", "10.0.0.1", 2, "Established");
        assert_eq!(
            a.reason, "Layer2",
            "BGP does not cover lan, so it is not mentioned"
        );
        assert!(!a.message.contains("BGP"), "{}", a.message);
    }

    #[test]
    fn an_owner_answering_on_no_interface_says_so() {
        let config = config();
        let nodes = nodes(2);
        let live: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let svc = service("lan", "10.0.0.1");
        let shared = election::SharedAddresses::of(std::slice::from_ref(&svc));
        let cluster = election::Cluster {
            shared: &shared,
            config: &config,
            nodes: &nodes,
            live: &live,
            ignore_exclude_label: false,
        };
        let seen = sessions(&nodes, "Established");
        let owner = announced_condition(&cluster, &svc, &seen, None)
            .unwrap()
            .writer;
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let unanswered = Unanswered::from([(ip, "eth9: not on this node".to_string())]);
        let a = announced_condition(&cluster, &svc, &seen, Some((&owner, &unanswered))).unwrap();
        assert!(!a.status, "{a:?}");
        assert_eq!(a.reason, NO_USABLE_INTERFACE);
        assert_eq!(a.writer, owner);
        assert!(
            a.message.contains(&format!(
                "node {owner} owns 10.0.0.1 but answers ARP/NDP on no interface (eth9: not on this node)"
            )),
            "{}",
            a.message
        );
        // Another node's responder says nothing about the owner's.
        let a =
            announced_condition(&cluster, &svc, &seen, Some(("elsewhere", &unanswered))).unwrap();
        assert!(a.status, "{a:?}");
    }

    #[test]
    fn the_message_is_bounded_whatever_the_number_of_nodes() {
        let a = condition("routed", "10.100.0.1", 300, "Established");
        assert!(a.message.ends_with("and 294 more"), "{}", a.message);
        assert!(a.message.len() < 300, "{}", a.message.len());
    }
}
