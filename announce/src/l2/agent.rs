//! The layer-2 agent: membership changes in, election, responder out. One thread; the inputs
//! (config, Nodes, Services) are given up front, which is standalone mode and what the lab
//! drives. In Kubernetes the same loop is fed by watches.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ferrolb_config::Config;

use super::responder::{Responder, ResponderConfig};
use crate::election::{self, Cluster, Interfaces, Node, Service};
use crate::membership::{Membership, MembershipConfig, MembershipError};

/// What the election needs besides liveness.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inputs {
    /// The validated config.
    pub config: Config,
    /// Every Node.
    pub nodes: Vec<Node>,
    /// LoadBalancer Services.
    pub services: Vec<Service>,
    /// Ignore the exclude-from-external-load-balancers label.
    pub ignore_exclude_label: bool,
    /// Split-brain guard: announce nothing while fewer than this many speakers (this one
    /// included) are live. 0 or 1: off, every side of a partition announces (the default).
    pub quorum: usize,
}

/// Whether `live` speakers are enough to announce under the split-brain guard `quorum` (see
/// [`Inputs::quorum`]); the Kubernetes status writer asks the same question.
pub fn has_quorum(quorum: usize, live: &BTreeSet<String>) -> bool {
    live.len() >= quorum
}

/// The IPs `node` must answer for, with their interfaces, given the live speakers: none
/// without quorum. Pure.
pub fn desired(
    node: &str,
    inputs: &Inputs,
    live: &BTreeSet<String>,
) -> BTreeMap<IpAddr, Interfaces> {
    if !has_quorum(inputs.quorum, live) {
        return BTreeMap::new();
    }
    let cluster = Cluster {
        config: &inputs.config,
        nodes: &inputs.nodes,
        live,
        ignore_exclude_label: inputs.ignore_exclude_label,
    };
    let mut out: BTreeMap<IpAddr, Interfaces> = BTreeMap::new();
    for svc in &inputs.services {
        for (ip, decision) in election::decide(&cluster, svc, node) {
            if let Ok(a) = decision {
                // Services sharing an IP agree on the owner; merge their interface lists.
                let merged = match (out.remove(&ip), a.interfaces) {
                    (Some(Interfaces::All), _) | (_, Interfaces::All) => Interfaces::All,
                    (Some(Interfaces::Named(mut x)), Interfaces::Named(y)) => {
                        x.extend(y);
                        Interfaces::Named(x)
                    }
                    (None, named) => named,
                };
                out.insert(ip, merged);
            }
        }
    }
    out
}

/// What the agent is doing, for status and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// Live speakers as last seen.
    pub live: BTreeSet<String>,
    /// IPs announced, with interfaces.
    pub announced: BTreeMap<IpAddr, BTreeSet<String>>,
    /// The last error applying a change, if the last attempt failed.
    pub error: Option<String>,
    /// When the announced set last changed.
    pub changed_at: Option<Instant>,
}

/// A running agent (membership + responder) on its own thread.
#[derive(Debug)]
pub struct Agent {
    stop: Arc<AtomicBool>,
    leave: Arc<AtomicBool>,
    /// New inputs waiting for the agent thread (taken on its next tick).
    update: Arc<Mutex<Option<Inputs>>>,
    status: Arc<Mutex<AgentStatus>>,
    thread: Option<JoinHandle<()>>,
}

/// How often the agent re-applies even without a membership change (interface rescans).
const RESYNC: Duration = Duration::from_secs(10);
/// After starting with seeds, how long to wait for another member before announcing alone: a
/// speaker that has not joined yet sees only itself alive and would answer for every address,
/// alongside the speaker that really owns it.
pub const JOIN_GRACE: Duration = Duration::from_secs(1);
/// The longest the agent waits before checking its stop flag.
const TICK: Duration = Duration::from_millis(50);

