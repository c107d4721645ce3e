//! Table-driven tests of the allocator's rules, on tiny pools (/31, /127, /32, 3-address ranges)
//! so exhaustion and conflicts are easy to force.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_config::api::LabelSelector;
use ferrolb_config::selector::{Labels, Selector};
use ferrolb_config::{Config, Family, IpRange, Pool, ServiceAllocation};
use ipnet::IpNet;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

/// "10.0.0.0/31" or "10.0.0.1-10.0.0.3".
fn range(s: &str) -> IpRange {
    match s.split_once('-') {
        Some((a, b)) => IpRange::new(ip(a), ip(b)).unwrap(),
        None => IpRange::from_net(s.parse::<IpNet>().unwrap()),
    }
}

fn pool(name: &str, ranges: &[&str]) -> Pool {
    let mut ranges: Vec<IpRange> = ranges.iter().map(|r| range(r)).collect();
    ranges.sort();
    Pool {
        name: name.into(),
        labels: Labels::new(),
        ranges,
        auto_assign: true,
        avoid_buggy_ips: false,
        allocation: None,
    }
}

fn manual(mut p: Pool) -> Pool {
    p.auto_assign = false;
    p
}

fn restricted(mut p: Pool, priority: Option<i32>, namespaces: &[&str]) -> Pool {
    p.allocation = Some(ServiceAllocation {
        priority,
        namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    });
    p
}

fn config(pools: Vec<Pool>) -> Config {
    Config {
        pools: pools.into_iter().map(|p| (p.name.clone(), p)).collect(),
        ..Default::default()
    }
}

fn svc(ns: &str, name: &str) -> ServiceRequest {
    ServiceRequest::new(ns, name)
}

fn key(ns: &str, name: &str) -> ServiceKey {
    ServiceKey::new(ns, name)
}

fn shared(name: &str, sharing_key: &str, ports: &[(Protocol, u16)]) -> ServiceRequest {
    let mut r = svc("ns", name);
    r.sharing_key = Some(sharing_key.into());
    r.ports = ports.to_vec();
    r
}

fn dual(name: &str, policy: FamilyPolicy, families: &[Family]) -> ServiceRequest {
    let mut r = svc("ns", name);
    r.family_policy = policy;
    r.families = families.to_vec();
    r
}

fn got(a: &mut Allocator, r: &ServiceRequest) -> Vec<IpAddr> {
    match a.ensure(r) {
        Ok(x) => x.ips,
        Err(e) => panic!("{} refused: {e}", r.key),
    }
}

fn refused(a: &mut Allocator, r: &ServiceRequest) -> Refusal {
    match a.ensure(r) {
        Ok(x) => panic!("{} unexpectedly got {:?}", r.key, x),
        Err(e) => e,
    }
}

fn assert_msg(e: &Refusal, want: &str) {
    assert!(
        e.to_string().contains(want),
        "`{e}` should contain `{want}`"
    );
    assert!(
        !e.to_string().to_lowercase().contains("no available"),
        "generic message: {e}"
    );
}

#[test]
fn lowest_free_address_first_then_exhaustion_names_the_pool() {
    let mut a = Allocator::new(
        config(vec![pool("tiny", &["10.0.0.0/31"])]),
        StalePolicy::Keep,
    );
    assert_eq!(got(&mut a, &svc("ns", "a")), ips(&["10.0.0.0"]));
    assert_eq!(got(&mut a, &svc("ns", "b")), ips(&["10.0.0.1"]));
    let e = refused(&mut a, &svc("ns", "c"));
    assert_eq!(
        e,
        Refusal::PoolExhausted {
            pool: "tiny".into(),
            family: Family::V4,
            in_use: 2,
            total: 2
        }
    );
    assert_msg(
        &e,
        "pool tiny is exhausted for IPv4: 2 of 2 usable addresses in use",
    );
    assert_eq!(a.pending(), vec![key("ns", "c")]);
    // Freeing the lowest address gives it to the next allocation.
    a.release(&key("ns", "a"));
    assert_eq!(got(&mut a, &svc("ns", "c")), ips(&["10.0.0.0"]));
    assert!(a.pending().is_empty());
}

#[test]
fn ensure_is_idempotent_and_never_moves_a_valid_address() {
    let mut a = Allocator::new(
        config(vec![pool("p", &["10.0.0.1-10.0.0.3"])]),
        StalePolicy::Keep,
    );
    let (x, y) = (svc("ns", "x"), svc("ns", "y"));
    assert_eq!(got(&mut a, &x), ips(&["10.0.0.1"]));
    assert_eq!(got(&mut a, &y), ips(&["10.0.0.2"]));
    a.release(&x.key);
    // y keeps .2 even though .1 is now lower.
    for _ in 0..3 {
        assert_eq!(got(&mut a, &y), ips(&["10.0.0.2"]));
    }
    assert_eq!(a.pool_counters("p").assigned_v4, 1);
}

