//! The responder: answers ARP and Neighbor Solicitations for the IPs this node owns, from user
//! space, one thread per interface, and announces takeovers with a gratuitous burst.
//!
//! The VIP is never added to an interface: nothing to clean up after a crash, no conflict with
//! kube-proxy's IPVS dummy device, and the kernel never answers for it on its own. A node that
//! does not own an IP sends nothing for it (not even a withdrawal: the new owner's gratuitous
//! burst is what moves clients).
//!
//! Every loop is bounded: a worker wakes at least every [`ResponderConfig::tick`] to check its
//! stop flag, drains at most [`MAX_FRAMES_PER_WAKE`] frames per socket per wake-up, and
//! [`Responder::stop`] (or drop) joins every thread it started.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::iface::{DEFAULT_EXCLUDE, Skip, selected};
use super::links::{Link, LinkError, ipv6_interfaces, list_links};
use super::packet::{self, GratuitousKind, Mac, Request};
use super::socket::{Kind, PacketSocket, SocketError, poll_readable};
use crate::election::Interfaces;

/// At most this many frames are read from one socket per wake-up, so a flood cannot starve the
/// stop flag or the gratuitous schedule.
pub const MAX_FRAMES_PER_WAKE: usize = 64;

/// The gratuitous announcements sent when a node takes an IP over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Burst {
    /// Rounds sent after the immediate one.
    pub repeats: u32,
    /// Time between rounds.
    pub interval: Duration,
}

impl Default for Burst {
    /// One round at once, then 5 more 200 ms apart: a client that missed the first (a busy
    /// switch, a lossy link) is corrected within a second, and the burst is over after 1 s.
    fn default() -> Self {
        Burst {
            repeats: 5,
            interval: Duration::from_millis(200),
        }
    }
}

/// Responder settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponderConfig {
    /// Interface name patterns never used (`*` globs); see [`DEFAULT_EXCLUDE`].
    pub exclude: Vec<String>,
    /// The takeover burst.
    pub burst: Burst,
    /// The longest a worker sleeps before checking its stop flag.
    pub tick: Duration,
}

impl Default for ResponderConfig {
    fn default() -> Self {
        ResponderConfig {
            exclude: DEFAULT_EXCLUDE.iter().map(|s| s.to_string()).collect(),
            burst: Burst::default(),
            tick: Duration::from_millis(100),
        }
    }
}

/// Why the responder could not apply a change.
#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    /// Listing interfaces failed.
    #[error("listing interfaces: {0}")]
    Links(#[from] LinkError),
    /// A socket call failed.
    #[error("{0}")]
    Socket(#[from] SocketError),
    /// A worker thread could not be started.
    #[error("starting the responder thread for {ifname}: {source}")]
    Thread {
        /// The interface.
        ifname: String,
        /// The OS error.
        source: io::Error,
    },
}

/// Counters since the responder started: in total, per interface, and per address it answers
/// for now (MetalLB exports the last per IP).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every interface together, since start.
    pub total: Counts,
    /// Each interface, since start (kept when its worker restarts).
    pub interfaces: BTreeMap<String, Counts>,
    /// Each address answered for now, over every interface (since it was last taken on).
    pub addresses: BTreeMap<IpAddr, AddressCounts>,
}

/// One address's requests, replies and gratuitous announcements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressCounts {
    /// ARP requests and Neighbor Solicitations received for it.
    pub requests: u64,
    /// Replies sent.
    pub responses: u64,
    /// Gratuitous ARPs and unsolicited NAs sent.
    pub gratuitous: u64,
}

impl AddressCounts {
    fn add(&mut self, o: &AddressCounts) {
        self.requests += o.requests;
        self.responses += o.responses;
        self.gratuitous += o.gratuitous;
    }
}

/// Frames handled by the responder, of one interface or all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// ARP replies sent.
    pub arp_replies: u64,
    /// Solicited Neighbor Advertisements sent.
    pub na_replies: u64,
    /// Gratuitous ARPs and unsolicited NAs sent.
    pub gratuitous: u64,
    /// Requests for addresses this node does not own (heard, not answered).
    pub not_owned: u64,
    /// Frames that were not requests (see [`packet::DecodeError`]).
    pub undecodable: u64,
    /// Socket errors while receiving or sending.
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    arp_replies: AtomicU64,
    na_replies: AtomicU64,
    gratuitous: AtomicU64,
    not_owned: AtomicU64,
    undecodable: AtomicU64,
    errors: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What [`Responder::announce`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// For each announced IP, the interfaces answering for it (empty: no suitable interface).
    pub interfaces: BTreeMap<IpAddr, BTreeSet<String>>,
    /// Interfaces not used, and why.
    pub skipped: BTreeMap<String, Skip>,
}

