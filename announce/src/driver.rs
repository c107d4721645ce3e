//! The announcer driver: the one place that turns "here is what the cluster looks like now" into
//! a running L2 agent and BGP sessions. The speaker's Kubernetes mode (fed by watches) and
//! standalone hosts (fed by a directory) both drive it, so they announce the same way.
//!
//! Inputs are compared by value: an unchanged set of inputs touches nothing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ferrolb_config::Config;

use crate::bgp::speaker::PeerError;
use crate::bgp::{NodeSpeaker, SessionStatus};
use crate::election;
use crate::l2::ResponderConfig;
use crate::l2::agent::{Agent, AgentStatus, Inputs};
use crate::membership::{MembershipConfig, MembershipError};

/// What to do for BGP when this node is not among the inputs' Nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingNode {
    /// Leave the sessions as they are until the Node is back (Kubernetes: a Node object that
    /// went away says nothing about its labels).
    Wait,
    /// Take the node as unlabelled (standalone: a host need not describe itself).
    Unlabelled,
}

/// How this node announces.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This node's name, as in the inputs' Nodes.
    pub node: String,
    /// The BGP identifier for peers without a `routerID` (the node's IPv4 address).
    pub router_id: Option<Ipv4Addr>,
    /// How the ARP/NDP responder works (excluded interfaces, takeover burst).
    pub responder: ResponderConfig,
    /// Split-brain guard for L2 (see [`Inputs::quorum`]).
    pub quorum: usize,
    /// Ignore the exclude-from-external-load-balancers label.
    pub ignore_exclude_label: bool,
    /// Announce over ARP/NDP; when false, L2Advertisements are set aside as if absent.
    pub l2: bool,
    /// Announce over BGP; when false, BGPAdvertisements and BGPPeers are set aside.
    pub bgp: bool,
    /// BGP without this node among the inputs.
    pub missing_node: MissingNode,
    /// TCP port on which peers' connections are accepted (179); 0: only connect.
    pub bgp_listen_port: u16,
}

/// The config with the objects of a mode switched off set aside, as if absent: no
/// L2Advertisement without L2, no BGPAdvertisement or BGPPeer without BGP.
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

/// What one [`Driver::apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// False when the inputs were the ones already applied: nothing was touched.
    pub changed: bool,
    /// BGPPeers selected for this node that could not be configured, each with its reason.
    pub peer_errors: Vec<PeerError>,
}

/// The running L2 agent and BGP sessions of this node.
pub struct Driver {
    settings: Settings,
    membership: MembershipConfig,
    agent: Option<Agent>,
    bgp: NodeSpeaker,
    applied: Option<Inputs>,
}

impl Driver {
    /// Nothing runs until the first [`Driver::apply`]. `membership` is where this node meets the
    /// others; its `cluster_size` is taken from the first inputs' Nodes.
    pub fn new(settings: Settings, membership: MembershipConfig) -> Self {
        let bgp = NodeSpeaker::new(settings.router_id).listening_on(settings.bgp_listen_port);
        Driver {
            settings,
            membership,
            agent: None,
            bgp,
            applied: None,
        }
    }

    /// Brings the L2 agent and the BGP sessions in line with `inputs` (its `config` as built;
    /// the modes switched off are set aside here, and `quorum` and `ignore_exclude_label` come
    /// from the settings). Starts the agent (membership and responder) on the first call.
    /// Call from inside a tokio runtime.
    pub async fn apply(&mut self, mut inputs: Inputs) -> Result<Applied, MembershipError> {
        inputs.config = enabled_modes_only(inputs.config, self.settings.l2, self.settings.bgp);
        inputs.quorum = self.settings.quorum;
        inputs.ignore_exclude_label = self.settings.ignore_exclude_label;
        if self.agent.is_some() && self.applied.as_ref() == Some(&inputs) {
            return Ok(Applied::default());
        }
        let mut out = Applied {
            changed: true,
            ..Applied::default()
        };
        // BGP: every eligible node announces what its BGPAdvertisements select; sessions change
        // only where the tables do.
        let me = inputs
            .nodes
            .iter()
            .find(|n| n.name == self.settings.node)
            .cloned()
            .or_else(|| match self.settings.missing_node {
                MissingNode::Wait => None,
                MissingNode::Unlabelled => Some(election::Node {
                    name: self.settings.node.clone(),
                    labels: Default::default(),
                    network_unavailable: false,
                }),
            });
        if let Some(me) = me {
            let applied = self
                .bgp
                .apply(
                    &inputs.config,
                    &me,
                    &inputs.services,
                    self.settings.ignore_exclude_label,
                )
                .await;
            out.peer_errors = applied.errors;
        }
        match &self.agent {
            Some(agent) => agent.update(inputs.clone()),
            None => {
                let mut membership = self.membership.clone();
                membership.cluster_size =
                    u8::try_from(inputs.nodes.len().max(1)).unwrap_or(u8::MAX);
                self.agent = Some(Agent::start(
                    self.settings.node.clone(),
                    inputs.clone(),
                    membership,
                    self.settings.responder.clone(),
                )?);
            }
        }
        self.applied = Some(inputs);
        Ok(out)
    }

    /// What the L2 agent announces now (`None` before the first apply).
    pub fn status(&self) -> Option<AgentStatus> {
        self.agent.as_ref().map(Agent::status)
    }

    /// Each BGP session's state, by peer name.
    pub fn bgp_status(&self) -> BTreeMap<String, SessionStatus> {
        self.bgp.status()
    }

    /// Each BFD session's state, by peer name (peers with a `bfdProfile`).
    pub fn bfd_status(&self) -> BTreeMap<String, crate::bfd::BfdStatus> {
        self.bgp.bfd_status()
    }

    /// Connections to the BGP port refused (not from a configured peer), since start.
    pub fn bgp_refused_connections(&self) -> u64 {
        self.bgp.refused_connections()
    }

    /// The inputs in force (after the settings were applied to them).
    pub fn inputs(&self) -> Option<&Inputs> {
        self.applied.as_ref()
    }

    /// Stops gracefully: a Cease to every BGP peer first (routers withdraw at once), then the
    /// membership is left (the other nodes take over the L2 addresses at once).
    pub async fn leave(mut self) {
        let bgp = std::mem::replace(&mut self.bgp, NodeSpeaker::new(None));
        bgp.stop().await;
        if let Some(agent) = self.agent.take() {
            // Blocks until the successors confirm (bounded by the agent's hand-over wait).
            match tokio::task::spawn_blocking(move || agent.leave()).await {
                Ok(h) if h.successors.is_empty() => {}
                Ok(h) if h.confirmed.is_superset(&h.successors) => {
                    tracing::info!("L2 handed over to {:?} in {:?}", h.successors, h.waited)
                }
                Ok(h) => tracing::warn!(
                    "L2 hand-over: {:?} of {:?} confirmed within {:?}; going quiet anyway",
                    h.confirmed,
                    h.successors,
                    h.waited
                ),
                Err(_) => tracing::warn!("the L2 agent panicked while leaving"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let docs = ferrolb_config::parse_documents(yaml).unwrap();
        let full = ferrolb_config::build(&docs.config).unwrap();
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
}
