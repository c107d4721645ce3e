//! The IP allocator: a pure library that decides which addresses each `LoadBalancer` Service gets.
//!
//! No Kubernetes I/O happens here. The reconciler describes Services as [`ServiceRequest`]s and
//! hands over the validated [`Config`]; the allocator answers with an [`Assignment`] or a typed
//! [`Refusal`] naming the cause, and tells which waiting Services to retry when something frees.
//!
//! # Modules
//! - [`service`]: [`ServiceKey`], [`ServiceRequest`] and its enums; annotation parsing.
//! - [`free_set`]: per pool and family, the free addresses as runs (`O(log n)`, never per address).
//! - `index`: address -> holders, one entry per address in use.
//! - [`sharing`]: the `ferrolb.io/allow-shared-ip` rule.
//! - [`order`]: which pools admit a Service, and the deterministic automatic order.
//! - [`reason`]: the typed refusal reasons.
//!
//! # Rules (MetalLB-compatible, made deterministic)
//! - **Requested addresses** (`spec.loadBalancerIP` / `ferrolb.io/loadBalancerIPs`, at most one
//!   per family) are honoured exactly or refused: outside every pool, `.0`/`.255` in an
//!   avoidBuggyIPs pool, not in the requested pool, in two different pools, pool does not admit
//!   the Service, or held by a Service it may not share with. They are never "completed" to dual
//!   stack: the user pinned what they want.
//! - **`ferrolb.io/address-pool`** restricts allocation to that pool (autoAssign does not matter,
//!   serviceAllocation admission does).
//! - **Automatic**: pools in [`order::auto_order`] order; within a pool the **lowest** free usable
//!   address, so the same inputs always give the same result. A Service with a sharing key first
//!   reuses an address that compatible Services with the same key already use in that pool.
//! - **Dual stack**, always from one pool: SingleStack takes `ipFamilies[0]`; RequireDualStack takes
//!   both or nothing; PreferDualStack first looks for a pool that can give both, else takes what
//!   the first able pool gives, and later adds the missing family from the **same** pool as soon
//!   as it can (the Service stays in [`Allocator::pending`] as *partial* until then).
//! - **Holding**: [`Allocator::ensure`] is idempotent. A held assignment that still fits the
//!   request and the config is returned unchanged, never moved. If it no longer fits (requested
//!   IPs, pool annotation, families, sharing facts or labels changed), it is released and the
//!   Service is allocated afresh.
//! - **Restart**: [`Allocator::restore`] first re-claims, in one batch and in key order, every
//!   address the Services already hold, and only then allocates for the others.
//! - **Config changes** ([`Allocator::set_config`]): an address that is still in a pool that admits
//!   its Service stays (even if it moved to another pool, which the assignment then names). An
//!   address that is now `.0`/`.255` under avoidBuggyIPs, or in a pool that no longer admits the
//!   Service, is released. An address removed from **every** pool follows [`StalePolicy`]:
//!   `Keep` (default) leaves it with the Service and reports it as stale, so an accidental pool
//!   edit never renumbers a Service; `Reassign` releases it (MetalLB's current behaviour).
//!   A stale address is in no free set, so nobody else can get it; if a later config brings it
//!   back into a pool, it is counted there again.
//! - **Retries**: every refusal registers what the Service waits for (a pool, an address, a
//!   holder, or the config). Releasing an address wakes exactly those waiters; the list is returned
//!   by [`Allocator::release`], by [`Allocator::set_config`] (every waiting Service) and by
//!   [`Allocator::take_retry`] after an [`Allocator::ensure`] that displaced addresses.
//! - **Type change away from `LoadBalancer`** and **deletion** are the same call:
//!   [`Allocator::release`].
//! - `autoAssign: false` does not invalidate addresses Services already hold in that pool.
//!
//! # Costs
//! Memory is proportional to the number of addresses in use plus the number of configured ranges:
//! one record per Service, one index entry per address in use, and free runs bounded by
//! `ranges + addresses in use`. Allocation, release and lookups are `O(log n)` map operations
//! (plus, for a Service with a sharing key, one check per address already using that key).
//! A config change or a restore rebuilds the free sets in `O(n log n)`.
//!
//! Pool counters count distinct addresses (a shared address counts once) and saturate at
//! `i64::MAX`, the range of the Kubernetes status fields.
//!
//! Measured with `cargo bench -p ferrolb-allocator --bench allocator` (100,000 Services in IPv4
//! /16 and IPv6 /64 pools, half released and refilled): about 1 µs median and 3.6–5 µs p99 per
//! allocation on a shared 2-core machine, 176 bytes of heap per allocation at peak; see
//! `BENCHMARKS.md`.
//!
//! # Tests
//! `tests.rs` holds one table-driven test per rule above, on /31, /32, /127 and 3-address pools;
//! `props.rs` runs random create/update/delete/config-change/restart sequences against an
//! independent oracle (sharing, pool membership or staleness, restore reproducing the same
//! assignments, counters equal to a recount).

pub mod free_set;
pub mod from_service;
mod index;
pub mod order;
pub mod reason;
pub mod service;
pub mod sharing;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ferrolb_config::selector::Labels;
use ferrolb_config::{Config, Family, Pool, to_u128};

use free_set::FreeSet;
use index::IpIndex;
pub use reason::{PoolAttempt, Refusal};
pub use service::{
    FamilyPolicy, Protocol, ServiceKey, ServiceRequest, TrafficPolicy, parse_requested_ips,
};
use sharing::Sharing;

/// What to do with an address that a config change removed from every pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StalePolicy {
    /// The Service keeps it; the allocator reports it as stale. The default.
    #[default]
    Keep,
    /// The Service loses it and is allocated again (MetalLB's behaviour since v0.13).
    Reassign,
}

