//! Announcing the assigned addresses from this host through the announcer driver
//! (`ferrolb_announce::driver`, the one the speaker DaemonSet uses): SWIM membership between the
//! hosts, the election and ARP/NDP responder, and BGP sessions to the BGPPeers selected for this
//! host, all fed from the directory.
//!
//! Standalone hosts have no EndpointSlices: every host is taken to serve every Service (as with
//! keepalived), so externalTrafficPolicy Local elects among all live hosts like Cluster does.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};

use ferrolb_announce::driver::{self, Driver, MissingNode};
use ferrolb_announce::election::{self, TrafficPolicy};
use ferrolb_announce::l2::ResponderConfig;
use ferrolb_announce::l2::agent::Inputs;
use ferrolb_announce::membership::{MembershipConfig, Timing};
use ferrolb_config::Config;

use crate::config_dir::Objects;
use crate::engine::Step;

/// How this host takes part.
#[derive(Clone, Debug)]
pub struct HostSettings {
    /// This host's Node name (a Node object of that name should be in the directory).
    pub node: String,
    /// The UDP address the other hosts reach this one at, for membership.
    pub membership: SocketAddr,
    /// Other hosts' membership addresses (any subset will do).
    pub seeds: Vec<SocketAddr>,
    /// The secret every host shares.
    pub secret: Vec<u8>,
    /// The BGP identifier for peers without a `routerID` (this host's IPv4 address).
    pub router_id: Option<Ipv4Addr>,
    /// Gratuitous ARP / unsolicited NA rounds sent on takeover.
    pub burst: ferrolb_announce::l2::Burst,
    /// TCP port for BGP peers' connections (0: only connect).
    pub bgp_listen_port: u16,
    /// Split-brain guard: announce over L2 only while this many hosts (this one included) are
    /// live; 0: off.
    pub quorum: usize,
}

/// The announcer driver for this host.
pub fn driver(settings: HostSettings) -> Driver {
    Driver::new(
        driver::Settings {
            node: settings.node.clone(),
            router_id: settings.router_id,
            responder: ResponderConfig {
                burst: settings.burst,
                ..ResponderConfig::default()
            },
            quorum: settings.quorum,
            ignore_exclude_label: false,
            l2: true,
            bgp: true,
            missing_node: MissingNode::Unlabelled,
            bgp_listen_port: settings.bgp_listen_port,
        },
        MembershipConfig {
            name: settings.node,
            bind: settings.membership,
            seeds: settings.seeds,
            secret: settings.secret,
            timing: Timing::default(),
            cluster_size: 1,
        },
    )
}

/// The election's view of the Nodes and assigned Services of a step.
pub fn inputs(objects: &Objects, step: &Step, config: Config) -> Inputs {
    let nodes: Vec<election::Node> = objects
        .nodes
        .iter()
        .map(election::Node::from_object)
        .collect();
    let all_nodes: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let mut services = Vec::new();
    for svc in &objects.services {
        let namespace = svc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = svc.metadata.name.clone().unwrap_or_default();
        let key = ferrolb_allocator::ServiceKey::new(namespace.clone(), name.clone());
        let Some(assignment) = step.assigned.get(&key) else {
            continue;
        };
        services.push(election::Service {
            name: format!("{namespace}/{name}"),
            ips: assignment.ips.clone(),
            pool: assignment.pool.clone(),
            labels: svc.metadata.labels.clone().unwrap_or_default(),
            traffic_policy: TrafficPolicy::of(svc),
            local_endpoint_nodes: all_nodes.clone(),
            has_serving_endpoint: true,
        });
    }
    Inputs {
        config,
        nodes,
        services,
        ..Inputs::default()
    }
}