#[test]
fn requested_ips_are_honoured_exactly_or_refused_with_the_reason() {
    let mut buggy = pool("buggy", &["10.0.2.0/24"]);
    buggy.avoid_buggy_ips = true;
    let cfg = config(vec![
        pool("a", &["10.0.0.0/30", "fd00::/127"]),
        manual(pool("b", &["10.0.1.0/31", "fd01::/127"])),
        buggy,
        restricted(pool("only-db", &["10.0.3.0/31"]), None, &["db"]),
    ]);
    let mut a = Allocator::new(cfg, StalePolicy::Keep);
    let mut holder = svc("ns", "holder");
    holder.requested_ips = ips(&["10.0.0.3"]);
    assert_eq!(got(&mut a, &holder), ips(&["10.0.0.3"]));

    // (requested IPs, policy, families, requested pool, expected IPs or message)
    type Case<'a> = (
        &'a [&'a str],
        FamilyPolicy,
        &'a [Family],
        Option<&'a str>,
        Result<&'a [&'a str], &'a str>,
    );
    use Family::*;
    use FamilyPolicy::*;
    let cases: Vec<Case> = vec![
        (&["10.0.0.2"], SingleStack, &[V4], None, Ok(&["10.0.0.2"])),
        // autoAssign: false pools serve requested addresses.
        (&["10.0.1.1"], SingleStack, &[V4], None, Ok(&["10.0.1.1"])),
        (
            &["10.0.1.1"],
            SingleStack,
            &[V4],
            Some("b"),
            Ok(&["10.0.1.1"]),
        ),
        (
            &["fd00::1", "10.0.0.1"],
            RequireDualStack,
            &[V6, V4],
            None,
            Ok(&["fd00::1", "10.0.0.1"]),
        ),
        (
            &["192.168.0.1"],
            SingleStack,
            &[V4],
            None,
            Err("IP 192.168.0.1 is outside every address pool"),
        ),
        (
            &["10.0.2.0"],
            SingleStack,
            &[V4],
            None,
            Err("IP 10.0.2.0 ends in .0 or .255 and pool buggy avoids buggy IPs"),
        ),
        (
            &["10.0.2.255"],
            SingleStack,
            &[V4],
            None,
            Err("pool buggy avoids buggy IPs"),
        ),
        (
            &["10.0.0.2"],
            SingleStack,
            &[V4],
            Some("b"),
            Err("IP 10.0.0.2 belongs to pool a, but the service asks for pool b"),
        ),
        (
            &["10.0.0.3"],
            SingleStack,
            &[V4],
            None,
            Err("IP 10.0.0.3 is held by service ns/holder"),
        ),
        (
            &["10.0.3.0"],
            SingleStack,
            &[V4],
            None,
            Err("pool only-db does not allow namespace ns"),
        ),
        (
            &["fd01::1", "10.0.0.1"],
            PreferDualStack,
            &[V6, V4],
            None,
            Err("are in different pools"),
        ),
        (
            &["fd00::1"],
            SingleStack,
            &[V4],
            None,
            Err("invalid request: requested IPs: fd00::1 is IPv6, but the service takes IPv4"),
        ),
        (
            &["10.0.0.1", "10.0.0.2"],
            SingleStack,
            &[V4],
            None,
            Err("two IPv4 addresses"),
        ),
        (
            &["10.0.0.1"],
            RequireDualStack,
            &[V4, V6],
            None,
            Err("RequireDualStack needs an IPv4 and an IPv6 address"),
        ),
    ];
    for (i, (req_ips, policy, families, req_pool, want)) in cases.into_iter().enumerate() {
        let mut r = dual(&format!("s{i}"), policy, families);
        r.requested_ips = ips(req_ips);
        r.requested_pool = req_pool.map(String::from);
        let out = a.ensure(&r);
        match (want, out) {
            (Ok(w), Ok(g)) => assert_eq!(g.ips, ips(w), "case {i}"),
            (Err(w), Err(e)) => assert_msg(&e, w),
            (w, g) => panic!("case {i}: want {w:?}, got {g:?}"),
        }
        a.release(&r.key);
    }
    // Requested addresses are never "completed" to dual stack.
    let mut r = dual("pinned", PreferDualStack, &[V4, V6]);
    r.requested_ips = ips(&["10.0.0.0"]);
    assert_eq!(got(&mut a, &r), ips(&["10.0.0.0"]));
    assert!(!a.is_pending(&r.key));
    // Changing the requested address moves the service to exactly that address.
    r.requested_ips = ips(&["10.0.0.1"]);
    assert_eq!(got(&mut a, &r), ips(&["10.0.0.1"]));
    assert_eq!(
        a.pool_counters("a").assigned_v4,
        2,
        "the old address was released"
    );
}

#[test]
fn address_pool_annotation_picks_the_pool() {
    let cfg = config(vec![
        pool("first", &["10.0.0.0/31"]),
        manual(pool("manual", &["10.0.1.0/31"])),
        restricted(pool("db-only", &["10.0.2.0/31"]), Some(1), &["db"]),
    ]);
    let mut a = Allocator::new(cfg, StalePolicy::Keep);
    let cases: &[(&str, &str, Result<&str, &str>)] = &[
        ("ns", "manual", Ok("10.0.1.0")),
        ("ns", "first", Ok("10.0.0.0")),
        ("db", "db-only", Ok("10.0.2.0")),
        (
            "ns",
            "db-only",
            Err("pool db-only does not allow namespace ns"),
        ),
        ("ns", "nope", Err("pool nope does not exist")),
    ];
    for (i, (ns, p, want)) in cases.iter().enumerate() {
        let mut r = svc(ns, &format!("s{i}"));
        r.requested_pool = Some(p.to_string());
        match (want, a.ensure(&r)) {
            (Ok(w), Ok(g)) => {
                assert_eq!(g.ips, ips(&[w]), "case {i}");
                assert_eq!(g.pool, *p);
            }
            (Err(w), Err(e)) => assert_msg(&e, w),
            (w, g) => panic!("case {i}: want {w:?}, got {g:?}"),
        }
    }
    // Changing the annotation moves the service to the new pool.
    let mut r = svc("ns", "s1");
    r.requested_pool = Some("manual".into());
    let moved = a.ensure(&r).unwrap();
    assert_eq!(
        (moved.pool.as_str(), moved.ips),
        ("manual", ips(&["10.0.1.1"]))
    );
    assert_eq!(a.pool_counters("first").assigned_v4, 0);
}

