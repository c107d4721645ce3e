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
use crate::election::{self, Cluster, Interfaces, Node, Service, SharedAddresses};
use crate::membership::{Membership, MembershipConfig, MembershipError, MembershipStats, Waker};

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
    let shared = SharedAddresses::of(&inputs.services);
    let cluster = Cluster {
        shared: &shared,
        config: &inputs.config,
        nodes: &inputs.nodes,
        live,
        ignore_exclude_label: inputs.ignore_exclude_label,
    };
    let mut out: BTreeMap<IpAddr, Interfaces> = BTreeMap::new();
    for svc in &inputs.services {
        for (ip, decision) in election::decide(&cluster, svc, node) {
            if let Ok(a) = decision {
                // Services sharing an IP agree on the owner (the election makes sure of it);
                // merge their interface lists.
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

/// Who takes over `mine` (the IPs `node` announces now) when `node` leaves: the owners the
/// election picks once `node` is no longer live. Pure; empty without quorum among the rest.
pub fn successors(
    node: &str,
    inputs: &Inputs,
    live: &BTreeSet<String>,
    mine: &BTreeSet<IpAddr>,
) -> BTreeSet<String> {
    let mut rest = live.clone();
    rest.remove(node);
    let mut out = BTreeSet::new();
    if mine.is_empty() || !has_quorum(inputs.quorum, &rest) {
        return out;
    }
    let shared = SharedAddresses::of(&inputs.services);
    let cluster = Cluster {
        shared: &shared,
        config: &inputs.config,
        nodes: &inputs.nodes,
        live: &rest,
        ignore_exclude_label: inputs.ignore_exclude_label,
    };
    for svc in &inputs.services {
        for ip in svc.ips.iter().filter(|ip| mine.contains(ip)) {
            if let Ok(a) = election::owner(&cluster, svc, *ip) {
                out.insert(a.node);
            }
        }
    }
    out.remove(node);
    out
}

/// The live nodes whose failure `node` must notice first: the owners of addresses that `node`
/// would announce once that owner is gone. Pure.
pub fn watched(node: &str, inputs: &Inputs, live: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if !has_quorum(inputs.quorum, live) {
        return out;
    }
    let shared = SharedAddresses::of(&inputs.services);
    let cluster = Cluster {
        shared: &shared,
        config: &inputs.config,
        nodes: &inputs.nodes,
        live,
        ignore_exclude_label: inputs.ignore_exclude_label,
    };
    for svc in &inputs.services {
        for ip in &svc.ips {
            let Ok(owner) = election::owner(&cluster, svc, *ip) else {
                continue;
            };
            if owner.node == node || out.contains(&owner.node) {
                continue;
            }
            let mut rest = live.clone();
            rest.remove(&owner.node);
            if !has_quorum(inputs.quorum, &rest) {
                continue;
            }
            let without = Cluster {
                live: &rest,
                ..cluster
            };
            if election::owner(&without, svc, *ip).is_ok_and(|next| next.node == node) {
                out.insert(owner.node);
            }
        }
    }
    out
}

/// How a graceful leave went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandOver {
    /// Who takes over this node's addresses (the election without it).
    pub successors: BTreeSet<String>,
    /// Those that confirmed they announce them before this node went quiet.
    pub confirmed: BTreeSet<String>,
    /// From the start of the leave to going quiet.
    pub waited: Duration,
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
    /// Membership counters.
    pub membership: MembershipStats,
    /// The responder's counters (replies, gratuitous announcements, errors).
    pub responder: super::responder::Stats,
    /// Owned addresses answered on no interface, with why (a named interface missing, down or
    /// enslaved): the Announced condition says so.
    pub unanswered: BTreeMap<IpAddr, String>,
}

/// The addresses answered, each with its interfaces.
type Announced = BTreeMap<IpAddr, BTreeSet<String>>;

/// How many names a change line quotes before it counts the rest: a log line must not grow with
/// the number of Services or nodes.
const NAMED: usize = 5;

fn first_few<T: std::fmt::Display>(items: impl ExactSizeIterator<Item = T>) -> String {
    let total = items.len();
    let mut out: Vec<String> = items.take(NAMED).map(|i| i.to_string()).collect();
    if total > NAMED {
        out.push(format!("and {} more", total - NAMED));
    }
    out.join(", ")
}

/// The log lines for a change of the live members and of the addresses this node answers for:
/// who joined or left, which addresses were taken on, and which were let go with the election's
/// reason (another node owns it, no endpoint, no advertisement...). Bounded. Pure.
pub fn change_lines(
    node: &str,
    inputs: &Inputs,
    live: (&BTreeSet<String>, &BTreeSet<String>),
    announced: (&Announced, &Announced),
) -> Vec<String> {
    let mut lines = Vec::new();
    let (before, after) = live;
    if before != after {
        let joined: Vec<&String> = after.difference(before).collect();
        let left: Vec<&String> = before.difference(after).collect();
        let mut parts = Vec::new();
        if !joined.is_empty() {
            parts.push(format!("joined: {}", first_few(joined.into_iter())));
        }
        if !left.is_empty() {
            parts.push(format!("left or down: {}", first_few(left.into_iter())));
        }
        lines.push(format!(
            "membership: {}; {} live",
            parts.join("; "),
            after.len()
        ));
    }
    let (was, now) = announced;
    let taken: Vec<&IpAddr> = now.keys().filter(|ip| !was.contains_key(*ip)).collect();
    if !taken.is_empty() {
        lines.push(format!(
            "layer 2: now answering for {} (elected owner)",
            first_few(taken.into_iter())
        ));
    }
    let dropped: Vec<IpAddr> = was
        .keys()
        .filter(|ip| !now.contains_key(*ip))
        .copied()
        .collect();
    if !dropped.is_empty() {
        let shared = SharedAddresses::of(&inputs.services);
        let cluster = Cluster {
            shared: &shared,
            config: &inputs.config,
            nodes: &inputs.nodes,
            live: after,
            ignore_exclude_label: inputs.ignore_exclude_label,
        };
        let why = |ip: &IpAddr| -> String {
            let reason = (inputs.services.iter())
                .filter(|s| s.ips.contains(ip))
                .find_map(|s| {
                    election::decide(&cluster, s, node)
                        .into_iter()
                        .find(|(i, _)| i == ip)
                        .and_then(|(_, d)| d.err())
                });
            match reason {
                Some(r) => format!("{ip} ({r})"),
                None if !has_quorum(inputs.quorum, after) => format!("{ip} (no quorum)"),
                None => format!("{ip} (no Service holds it)"),
            }
        };
        let mut said: Vec<String> = dropped.iter().take(NAMED).map(why).collect();
        if dropped.len() > NAMED {
            said.push(format!("and {} more", dropped.len() - NAMED));
        }
        lines.push(format!(
            "layer 2: stopped answering for {}",
            said.join(", ")
        ));
    }
    lines
}

/// Says (once per change) which owned addresses no interface answers for, and why the
/// interfaces their advertisements name are not used.
fn say_unanswered(
    node: &str,
    want: &BTreeMap<IpAddr, Interfaces>,
    applied: &crate::l2::responder::Applied,
    said: &mut BTreeSet<IpAddr>,
) {
    let (now, line) = unanswered(want, applied);
    if now != *said
        && let Some(line) = line
    {
        tracing::warn!(node = %node, "{line}");
    }
    *said = now;
}

/// The owned addresses that no interface answers for, and the line that says so (missing,
/// down, enslaved to a bond or bridge...): counts and the first few, so it stays short.
/// Each owned address that no interface answers for, with why (each named interface's reason,
/// or that no interface is usable). Pure.
pub fn unanswered_reasons(
    want: &BTreeMap<IpAddr, Interfaces>,
    applied: &crate::l2::responder::Applied,
) -> BTreeMap<IpAddr, String> {
    (applied.interfaces.iter())
        .filter(|(_, on)| on.is_empty())
        .map(|(ip, _)| {
            let why = match want.get(ip) {
                Some(Interfaces::Named(names)) => {
                    let reasons: Vec<String> = (names.iter().take(5))
                        .map(|name| match applied.skipped.get(name) {
                            Some(skip) => format!("{name}: {skip}"),
                            None => format!("{name}: not on this node"),
                        })
                        .collect();
                    reasons.join("; ")
                }
                _ => "no usable interface".to_string(),
            };
            (*ip, why)
        })
        .collect()
}

fn unanswered(
    want: &BTreeMap<IpAddr, Interfaces>,
    applied: &crate::l2::responder::Applied,
) -> (BTreeSet<IpAddr>, Option<String>) {
    let now: BTreeSet<IpAddr> = (applied.interfaces.iter())
        .filter(|(_, on)| on.is_empty())
        .map(|(ip, _)| *ip)
        .collect();
    if now.is_empty() {
        return (now, None);
    }
    let mut why: BTreeMap<String, String> = BTreeMap::new();
    for ip in &now {
        if let Some(Interfaces::Named(names)) = want.get(ip) {
            for name in names {
                let reason = match applied.skipped.get(name) {
                    Some(skip) => skip.to_string(),
                    None => "not on this node".to_string(),
                };
                why.insert(name.clone(), reason);
            }
        }
    }
    let first: Vec<String> = now.iter().take(5).map(|ip| ip.to_string()).collect();
    let reasons: Vec<String> = (why.iter().take(5))
        .map(|(name, reason)| format!("{name}: {reason}"))
        .collect();
    let line = format!(
        "{} owned address(es) answered on no interface (first: {}); the interfaces named: {}",
        now.len(),
        first.join(", "),
        if reasons.is_empty() {
            "none usable".to_string()
        } else {
            reasons.join("; ")
        }
    );
    (now, Some(line))
}

/// A running agent (membership + responder) on its own thread.
#[derive(Debug)]
pub struct Agent {
    stop: Arc<AtomicBool>,
    leave: Arc<AtomicBool>,
    /// New inputs waiting for the agent thread (taken on its next tick).
    update: Arc<Mutex<Option<Inputs>>>,
    status: Arc<Mutex<AgentStatus>>,
    waker: Waker,
    thread: Option<JoinHandle<HandOver>>,
}

/// How often the agent re-applies even without a membership change (interface rescans).
const RESYNC: Duration = Duration::from_secs(10);
/// After starting with seeds, how long to wait for another member before announcing alone: a
/// speaker that has not joined yet sees only itself alive and would answer for every address,
/// alongside the speaker that really owns it.
pub const JOIN_GRACE: Duration = Duration::from_secs(1);
/// The longest the agent waits before checking its stop flag (stop and new inputs also wake
/// it at once).
const TICK: Duration = Duration::from_millis(50);
/// How long a leaving owner keeps answering while it waits for its successors to confirm:
/// bounds a leave when a successor is gone or runs a version without hand-over.
pub const HAND_OVER_WAIT: Duration = Duration::from_millis(500);

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
        let waker = members.waker();
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
            waker,
            thread: Some(thread),
        })
    }

    /// Replaces the config, Nodes and Services the election reads (within one tick), without
    /// touching membership: a config or Service change moves only the IPs it concerns.
    pub fn update(&self, inputs: Inputs) {
        *self.update.lock().unwrap_or_else(|p| p.into_inner()) = Some(inputs);
        self.waker.wake();
    }

    /// A snapshot of the agent's state.
    pub fn status(&self) -> AgentStatus {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Graceful shutdown: tell the others, the successors directly; keep answering until the
    /// successors confirm they announce (at most [`HAND_OVER_WAIT`]); then go quiet and stop.
    pub fn leave(mut self) -> HandOver {
        self.leave.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Abrupt stop: no goodbye, as in a crash (the others notice by failure detection).
    pub fn crash(mut self) {
        self.join();
    }

    fn join(&mut self) -> HandOver {
        self.stop.store(true, Ordering::Relaxed);
        self.waker.wake();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(h)) => h,
            _ => HandOver::default(),
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
) -> HandOver {
    let started = Instant::now();
    // Once another member has been seen this speaker has joined: seeing itself alone after that
    // means the others are gone (take over at once), not that it has not joined yet.
    let mut joined = false;
    let mut rejoins = members.rejoins();
    let mut last_apply: Option<Instant> = None;
    let mut dirty = true;
    // Addresses this node owns but answers on no interface, last said.
    let mut unanswered: BTreeSet<IpAddr> = BTreeSet::new();
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
        joined |= live.len() > 1;
        if has_seeds && !joined && started.elapsed() < JOIN_GRACE {
            // Not joined yet: re-check on the next tick (the join usually takes milliseconds).
            dirty = true;
            continue;
        }
        let want = desired(&node, &inputs, &live);
        let result = responder.announce(&want);
        last_apply = Some(Instant::now());
        let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
        let live_before = std::mem::replace(&mut st.live, live);
        match result {
            Ok(applied) => {
                say_unanswered(&node, &want, &applied, &mut unanswered);
                st.unanswered = unanswered_reasons(&want, &applied);
                dirty = false;
                if let Some(e) = st.error.take() {
                    tracing::info!(node = %node, "layer-2 announcements applied again (after: {e})");
                }
                let announced = responder.announced();
                let lines = change_lines(
                    &node,
                    &inputs,
                    (&live_before, &st.live),
                    (&st.announced, &announced),
                );
                for line in lines {
                    tracing::info!(node = %node, "{line}");
                }
                if announced != st.announced {
                    st.announced = announced;
                    st.changed_at = Some(Instant::now());
                }
                // What was taken over from speakers that handed over is announced now.
                members.confirm_takeovers(&st.live);
                members.watch(watched(&node, &inputs, &st.live));
                // Back in the group after being apart from it: others may have announced our
                // addresses meanwhile and clients followed them; announce ours again.
                let now = members.rejoins();
                if now != rejoins {
                    rejoins = now;
                    responder.reannounce();
                }
            }
            // Retried on the next tick; said once per distinct error, not on every retry.
            Err(e) => {
                let same = &st.announced;
                for line in change_lines(&node, &inputs, (&live_before, &st.live), (same, same)) {
                    tracing::info!(node = %node, "{line}");
                }
                let e = e.to_string();
                if st.error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(node = %node, "applying layer-2 announcements failed (retrying): {e}");
                }
                st.error = Some(e);
            }
        }
        st.membership = members.stats();
        st.responder = responder.stats();
    }
    if !leave.load(Ordering::Relaxed) {
        responder.stop();
        members.stop();
        return HandOver::default();
    }
    // Hand over: the successors take over while this node still answers, so no client finds
    // nobody answering; then go quiet.
    let began = Instant::now();
    let mine = responder.announced().into_keys().collect();
    let successors = successors(&node, &inputs, &members.live(), &mine);
    members.hand_over(successors.clone());
    let mut confirmed = BTreeSet::new();
    while began.elapsed() < HAND_OVER_WAIT {
        confirmed = members.took_over();
        if confirmed.is_superset(&successors) {
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
    responder.stop();
    let waited = began.elapsed();
    members.stop();
    HandOver {
        successors,
        confirmed,
        waited,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use ferrolb_config::L2Advertisement;

    use super::*;

    /// Issue 18: an owned address that no interface answers for (its advertisement names an
    /// interface that is missing or enslaved) is said, with why, in one short line.
    #[test]
    fn an_address_answered_on_no_interface_is_said_with_why() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let want = BTreeMap::from([
            (
                ip("10.0.0.1"),
                Interfaces::Named(["bond-member".to_string(), "gone".to_string()].into()),
            ),
            (ip("10.0.0.2"), Interfaces::All),
        ]);
        let applied = crate::l2::Applied {
            interfaces: BTreeMap::from([
                (ip("10.0.0.1"), BTreeSet::new()),
                (ip("10.0.0.2"), BTreeSet::from(["eth0".to_string()])),
            ]),
            skipped: BTreeMap::from([(
                "bond-member".to_string(),
                crate::l2::iface::Skip::Enslaved,
            )]),
        };
        let (now, line) = unanswered(&want, &applied);
        assert_eq!(now, BTreeSet::from([ip("10.0.0.1")]));
        assert_eq!(
            line.as_deref(),
            Some(
                "1 owned address(es) answered on no interface (first: 10.0.0.1); the interfaces named: bond-member: enslaved to a bond or bridge; gone: not on this node"
            )
        );
        let all_fine = crate::l2::Applied {
            interfaces: BTreeMap::from([(ip("10.0.0.2"), BTreeSet::from(["eth0".to_string()]))]),
            skipped: BTreeMap::new(),
        };
        assert_eq!(unanswered(&want, &all_fine).1, None);
    }

    /// Issue 18: membership and ownership changes are logged with their reason, in lines that
    /// stay short whatever the number of addresses.
    #[test]
    fn changes_are_said_with_their_reason_and_bounded() {
        let ad = L2Advertisement {
            name: "a".into(),
            pools: BTreeSet::from(["p".to_string()]),
            node_selectors: vec![],
            interfaces: BTreeSet::new(),
            service_selectors: vec![],
        };
        let node = |n: &str| Node {
            name: n.into(),
            labels: Default::default(),
            network_unavailable: false,
        };
        let services: Vec<Service> = (1..=20)
            .map(|i| Service {
                name: format!("shop/s{i}"),
                ips: vec![format!("10.0.0.{i}").parse().unwrap()],
                pool: "p".into(),
                has_serving_endpoint: i != 1,
                ..Default::default()
            })
            .collect();
        let inputs = Inputs {
            config: Config {
                l2_advertisements: vec![ad],
                ..Default::default()
            },
            nodes: vec![node("a"), node("b")],
            services,
            ignore_exclude_label: false,
            quorum: 0,
        };
        let alone = BTreeSet::from(["a".to_string()]);
        let both = BTreeSet::from(["a".to_string(), "b".to_string()]);
        let all: BTreeMap<IpAddr, BTreeSet<String>> = (1..=20)
            .map(|i| (format!("10.0.0.{i}").parse().unwrap(), BTreeSet::new()))
            .collect();
        let mine: BTreeMap<IpAddr, BTreeSet<String>> = desired("a", &inputs, &both)
            .into_keys()
            .map(|ip| (ip, BTreeSet::new()))
            .collect();
        // b joins: a lets go of b's addresses (notOwner, naming b) and of s1's (no endpoint).
        let lines = change_lines("a", &inputs, (&alone, &both), (&all, &mine));
        assert_eq!(lines[0], "membership: joined: b; 2 live");
        assert!(
            lines[1].starts_with("layer 2: stopped answering for 10.0.0.1 (noEndpoints)"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("(notOwner (announced by b))"),
            "{lines:?}"
        );
        assert!(lines[1].contains(" more"), "bounded: {lines:?}");
        assert!(lines.iter().all(|l| l.len() < 300), "{lines:?}");
        // b leaves: a takes them on.
        let lines = change_lines("a", &inputs, (&both, &alone), (&mine, &all));
        assert_eq!(lines[0], "membership: left or down: b; 1 live");
        assert!(
            lines[1].starts_with("layer 2: now answering for 10.0.0."),
            "{lines:?}"
        );
        assert!(lines[1].ends_with("more (elected owner)"), "{lines:?}");
        // Nothing changed: nothing said.
        assert!(change_lines("a", &inputs, (&both, &both), (&mine, &mine)).is_empty());
    }

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

    #[test]
    fn the_successors_are_the_owners_once_this_node_is_gone() {
        let node = |n: &str| Node {
            name: n.into(),
            labels: Default::default(),
            network_unavailable: false,
        };
        let ips: Vec<IpAddr> = (1..=40u8).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        let inputs = Inputs {
            config: Config {
                l2_advertisements: vec![L2Advertisement {
                    name: "a".into(),
                    pools: BTreeSet::from(["p".to_string()]),
                    node_selectors: vec![],
                    interfaces: BTreeSet::new(),
                    service_selectors: vec![],
                }],
                ..Default::default()
            },
            nodes: vec![node("n1"), node("n2"), node("n3")],
            services: ips
                .iter()
                .map(|ip| Service {
                    name: format!("s/{ip}"),
                    ips: vec![*ip],
                    pool: "p".into(),
                    has_serving_endpoint: true,
                    ..Default::default()
                })
                .collect(),
            ignore_exclude_label: false,
            quorum: 0,
        };
        let all: BTreeSet<String> = ["n1", "n2", "n3"].map(String::from).into();
        let mine: BTreeSet<IpAddr> = desired("n1", &inputs, &all).into_keys().collect();
        assert!(!mine.is_empty());
        let succ = successors("n1", &inputs, &all, &mine);
        // Exactly the nodes that announce n1's addresses once n1 is gone.
        let rest: BTreeSet<String> = ["n2", "n3"].map(String::from).into();
        let mut want = BTreeSet::new();
        for n in &rest {
            if desired(n, &inputs, &rest)
                .keys()
                .any(|ip| mine.contains(ip))
            {
                want.insert(n.clone());
            }
        }
        assert_eq!(succ, want);
        assert!(!succ.contains("n1"));
        // Each successor watches n1 (and only owners it would succeed).
        for n in &want {
            assert!(watched(n, &inputs, &all).contains("n1"), "{n}");
        }
        for n in ["n1", "n2", "n3"] {
            let w = watched(n, &inputs, &all);
            assert!(!w.contains(n));
            for owner in &w {
                let mine: BTreeSet<IpAddr> = desired(owner, &inputs, &all).into_keys().collect();
                assert!(
                    successors(owner, &inputs, &all, &mine).contains(n),
                    "{n} watches {owner}"
                );
            }
        }
        // Nothing announced, nobody to tell; no quorum without n1, nobody either.
        assert!(successors("n1", &inputs, &all, &BTreeSet::new()).is_empty());
        let guarded = Inputs {
            quorum: 3,
            ..inputs
        };
        assert!(successors("n1", &guarded, &all, &mine).is_empty());
    }
}