impl Agent {
    /// Starts membership (bound in the calling thread's namespace) and the agent thread.
    pub fn start(
        node: String,
        inputs: Inputs,
        membership: MembershipConfig,
        responder: ResponderConfig,
    ) -> Result<Agent, MembershipError> {
        let has_seeds = !membership.seeds.is_empty();
        let members = Membership::start(membership)?;
        let stop = Arc::new(AtomicBool::new(false));
        let leave = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(AgentStatus::default()));
        let update = Arc::new(Mutex::new(None));
        let (s, l, st, u) = (
            Arc::clone(&stop),
            Arc::clone(&leave),
            Arc::clone(&status),
            Arc::clone(&update),
        );
        let thread = thread::Builder::new()
            .name(format!("l2-agent-{node}"))
            .spawn(move || {
                run(
                    node,
                    inputs,
                    members,
                    Responder::new(responder),
                    s,
                    l,
                    st,
                    u,
                    has_seeds,
                )
            })
            .map_err(MembershipError::Thread)?;
        Ok(Agent {
            stop,
            leave,
            update,
            status,
            thread: Some(thread),
        })
    }

    /// Replaces the config, Nodes and Services the election reads (within one tick), without
    /// touching membership: a config or Service change moves only the IPs it concerns.
    pub fn update(&self, inputs: Inputs) {
        *self.update.lock().unwrap_or_else(|p| p.into_inner()) = Some(inputs);
    }

    /// A snapshot of the agent's state.
    pub fn status(&self) -> AgentStatus {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Graceful shutdown: stop answering, tell the others (they take over at once), stop.
    pub fn leave(mut self) {
        self.leave.store(true, Ordering::Relaxed);
        self.join();
    }

    /// Abrupt stop: no goodbye, as in a crash (the others notice by failure detection).
    pub fn crash(mut self) {
        self.join();
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.join();
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    node: String,
    mut inputs: Inputs,
    members: Membership,
    mut responder: Responder,
    stop: Arc<AtomicBool>,
    leave: Arc<AtomicBool>,
    status: Arc<Mutex<AgentStatus>>,
    update: Arc<Mutex<Option<Inputs>>>,
    has_seeds: bool,
) {
    let started = Instant::now();
    let mut last_apply: Option<Instant> = None;
    let mut dirty = true;
    while !stop.load(Ordering::Relaxed) {
        if members.next_change(TICK).is_some() {
            dirty = true;
        }
        if let Some(new) = update.lock().unwrap_or_else(|p| p.into_inner()).take() {
            inputs = new;
            dirty = true;
        }
        if last_apply.is_none_or(|t| t.elapsed() >= RESYNC) {
            dirty = true;
        }
        if !dirty {
            continue;
        }
        let live = members.live();
        if has_seeds && live.len() <= 1 && started.elapsed() < JOIN_GRACE {
            // Not joined yet: re-check on the next tick (the join usually takes milliseconds).
            dirty = true;
            continue;
        }
        let want = desired(&node, &inputs, &live);
        let result = responder.announce(&want);
        last_apply = Some(Instant::now());
        let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
        st.live = live;
        match result {
            Ok(_) => {
                dirty = false;
                st.error = None;
                let announced = responder.announced();
                if announced != st.announced {
                    st.announced = announced;
                    st.changed_at = Some(Instant::now());
                }
            }
            // Retried on the next tick.
            Err(e) => st.error = Some(e.to_string()),
        }
    }
    // Stop answering before saying goodbye, so the successor is never contradicted.
    responder.stop();
    if leave.load(Ordering::Relaxed) {
        members.leave();
    } else {
        members.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use ferrolb_config::L2Advertisement;

    use super::*;

    #[test]
    fn desired_unions_services_and_merges_interfaces() {
        let ad = |name: &str, ifs: &[&str]| L2Advertisement {
            name: name.into(),
            pools: BTreeSet::from(["p".to_string()]),
            node_selectors: vec![],
            interfaces: ifs.iter().map(|s| s.to_string()).collect(),
            service_selectors: vec![],
        };
        let mut inputs = Inputs {
            config: Config {
                l2_advertisements: vec![ad("a", &["eth0"])],
                ..Default::default()
            },
            nodes: vec![Node {
                name: "n".into(),
                labels: Default::default(),
                network_unavailable: false,
            }],
            services: vec![
                Service {
                    name: "x".into(),
                    ips: vec!["10.0.0.200".parse().unwrap()],
                    pool: "p".into(),
                    has_serving_endpoint: true,
                    ..Default::default()
                },
                Service {
                    name: "y".into(),
                    ips: vec!["10.0.0.200".parse().unwrap(), "fd00::200".parse().unwrap()],
                    pool: "p".into(),
                    has_serving_endpoint: true,
                    ..Default::default()
                },
                Service {
                    name: "idle".into(),
                    ips: vec!["10.0.0.201".parse().unwrap()],
                    pool: "p".into(),
                    has_serving_endpoint: false,
                    ..Default::default()
                },
            ],
            ignore_exclude_label: false,
            quorum: 0,
        };
        let live = BTreeSet::from(["n".to_string()]);
        let got = desired("n", &inputs, &live);
        let eth0 = Interfaces::Named(BTreeSet::from(["eth0".to_string()]));
        assert_eq!(
            got,
            BTreeMap::from([
                ("10.0.0.200".parse().unwrap(), eth0.clone()),
                ("fd00::200".parse().unwrap(), eth0),
            ])
        );
        assert!(desired("n", &inputs, &BTreeSet::new()).is_empty());

        // The split-brain guard: one live speaker of a quorum of 2 announces nothing; with a
        // second live speaker (which ranks below "n" here: "n" stays the owner) it does again.
        inputs.quorum = 2;
        assert!(desired("n", &inputs, &live).is_empty());
        let two = BTreeSet::from(["n".to_string(), "other".to_string()]);
        assert_eq!(desired("n", &inputs, &two), got);
        inputs.quorum = 1;
        assert_eq!(desired("n", &inputs, &live), got);
    }
}