#[test]
fn automatic_order_is_priority_then_name_and_skips_manual_pools() {
    let cfg = config(vec![
        pool("a-open", &["10.0.9.0/31"]),
        manual(pool("b-manual", &["10.0.8.0/31"])),
        restricted(pool("p-unset", &["10.0.3.0/31"]), None, &["web"]),
        restricted(pool("p5", &["10.0.2.0/32"]), Some(5), &["web"]),
        restricted(pool("p1", &["10.0.1.0/32"]), Some(1), &["web"]),
        restricted(pool("p0-db", &["10.0.0.0/31"]), Some(0), &["db"]),
    ]);
    let mut a = Allocator::new(cfg, StalePolicy::Keep);
    let want = [
        "10.0.1.0", "10.0.2.0", "10.0.3.0", "10.0.3.1", "10.0.9.0", "10.0.9.1",
    ];
    for (i, w) in want.iter().enumerate() {
        assert_eq!(got(&mut a, &svc("web", &format!("s{i}"))), ips(&[w]));
    }
    let e = refused(&mut a, &svc("web", "late"));
    let causes: Vec<String> = e.causes().iter().map(|c| c.to_string()).collect();
    assert_eq!(
        causes,
        [
            "pool p1 is exhausted for IPv4: 1 of 1 usable addresses in use",
            "pool p5 is exhausted for IPv4: 1 of 1 usable addresses in use",
            "pool p-unset is exhausted for IPv4: 2 of 2 usable addresses in use",
            "pool a-open is exhausted for IPv4: 2 of 2 usable addresses in use",
            "pool b-manual has autoAssign: false (ask for it with ferrolb.io/address-pool)",
            "pool p0-db does not allow namespace web",
        ]
    );
    // Another namespace goes straight to its own pool.
    assert_eq!(got(&mut a, &svc("db", "x")), ips(&["10.0.0.0"]));
}

#[test]
fn selectors_admit_by_namespace_labels_and_service_labels() {
    let sel = |k: &str, v: &str| {
        Selector::compile(&LabelSelector {
            match_labels: Some(BTreeMap::from([(k.to_string(), v.to_string())])),
            match_expressions: None,
        })
        .unwrap()
    };
    let mut p = pool("prod", &["10.0.0.0/31"]);
    p.allocation = Some(ServiceAllocation {
        namespace_selectors: vec![sel("env", "prod")],
        service_selectors: vec![sel("tier", "web")],
        ..Default::default()
    });
    let mut a = Allocator::new(config(vec![p]), StalePolicy::Keep);
    let mut r = svc("shop", "front");
    let e = refused(&mut a, &r);
    assert_msg(&e, "pool prod does not allow namespace shop");
    r.namespace_labels = Labels::from([("env".into(), "prod".into())]);
    let e = refused(&mut a, &r);
    assert_msg(
        &e,
        "pool prod's service selectors do not match service shop/front",
    );
    r.labels = Labels::from([("tier".into(), "web".into())]);
    assert_eq!(got(&mut a, &r), ips(&["10.0.0.0"]));
    // Labels change so the pool no longer admits the service: its address is released.
    r.labels.clear();
    refused(&mut a, &r);
    assert!(a.assignment(&r.key).is_none());
    assert_eq!(a.pool_counters("prod").assigned_v4, 0);
}

#[test]
fn avoid_buggy_ips_skips_dot_zero_and_dot_255() {
    let mut p = pool("edge", &["10.0.0.254-10.0.1.1"]);
    p.avoid_buggy_ips = true;
    let mut a = Allocator::new(config(vec![p]), StalePolicy::Keep);
    assert_eq!(a.pool_counters("edge").available_v4, 2);
    assert_eq!(got(&mut a, &svc("ns", "a")), ips(&["10.0.0.254"]));
    assert_eq!(got(&mut a, &svc("ns", "b")), ips(&["10.0.1.1"]));
    let e = refused(&mut a, &svc("ns", "c"));
    assert_msg(&e, "2 of 2 usable addresses in use");
}

