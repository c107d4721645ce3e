//! Announcing the assigned addresses from this host: the speaker's layer-2 agent (SWIM
//! membership between the hosts, the election, the ARP/NDP responder) and its BGP sessions to the
//! BGPPeers selected for this host, both fed from the directory.
//!
//! Standalone hosts have no EndpointSlices: every host is taken to serve every Service (as with
//! keepalived), so externalTrafficPolicy Local elects among all live hosts like Cluster does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use ferrolb_config::Config;
use ferrolb_speaker::bgp::{NodeSpeaker, SessionStatus};
use ferrolb_speaker::election::{self, TrafficPolicy};
use ferrolb_speaker::l2::ResponderConfig;
use ferrolb_speaker::l2::agent::{Agent, AgentStatus, Inputs};
use ferrolb_speaker::membership::{MembershipConfig, MembershipError, Timing};
use k8s_openapi::api::core::v1::Node;

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
    pub burst: ferrolb_speaker::l2::Burst,
    /// Split-brain guard: announce over L2 only while this many hosts (this one included) are
    /// live; 0: off.
    pub quorum: usize,
}

enum BgpCommand {
    Apply(Box<Config>, election::Node, Vec<election::Service>),
    Stop,
}

/// The BGP sessions of this host, on their own thread and tokio runtime (standalone mode is
/// otherwise synchronous). Sockets are created in the namespace the thread was started in.
struct Bgp {
    tx: tokio::sync::mpsc::UnboundedSender<BgpCommand>,
    status: Arc<Mutex<BTreeMap<String, SessionStatus>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bgp {
    fn start(router_id: Option<Ipv4Addr>) -> std::io::Result<Bgp> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(BTreeMap::new()));
        let shared = Arc::clone(&status);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("bgp".into())
            .spawn(move || {
                runtime.block_on(async move {
                let mut speaker = NodeSpeaker::new(router_id);
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
                loop {
                    tokio::select! {
                        command = rx.recv() => match command {
                            Some(BgpCommand::Apply(config, node, services)) => {
                                let applied = speaker.apply(&config, &node, &services, false).await;
                                for e in &applied.errors {
                                    eprintln!("error: BGP: {e}");
                                }
                            }
                            Some(BgpCommand::Stop) | None => {
                                speaker.stop().await;
                                break;
                            }
                        },
                        _ = tick.tick() => {
                            *shared.lock().unwrap_or_else(|p| p.into_inner()) = speaker.status();
                        }
                    }
                }
            });
            })?;
        Ok(Bgp {
            tx,
            status,
            thread: Some(thread),
        })
    }

    fn apply(&self, config: Config, node: election::Node, services: Vec<election::Service>) {
        let _ = self
            .tx
            .send(BgpCommand::Apply(Box::new(config), node, services));
    }

    fn stop(&mut self) {
        let _ = self.tx.send(BgpCommand::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Bgp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The election's view of the Nodes and assigned Services of a step.
pub fn inputs(objects: &Objects, step: &Step, config: Config) -> Inputs {
    let nodes: Vec<election::Node> = objects.nodes.iter().map(node).collect();
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
        let local = svc
            .spec
            .as_ref()
            .and_then(|s| s.external_traffic_policy.as_deref())
            == Some("Local");
        services.push(election::Service {
            name: format!("{namespace}/{name}"),
            ips: assignment.ips.clone(),
            pool: assignment.pool.clone(),
            labels: svc.metadata.labels.clone().unwrap_or_default(),
            traffic_policy: if local {
                TrafficPolicy::Local
            } else {
                TrafficPolicy::Cluster
            },
            local_endpoint_nodes: all_nodes.clone(),
            has_serving_endpoint: true,
        });
    }
    Inputs {
        config,
        nodes,
        services,
        ignore_exclude_label: false,
        quorum: 0,
    }
}

fn node(n: &Node) -> election::Node {
    let network_unavailable = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "NetworkUnavailable" && c.status == "True")
        });
    election::Node {
        name: n.metadata.name.clone().unwrap_or_default(),
        labels: n.metadata.labels.clone().unwrap_or_default(),
        network_unavailable,
    }
}

/// The running layer-2 agent and BGP sessions, given new inputs when the directory changes.
pub struct Announcer {
    settings: HostSettings,
    agent: Option<Agent>,
    bgp: Option<Bgp>,
    current: Option<(Vec<String>, String)>,
}

impl Announcer {
    /// Nothing runs until [`Announcer::apply`].
    pub fn new(settings: HostSettings) -> Self {
        Self {
            settings,
            agent: None,
            bgp: None,
            current: None,
        }
    }

    /// Runs the agent with `inputs` (a no-op when they did not change).
    pub fn apply(&mut self, mut inputs: Inputs) -> Result<(), MembershipError> {
        inputs.quorum = self.settings.quorum;
        // Inputs hold no Eq-comparable config; compare what the election reads.
        let fingerprint = (
            inputs
                .services
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>(),
            format!("{:?}{:?}", inputs.nodes, inputs.config),
        );
        if self.current.as_ref() == Some(&fingerprint) && self.agent.is_some() {
            return Ok(());
        }
        // BGP: every host announces what its BGPAdvertisements select; sessions change only
        // where the tables do.
        if self.bgp.is_none() {
            self.bgp = Some(Bgp::start(self.settings.router_id).map_err(MembershipError::Thread)?);
        }
        if let Some(bgp) = &self.bgp {
            let me = inputs
                .nodes
                .iter()
                .find(|n| n.name == self.settings.node)
                .cloned()
                .unwrap_or_else(|| election::Node {
                    name: self.settings.node.clone(),
                    labels: Default::default(),
                    network_unavailable: false,
                });
            bgp.apply(inputs.config.clone(), me, inputs.services.clone());
        }
        if let Some(agent) = &self.agent {
            agent.update(inputs);
            self.current = Some(fingerprint);
            return Ok(());
        }
        let membership = MembershipConfig {
            name: self.settings.node.clone(),
            bind: self.settings.membership,
            seeds: self.settings.seeds.clone(),
            secret: self.settings.secret.clone(),
            timing: Timing::default(),
            cluster_size: u8::try_from(inputs.nodes.len().max(1)).unwrap_or(u8::MAX),
        };
        self.agent = Some(Agent::start(
            self.settings.node.clone(),
            inputs,
            membership,
            ResponderConfig {
                burst: self.settings.burst,
                ..ResponderConfig::default()
            },
        )?);
        self.current = Some(fingerprint);
        Ok(())
    }

    /// What the agent announces now.
    pub fn status(&self) -> Option<AgentStatus> {
        self.agent.as_ref().map(Agent::status)
    }

    /// Each BGP session's state, by peer name.
    pub fn bgp_status(&self) -> BTreeMap<String, SessionStatus> {
        self.bgp
            .as_ref()
            .map(|b| b.status.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    /// Stops gracefully: Cease to the BGP peers, leave the membership (the other hosts take
    /// over at once).
    pub fn leave(mut self) {
        if let Some(mut bgp) = self.bgp.take() {
            bgp.stop();
        }
        if let Some(agent) = self.agent.take() {
            agent.leave();
        }
    }
}