/// Answers ARP/NDP for a set of owned IPs on the node's interfaces.
#[derive(Debug)]
pub struct Responder {
    config: ResponderConfig,
    workers: BTreeMap<String, Worker>,
    /// Per interface, kept across its worker's restarts so that its counts only grow.
    counters: BTreeMap<String, Arc<Counters>>,
}

impl Responder {
    /// A responder that announces nothing yet (no threads, no sockets).
    pub fn new(config: ResponderConfig) -> Responder {
        Responder {
            config,
            workers: BTreeMap::new(),
            counters: BTreeMap::new(),
        }
    }

    /// Makes the responder answer for exactly `desired` (IP → the interfaces its
    /// advertisements allow), rescanning interfaces. Newly owned IPs get a gratuitous burst on
    /// each interface; IPs no longer listed are dropped at once.
    pub fn announce(
        &mut self,
        desired: &BTreeMap<IpAddr, Interfaces>,
    ) -> Result<Applied, ResponderError> {
        let links = list_links()?;
        let with_v6 = ipv6_interfaces();
        let mut applied = Applied::default();
        let mut per_link: BTreeMap<String, (Link, bool, BTreeSet<IpAddr>)> = BTreeMap::new();
        for ip in desired.keys() {
            applied.interfaces.insert(*ip, BTreeSet::new());
        }
        for link in links {
            let has_v6 = with_v6.contains(&link.name);
            let mut ips = BTreeSet::new();
            let mut skip = None;
            for (ip, wanted) in desired {
                match selected(&link, wanted, &self.config.exclude) {
                    Ok(()) if ip.is_ipv4() || has_v6 => {
                        ips.insert(*ip);
                        if let Some(s) = applied.interfaces.get_mut(ip) {
                            s.insert(link.name.clone());
                        }
                    }
                    Ok(()) => {}
                    Err(s) => skip = Some(s),
                }
            }
            if ips.is_empty() {
                if let Some(s) = skip {
                    applied.skipped.insert(link.name.clone(), s);
                }
            } else {
                per_link.insert(link.name.clone(), (link, has_v6, ips));
            }
        }
        // Stop workers whose interface vanished, changed, or has nothing left to announce.
        let stale: Vec<String> = self
            .workers
            .iter()
            .filter(|(name, w)| {
                per_link.get(*name).is_none_or(|(l, v6, _)| {
                    l.index != w.link.index || l.mac != w.link.mac || *v6 != w.ipv6
                })
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(w) = self.workers.remove(&name) {
                w.stop();
            }
        }
        for (name, (link, has_v6, ips)) in per_link {
            if !self.workers.contains_key(&name) {
                let counters = self.counters.entry(name.clone()).or_default();
                let w = Worker::start(link, has_v6, &self.config, counters)?;
                self.workers.insert(name.clone(), w);
            }
            if let Some(w) = self.workers.get(&name) {
                w.set_owned(&ips, self.config.burst)?;
            }
        }
        Ok(applied)
    }

    /// Sends a fresh gratuitous round (and burst) for every address announced now, as if newly
    /// owned: for an owner that was apart from the group while others took its addresses.
    pub fn reannounce(&self) {
        for w in self.workers.values() {
            w.reannounce(self.config.burst);
        }
    }

    /// The IPs currently answered for, with their interfaces.
    pub fn announced(&self) -> BTreeMap<IpAddr, BTreeSet<String>> {
        let mut out: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
        for (name, w) in &self.workers {
            for ip in &lock(&w.shared.state).owned {
                out.entry(*ip).or_default().insert(name.clone());
            }
        }
        out
    }

    /// Counters since start.
    pub fn stats(&self) -> Stats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut stats = Stats::default();
        for (name, c) in &self.counters {
            let counts = Counts {
                arp_replies: get(&c.arp_replies),
                na_replies: get(&c.na_replies),
                gratuitous: get(&c.gratuitous),
                not_owned: get(&c.not_owned),
                undecodable: get(&c.undecodable),
                errors: get(&c.errors),
            };
            let t = &mut stats.total;
            t.arp_replies += counts.arp_replies;
            t.na_replies += counts.na_replies;
            t.gratuitous += counts.gratuitous;
            t.not_owned += counts.not_owned;
            t.undecodable += counts.undecodable;
            t.errors += counts.errors;
            stats.interfaces.insert(name.clone(), counts);
        }
        for w in self.workers.values() {
            for (ip, c) in &lock(&w.shared.state).per_address {
                stats.addresses.entry(*ip).or_default().add(c);
            }
        }
        stats
    }