#[test]
fn sharing_rules_with_a_single_address_pool() {
    use Protocol::*;
    let mut a = Allocator::new(
        config(vec![pool("one", &["10.0.0.1/32"])]),
        StalePolicy::Keep,
    );
    assert_eq!(
        got(&mut a, &shared("a", "k", &[(Tcp, 80)])),
        ips(&["10.0.0.1"])
    );
    assert_eq!(
        got(&mut a, &shared("b", "k", &[(Tcp, 443), (Udp, 80)])),
        ips(&["10.0.0.1"])
    );
    let mut local_x = shared("lx", "local", &[(Tcp, 1)]);
    local_x.traffic_policy = TrafficPolicy::Local;
    local_x.selector = BTreeMap::from([("app".into(), "x".into())]);

    // (request, expected message)
    let mut wrong_policy = shared("e", "k", &[(Tcp, 8080)]);
    wrong_policy.traffic_policy = TrafficPolicy::Local;
    let mut unshared = svc("ns", "f");
    unshared.requested_ips = ips(&["10.0.0.1"]);
    let mut other_key_requested = shared("g", "other", &[(Tcp, 9)]);
    other_key_requested.requested_ips = ips(&["10.0.0.1"]);
    let cases: Vec<(ServiceRequest, &str)> = vec![
        (
            shared("c", "k", &[(Tcp, 80)]),
            "port TCP/80 on IP 10.0.0.1 is already used by service ns/a",
        ),
        (
            shared("c2", "k", &[(Udp, 80)]),
            "port UDP/80 on IP 10.0.0.1 is already used by service ns/b",
        ),
        (
            shared("d", "other", &[(Tcp, 9)]),
            "pool one is exhausted for IPv4: 1 of 1",
        ),
        (
            other_key_requested,
            "IP 10.0.0.1 is held by service ns/a with sharing key \"k\", not \"other\"",
        ),
        (
            wrong_policy,
            "externalTrafficPolicy Cluster, incompatible with Local",
        ),
        (svc("ns", "nokey"), "pool one is exhausted for IPv4: 1 of 1"),
        (
            unshared,
            "IP 10.0.0.1 is held by service ns/a (set the same ferrolb.io/allow-shared-ip key on both to share it)",
        ),
    ];
    for (r, want) in &cases {
        let e = refused(&mut a, r);
        assert_msg(&e, want);
    }
    // A shared address counts once.
    assert_eq!(a.pool_counters("one").assigned_v4, 1);
    // Releasing a makes the services blocked by a eligible at once.
    let retry = a.release(&key("ns", "a"));
    assert!(retry.contains(&key("ns", "c")), "{retry:?}");
    assert!(retry.contains(&key("ns", "g")), "{retry:?}");
    assert_eq!(
        got(&mut a, &shared("c", "k", &[(Tcp, 80)])),
        ips(&["10.0.0.1"])
    );
}

#[test]
fn local_services_share_only_with_an_identical_selector() {
    use Protocol::*;
    let mut a = Allocator::new(
        config(vec![pool("one", &["fd00::1/128"])]),
        StalePolicy::Keep,
    );
    let local = |name: &str, port: u16, app: &str| {
        let mut r = shared(name, "k", &[(Tcp, port)]);
        r.families = vec![Family::V6];
        r.traffic_policy = TrafficPolicy::Local;
        r.selector = BTreeMap::from([("app".into(), app.into())]);
        r
    };
    assert_eq!(got(&mut a, &local("a", 80, "web")), ips(&["fd00::1"]));
    assert_eq!(got(&mut a, &local("b", 443, "web")), ips(&["fd00::1"]));
    let e = refused(&mut a, &local("c", 8080, "api"));
    assert_msg(
        &e,
        "Local services share only with an identical pod selector",
    );
    assert_eq!(a.pool_counters("one").assigned_v6, 1);
}

#[test]
fn sharing_prefers_an_address_already_used_by_the_key() {
    use Protocol::*;
    let mut a = Allocator::new(config(vec![pool("p", &["10.0.0.0/29"])]), StalePolicy::Keep);
    assert_eq!(got(&mut a, &svc("ns", "plain")), ips(&["10.0.0.0"]));
    assert_eq!(
        got(&mut a, &shared("a", "k", &[(Tcp, 80)])),
        ips(&["10.0.0.1"])
    );
    assert_eq!(
        got(&mut a, &shared("b", "j", &[(Tcp, 80)])),
        ips(&["10.0.0.2"])
    );
    assert_eq!(
        got(&mut a, &shared("c", "k", &[(Tcp, 443)])),
        ips(&["10.0.0.1"])
    );
    // A port clash makes it take a fresh address instead.
    assert_eq!(
        got(&mut a, &shared("d", "k", &[(Tcp, 80)])),
        ips(&["10.0.0.3"])
    );
    assert_eq!(
        got(&mut a, &shared("e", "k", &[(Tcp, 443), (Tcp, 22)])),
        ips(&["10.0.0.3"])
    );
    // A sole holder may change its key; the new key then co-locates there.
    let mut b = shared("b", "k2", &[(Tcp, 80)]);
    assert_eq!(got(&mut a, &b), ips(&["10.0.0.2"]));
    assert_eq!(
        got(&mut a, &shared("f", "k2", &[(Tcp, 81)])),
        ips(&["10.0.0.2"])
    );
    // Now b shares with f: changing b's key again is no longer valid, so b moves.
    b.sharing_key = Some("k3".into());
    assert_eq!(got(&mut a, &b), ips(&["10.0.0.4"]));
}

