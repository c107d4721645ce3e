use super::*;
use proptest::prelude::*;
use std::net::Ipv4Addr;

fn view(ibgp: bool) -> PeerView {
    PeerView {
        local_asn: 64513,
        ibgp,
        next_hop_v4: Some(Ipv4Addr::new(10, 0, 0, 11).into()),
        next_hop_v6: Some("fd00::11".parse().unwrap()),
        codec: Codec::default(),
    }
}

fn p(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn attrs(lp: Option<u32>, comms: &[u32]) -> RouteAttrs {
    RouteAttrs {
        local_pref: lp,
        communities: comms.iter().copied().collect(),
        large_communities: Default::default(),
    }
}

/// A peer's Adj-RIB-In after the UPDATEs, as prefix -> attributes without reachability.
fn apply(rib: &mut BTreeMap<IpNet, PathAttrs>, updates: &[Update]) {
    for u in updates {
        for w in u.withdrawn_all() {
            rib.remove(&w);
        }
        let mut a = u.attrs.clone();
        a.mp_reach = None;
        a.mp_unreach = None;
        for n in u.announced() {
            let mut a = a.clone();
            if n.addr().is_ipv6() {
                a.next_hop = None;
            }
            rib.insert(n, a);
        }
    }
}

fn expected(v: &PeerView, t: &Table) -> BTreeMap<IpNet, PathAttrs> {
    t.iter()
        .map(|(p, a)| {
            let mut pa = v.path_attrs(a);
            if let (true, Some(IpAddr::V4(nh))) = (p.addr().is_ipv4(), v.next_hop_v4) {
                pa.next_hop = Some(nh);
            }
            (*p, pa)
        })
        .collect()
}

#[test]
fn ebgp_and_ibgp_attributes() {
    let e = view(false).path_attrs(&attrs(Some(300), &[1]));
    assert_eq!(e.as_path, Some(vec![AsSegment::Sequence(vec![64513])]));
    assert_eq!(e.local_pref, None, "no LOCAL_PREF toward eBGP");
    let i = view(true).path_attrs(&attrs(Some(300), &[1]));
    assert_eq!(i.as_path, Some(vec![]));
    assert_eq!(i.local_pref, Some(300));
    assert_eq!(
        view(true).path_attrs(&attrs(None, &[])).local_pref,
        Some(100)
    );
}

#[test]
fn one_change_is_one_small_update() {
    let v = view(false);
    let mut old = Table::new();
    for i in 0..1000u32 {
        old.insert(
            IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a63_0000 + i), 32).unwrap()),
            attrs(None, &[7]),
        );
    }
    let mut new = old.clone();
    new.insert(p("192.0.2.1/32"), attrs(None, &[7]));
    let u = diff(&v, &old, &new).unwrap();
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].nlri, vec!["192.0.2.1/32".parse().unwrap()]);
    new.remove(&p("10.99.0.5/32"));
    new.remove(&p("192.0.2.1/32"));
    let u = diff(&v, &old, &new).unwrap();
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].withdrawn, vec!["10.99.0.5/32".parse().unwrap()]);
    assert!(u[0].nlri.is_empty() && u[0].attrs.origin.is_none());
    assert!(diff(&v, &old, &old).unwrap().is_empty());
}

