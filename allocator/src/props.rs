//! Property tests over random sequences of create/update, delete, config change and restart, on
//! tiny pools that straddle `.255`/`.0` so exhaustion, sharing and avoidBuggyIPs all come up.
//!
//! A harness plays the reconciler: it keeps each Service's latest request, and after every step
//! re-ensures the Services the allocator says to retry, until there is nothing left to retry.
//! After every step it checks, against an oracle written independently of the allocator:
//! 1. no address is held by two Services that may not share it;
//! 2. every assigned address lies in a pool that allows the Service, or is reported stale
//!    (only under [`StalePolicy::Keep`], and only if no pool contains it);
//! 3. restoring a fresh allocator from the held addresses reproduces the same assignments and the
//!    same waiting Services (checked on each restart step and at the end);
//! 4. every pool's counters equal a recount from the assignments.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_config::selector::Labels;
use ferrolb_config::{Config, Family, IpRange, Pool, ServiceAllocation, is_buggy_ipv4, to_u128};
use proptest::prelude::*;

use super::*;

const POOLS: [&str; 3] = ["a", "b", "c"];

/// Address chunks: six IPv4 pairs around 10.0.0.255, four IPv6 pairs.
fn chunks() -> Vec<IpRange> {
    let v4 = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 250));
    let mut out = Vec::new();
    for i in 0..6 {
        let first = IpAddr::V4((v4 + 2 * i).into());
        let last = IpAddr::V4((v4 + 2 * i + 1).into());
        out.push(IpRange::new(first, last).unwrap());
    }
    let v6 = u128::from("fd00::".parse::<std::net::Ipv6Addr>().unwrap());
    for i in 0..4 {
        let first = IpAddr::V6((v6 + 2 * i).into());
        let last = IpAddr::V6((v6 + 2 * i + 1).into());
        out.push(IpRange::new(first, last).unwrap());
    }
    out
}

fn universe() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for c in chunks() {
        out.push(c.first());
        out.push(c.last());
    }
    out.push("192.168.0.1".parse().unwrap());
    out
}

#[derive(Clone, Debug)]
struct PoolSpec {
    auto_assign: bool,
    avoid_buggy: bool,
    /// None: no serviceAllocation; Some((priority, namespaces)).
    allocation: Option<(Option<i32>, Vec<&'static str>)>,
}

fn pool_spec() -> impl Strategy<Value = PoolSpec> {
    (
        prop::bool::weighted(0.8),
        any::<bool>(),
        prop::option::weighted(
            0.4,
            (
                prop::option::of(0i32..3),
                prop::sample::subsequence(vec!["n1", "n2"], 0..=2),
            ),
        ),
    )
        .prop_map(|(auto_assign, avoid_buggy, allocation)| PoolSpec {
            auto_assign,
            avoid_buggy,
            allocation,
        })
}

/// Chunk owners (None or a pool index) and each pool's settings.
fn config_strategy() -> impl Strategy<Value = Config> {
    (
        prop::collection::vec(prop::option::weighted(0.8, 0usize..3), 10),
        prop::collection::vec(pool_spec(), 3),
    )
        .prop_map(|(owners, specs)| {
            let chunks = chunks();
            let mut config = Config::default();
            for (i, spec) in specs.into_iter().enumerate() {
                let ranges: Vec<IpRange> = chunks
                    .iter()
                    .zip(&owners)
                    .filter(|(_, o)| **o == Some(i))
                    .map(|(c, _)| *c)
                    .collect();
                if ranges.is_empty() {
                    continue;
                }
                let name = POOLS[i].to_string();
                let allocation = spec.allocation.map(|(priority, ns)| ServiceAllocation {
                    priority,
                    namespaces: ns.into_iter().map(String::from).collect(),
                    ..Default::default()
                });
                config.pools.insert(
                    name.clone(),
                    Pool {
                        name,
                        labels: Labels::new(),
                        ranges,
                        auto_assign: spec.auto_assign,
                        avoid_buggy_ips: spec.avoid_buggy,
                        allocation,
                    },
                );
            }
            config
        })
}

fn service_key(i: usize) -> ServiceKey {
    ServiceKey::new(if i < 4 { "n1" } else { "n2" }, format!("s{i}"))
}

fn request_strategy() -> impl Strategy<Value = ServiceRequest> {
    use Protocol::*;
    let families = prop::sample::select(vec![
        vec![Family::V4],
        vec![Family::V6],
        vec![Family::V4, Family::V6],
        vec![Family::V6, Family::V4],
    ]);
    let policy = prop::sample::select(vec![
        FamilyPolicy::SingleStack,
        FamilyPolicy::PreferDualStack,
        FamilyPolicy::RequireDualStack,
    ]);
    (
        0usize..7,
        policy,
        families,
        prop::sample::subsequence(vec![(Tcp, 80), (Tcp, 443), (Udp, 53)], 0..=2),
        prop::sample::select(vec![None, Some("k1"), Some("k2")]),
        prop::bool::weighted(0.3),
        prop::sample::select(vec!["x", "y"]),
        prop::option::weighted(0.15, prop::sample::subsequence(universe(), 1..=2)),
        prop::option::weighted(0.15, prop::sample::select(vec!["a", "b", "c", "zz"])),
    )
        .prop_map(|(i, policy, families, ports, key, local, app, ips, pool)| {
            let k = service_key(i);
            let mut r = ServiceRequest::new(k.namespace(), k.name());
            r.family_policy = policy;
            r.families = families;
            r.ports = ports;
            r.sharing_key = key.map(String::from);
            if local {
                r.traffic_policy = TrafficPolicy::Local;
            }
            r.selector = BTreeMap::from([("app".to_string(), app.to_string())]);
            r.requested_ips = ips.unwrap_or_default();
            r.requested_pool = pool.map(String::from);
            r
        })
}

#[derive(Clone, Debug)]
enum Op {
    Ensure(ServiceRequest),
    Delete(usize),
    SetConfig(Config),
    Restart,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => request_strategy().prop_map(Op::Ensure),
        2 => (0usize..7).prop_map(Op::Delete),
        1 => config_strategy().prop_map(Op::SetConfig),
        1 => Just(Op::Restart),
    ]
}