#[test]
fn dual_stack_policies() {
    use Family::*;
    use FamilyPolicy::*;
    let cfg = config(vec![
        pool("ds", &["10.0.0.0/31", "fd00::1/128"]),
        pool("v4only", &["10.0.1.0/31"]),
    ]);
    let mut a = Allocator::new(cfg, StalePolicy::Keep);
    // RequireDualStack: both, from one pool, preferred family first.
    let s1 = dual("s1", RequireDualStack, &[V6, V4]);
    assert_eq!(got(&mut a, &s1), ips(&["fd00::1", "10.0.0.0"]));
    // RequireDualStack: both or nothing.
    let e = refused(&mut a, &dual("s2", RequireDualStack, &[V4, V6]));
    assert_msg(&e, "pool ds is exhausted for IPv6: 1 of 1");
    assert_msg(&e, "pool v4only offers no IPv6 addresses");
    assert_eq!(a.pool_counters("ds").assigned_v4, 1, "s2 took nothing");
    // PreferDualStack: no pool gives both, so the first able pool gives what it can.
    let s3 = dual("s3", PreferDualStack, &[V4, V6]);
    assert_eq!(got(&mut a, &s3), ips(&["10.0.0.1"]));
    assert!(a.is_pending(&s3.key), "waiting to complete");
    assert!(a.pending_reasons()[1].2, "partial");
    // Freeing s1 lets s3 add the missing family from the same pool, keeping its IPv4 address.
    let retry = a.release(&s1.key);
    assert!(
        retry.contains(&s3.key) && retry.contains(&key("ns", "s2")),
        "{retry:?}"
    );
    assert_eq!(got(&mut a, &s3), ips(&["10.0.0.1", "fd00::1"]));
    assert!(!a.is_pending(&s3.key));
    // SingleStack takes ipFamilies[0] only.
    let mut s4 = dual("s4", SingleStack, &[V6, V4]);
    s4.requested_pool = Some("v4only".into());
    assert_msg(
        &refused(&mut a, &s4),
        "pool v4only offers no IPv6 addresses",
    );
    s4.families = vec![V4, V6];
    assert_eq!(got(&mut a, &s4), ips(&["10.0.1.0"]));
    // PreferDualStack takes both when a pool can.
    let mut b = Allocator::new(
        config(vec![pool("ds", &["10.0.0.0/31", "fd00::/127"])]),
        StalePolicy::Keep,
    );
    assert_eq!(
        got(&mut b, &dual("x", PreferDualStack, &[V6, V4])),
        ips(&["fd00::", "10.0.0.0"])
    );
    // Malformed family requests.
    assert_msg(
        &refused(&mut b, &dual("y", RequireDualStack, &[V4])),
        "RequireDualStack needs both",
    );
    assert_msg(
        &refused(&mut b, &dual("y", SingleStack, &[])),
        "ipFamilies is empty",
    );
}

#[test]
fn prefer_dual_stack_prefers_a_pool_that_gives_both() {
    use Family::*;
    let cfg = config(vec![
        pool("a-v4", &["10.0.0.0/31"]),
        pool("b-ds", &["10.0.1.0/31", "fd00::/127"]),
    ]);
    let mut a = Allocator::new(cfg, StalePolicy::Keep);
    let r = dual("x", FamilyPolicy::PreferDualStack, &[V4, V6]);
    let out = a.ensure(&r).unwrap();
    assert_eq!(
        (out.pool.as_str(), out.ips),
        ("b-ds", ips(&["10.0.1.0", "fd00::"]))
    );
}

#[test]
fn release_on_delete_or_type_change_returns_whom_to_retry() {
    let cfg = config(vec![
        pool("a", &["10.0.0.0/32"]),
        pool("b", &["fd00::/128"]),
    ]);
    let mut a = Allocator::new(cfg, StalePolicy::Keep);
    let holder = svc("ns", "holder");
    got(&mut a, &holder);
    let waiting_v4 = svc("ns", "w4");
    refused(&mut a, &waiting_v4);
    let mut v6 = svc("ns", "v6");
    v6.families = vec![Family::V6];
    got(&mut a, &v6);
    let mut waiting_v6 = svc("ns", "w6");
    waiting_v6.families = vec![Family::V6];
    refused(&mut a, &waiting_v6);
    // Releasing the IPv6 holder wakes only the IPv6 waiter (pool b), not the IPv4 one.
    assert_eq!(a.release(&v6.key), vec![waiting_v6.key.clone()]);
    // "Type changed away from LoadBalancer" is a release too.
    assert_eq!(a.release(&holder.key), vec![waiting_v4.key.clone()]);
    assert!(a.assignment(&holder.key).is_none());
    assert_eq!(
        a.pool_counters("a"),
        PoolCounters {
            available_v4: 1,
            ..Default::default()
        }
    );
    // Releasing twice, or an unknown service, is harmless.
    assert!(a.release(&holder.key).is_empty());
    // A released pending service is forgotten.
    a.release(&waiting_v4.key);
    assert!(!a.is_pending(&waiting_v4.key));
}