/// The addresses a Service holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    /// The pool they come from ("" only for stale addresses of a Service that never named a pool).
    pub pool: String,
    /// The addresses, preferred family (`ipFamilies[0]`) first.
    pub ips: Vec<IpAddr>,
    /// Those of `ips` that no pool contains any more (kept under [`StalePolicy::Keep`]).
    pub stale: Vec<IpAddr>,
}

/// A pool's usage, for its status. Shared addresses count once. Saturates at `i64::MAX`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCounters {
    /// IPv4 addresses in use.
    pub assigned_v4: u64,
    /// IPv6 addresses in use.
    pub assigned_v6: u64,
    /// IPv4 addresses free (avoidBuggyIPs addresses excluded).
    pub available_v4: u64,
    /// IPv6 addresses free.
    pub available_v6: u64,
}

/// What [`Allocator::restore`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Services whose held addresses were re-claimed unchanged.
    pub reclaimed: Vec<ServiceKey>,
    /// Services whose held addresses could not be re-claimed, and why.
    pub not_reclaimed: Vec<(ServiceKey, Refusal)>,
    /// Re-claimed addresses that no pool contains any more (kept under [`StalePolicy::Keep`]).
    pub stale: Vec<(ServiceKey, Vec<IpAddr>)>,
    /// Every Service's outcome after the allocation phase.
    pub outcomes: BTreeMap<ServiceKey, Result<Assignment, Refusal>>,
}

/// How many names a summary line quotes per list: a log line must not grow with the number of
/// Services (20,000 Services made one restore line 1.19 million characters long).
pub const SUMMARY_NAMES: usize = 5;

impl RestoreReport {
    /// One bounded line for the log: counts, and the first few names where something is wrong.
    pub fn summary(&self) -> String {
        fn first<'a>(names: impl Iterator<Item = String> + 'a, total: usize) -> String {
            let shown: Vec<String> = names.take(SUMMARY_NAMES).collect();
            if shown.is_empty() {
                return String::new();
            }
            let more = total.saturating_sub(shown.len());
            let tail = if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            };
            format!(" ({}{tail})", shown.join("; "))
        }
        let assigned = self.outcomes.values().filter(|o| o.is_ok()).count();
        let pending: Vec<(&ServiceKey, &Refusal)> = (self.outcomes.iter())
            .filter_map(|(k, o)| o.as_ref().err().map(|r| (k, r)))
            .collect();
        format!(
            "{} re-claimed; {} not re-claimed{}; {} stale{}; {} with addresses; {} pending{}",
            self.reclaimed.len(),
            self.not_reclaimed.len(),
            first(
                (self.not_reclaimed.iter()).map(|(k, r)| format!("{k}: {r}")),
                self.not_reclaimed.len()
            ),
            self.stale.len(),
            first(
                self.stale.iter().map(|(k, _)| k.to_string()),
                self.stale.len()
            ),
            assigned,
            pending.len(),
            first(
                pending.iter().map(|(k, r)| format!("{k}: {r}")),
                pending.len()
            ),
        )
    }
}

/// What [`Allocator::set_config`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigChange {
    /// Services keeping addresses that the new config removed from every pool.
    pub stale: Vec<(ServiceKey, Vec<IpAddr>)>,
    /// Services that lost their addresses, with the addresses and the reason.
    pub released: Vec<(ServiceKey, Vec<IpAddr>, Refusal)>,
    /// Services to run [`Allocator::ensure`] for: the released ones and every waiting one.
    pub retry: Vec<ServiceKey>,
}

impl ConfigChange {
    /// Every Service the change concerns (stale, released or to retry), in key order, once each.
    pub fn affected(&self) -> Vec<ServiceKey> {
        let mut keys: BTreeSet<ServiceKey> = self.retry.iter().cloned().collect();
        keys.extend(self.stale.iter().map(|(k, _)| k.clone()));
        keys.extend(self.released.iter().map(|(k, _, _)| k.clone()));
        keys.into_iter().collect()
    }
}

/// What a waiting Service waits for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Wait {
    /// An address of this pool to free up (or a sharing holder in it to change).
    Pool(String),
    /// This address to free up (or a holder to leave it).
    Ip(IpAddr),
    /// This Service to leave or change.
    Holder(ServiceKey),
    /// A config change.
    Config,
}

#[derive(Clone, Debug)]
struct Pending {
    reason: Refusal,
    partial: bool,
    waits: Vec<Wait>,
}

/// Request facts kept with an assignment, only when there are any (most Services have none).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Extra {
    labels: Labels,
    namespace_labels: Labels,
    requested_pool: Option<String>,
    sharing: Option<Sharing>,
}

impl Extra {
    fn of(req: &ServiceRequest) -> Option<Box<Self>> {
        let e = Extra {
            labels: req.labels.clone(),
            namespace_labels: req.namespace_labels.clone(),
            requested_pool: req.requested_pool.clone(),
            sharing: Sharing::of(req),
        };
        let empty = e.labels.is_empty()
            && e.namespace_labels.is_empty()
            && e.requested_pool.is_none()
            && e.sharing.is_none();
        (!empty).then(|| Box::new(e))
    }
}

/// One Service's assignment. Kept to 32 bytes: it exists once per allocation.
#[derive(Clone, Debug)]
struct Record {
    extra: Option<Box<Extra>>,
    v6: Ipv6Addr,
    v4: Ipv4Addr,
    /// Pool id in the low bits ([`Record::NO_POOL`]: none), flags in the top three.
    bits: u32,
}

impl Record {
    const HAS_V4: u32 = 1 << 31;
    const HAS_V6: u32 = 1 << 30;
    const V6_FIRST: u32 = 1 << 29;
    const NO_POOL: u32 = (1 << 29) - 1;