struct Harness {
    alloc: Allocator,
    reqs: BTreeMap<ServiceKey, ServiceRequest>,
}

impl Harness {
    fn retry(&mut self, first: Vec<ServiceKey>) {
        let mut todo = first;
        for _ in 0..100 {
            for k in &todo {
                if let Some(r) = self.reqs.get(k) {
                    let _ = self.alloc.ensure(r);
                }
            }
            todo = self.alloc.take_retry();
            if todo.is_empty() {
                return;
            }
        }
        panic!("retries did not settle");
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Ensure(r) => {
                self.reqs.insert(r.key.clone(), r.clone());
                let _ = self.alloc.ensure(r);
                let again = self.alloc.take_retry();
                self.retry(again);
                // Idempotence: ensuring again changes nothing.
                let before = self.alloc.assignment(&r.key);
                let _ = self.alloc.ensure(r);
                prop_assert_eq!(
                    self.alloc.assignment(&r.key),
                    before,
                    "ensure is not idempotent"
                );
                prop_assert!(self.alloc.take_retry().is_empty());
            }
            Op::Delete(i) => {
                let k = service_key(*i);
                self.reqs.remove(&k);
                let retry = self.alloc.release(&k);
                prop_assert!(self.alloc.assignment(&k).is_none());
                self.retry(retry);
            }
            Op::SetConfig(c) => {
                let change = self.alloc.set_config(c.clone());
                self.retry(change.retry);
            }
            Op::Restart => {
                let restored = self.restored()?;
                self.alloc = restored;
            }
        }
        Ok(())
    }

    /// A fresh allocator restored from what the Services hold; checks it reproduces this one.
    fn restored(&self) -> Result<Allocator, TestCaseError> {
        let mut fresh = Allocator::new(self.alloc.config().clone(), self.alloc.stale_policy());
        let requests: Vec<ServiceRequest> = self
            .reqs
            .values()
            .map(|r| {
                let mut r = r.clone();
                if let Some(a) = self.alloc.assignment(&r.key) {
                    r.held_ips = a.ips;
                    r.held_pool = Some(a.pool);
                }
                r
            })
            .collect();
        let report = fresh.restore(&requests);
        prop_assert!(
            report.not_reclaimed.is_empty(),
            "{:?}",
            report.not_reclaimed
        );
        prop_assert_eq!(fresh.assignments(), self.alloc.assignments());
        prop_assert_eq!(fresh.pending(), self.alloc.pending());
        Ok(fresh)
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let config = self.alloc.config();
        let policy = self.alloc.stale_policy();
        let assignments = self.alloc.assignments();
        let home = |ip: IpAddr| config.pools.values().find(|p| p.contains(ip));
        let mut holders: BTreeMap<IpAddr, Vec<&ServiceRequest>> = BTreeMap::new();
        for (k, a) in &assignments {
            let Some(r) = self.reqs.get(k) else {
                return Err(TestCaseError::fail(format!(
                    "{k} holds {a:?} but was deleted"
                )));
            };
            // Families fit the policy.
            let fams: BTreeSet<Family> = a.ips.iter().map(|ip| Family::of(*ip)).collect();
            prop_assert_eq!(fams.len(), a.ips.len());
            prop_assert!(fams.iter().all(|f| r.families.contains(f)));
            match r.family_policy {
                FamilyPolicy::SingleStack => {
                    prop_assert_eq!(
                        a.ips.iter().map(|ip| Family::of(*ip)).collect::<Vec<_>>(),
                        vec![r.families[0]]
                    )
                }
                FamilyPolicy::RequireDualStack => prop_assert_eq!(a.ips.len(), 2),
                FamilyPolicy::PreferDualStack => prop_assert!(!a.ips.is_empty()),
            }
            if !r.requested_ips.is_empty() {
                let want: BTreeSet<IpAddr> = r.requested_ips.iter().copied().collect();
                prop_assert_eq!(a.ips.iter().copied().collect::<BTreeSet<_>>(), want);
            }
            let mut pools = BTreeSet::new();
            for ip in &a.ips {
                holders.entry(*ip).or_default().push(r);
                match home(*ip) {
                    None => {
                        prop_assert_eq!(policy, StalePolicy::Keep, "{} kept {} in no pool", k, ip);
                        prop_assert!(a.stale.contains(ip), "{} not reported stale", ip);
                    }
                    Some(p) => {
                        prop_assert!(!a.stale.contains(ip));
                        prop_assert_eq!(&p.name, &a.pool);
                        pools.insert(p.name.clone());
                        prop_assert!(!(p.avoid_buggy_ips && is_buggy_ipv4(*ip)), "{} buggy", ip);
                        if let Some(al) = &p.allocation {
                            prop_assert!(al.allows(k.namespace(), &r.namespace_labels, &r.labels));
                        }
                        if let Some(rp) = &r.requested_pool {
                            prop_assert_eq!(rp, &p.name);
                        }
                    }
                }
            }
            prop_assert!(pools.len() <= 1);
        }
        // 1. Sharing, pairwise, with an independent statement of the rule.
        for (ip, hs) in &holders {
            for (i, x) in hs.iter().enumerate() {
                for y in &hs[i + 1..] {
                    prop_assert!(may_share(x, y), "{} shared by {} and {}", ip, x.key, y.key);
                }
            }
        }
        // 4. Counters.
        for p in config.pools.values() {
            let c = self.alloc.pool_counters(&p.name);
            for family in [Family::V4, Family::V6] {
                let used = holders
                    .keys()
                    .filter(|ip| Family::of(**ip) == family && p.contains(**ip))
                    .count() as u64;
                let usable: u64 = p
                    .ranges
                    .iter()
                    .filter(|r| r.family() == family)
                    .map(|r| {
                        (to_u128(r.first())..=to_u128(r.last()))
                            .filter(|x| {
                                !(p.avoid_buggy_ips
                                    && family == Family::V4
                                    && matches!(x & 0xff, 0 | 0xff))
                            })
                            .count() as u64
                    })
                    .sum();
                let (assigned, available) = match family {
                    Family::V4 => (c.assigned_v4, c.available_v4),
                    Family::V6 => (c.assigned_v6, c.available_v6),
                };
                prop_assert_eq!(assigned, used, "pool {} {}", &p.name, family);
                prop_assert_eq!(available, usable - used, "pool {} {}", &p.name, family);
            }
        }
        // Every waiting Service is one the harness knows.
        for k in self.alloc.pending() {
            prop_assert!(self.reqs.contains_key(&k));
        }
        Ok(())
    }
}

fn may_share(x: &ServiceRequest, y: &ServiceRequest) -> bool {
    let key = |r: &ServiceRequest| r.sharing_key.clone().filter(|k| !k.is_empty());
    let backend = |r: &ServiceRequest| match r.traffic_policy {
        TrafficPolicy::Cluster => None,
        TrafficPolicy::Local => Some(r.selector.clone()),
    };
    let ports_x: BTreeSet<_> = x.ports.iter().collect();
    key(x).is_some()
        && key(x) == key(y)
        && backend(x) == backend(y)
        && y.ports.iter().all(|p| !ports_x.contains(p))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn random_operation_sequences_keep_the_invariants(
        keep in any::<bool>(),
        initial in config_strategy(),
        ops in prop::collection::vec(op_strategy(), 1..40),
    ) {
        let policy = if keep { StalePolicy::Keep } else { StalePolicy::Reassign };
        let mut h = Harness { alloc: Allocator::new(initial, policy), reqs: BTreeMap::new() };
        for op in &ops {
            h.step(op)?;
            h.check()?;
        }
        h.restored()?;
    }
}