#[test]
fn restart_reclaims_held_addresses_before_any_allocation() {
    let cfg = config(vec![pool("p", &["10.0.0.0/31"])]);
    let mut a = Allocator::new(cfg, StalePolicy::Keep);
    // "a-new" sorts first and holds nothing; "z-old" holds .0 from before the restart.
    let new = svc("ns", "a-new");
    let mut old = svc("ns", "z-old");
    old.held_ips = ips(&["10.0.0.0"]);
    old.held_pool = Some("p".into());
    // Two services claim .1 without sharing: the first by key keeps it.
    let mut dup1 = svc("ns", "m-dup1");
    dup1.held_ips = ips(&["10.0.0.1"]);
    let mut dup2 = svc("ns", "m-dup2");
    dup2.held_ips = ips(&["10.0.0.1"]);
    let report = a.restore(&[new.clone(), old.clone(), dup2.clone(), dup1.clone()]);
    assert_eq!(report.reclaimed, vec![dup1.key.clone(), old.key.clone()]);
    assert_eq!(report.not_reclaimed.len(), 1);
    assert_msg(
        &report.not_reclaimed[0].1,
        "IP 10.0.0.1 is held by service ns/m-dup1",
    );
    assert_eq!(a.assignment(&old.key).unwrap().ips, ips(&["10.0.0.0"]));
    assert_eq!(a.assignment(&dup1.key).unwrap().ips, ips(&["10.0.0.1"]));
    assert!(report.outcomes[&new.key].is_err());
    assert!(report.outcomes[&dup2.key].is_err());
    assert_eq!(a.pending(), vec![new.key.clone(), dup2.key.clone()]);
    // A held address the config no longer allows is reported, and the service gets a new one.
    let mut b = Allocator::new(
        config(vec![pool("p", &["10.0.0.0/31"])]),
        StalePolicy::Reassign,
    );
    let mut gone = svc("ns", "gone");
    gone.held_ips = ips(&["192.168.0.1"]);
    let report = b.restore(&[gone.clone()]);
    assert_msg(
        &report.not_reclaimed[0].1,
        "IP 192.168.0.1 was removed from every address pool",
    );
    assert_eq!(
        report.outcomes[&gone.key].as_ref().unwrap().ips,
        ips(&["10.0.0.0"])
    );
    // Under Keep, the same address is kept and reported stale.
    let mut c = Allocator::new(config(vec![pool("p", &["10.0.0.0/31"])]), StalePolicy::Keep);
    gone.held_pool = Some("old".into());
    let report = c.restore(&[gone.clone()]);
    assert_eq!(
        report.stale,
        vec![(gone.key.clone(), ips(&["192.168.0.1"]))]
    );
    let kept = c.assignment(&gone.key).unwrap();
    assert_eq!(
        (kept.pool.as_str(), kept.ips, kept.stale),
        ("old", ips(&["192.168.0.1"]), ips(&["192.168.0.1"]))
    );
}

#[test]
fn ensure_with_held_addresses_and_no_record_claims_them() {
    let mut a = Allocator::new(config(vec![pool("p", &["10.0.0.0/30"])]), StalePolicy::Keep);
    let mut r = svc("ns", "s");
    r.held_ips = ips(&["10.0.0.2"]);
    assert_eq!(got(&mut a, &r), ips(&["10.0.0.2"]));
    assert_eq!(got(&mut a, &svc("ns", "t")), ips(&["10.0.0.0"]));
}

#[test]
fn config_change_keeps_or_reports_stale_addresses_per_policy() {
    let before = config(vec![
        pool("p", &["10.0.0.0/31"]),
        pool("q", &["10.0.1.0/32"]),
    ]);
    let after = config(vec![
        pool("p", &["10.0.0.1/32"]),
        pool("q", &["10.0.1.0/32"]),
    ]);
    for policy in [StalePolicy::Keep, StalePolicy::Reassign] {
        let mut a = Allocator::new(before.clone(), policy);
        let (s0, s1, waiting) = (svc("ns", "s0"), svc("ns", "s1"), svc("ns", "w"));
        got(&mut a, &s0);
        got(&mut a, &s1);
        got(&mut a, &svc("ns", "s2")); // q
        refused(&mut a, &waiting);
        let change = a.set_config(after.clone());
        match policy {
            StalePolicy::Keep => {
                assert_eq!(change.stale, vec![(s0.key.clone(), ips(&["10.0.0.0"]))]);
                assert!(change.released.is_empty());
                let kept = got(&mut a, &s0);
                assert_eq!(kept, ips(&["10.0.0.0"]));
                assert_eq!(a.assignment(&s0.key).unwrap().stale, ips(&["10.0.0.0"]));
                assert_eq!(
                    a.pool_counters("p").assigned_v4,
                    1,
                    "stale addresses are in no pool"
                );
                // Putting the address back into a pool counts it there again, unmoved.
                a.set_config(before.clone());
                assert_eq!(a.pool_counters("p").assigned_v4, 2);
                assert!(a.assignment(&s0.key).unwrap().stale.is_empty());
            }
            StalePolicy::Reassign => {
                assert!(change.stale.is_empty());
                assert_eq!(change.released.len(), 1);
                assert_msg(
                    &change.released[0].2,
                    "IP 10.0.0.0 was removed from every address pool",
                );
                assert!(a.assignment(&s0.key).is_none());
                assert_msg(&refused(&mut a, &s0), "no pool could serve the service");
            }
        }
        assert!(
            change.retry.contains(&waiting.key),
            "waiting services are retried"
        );
        assert_eq!(
            got(&mut a, &s1),
            ips(&["10.0.0.1"]),
            "unaffected services keep theirs"
        );
    }
}