#[test]
fn groups_by_attributes_and_families() {
    let v = view(true);
    let mut t = Table::new();
    t.insert(p("10.1.0.1/32"), attrs(None, &[1]));
    t.insert(p("10.1.0.2/32"), attrs(None, &[1]));
    t.insert(p("10.1.0.3/32"), attrs(Some(200), &[1]));
    t.insert(p("fd00:1::1/128"), attrs(None, &[1]));
    let u = full(&v, &t).unwrap();
    assert_eq!(u.len(), 3, "{u:#?}");
    let v6 = u.iter().find(|u| u.attrs.mp_reach.is_some()).unwrap();
    assert_eq!(
        v6.attrs.mp_reach.as_ref().unwrap().next_hops,
        vec!["fd00::11".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(v6.attrs.next_hop.is_none() && v6.nlri.is_empty());
}

#[test]
fn family_without_next_hop_is_not_sent() {
    let mut v = view(false);
    v.next_hop_v6 = None;
    let mut t = Table::new();
    t.insert(p("fd00:1::1/128"), attrs(None, &[]));
    assert!(full(&v, &t).unwrap().is_empty());
}

#[test]
fn large_tables_split_within_4096_bytes() {
    let v = view(false);
    let mut t = Table::new();
    for i in 0..100_000u32 {
        t.insert(
            IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x0b00_0000 + i), 32).unwrap()),
            attrs(None, &[1, 2]),
        );
    }
    let u = full(&v, &t).unwrap();
    let total: usize = u.iter().map(|u| u.nlri.len()).sum();
    assert_eq!(total, 100_000);
    assert!(u.len() <= 100_000 * 5 / 4000 + 2, "{} messages", u.len());
    for m in &u {
        assert!(v.codec.encode(&Message::Update(m.clone())).unwrap().len() <= MAX_MESSAGE_LEN);
    }
}

fn arb_table() -> impl Strategy<Value = Table> {
    let prefix = prop_oneof![
        (0u32..64).prop_map(|i| IpNet::V4(
            ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i), 32).unwrap()
        )),
        (0u128..64).prop_map(|i| IpNet::V6(
            ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(0xfd00_0001u128 << 96 | i), 128).unwrap()
        )),
    ];
    let a = (
        proptest::option::of(0u32..3),
        proptest::collection::btree_set(0u32..3, 0..2),
    )
        .prop_map(|(lp, c)| RouteAttrs {
            local_pref: lp,
            communities: c,
            large_communities: Default::default(),
        });
    proptest::collection::btree_map(prefix, a, 0..40)
}

proptest! {
    /// Applying the UPDATEs of each change to a model RIB always yields the desired table,
    /// only changed prefixes are mentioned, and each UPDATE encodes within 4096 bytes.
    #[test]
    fn updates_take_the_rib_to_the_desired_set(tables in proptest::collection::vec(arb_table(), 1..6), ibgp in any::<bool>()) {
        let v = view(ibgp);
        let mut rib = BTreeMap::new();
        let mut sent = Table::new();
        for t in tables {
            let u = diff(&v, &sent, &t).unwrap();
            for m in &u {
                prop_assert!(v.codec.encode(&Message::Update(m.clone())).unwrap().len() <= MAX_MESSAGE_LEN);
                for n in m.announced().chain(m.withdrawn_all()) {
                    prop_assert!(sent.get(&n) != t.get(&n), "{n} unchanged but sent");
                }
            }
            apply(&mut rib, &u);
            prop_assert_eq!(&rib, &expected(&v, &t));
            sent = t;
        }
    }
}

/// RFC 8950 (unnumbered sessions): with an IPv6 next hop for IPv4, IPv4 prefixes go in
/// MP_REACH (AFI 1) with that next hop, and decode back the same.
#[test]
fn ipv4_prefixes_with_an_ipv6_next_hop_ride_in_mp_reach() {
    let ll: Ipv6Addr = "fe80::11".parse().unwrap();
    let v = PeerView {
        next_hop_v4: Some(ll.into()),
        next_hop_v6: Some(ll),
        ..view(false)
    };
    let mut t = Table::new();
    t.insert(p("10.96.0.1/32"), attrs(None, &[]));
    t.insert(p("fd00:96::1/128"), attrs(None, &[]));
    let ups = full(&v, &t).unwrap();
    assert_eq!(ups.len(), 2, "{ups:?}");
    for u in &ups {
        assert!(u.nlri.is_empty() && u.attrs.next_hop.is_none(), "{u:?}");
        let mp = u.attrs.mp_reach.as_ref().unwrap();
        assert_eq!(mp.next_hops, vec![IpAddr::from(ll)]);
        let bytes = v.codec.encode(&Message::Update(u.clone())).unwrap();
        let back = v.codec.decode(&bytes).unwrap();
        assert_eq!(back, Message::Update(u.clone()));
    }
    let all: Vec<IpNet> = ups.iter().flat_map(|u| u.announced()).collect();
    assert_eq!(all, vec![p("10.96.0.1/32"), p("fd00:96::1/128")]);
}