    fn new(extra: Option<Box<Extra>>, pool: Option<u32>, v6_first: bool) -> Self {
        let mut r = Record {
            extra,
            v6: Ipv6Addr::UNSPECIFIED,
            v4: Ipv4Addr::UNSPECIFIED,
            bits: Self::NO_POOL,
        };
        r.set_pool(pool);
        r.set_v6_first(v6_first);
        r
    }

    fn pool(&self) -> Option<u32> {
        let id = self.bits & Self::NO_POOL;
        (id != Self::NO_POOL).then_some(id)
    }

    fn set_pool(&mut self, pool: Option<u32>) {
        let id = pool.map_or(Self::NO_POOL, |p| p.min(Self::NO_POOL - 1));
        self.bits = (self.bits & !Self::NO_POOL) | id;
    }

    fn set_v6_first(&mut self, v6_first: bool) {
        if v6_first {
            self.bits |= Self::V6_FIRST;
        } else {
            self.bits &= !Self::V6_FIRST;
        }
    }

    fn set_ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                self.v4 = a;
                self.bits |= Self::HAS_V4;
            }
            IpAddr::V6(a) => {
                self.v6 = a;
                self.bits |= Self::HAS_V6;
            }
        }
    }

    fn ips(&self) -> Vec<IpAddr> {
        let v4 = (self.bits & Self::HAS_V4 != 0).then_some(IpAddr::V4(self.v4));
        let v6 = (self.bits & Self::HAS_V6 != 0).then_some(IpAddr::V6(self.v6));
        let (a, b) = if self.bits & Self::V6_FIRST != 0 {
            (v6, v4)
        } else {
            (v4, v6)
        };
        a.into_iter().chain(b).collect()
    }

    fn sharing_key(&self) -> Option<&str> {
        self.extra
            .as_ref()?
            .sharing
            .as_ref()
            .map(|s| s.key.as_str())
    }
}

/// Whose admission is being checked (from a request, or from a record on config change).
struct Who<'a> {
    key: &'a ServiceKey,
    labels: &'a Labels,
    namespace_labels: &'a Labels,
    requested_pool: Option<&'a str>,
}

static NO_LABELS: Labels = Labels::new();

impl<'a> Who<'a> {
    fn of(req: &'a ServiceRequest) -> Self {
        Who {
            key: &req.key,
            labels: &req.labels,
            namespace_labels: &req.namespace_labels,
            requested_pool: req.requested_pool.as_deref(),
        }
    }

    fn of_record(key: &'a ServiceKey, rec: &'a Record) -> Self {
        match rec.extra.as_deref() {
            Some(e) => Who {
                key,
                labels: &e.labels,
                namespace_labels: &e.namespace_labels,
                requested_pool: e.requested_pool.as_deref(),
            },
            None => Who {
                key,
                labels: &NO_LABELS,
                namespace_labels: &NO_LABELS,
                requested_pool: None,
            },
        }
    }
}

/// The outcome of checking a set of addresses against a Service and the config.
struct Valid {
    /// The pool holding the non-stale addresses.
    pool: Option<String>,
    /// Addresses in no pool.
    stale: Vec<IpAddr>,
}

#[derive(Clone, Debug, Default)]
struct PoolState {
    v4: FreeSet,
    v6: FreeSet,
}

/// The allocator. See the module documentation for the rules.
#[derive(Clone, Debug)]
pub struct Allocator {
    config: Config,
    policy: StalePolicy,
    pools: BTreeMap<String, PoolState>,
    /// First address of every range -> (last address, pool name).
    ranges: BTreeMap<IpAddr, (IpAddr, String)>,
    pool_names: Vec<String>,
    pool_ids: BTreeMap<String, u32>,
    records: BTreeMap<ServiceKey, Record>,
    index: IpIndex,
    /// Sharing key -> address -> how many holders with that key.
    shared: BTreeMap<String, BTreeMap<IpAddr, u32>>,
    pending: BTreeMap<ServiceKey, Pending>,
    waiters: BTreeMap<Wait, BTreeSet<ServiceKey>>,
    retry: BTreeSet<ServiceKey>,
}

fn saturate(x: u128) -> u64 {
    u64::try_from(x.min(i64::MAX as u128)).unwrap_or(i64::MAX as u64)
}

fn to_ip(family: Family, x: u128) -> Option<IpAddr> {
    match family {
        Family::V4 => u32::try_from(x).ok().map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        Family::V6 => Some(IpAddr::V6(Ipv6Addr::from(x))),
    }
}

fn build_pools(
    config: &Config,
) -> (
    BTreeMap<String, PoolState>,
    BTreeMap<IpAddr, (IpAddr, String)>,
) {
    let mut pools = BTreeMap::new();
    let mut ranges = BTreeMap::new();
    for pool in config.pools.values() {
        let mut st = PoolState {
            v4: FreeSet::new(pool.avoid_buggy_ips),
            v6: FreeSet::new(false),
        };
        for r in &pool.ranges {
            let set = match r.family() {
                Family::V4 => &mut st.v4,
                Family::V6 => &mut st.v6,
            };
            set.add_range(to_u128(r.first()), to_u128(r.last()));
            ranges.insert(r.first(), (r.last(), pool.name.clone()));
        }
        pools.insert(pool.name.clone(), st);
    }
    (pools, ranges)
}