#[test]
fn config_change_releases_what_it_no_longer_allows_and_follows_moved_addresses() {
    let before = config(vec![
        pool("p", &["10.0.0.1-10.0.0.4"]),
        pool("q", &["10.0.1.255-10.0.2.1"]),
    ]);
    let mut a = Allocator::new(before, StalePolicy::Keep);
    let (web, db, edge, moved) = (
        svc("web", "s"),
        svc("db", "s"),
        svc("ns", "edge"),
        svc("ns", "moved"),
    );
    let mut buggy = svc("ns", "buggy");
    buggy.requested_pool = Some("q".into());
    assert_eq!(got(&mut a, &web), ips(&["10.0.0.1"]));
    assert_eq!(got(&mut a, &db), ips(&["10.0.0.2"]));
    assert_eq!(got(&mut a, &edge), ips(&["10.0.0.3"]));
    assert_eq!(got(&mut a, &moved), ips(&["10.0.0.4"]));
    assert_eq!(got(&mut a, &buggy), ips(&["10.0.1.255"]));
    // p now admits only namespaces db and ns; .4 moved to a new pool r; q avoids buggy IPs.
    let p = restricted(pool("p", &["10.0.0.1-10.0.0.3"]), None, &["db", "ns"]);
    let mut q = pool("q", &["10.0.1.255-10.0.2.1"]);
    q.avoid_buggy_ips = true;
    let change = a.set_config(config(vec![p, q, pool("r", &["10.0.0.4/32"])]));
    let released: BTreeMap<ServiceKey, String> = change
        .released
        .iter()
        .map(|(k, _, r)| (k.clone(), r.to_string()))
        .collect();
    assert_eq!(
        released,
        BTreeMap::from([
            (
                buggy.key.clone(),
                "IP 10.0.1.255 ends in .0 or .255 and pool q avoids buggy IPs".to_string()
            ),
            (
                web.key.clone(),
                "pool p does not allow namespace web".to_string()
            ),
        ])
    );
    assert!(change.stale.is_empty());
    // Released services are retried; they get a new address or a reason.
    assert!(change.retry.contains(&web.key) && change.retry.contains(&buggy.key));
    assert_eq!(got(&mut a, &buggy), ips(&["10.0.2.1"]));
    assert_msg(
        &refused(&mut a, &web),
        "pool p does not allow namespace web",
    );
    // Still-valid addresses did not move; a moved address follows its pool.
    assert_eq!(got(&mut a, &db), ips(&["10.0.0.2"]));
    assert_eq!(got(&mut a, &edge), ips(&["10.0.0.3"]));
    let m = a.assignment(&moved.key).unwrap();
    assert_eq!((m.pool.as_str(), m.ips), ("r", ips(&["10.0.0.4"])));
    assert_eq!(a.pool_counters("r").assigned_v4, 1);
    assert_eq!(
        a.pool_counters("p"),
        PoolCounters {
            assigned_v4: 2,
            available_v4: 1,
            ..Default::default()
        }
    );
}

#[test]
fn pool_counters_saturate_and_ignore_pool_size() {
    let cfg = config(vec![
        pool("huge", &["10.0.0.0/8", "fd00::/64", "8000::/1"]),
        pool("small", &["192.168.0.0/28"]),
    ]);
    let mut a = Allocator::new(cfg, StalePolicy::Keep);
    let c = a.pool_counters("huge");
    assert_eq!(c.available_v4, 1 << 24);
    assert_eq!(c.available_v6, i64::MAX as u64);
    let mut r = svc("ns", "v6");
    r.families = vec![Family::V6];
    r.requested_pool = Some("huge".into());
    assert_eq!(got(&mut a, &r), ips(&["8000::"]));
    assert_eq!(a.pool_counters("huge").assigned_v6, 1);
    assert_eq!(a.pool_counters("nope"), PoolCounters::default());
}

#[test]
fn refusals_never_say_no_available_ips_and_name_each_pool() {
    let cfg = config(vec![
        restricted(pool("a", &["10.0.0.0/32"]), None, &["other"]),
        pool("b", &["fd00::/128"]),
        manual(pool("c", &["10.0.1.0/32"])),
    ]);
    let mut a = Allocator::new(cfg, StalePolicy::Keep);
    let e = refused(&mut a, &svc("ns", "s"));
    assert_eq!(
        e.to_string(),
        "no pool could serve the service: pool b offers no IPv4 addresses; \
         pool a does not allow namespace ns; \
         pool c has autoAssign: false (ask for it with ferrolb.io/address-pool)"
    );
    let mut empty = Allocator::new(Config::default(), StalePolicy::Keep);
    assert_eq!(refused(&mut empty, &svc("ns", "s")), Refusal::NoPools);
}

#[test]
fn retry_lists_are_precise() {
    let cfg = config(vec![
        pool("a", &["10.0.0.0/32"]),
        pool("b", &["10.0.1.0/32"]),
    ]);
    let mut a = Allocator::new(cfg, StalePolicy::Keep);
    let mut in_a = svc("ns", "in-a");
    in_a.requested_pool = Some("a".into());
    let mut in_b = svc("ns", "in-b");
    in_b.requested_pool = Some("b".into());
    got(&mut a, &in_a);
    got(&mut a, &in_b);
    let mut wants_a = svc("ns", "wants-a");
    wants_a.requested_pool = Some("a".into());
    let mut wants_ip = svc("ns", "wants-ip");
    wants_ip.requested_ips = ips(&["10.0.1.0"]);
    let mut bad = svc("ns", "bad-ns");
    bad.requested_pool = Some("nope".into());
    refused(&mut a, &wants_a);
    refused(&mut a, &wants_ip);
    refused(&mut a, &bad);
    assert_eq!(a.release(&in_b.key), vec![wants_ip.key.clone()]);
    assert_eq!(got(&mut a, &wants_ip), ips(&["10.0.1.0"]));
    // Moving a service out of pool a (annotation change) frees its address: take_retry says so.
    in_a.requested_pool = Some("b".into());
    refused(&mut a, &in_a);
    assert_eq!(a.take_retry(), vec![wants_a.key.clone()]);
    assert!(a.take_retry().is_empty());
    // Config changes retry everyone waiting.
    let change = a.set_config(a.config().clone());
    let mut retry = change.retry.clone();
    retry.sort();
    let mut pending = a.pending();
    pending.sort();
    assert_eq!(retry, pending);
    assert!(retry.contains(&bad.key));
    assert_eq!(
        change.affected().into_iter().collect::<BTreeSet<_>>().len(),
        retry.len()
    );
}