    /// Stops answering on every interface and joins every thread (within one tick).
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for (_, w) in std::mem::take(&mut self.workers) {
            w.stop();
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    owned: BTreeSet<IpAddr>,
    bursts: Vec<Pending>,
    /// Counts of the owned addresses (dropped with them).
    per_address: HashMap<IpAddr, AddressCounts>,
}

/// A gratuitous round still to send.
#[derive(Debug)]
struct Pending {
    ip: IpAddr,
    rounds_left: u32,
    due: Instant,
}

/// A poisoned lock only means a worker panicked mid-update; the state is still a valid set.
fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One interface's sockets and thread.
#[derive(Debug)]
struct Worker {
    link: Link,
    ipv6: bool,
    shared: Arc<Shared>,
    mac: Mac,
    arp: Arc<PacketSocket>,
    ndp: Option<Arc<PacketSocket>>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn start(
        link: Link,
        ipv6: bool,
        config: &ResponderConfig,
        counters: &Arc<Counters>,
    ) -> Result<Worker, ResponderError> {
        let mac = link.mac.unwrap_or_default();
        let arp = Arc::new(PacketSocket::open(link.index, Kind::Arp)?);
        let ndp = if ipv6 {
            Some(Arc::new(PacketSocket::open(link.index, Kind::Ndp)?))
        } else {
            None
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
        });
        let run = Run {
            mac,
            arp: Arc::clone(&arp),
            ndp: ndp.clone(),
            shared: Arc::clone(&shared),
            counters: Arc::clone(counters),
            tick: config.tick,
            burst: config.burst,
        };
        let thread = thread::Builder::new()
            .name(format!("l2-{}", link.name))
            .spawn(move || run.run())
            .map_err(|source| ResponderError::Thread {
                ifname: link.name.clone(),
                source,
            })?;
        Ok(Worker {
            link,
            ipv6,
            shared,
            mac,
            arp,
            ndp,
            counters: Arc::clone(counters),
            thread: Some(thread),
        })
    }

    /// Replaces the owned set: joins/leaves solicited-node groups, sends the first gratuitous
    /// round for each new address at once (from the caller's thread, so a takeover does not
    /// wait for the worker's next wake-up) and schedules the rest of the burst.
    fn set_owned(&self, ips: &BTreeSet<IpAddr>, burst: Burst) -> Result<(), ResponderError> {
        let mut state = lock(&self.shared.state);
        let added: Vec<IpAddr> = ips.difference(&state.owned).copied().collect();
        let removed: Vec<IpAddr> = state.owned.difference(ips).copied().collect();
        for ip in &removed {
            if let (IpAddr::V6(v6), Some(ndp)) = (ip, &self.ndp) {
                ndp.multicast(Mac::ipv6_multicast(packet::solicited_node(*v6)), false)?;
            }
            state.owned.remove(ip);
            state.per_address.remove(ip);
            state.bursts.retain(|b| b.ip != *ip);
        }
        let now = Instant::now();
        for ip in added {
            if let (IpAddr::V6(v6), Some(ndp)) = (ip, &self.ndp) {
                ndp.multicast(Mac::ipv6_multicast(packet::solicited_node(v6)), true)?;
            }
            state.owned.insert(ip);
            self.announce_now(&mut state, ip, burst, now);
        }
        Ok(())
    }

    /// The first gratuitous round for `ip` at once, the rest of the burst scheduled.
    fn announce_now(&self, state: &mut State, ip: IpAddr, burst: Burst, now: Instant) {
        let sent = send_gratuitous(self.mac, ip, &self.arp, self.ndp.as_ref(), &self.counters);
        state.per_address.entry(ip).or_default().gratuitous += sent;
        if burst.repeats > 0 {
            state.bursts.push(Pending {
                ip,
                rounds_left: burst.repeats,
                due: now + burst.interval,
            });
        }
    }

    /// A gratuitous round at once for every owned address, and the rest of the burst scheduled.
    fn reannounce(&self, burst: Burst) {
        let mut state = lock(&self.shared.state);
        let now = Instant::now();
        let owned: Vec<IpAddr> = state.owned.iter().copied().collect();
        state.bursts.clear();
        for ip in owned {
            self.announce_now(&mut state, ip, burst, now);
        }
    }

    fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a worker thread owns.
struct Run {
    mac: Mac,
    arp: Arc<PacketSocket>,
    ndp: Option<Arc<PacketSocket>>,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    tick: Duration,
    burst: Burst,
}

impl Run {
    fn run(self) {
        let mut buf = vec![0u8; 9216];
        let mut sockets = vec![Arc::clone(&self.arp)];
        sockets.extend(self.ndp.iter().cloned());
        let fds: Vec<libc::c_int> = sockets.iter().map(|s| s.raw_fd()).collect();
        while !self.shared.stop.load(Ordering::Relaxed) {
            let wait = self.until_next_burst().min(self.tick);
            let readable = match poll_readable(&fds, wait) {
                Ok(r) => r,
                Err(_) => {
                    bump(&self.counters.errors);
                    thread::sleep(self.tick);
                    continue;
                }
            };
            for (sock, ready) in sockets.iter().zip(readable) {
                if ready {
                    self.drain(sock, &mut buf);
                }
            }
            self.send_due_bursts();
        }
    }

    fn until_next_burst(&self) -> Duration {
        let now = Instant::now();
        lock(&self.shared.state)
            .bursts
            .iter()
            .map(|b| b.due.saturating_duration_since(now))
            .min()
            .unwrap_or(self.tick)
    }

    fn drain(&self, sock: &PacketSocket, buf: &mut [u8]) {
        for _ in 0..MAX_FRAMES_PER_WAKE {
            match sock.recv(buf) {
                Ok(None) => return,
                Ok(Some(0)) => continue,
                Ok(Some(n)) => self.answer(sock, &buf[..n.min(buf.len())]),
                Err(_) => {
                    bump(&self.counters.errors);
                    return;
                }
            }
        }
    }

    fn answer(&self, sock: &PacketSocket, frame: &[u8]) {
        let req = match packet::parse(frame) {
            Ok(r) => r,
            Err(_) => {
                bump(&self.counters.undecodable);
                return;
            }
        };
        let target = req.target();
        {
            let mut state = lock(&self.shared.state);
            if !state.owned.contains(&target) {
                bump(&self.counters.not_owned);
                return;
            }
            state.per_address.entry(target).or_default().requests += 1;
        }
        let (reply, counter) = match req {
            Request::Arp(r) => (
                packet::arp_reply(self.mac, r.target_ip, &r),
                &self.counters.arp_replies,
            ),
            Request::Ns(r) => (
                packet::neighbor_advertisement(self.mac, r.target, &r),
                &self.counters.na_replies,
            ),
        };
        match sock.send(&reply) {
            Ok(()) => {
                bump(counter);
                if let Some(c) = lock(&self.shared.state).per_address.get_mut(&target) {
                    c.responses += 1;
                }
            }
            Err(_) => bump(&self.counters.errors),
        }
    }

    fn send_due_bursts(&self) {
        let now = Instant::now();
        let due: Vec<IpAddr> = {
            let mut state = lock(&self.shared.state);
            let mut due = Vec::new();
            for b in state.bursts.iter_mut().filter(|b| b.due <= now) {
                due.push(b.ip);
                b.rounds_left = b.rounds_left.saturating_sub(1);
                b.due = now + self.burst.interval;
            }
            state.bursts.retain(|b| b.rounds_left > 0);
            due
        };
        let sent: Vec<(IpAddr, u64)> = (due.into_iter())
            .map(|ip| {
                let n = send_gratuitous(self.mac, ip, &self.arp, self.ndp.as_ref(), &self.counters);
                (ip, n)
            })
            .collect();
        let mut state = lock(&self.shared.state);
        for (ip, n) in sent {
            if state.owned.contains(&ip) {
                state.per_address.entry(ip).or_default().gratuitous += n;
            }
        }
    }
}

/// One gratuitous round for `ip`: an ARP request and reply, or an unsolicited NA (only where
/// the interface has IPv6). Returns the frames sent.
fn send_gratuitous(
    mac: Mac,
    ip: IpAddr,
    arp: &PacketSocket,
    ndp: Option<&Arc<PacketSocket>>,
    counters: &Counters,
) -> u64 {
    let frames = match ip {
        IpAddr::V4(v4) => vec![
            (
                arp,
                packet::gratuitous_arp(mac, v4, GratuitousKind::Request),
            ),
            (arp, packet::gratuitous_arp(mac, v4, GratuitousKind::Reply)),
        ],
        IpAddr::V6(v6) => match ndp {
            Some(ndp) => vec![(ndp.as_ref(), packet::unsolicited_na(mac, v6))],
            None => vec![],
        },
    };
    let mut sent = 0;
    for (sock, frame) in frames {
        match sock.send(&frame) {
            Ok(()) => {
                bump(&counters.gratuitous);
                sent += 1;
            }
            Err(_) => bump(&counters.errors),
        }
    }
    sent
}