fn check_families(policy: FamilyPolicy, wanted: &[Family], ips: &[IpAddr]) -> Result<(), String> {
    let mut seen: Vec<Family> = Vec::new();
    for ip in ips {
        let f = Family::of(*ip);
        if !wanted.contains(&f) {
            let wanted: Vec<String> = wanted.iter().map(|f| f.to_string()).collect();
            return Err(format!(
                "{ip} is {f}, but the service takes {}",
                wanted.join(" and ")
            ));
        }
        if seen.contains(&f) {
            return Err(format!("two {f} addresses"));
        }
        seen.push(f);
    }
    if seen.is_empty() {
        return Err("no addresses".into());
    }
    if policy == FamilyPolicy::RequireDualStack && seen.len() < 2 {
        return Err("RequireDualStack needs an IPv4 and an IPv6 address".into());
    }
    Ok(())
}

fn waits_of(reason: &Refusal, out: &mut Vec<Wait>) {
    match reason {
        Refusal::PoolExhausted { pool, .. } => out.push(Wait::Pool(pool.clone())),
        Refusal::IpInUse { ip, holder, .. }
        | Refusal::SharingKeyMismatch { ip, holder, .. }
        | Refusal::PortConflict { ip, holder, .. }
        | Refusal::TrafficPolicyMismatch { ip, holder, .. } => {
            out.push(Wait::Ip(*ip));
            out.push(Wait::Holder(holder.clone()));
        }
        Refusal::NoPoolCouldServe { attempts } => {
            for a in attempts {
                waits_of(&a.reason, out);
            }
        }
        _ => out.push(Wait::Config),
    }
}