#[test]
fn per_allocation_structures_stay_small() {
    // These sizes are what the benchmark's bytes-per-allocation figure rests on.
    assert_eq!(std::mem::size_of::<Record>(), 32);
    assert_eq!(std::mem::size_of::<ServiceKey>(), 8);
}

#[test]
fn whole_address_space_pools_and_edge_addresses() {
    let mut all = pool("all", &["0.0.0.0/0", "::/0"]);
    all.avoid_buggy_ips = true;
    let mut a = Allocator::new(config(vec![all]), StalePolicy::Keep);
    let c = a.pool_counters("all");
    assert_eq!(c.available_v4, (1u64 << 32) - 2 * (1 << 24));
    assert_eq!(c.available_v6, i64::MAX as u64);
    assert_eq!(got(&mut a, &svc("ns", "first")), ips(&["0.0.0.1"]));
    let cases: &[(&str, Result<(), &str>)] = &[
        ("255.255.255.255", Err("ends in .0 or .255")),
        ("0.0.0.0", Err("ends in .0 or .255")),
        ("255.255.255.254", Ok(())),
        ("::", Ok(())),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Ok(())),
    ];
    for (i, (addr, want)) in cases.iter().enumerate() {
        let mut r = svc("", &format!("edge{i}"));
        r.families = vec![Family::of(ip(addr))];
        r.requested_ips = ips(&[addr]);
        match (want, a.ensure(&r)) {
            (Ok(()), Ok(g)) => assert_eq!(g.ips, ips(&[addr])),
            (Err(w), Err(e)) => assert_msg(&e, w),
            (w, g) => panic!("{addr}: want {w:?}, got {g:?}"),
        }
    }
    assert_eq!(a.pool_counters("all").assigned_v6, 2);
    for i in 0..cases.len() {
        a.release(&key("", &format!("edge{i}")));
    }
    let mut v6 = svc("ns", "v6");
    v6.families = vec![Family::V6];
    assert_eq!(got(&mut a, &v6), ips(&["::"]));
    assert_eq!(a.pool_counters("all").assigned_v6, 1);
}

/// Issue 13, class 1: both hold one address; `a` was edited to another sharing key. Restored
/// with `a` marked edited, the untouched `b` keeps the address whatever the name order, and
/// `a` moves; unmarked, key order decides (`a` first).
#[test]
fn restore_lets_the_untouched_service_keep_a_shared_address() {
    use Protocol::Tcp;
    let cfg = config(vec![pool("p", &["10.0.0.0/30"])]);
    let mut a = shared("a", "other", &[(Tcp, 80)]);
    let mut b = shared("b", "share", &[(Tcp, 443)]);
    for r in [&mut a, &mut b] {
        r.held_ips = ips(&["10.0.0.0"]);
        r.held_pool = Some("p".into());
    }
    let edited = BTreeSet::from([a.key.clone()]);
    let mut alloc = Allocator::new(cfg.clone(), StalePolicy::Keep);
    let report = alloc.restore_keeping(&[a.clone(), b.clone()], &edited);
    assert_eq!(
        report.outcomes[&b.key].as_ref().unwrap().ips,
        ips(&["10.0.0.0"])
    );
    assert_eq!(
        report.outcomes[&a.key].as_ref().unwrap().ips,
        ips(&["10.0.0.1"])
    );
    let mut alloc = Allocator::new(cfg, StalePolicy::Keep);
    let report = alloc.restore(&[a.clone(), b.clone()]);
    assert_eq!(
        report.outcomes[&a.key].as_ref().unwrap().ips,
        ips(&["10.0.0.0"])
    );
}

/// Issue 18: the restore report's log line does not grow with the number of Services: 20,000
/// Services, 10,000 of them pending, give one short line with counts and the first five names.
#[test]
fn the_restore_summary_is_short_at_any_scale() {
    let mut a = Allocator::new(config(vec![pool("p", &["10.0.0.0/19"])]), StalePolicy::Keep);
    let requests: Vec<ServiceRequest> = (0..20_000)
        .map(|i| svc("ns", &format!("service-{i:05}")))
        .collect();
    let report = a.restore(&requests);
    let line = report.summary();
    assert!(line.len() < 600, "{} characters: {line}", line.len());
    assert!(
        line.starts_with("0 re-claimed; 0 not re-claimed; 0 stale; 8192 with addresses; 11808 pending (ns/service-08192: "),
        "{line}"
    );
    assert!(line.ends_with(", and 11803 more)"), "{line}");
    // The Debug form that was logged before grows with every Service.
    assert!(format!("{report:?}").len() > 1_000_000);
}