impl Allocator {
    /// An allocator for `config`, holding nothing.
    pub fn new(config: Config, policy: StalePolicy) -> Self {
        let (pools, ranges) = build_pools(&config);
        Self {
            config,
            policy,
            pools,
            ranges,
            pool_names: Vec::new(),
            pool_ids: BTreeMap::new(),
            records: BTreeMap::new(),
            index: IpIndex::default(),
            shared: BTreeMap::new(),
            pending: BTreeMap::new(),
            waiters: BTreeMap::new(),
            retry: BTreeSet::new(),
        }
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The stale policy.
    pub fn stale_policy(&self) -> StalePolicy {
        self.policy
    }

    /// The Service's current assignment.
    pub fn assignment(&self, key: &ServiceKey) -> Option<Assignment> {
        let rec = self.records.get(key)?;
        let ips = rec.ips();
        let stale = ips
            .iter()
            .copied()
            .filter(|ip| self.home(*ip).is_none())
            .collect();
        let pool = rec
            .pool()
            .and_then(|i| self.pool_names.get(i as usize))
            .cloned()
            .unwrap_or_default();
        Some(Assignment { pool, ips, stale })
    }

    /// Every assignment, in key order.
    pub fn assignments(&self) -> Vec<(ServiceKey, Assignment)> {
        self.records
            .keys()
            .filter_map(|k| Some((k.clone(), self.assignment(k)?)))
            .collect()
    }

    /// Number of Services holding addresses.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no Service holds an address.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Services waiting, in key order: refused ones, and PreferDualStack ones still missing a family.
    pub fn pending(&self) -> Vec<ServiceKey> {
        self.pending.keys().cloned().collect()
    }

    /// [`Allocator::pending`] with the last reason, and whether the Service holds a partial
    /// (single-family) PreferDualStack assignment meanwhile.
    pub fn pending_reasons(&self) -> Vec<(ServiceKey, Refusal, bool)> {
        self.pending
            .iter()
            .map(|(k, p)| (k.clone(), p.reason.clone(), p.partial))
            .collect()
    }

    /// Whether the Service is waiting (see [`Allocator::pending`]).
    pub fn is_pending(&self, key: &ServiceKey) -> bool {
        self.pending.contains_key(key)
    }

    /// Waiting Services that something since the last call may have unblocked, in key order.
    pub fn take_retry(&mut self) -> Vec<ServiceKey> {
        let out = self
            .retry
            .iter()
            .filter(|k| self.pending.contains_key(*k))
            .cloned()
            .collect();
        self.retry.clear();
        out
    }

    /// The pool's usage (all zero for an unknown pool).
    pub fn pool_counters(&self, pool: &str) -> PoolCounters {
        let Some(st) = self.pools.get(pool) else {
            return PoolCounters::default();
        };
        PoolCounters {
            assigned_v4: saturate(st.v4.total().saturating_sub(st.v4.free())),
            assigned_v6: saturate(st.v6.total().saturating_sub(st.v6.free())),
            available_v4: saturate(st.v4.free()),
            available_v6: saturate(st.v6.free()),
        }
    }

    /// Gives the Service an assignment that fits its request, keeping a still-valid one unchanged,
    /// or refuses with the reason (and remembers it as waiting).
    pub fn ensure(&mut self, req: &ServiceRequest) -> Result<Assignment, Refusal> {
        let out = self.ensure_inner(req);
        self.retry.remove(&req.key);
        match out {
            Ok((assignment, partial)) => {
                match partial {
                    Some(reason) => self.set_pending(&req.key, reason, true),
                    None => self.clear_pending(&req.key),
                }
                Ok(assignment)
            }
            Err(reason) => {
                self.set_pending(&req.key, reason.clone(), false);
                Err(reason)
            }
        }
    }

    /// Releases everything the Service holds and forgets it (deletion, or type no longer
    /// `LoadBalancer`). Returns the waiting Services worth retrying now.
    pub fn release(&mut self, key: &ServiceKey) -> Vec<ServiceKey> {
        self.remove_record(key);
        self.clear_pending(key);
        self.retry.remove(key);
        self.take_retry()
    }

    /// Starts over from the Services as they are (after a restart): re-claims every held address
    /// first, in one batch, then allocates for the Services that need it, both in key order.
    /// Everything the allocator held before is forgotten. Duplicate keys: the first one counts.
    pub fn restore(&mut self, services: &[ServiceRequest]) -> RestoreReport {
        self.restore_keeping(services, &BTreeSet::new())
    }

    /// [`Allocator::restore`], except that the Services in `edited` re-claim their addresses
    /// only after every other Service has: an edit (a new sharing key, say) must never take an
    /// address away from a Service that was not edited.
    pub fn restore_keeping(
        &mut self,
        services: &[ServiceRequest],
        edited: &BTreeSet<ServiceKey>,
    ) -> RestoreReport {
        self.records.clear();
        self.index.clear();
        self.shared.clear();
        self.pending.clear();
        self.waiters.clear();
        self.retry.clear();
        let (pools, ranges) = build_pools(&self.config);
        self.pools = pools;
        self.ranges = ranges;

        let mut order: Vec<&ServiceRequest> = services.iter().collect();
        order.sort_by(|a, b| a.key.cmp(&b.key));
        order.dedup_by(|later, earlier| later.key == earlier.key);

        let mut report = RestoreReport::default();
        let (unedited, edited): (Vec<&ServiceRequest>, Vec<&ServiceRequest>) =
            order.iter().partition(|r| !edited.contains(&r.key));
        for req in unedited.iter().chain(&edited) {
            if req.held_ips.is_empty() {
                continue;
            }
            let checked = req.wanted_families().and_then(|wanted| {
                self.check_holding(req, &wanted, &req.held_ips)
                    .map(|v| (wanted, v))
            });
            match checked {
                Ok((wanted, valid)) => {
                    let pool = valid.pool.or_else(|| req.held_pool.clone());
                    self.install(req, pool.as_deref(), &req.held_ips, &wanted);
                    report.reclaimed.push(req.key.clone());
                    if !valid.stale.is_empty() {
                        report.stale.push((req.key.clone(), valid.stale));
                    }
                }
                Err(reason) => report.not_reclaimed.push((req.key.clone(), reason)),
            }
        }
        for req in &order {
            let outcome = self.ensure(req);
            report.outcomes.insert(req.key.clone(), outcome);
        }
        report
    }

    /// Switches to a new config: keeps what it still allows, releases what it does not, applies
    /// the [`StalePolicy`] to addresses in no pool, and lists whom to retry.
    pub fn set_config(&mut self, config: Config) -> ConfigChange {
        self.config = config;
        let (pools, ranges) = build_pools(&self.config);
        self.pools = pools;
        self.ranges = ranges;

        let mut change = ConfigChange::default();
        let mut moved: Vec<(ServiceKey, String)> = Vec::new();
        let mut dropped: Vec<ServiceKey> = Vec::new();
        for (key, rec) in &self.records {
            let ips = rec.ips();
            match self.check_pools(&Who::of_record(key, rec), &ips, true) {
                Ok(valid) => {
                    if let Some(pool) = valid.pool {
                        moved.push((key.clone(), pool));
                    }
                    if !valid.stale.is_empty() {
                        change.stale.push((key.clone(), valid.stale));
                    }
                }
                Err(reason) => {
                    change.released.push((key.clone(), ips, reason));
                    dropped.push(key.clone());
                }
            }
        }
        for (key, pool) in moved {
            let id = self.intern(&pool);
            if let Some(rec) = self.records.get_mut(&key) {
                rec.set_pool(Some(id));
            }
        }
        for key in &dropped {
            if let Some(rec) = self.records.remove(key) {
                let sharing_key = rec.sharing_key().map(str::to_string);
                for ip in rec.ips() {
                    self.index.remove(ip, key);
                    self.unshare(ip, sharing_key.as_deref());
                }
            }
        }
        // Rebuild usage: every address still held comes out of its pool's free set.
        let held: Vec<IpAddr> = self.index.addresses().collect();
        for ip in held {
            self.take_from_pool(ip);
        }
        for (key, _, reason) in &change.released {
            self.set_pending(key, reason.clone(), false);
        }
        self.retry.clear();
        change.retry = self.pending.keys().cloned().collect();
        change
    }

    // ----- internals -------------------------------------------------------------------------

    fn intern(&mut self, pool: &str) -> u32 {
        if let Some(id) = self.pool_ids.get(pool) {
            return *id;
        }
        let id = u32::try_from(self.pool_names.len()).unwrap_or(u32::MAX);
        self.pool_names.push(pool.to_string());
        self.pool_ids.insert(pool.to_string(), id);
        id
    }

    /// The pool containing `ip` under the current config.
    fn home(&self, ip: IpAddr) -> Option<&Pool> {
        let (_, (last, name)) = self.ranges.range(..=ip).next_back()?;
        if ip <= *last {
            self.config.pools.get(name)
        } else {
            None
        }
    }

    fn free_set(&self, pool: &str, family: Family) -> Option<&FreeSet> {
        let st = self.pools.get(pool)?;
        Some(match family {
            Family::V4 => &st.v4,
            Family::V6 => &st.v6,
        })
    }

    fn take_from_pool(&mut self, ip: IpAddr) {
        // Field-level borrows: no pool-name copy on the hot path.
        let Some((_, (last, name))) = self.ranges.range(..=ip).next_back() else {
            return;
        };
        if ip > *last {
            return;
        }
        if let Some(st) = self.pools.get_mut(name) {
            let set = match Family::of(ip) {
                Family::V4 => &mut st.v4,
                Family::V6 => &mut st.v6,
            };
            set.take(to_u128(ip));
        }
    }

    fn sharing_of(&self, key: &ServiceKey) -> Option<&Sharing> {
        self.records.get(key)?.extra.as_ref()?.sharing.as_ref()
    }

    fn wake(&mut self, wait: &Wait) {
        if let Some(keys) = self.waiters.get(wait) {
            self.retry.extend(keys.iter().cloned());
        }
    }

    fn set_pending(&mut self, key: &ServiceKey, reason: Refusal, partial: bool) {
        self.clear_pending(key);
        let mut waits = Vec::new();
        waits_of(&reason, &mut waits);
        // An address in the way also means its pool: anything freeing there may help.
        let pools: Vec<Wait> = waits
            .iter()
            .filter_map(|w| match w {
                Wait::Ip(ip) => self.home(*ip).map(|p| Wait::Pool(p.name.clone())),
                _ => None,
            })
            .collect();
        waits.extend(pools);
        waits.sort();
        waits.dedup();
        for w in &waits {
            self.waiters
                .entry(w.clone())
                .or_default()
                .insert(key.clone());
        }
        self.pending.insert(
            key.clone(),
            Pending {
                reason,
                partial,
                waits,
            },
        );
    }

    fn clear_pending(&mut self, key: &ServiceKey) {
        let Some(p) = self.pending.remove(key) else {
            return;
        };
        for w in p.waits {
            if let Some(set) = self.waiters.get_mut(&w) {
                set.remove(key);
                if set.is_empty() {
                    self.waiters.remove(&w);
                }
            }
        }
    }

    fn share(&mut self, ip: IpAddr, sharing_key: Option<&str>) {
        if let Some(k) = sharing_key {
            *self
                .shared
                .entry(k.to_string())
                .or_default()
                .entry(ip)
                .or_insert(0) += 1;
        }
    }

    fn unshare(&mut self, ip: IpAddr, sharing_key: Option<&str>) {
        let Some(k) = sharing_key else {
            return;
        };
        let Some(ips) = self.shared.get_mut(k) else {
            return;
        };
        if let Some(n) = ips.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                ips.remove(&ip);
            }
        }
        if ips.is_empty() {
            self.shared.remove(k);
        }
    }

    fn claim(&mut self, key: &ServiceKey, ip: IpAddr, sharing_key: Option<&str>) {
        if self.index.add(ip, key.clone()) {
            self.take_from_pool(ip);
        }
        self.share(ip, sharing_key);
    }

    fn unclaim(&mut self, key: &ServiceKey, ip: IpAddr, sharing_key: Option<&str>) {
        self.unshare(ip, sharing_key);
        if self.index.remove(ip, key) {
            // The free set never takes back unusable (buggy) addresses itself.
            let home = self
                .ranges
                .range(..=ip)
                .next_back()
                .filter(|(_, (last, _))| ip <= *last)
                .map(|(_, (_, name))| name);
            if let Some(st) = home.and_then(|name| self.pools.get_mut(name)) {
                let set = match Family::of(ip) {
                    Family::V4 => &mut st.v4,
                    Family::V6 => &mut st.v6,
                };
                set.put(to_u128(ip));
            }
        }
        if self.waiters.is_empty() {
            return;
        }
        self.wake(&Wait::Ip(ip));
        if let Some(pool) = self.home(ip).map(|p| p.name.clone()) {
            self.wake(&Wait::Pool(pool));
        }
    }

    /// Records an assignment and claims its addresses.
    fn install(
        &mut self,
        req: &ServiceRequest,
        pool: Option<&str>,
        ips: &[IpAddr],
        wanted: &[Family],
    ) {
        let extra = Extra::of(req);
        let sharing_key = extra
            .as_ref()
            .and_then(|e| e.sharing.as_ref())
            .map(|s| s.key.clone());
        let pool = pool.map(|p| self.intern(p));
        let mut rec = Record::new(extra, pool, wanted.first() == Some(&Family::V6));
        for ip in ips {
            rec.set_ip(*ip);
            self.claim(&req.key, *ip, sharing_key.as_deref());
        }
        self.records.insert(req.key.clone(), rec);
    }

    /// Releases the Service's addresses (waking whoever waits for them) and forgets its record.
    fn remove_record(&mut self, key: &ServiceKey) {
        let Some(rec) = self.records.remove(key) else {
            return;
        };
        let sharing_key = rec.sharing_key().map(str::to_string);
        for ip in rec.ips() {
            self.unclaim(key, ip, sharing_key.as_deref());
        }
        self.wake(&Wait::Holder(key.clone()));
    }

    /// Updates the request facts kept with a still-valid assignment.
    fn refresh_record(&mut self, req: &ServiceRequest, pool: Option<String>, wanted: &[Family]) {
        let extra = Extra::of(req);
        let pool_id = pool.map(|p| self.intern(&p));
        let Some(rec) = self.records.get_mut(&req.key) else {
            return;
        };
        if pool_id.is_some() {
            rec.set_pool(pool_id);
        }
        // The preferred family may have changed order (ipFamilies edited).
        rec.set_v6_first(wanted.first() == Some(&Family::V6));
        if rec.extra == extra {
            return;
        }
        let old_sharing = rec.extra.as_ref().and_then(|e| e.sharing.clone());
        let new_sharing = extra.as_ref().and_then(|e| e.sharing.clone());
        rec.extra = extra;
        let ips = rec.ips();
        let home = ips
            .iter()
            .find_map(|ip| self.home(*ip).map(|p| p.name.clone()));
        if old_sharing != new_sharing {
            for ip in &ips {
                self.unshare(*ip, old_sharing.as_ref().map(|s| s.key.as_str()));
                self.share(*ip, new_sharing.as_ref().map(|s| s.key.as_str()));
            }
            // Its co-holders' and would-be co-holders' chances changed.
            self.wake(&Wait::Holder(req.key.clone()));
            for ip in &ips {
                self.wake(&Wait::Ip(*ip));
            }
            if let Some(pool) = home {
                self.wake(&Wait::Pool(pool));
            }
        }
    }

    fn ensure_inner(
        &mut self,
        req: &ServiceRequest,
    ) -> Result<(Assignment, Option<Refusal>), Refusal> {
        let key = &req.key;
        let wanted = match req.wanted_families() {
            Ok(w) => w,
            Err(e) => {
                self.remove_record(key);
                return Err(e);
            }
        };
        if !req.requested_ips.is_empty()
            && let Err(detail) = check_families(req.family_policy, &wanted, &req.requested_ips)
        {
            self.remove_record(key);
            return Err(Refusal::InvalidRequest {
                detail: format!("requested IPs: {detail}"),
            });
        }
        let current = self.records.get(key).map(Record::ips);
        let is_holder = current.is_some();
        let current = current.unwrap_or_else(|| req.held_ips.clone());
        if !current.is_empty() {
            match self.check_holding(req, &wanted, &current) {
                Ok(valid) => {
                    if is_holder {
                        self.refresh_record(req, valid.pool, &wanted);
                    } else {
                        let pool = valid.pool.or_else(|| req.held_pool.clone());
                        self.install(req, pool.as_deref(), &current, &wanted);
                    }
                    let partial = self.complete(req, &wanted);
                    return Ok((self.assignment(key).unwrap_or_default(), partial));
                }
                Err(_) if is_holder => self.remove_record(key),
                Err(_) => {}
            }
        }
        let (pool, mut ips, partial) = self.allocate_fresh(req, &wanted)?;
        self.install(req, Some(&pool), &ips, &wanted);
        // Fresh addresses are never stale; order them as the record does.
        if wanted.first() == Some(&Family::V6) {
            ips.sort_by_key(|ip| ip.is_ipv4());
        } else {
            ips.sort_by_key(|ip| ip.is_ipv6());
        }
        let assignment = Assignment {
            pool,
            ips,
            stale: Vec::new(),
        };
        debug_assert_eq!(self.assignment(key).as_ref(), Some(&assignment));
        Ok((assignment, partial))
    }

    /// Whether addresses the Service holds (or held before a restart) still fit it.
    fn check_holding(
        &self,
        req: &ServiceRequest,
        wanted: &[Family],
        ips: &[IpAddr],
    ) -> Result<Valid, Refusal> {
        if !req.requested_ips.is_empty() {
            let mut a = req.requested_ips.clone();
            let mut b = ips.to_vec();
            a.sort();
            b.sort();
            if a != b {
                return Err(Refusal::HeldMismatch {
                    detail: format!("requested {a:?}, holds {b:?}"),
                });
            }
        }
        check_families(req.family_policy, wanted, ips)
            .map_err(|detail| Refusal::HeldMismatch { detail })?;
        let valid = self.check_pools(&Who::of(req), ips, true)?;
        self.check_sharing(req, ips)?;
        Ok(valid)
    }

    /// Pool rules for a set of addresses: each in a pool that admits the Service (and is the
    /// requested one, if any), not buggy there, all in one pool. With `holding`, an address in no
    /// pool is stale (kept or refused by the policy); otherwise it is outside every pool.
    fn check_pools(&self, who: &Who<'_>, ips: &[IpAddr], holding: bool) -> Result<Valid, Refusal> {
        let mut home_pool: Option<(IpAddr, &str)> = None;
        let mut stale = Vec::new();
        for &ip in ips {
            let Some(pool) = self.home(ip) else {
                if !holding {
                    return Err(Refusal::OutsidePools { ip });
                }
                if self.policy == StalePolicy::Reassign {
                    return Err(Refusal::RemovedFromPools { ip });
                }
                stale.push(ip);
                continue;
            };
            if pool.is_buggy(ip) {
                return Err(Refusal::BuggyIp {
                    ip,
                    pool: pool.name.clone(),
                });
            }
            order::admits(pool, who.key, who.namespace_labels, who.labels)?;
            if let Some(requested) = who.requested_pool
                && requested != pool.name
            {
                return Err(Refusal::PoolMismatch {
                    ip,
                    requested: requested.to_string(),
                    actual: pool.name.clone(),
                });
            }
            match home_pool {
                Some((first, name)) if name != pool.name => {
                    return Err(Refusal::DifferentPools {
                        first,
                        first_pool: name.to_string(),
                        second: ip,
                        second_pool: pool.name.clone(),
                    });
                }
                Some(_) => {}
                None => home_pool = Some((ip, &pool.name)),
            }
        }
        Ok(Valid {
            pool: home_pool.map(|(_, name)| name.to_string()),
            stale,
        })
    }

    fn check_sharing(&self, req: &ServiceRequest, ips: &[IpAddr]) -> Result<(), Refusal> {
        let ours = Sharing::of(req);
        for &ip in ips {
            for holder in self.index.holders(ip) {
                if *holder != req.key {
                    sharing::check(ip, ours.as_ref(), holder, self.sharing_of(holder))?;
                }
            }
        }
        Ok(())
    }

    /// PreferDualStack: adds a missing family from the assignment's own pool when possible.
    /// Returns why a family is still missing.
    fn complete(&mut self, req: &ServiceRequest, wanted: &[Family]) -> Option<Refusal> {
        if req.family_policy != FamilyPolicy::PreferDualStack || !req.requested_ips.is_empty() {
            return None;
        }
        let held = self.records.get(&req.key)?.ips();
        if wanted
            .iter()
            .all(|f| held.iter().any(|ip| Family::of(*ip) == *f))
        {
            return None;
        }
        let Some(pool) = held
            .iter()
            .find_map(|ip| self.home(*ip).map(|p| p.name.clone()))
        else {
            // Only stale addresses: no pool to complete from until the config changes.
            return held.first().map(|ip| Refusal::RemovedFromPools { ip: *ip });
        };
        let mut missing_reason = None;
        for &family in wanted {
            if held.iter().any(|ip| Family::of(*ip) == family) {
                continue;
            }
            match self.pick(&pool, family, req) {
                Ok(ip) => {
                    let sharing_key = req.sharing_key().map(str::to_string);
                    self.claim(&req.key, ip, sharing_key.as_deref());
                    if let Some(rec) = self.records.get_mut(&req.key) {
                        rec.set_ip(ip);
                    }
                }
                Err(reason) => missing_reason = missing_reason.or(Some(reason)),
            }
        }
        missing_reason
    }

    fn exhausted(&self, pool: &str, family: Family) -> Refusal {
        let (total, free) = self
            .free_set(pool, family)
            .map(|s| (s.total(), s.free()))
            .unwrap_or((0, 0));
        Refusal::PoolExhausted {
            pool: pool.to_string(),
            family,
            in_use: saturate(total.saturating_sub(free)),
            total: saturate(total),
        }
    }

    /// The address the Service would get from `pool` in `family`: an address compatible Services
    /// with its sharing key already use there, else the lowest free one.
    fn pick(&self, pool: &str, family: Family, req: &ServiceRequest) -> Result<IpAddr, Refusal> {
        let Some(p) = self.config.pools.get(pool) else {
            return Err(Refusal::UnknownPool {
                pool: pool.to_string(),
            });
        };
        if !p.offers(family) {
            return Err(Refusal::FamilyNotOffered {
                pool: pool.to_string(),
                family,
            });
        }
        // Why the first address used by the same sharing key could not be shared.
        let mut conflict = None;
        if let Some(ours) = Sharing::of(req)
            && let Some(ips) = self.shared.get(&ours.key)
        {
            for &ip in ips.keys() {
                if Family::of(ip) != family
                    || self.home(ip).map(|h| h.name.as_str()) != Some(pool)
                    || p.is_buggy(ip)
                {
                    continue;
                }
                let verdict = self
                    .index
                    .holders(ip)
                    .filter(|h| **h != req.key)
                    .try_for_each(|h| sharing::check(ip, Some(&ours), h, self.sharing_of(h)));
                match verdict {
                    Ok(()) => return Ok(ip),
                    Err(e) => conflict = conflict.or(Some(e)),
                }
            }
        }
        self.free_set(pool, family)
            .and_then(FreeSet::lowest)
            .and_then(|x| to_ip(family, x))
            // Exhausted: if an address with our key was in the way, that is the real cause.
            .ok_or_else(|| conflict.unwrap_or_else(|| self.exhausted(pool, family)))
    }

    /// Addresses from one pool: every wanted family when `all`, else at least one.
    fn try_pool(
        &self,
        pool: &Pool,
        req: &ServiceRequest,
        wanted: &[Family],
        all: bool,
    ) -> Result<(Vec<IpAddr>, Option<Refusal>), Refusal> {
        let mut got = Vec::new();
        let mut first_err: Option<Refusal> = None;
        for &family in wanted {
            match self.pick(&pool.name, family, req) {
                Ok(ip) => got.push(ip),
                Err(e) if all => return Err(e),
                // A family the pool lacks matters less than one it has but cannot give now
                // (exhausted, or a sharing conflict): report, and wait for, the latter.
                Err(e) => match &first_err {
                    None | Some(Refusal::FamilyNotOffered { .. }) => first_err = Some(e),
                    Some(_) => {}
                },
            }
        }
        if got.is_empty() {
            return Err(first_err.unwrap_or(Refusal::FamilyNotOffered {
                pool: pool.name.clone(),
                family: wanted.first().copied().unwrap_or(Family::V4),
            }));
        }
        Ok((got, first_err))
    }

    /// A new assignment: (pool, addresses, why a PreferDualStack family is missing).
    fn allocate_fresh(
        &self,
        req: &ServiceRequest,
        wanted: &[Family],
    ) -> Result<(String, Vec<IpAddr>, Option<Refusal>), Refusal> {
        if !req.requested_ips.is_empty() {
            let valid = self.check_pools(&Who::of(req), &req.requested_ips, false)?;
            self.check_sharing(req, &req.requested_ips)?;
            let pool = valid.pool.unwrap_or_default();
            return Ok((pool, req.requested_ips.clone(), None));
        }
        let prefer = req.family_policy == FamilyPolicy::PreferDualStack && wanted.len() > 1;
        if let Some(name) = &req.requested_pool {
            let Some(pool) = self.config.pools.get(name) else {
                return Err(Refusal::UnknownPool { pool: name.clone() });
            };
            order::admits_request(pool, req)?;
            let (ips, partial) = self.try_pool(pool, req, wanted, !prefer)?;
            return Ok((name.clone(), ips, partial));
        }
        if self.config.pools.is_empty() {
            return Err(Refusal::NoPools);
        }
        let (candidates, excluded) = order::auto_order(&self.config, req);
        if prefer {
            // First choice: a pool that gives both families.
            for pool in &candidates {
                if let Ok((ips, _)) = self.try_pool(pool, req, wanted, true) {
                    return Ok((pool.name.clone(), ips, None));
                }
            }
        }
        let mut attempts = Vec::new();
        for pool in &candidates {
            match self.try_pool(pool, req, wanted, !prefer) {
                Ok((ips, partial)) => return Ok((pool.name.clone(), ips, partial)),
                Err(reason) => attempts.push(PoolAttempt {
                    pool: pool.name.clone(),
                    reason,
                }),
            }
        }
        attempts.extend(excluded);
        if attempts.len() == 1
            && let Some(a) = attempts.pop()
        {
            return Err(a.reason);
        }
        Err(Refusal::NoPoolCouldServe { attempts })
    }
}
