use super::*;
use proptest::prelude::*;

fn codec() -> Codec {
    Codec::default()
}

fn roundtrip(m: &Message) -> Message {
    let bytes = codec().encode(m).unwrap();
    assert!(bytes.len() <= MAX_MESSAGE_LEN);
    codec().decode(&bytes).unwrap()
}

#[test]
fn keepalive_is_19_bytes() {
    let b = codec().encode(&Message::Keepalive).unwrap();
    assert_eq!(b.len(), 19);
    assert_eq!(&b[..16], &[0xff; 16]);
    assert_eq!(&b[16..], &[0, 19, 4]);
}

#[test]
fn open_bytes_and_roundtrip() {
    let o = Open::new(
        4_200_000_000,
        90,
        Ipv4Addr::new(10, 0, 0, 11),
        &[(1, 1), (2, 1)],
    );
    let b = codec().encode(&Message::Open(o.clone())).unwrap();
    assert_eq!(b[18], 1);
    assert_eq!(b[19], 4, "version");
    assert_eq!(&b[20..22], &AS_TRANS.to_be_bytes(), "large ASN -> AS_TRANS");
    assert_eq!(&b[22..24], &90u16.to_be_bytes());
    assert_eq!(&b[24..28], &[10, 0, 0, 11]);
    // capability 65 with the real ASN is somewhere in the optional parameters
    let caps = &b[29..];
    assert!(
        caps.windows(6)
            .any(|w| w == [65, 4, 0xfa, 0x56, 0xea, 0x00])
    );
    let Message::Open(d) = roundtrip(&Message::Open(o.clone())) else {
        panic!()
    };
    assert_eq!(d, o);
    assert_eq!(d.asn(), 4_200_000_000);
    assert!(d.has_family(2, 1) && d.has_route_refresh());
}

#[test]
fn open_errors() {
    let o = Open::new(64512, 90, Ipv4Addr::new(1, 2, 3, 4), &[(1, 1)]);
    let mut b = codec().encode(&Message::Open(o)).unwrap();
    b[19] = 3;
    let e = codec().decode(&b).unwrap_err();
    assert_eq!(e, DecodeError::UnsupportedVersion(3));
    assert_eq!((e.notification().code, e.notification().subcode), (2, 1));
    b[19] = 4;
    b[29] = 9; // optional parameter type
    let e = codec().decode(&b).unwrap_err();
    assert_eq!((e.notification().code, e.notification().subcode), (2, 4));
}

#[test]
fn header_errors() {
    let mut b = codec().encode(&Message::Keepalive).unwrap();
    b[0] = 0;
    assert_eq!(
        codec().decode(&b).unwrap_err(),
        DecodeError::NotSynchronized
    );
    let mut b = codec().encode(&Message::Keepalive).unwrap();
    b[18] = 9;
    assert_eq!(codec().decode(&b).unwrap_err().notification().subcode, 3);
    let mut b = codec().encode(&Message::Keepalive).unwrap();
    b[17] = 18;
    assert_eq!(frame_len(&b), Err(DecodeError::BadLength(18)));
    assert_eq!(frame_len(&b[..10]), Ok(None));
}

fn sample_update() -> Update {
    Update {
        withdrawn: vec!["10.9.0.0/16".parse().unwrap()],
        attrs: PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(vec![AsSegment::Sequence(vec![64513, 4_200_000_001])]),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 11)),
            local_pref: Some(150),
            communities: [0xfde8_0001u32, 0x0001_0002].into_iter().collect(),
            large_communities: [LargeCommunity {
                global: 1,
                local1: 2,
                local2: 3,
            }]
            .into_iter()
            .collect(),
            ..Default::default()
        },
        nlri: vec![
            "192.0.2.1/32".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap(),
        ],
    }
}

#[test]
fn update_wire_details() {
    let u = sample_update();
    let b = codec().encode(&Message::Update(u.clone())).unwrap();
    // AS_PATH: well-known transitive, AS_SEQUENCE (type 2), two 4-octet ASNs.
    let want = [0x40, 2, 10, 2, 2, 0, 0, 0xfc, 0x01, 0xfa, 0x56, 0xea, 0x01];
    assert!(b.windows(want.len()).any(|w| w == want), "{b:02x?}");
    // LARGE_COMMUNITIES: optional transitive, Partial bit clear.
    let want = [0xc0, 32, 12, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
    assert!(b.windows(want.len()).any(|w| w == want), "{b:02x?}");
    let Message::Update(d) = roundtrip(&Message::Update(u.clone())) else {
        panic!()
    };
    assert_eq!(d, u);
}

#[test]
fn update_ipv6_mp_roundtrip() {
    let u = Update {
        attrs: PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(vec![]),
            mp_reach: Some(MpReach {
                next_hops: vec!["fd00::11".parse().unwrap()],
                prefixes: vec![
                    "fd00:1::5/128".parse().unwrap(),
                    "2001:db8::/32".parse().unwrap(),
                ],
            }),
            mp_unreach: None,
            ..Default::default()
        },
        ..Default::default()
    };
    let Message::Update(d) = roundtrip(&Message::Update(u.clone())) else {
        panic!()
    };
    assert_eq!(d, u);
    let w = Update {
        attrs: PathAttrs {
            mp_unreach: Some(vec!["fd00:1::5/128".parse().unwrap()]),
            ..Default::default()
        },
        ..Default::default()
    };
    let Message::Update(d) = roundtrip(&Message::Update(w.clone())) else {
        panic!()
    };
    assert_eq!(d, w);
}

#[test]
fn two_octet_as_path_uses_as_trans() {
    let c = Codec {
        four_octet_as: false,
    };
    let mut u = sample_update();
    u.attrs.as_path = Some(vec![AsSegment::Sequence(vec![64513, 4_200_000_001])]);
    let b = c.encode(&Message::Update(u)).unwrap();
    let Message::Update(d) = c.decode(&b).unwrap() else {
        panic!()
    };
    assert_eq!(
        d.attrs.as_path,
        Some(vec![AsSegment::Sequence(vec![64513, 23456])])
    );
}

/// The bytes of `sample_update` with one attribute (found by its first bytes) replaced.
fn with_attr(find: &[u8], replace: &[u8]) -> Vec<u8> {
    let b = codec().encode(&Message::Update(sample_update())).unwrap();
    let pos = b
        .windows(find.len())
        .position(|w| w == find)
        .unwrap_or_else(|| panic!("{find:02x?} not in {b:02x?}"));
    let mut out = b[..pos].to_vec();
    out.extend_from_slice(replace);
    out.extend_from_slice(&b[pos + find.len()..]);
    // Fix the total path attribute length and the message length.
    let delta = replace.len() as isize - find.len() as isize;
    let wlen = u16::from_be_bytes([out[19], out[20]]) as usize;
    let at = 21 + wlen;
    let alen = u16::from_be_bytes([out[at], out[at + 1]]) as isize + delta;
    out[at..at + 2].copy_from_slice(&(alen as u16).to_be_bytes());
    let len = out.len() as u16;
    out[16..18].copy_from_slice(&len.to_be_bytes());
    out
}

#[test]
fn update_errors_map_to_notifications_with_the_offending_attribute() {
    // NLRI without NEXT_HOP
    let mut u = sample_update();
    u.attrs.next_hop = None;
    let b = codec().encode(&Message::Update(u)).unwrap();
    let e = codec().decode(&b).unwrap_err();
    assert_eq!(e, DecodeError::MissingWellKnown(3));
    assert_eq!(e.notification(), Notification::with_data(3, 3, vec![3]));
    assert_eq!(e.handling(), Handling::TreatAsWithdraw);
    // Bad ORIGIN value: 3/6 carrying the whole attribute (RFC 4271 6.3).
    let e = codec()
        .decode(&with_attr(&[0x40, 1, 1, 0], &[0x40, 1, 1, 7]))
        .unwrap_err();
    assert!(
        matches!(e, DecodeError::InvalidOrigin { value: 7, .. }),
        "{e:?}"
    );
    assert_eq!(
        e.notification(),
        Notification::with_data(3, 6, vec![0x40, 1, 1, 7])
    );
    assert_eq!(e.handling(), Handling::TreatAsWithdraw);
    // ORIGIN of two bytes: 3/5 with the attribute.
    let e = codec()
        .decode(&with_attr(&[0x40, 1, 1, 0], &[0x40, 1, 2, 0, 0]))
        .unwrap_err();
    assert_eq!(
        e.notification(),
        Notification::with_data(3, 5, vec![0x40, 1, 2, 0, 0])
    );
    // A well-known attribute with the Transitive bit clear: 3/4 with the attribute.
    let e = codec()
        .decode(&with_attr(&[0x40, 1, 1, 0], &[0x00, 1, 1, 0]))
        .unwrap_err();
    assert_eq!(
        e.notification(),
        Notification::with_data(3, 4, vec![0x00, 1, 1, 0])
    );
    assert_eq!(e.handling(), Handling::TreatAsWithdraw);
    // ... and with the Optional bit set.
    let e = codec()
        .decode(&with_attr(&[0x40, 1, 1, 0], &[0xc0, 1, 1, 0]))
        .unwrap_err();
    assert_eq!(
        e.notification(),
        Notification::with_data(3, 4, vec![0xc0, 1, 1, 0])
    );
    // COMMUNITIES without its Optional bit.
    let b = codec().encode(&Message::Update(sample_update())).unwrap();
    let pos = b.windows(2).position(|w| w == [0xc0, 8]).unwrap();
    let mut b2 = b.clone();
    b2[pos] = 0x40;
    let e = codec().decode(&b2).unwrap_err();
    assert_eq!(e.notification().subcode, code::UPD_ATTR_FLAGS);
    assert_eq!(e.notification().data, b2[pos..pos + 3 + 8].to_vec());
    // A type code we do not know, marked well-known: 3/2 with the attribute, session reset.
    let e = codec()
        .decode(&with_attr(
            &[0x40, 1, 1, 0],
            &[0x40, 1, 1, 0, 0x40, 99, 1, 5],
        ))
        .unwrap_err();
    assert_eq!(
        e.notification(),
        Notification::with_data(3, 2, vec![0x40, 99, 1, 5])
    );
    assert_eq!(e.handling(), Handling::SessionReset);
    // NLRI prefix length 33: invalid network field, session reset.
    let mut b3 = b.clone();
    let n = b3.len();
    b3[n - 4] = 33; // the /24's length byte
    let e = codec().decode(&b3).unwrap_err();
    assert_eq!(e.notification().subcode, code::UPD_INVALID_NETWORK);
    assert_eq!(e.handling(), Handling::SessionReset);
}

#[test]
fn a_later_structural_error_wins_over_an_earlier_attribute_error() {
    // Bad ORIGIN (treat-as-withdraw) and then MP_UNREACH twice (session reset).
    let mp = [0x80, 15, 3, 0, 2, 1];
    let mut with_two = vec![0x40, 1, 1, 7];
    with_two.extend_from_slice(&mp);
    with_two.extend_from_slice(&mp);
    let e = codec()
        .decode(&with_attr(&[0x40, 1, 1, 0], &with_two))
        .unwrap_err();
    assert_eq!(
        e,
        DecodeError::MalformedAttributeList("MP attribute repeated")
    );
    assert_eq!(e.handling(), Handling::SessionReset);
}

#[test]
fn a_repeated_attribute_other_than_mp_keeps_its_first_occurrence() {
    // RFC 7606 3 g: ORIGIN IGP then ORIGIN INCOMPLETE: the second is discarded.
    let b = with_attr(&[0x40, 1, 1, 0], &[0x40, 1, 1, 0, 0x40, 1, 1, 2]);
    let Message::Update(u) = codec().decode(&b).unwrap() else {
        panic!()
    };
    assert_eq!(u.attrs.origin, Some(Origin::Igp));
}

#[test]
fn an_attribute_running_past_the_list_is_treat_as_withdraw() {
    // The last attribute (LARGE_COMMUNITIES, 12 bytes) claims 200.
    let b = codec().encode(&Message::Update(sample_update())).unwrap();
    let pos = b.windows(3).position(|w| w == [0xc0, 32, 12]).unwrap();
    let mut b2 = b.clone();
    b2[pos + 2] = 200;
    let e = codec().decode(&b2).unwrap_err();
    assert_eq!(e, DecodeError::AttributeOverrun(32));
    assert_eq!(e.handling(), Handling::TreatAsWithdraw);
    assert_eq!(e.notification(), Notification::new(3, 1));
}

#[test]
fn malformed_mp_reach_is_an_optional_attribute_error_with_the_attribute() {
    // IPv6 unicast with a 5-byte next hop.
    let bad = [0x80, 14, 10, 0, 2, 1, 5, 1, 2, 3, 4, 5, 0];
    let e = codec()
        .decode(&with_attr(
            &[0x40, 1, 1, 0],
            &[&[0x40, 1, 1, 0][..], &bad[..]].concat(),
        ))
        .unwrap_err();
    assert_eq!(
        e.notification(),
        Notification::with_data(3, 9, bad.to_vec())
    );
    assert_eq!(e.handling(), Handling::SessionReset);
}

#[test]
fn notifications_read_well_in_logs() {
    assert_eq!(
        Notification::with_data(3, 6, vec![0x40, 1, 1, 7]).to_string(),
        "UPDATE message error: invalid ORIGIN attribute (3/6), data 40010107"
    );
    // RFC 9003 shutdown communication.
    let mut data = vec![11];
    data.extend_from_slice(b"maintenance");
    assert_eq!(
        Notification::with_data(6, 2, data).to_string(),
        "cease: administrative shutdown (6/2): \"maintenance\""
    );
    let long = Notification::with_data(3, 1, vec![0xab; 4000]).to_string();
    assert!(
        long.len() < 200 && long.ends_with("... (4000 bytes)"),
        "{long}"
    );
}

#[test]
fn notification_and_route_refresh_roundtrip() {
    for m in [
        Message::Notification(Notification::cease_shutdown()),
        Message::Notification(Notification::with_data(2, 2, vec![0xfc, 0x01])),
        Message::RouteRefresh { afi: 2, safi: 1 },
    ] {
        assert_eq!(roundtrip(&m), m);
    }
    let b = codec()
        .encode(&Message::Notification(Notification::cease_shutdown()))
        .unwrap();
    assert_eq!(b.len(), 21, "Cease carries no data");
}

fn arb_v4() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
}

fn arb_v6() -> impl Strategy<Value = IpNet> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc()))
}

prop_compose! {
    fn arb_update()(
        withdrawn in proptest::collection::vec(arb_v4(), 0..20),
        nlri in proptest::collection::vec(arb_v4(), 0..20),
        asns in proptest::collection::vec(any::<u32>(), 0..5),
        nh in any::<u32>(),
        lp in proptest::option::of(any::<u32>()),
        med in proptest::option::of(any::<u32>()),
        comms in proptest::collection::btree_set(any::<u32>(), 0..5),
        large in proptest::collection::btree_set((any::<u32>(), any::<u32>(), any::<u32>()), 0..4),
        v6 in proptest::collection::vec(arb_v6(), 0..10),
        v6w in proptest::collection::vec(arb_v6(), 0..10),
    ) -> Update {
        let announces = !nlri.is_empty() || !v6.is_empty();
        Update {
            withdrawn,
            attrs: PathAttrs {
                origin: announces.then_some(Origin::Incomplete),
                as_path: announces.then(|| if asns.is_empty() { vec![] } else { vec![AsSegment::Sequence(asns)] }),
                next_hop: (!nlri.is_empty()).then(|| Ipv4Addr::from(nh)),
                med,
                local_pref: lp,
                communities: comms,
                large_communities: large.into_iter().map(|(global, local1, local2)| LargeCommunity { global, local1, local2 }).collect(),
                mp_reach: (!v6.is_empty()).then(|| MpReach { next_hops: vec!["fd00::11".parse().unwrap()], prefixes: v6 }),
                mp_unreach: (!v6w.is_empty()).then_some(v6w),
                other: vec![],
            },
            nlri,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn update_roundtrips(u in arb_update()) {
        let m = Message::Update(u);
        let b = codec().encode(&m).unwrap();
        prop_assert_eq!(codec().decode(&b).unwrap(), m);
    }

    #[test]
    fn decoder_survives_random_bytes(body in proptest::collection::vec(any::<u8>(), 0..200), ty in 0u8..7) {
        let mut b = vec![0xff; 16];
        b.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        b.push(ty);
        b.extend_from_slice(&body);
        let _ = codec().decode(&b);
        let _ = Codec { four_octet_as: false }.decode(&b);
        let _ = frame_len(&body);
        let _ = codec().decode(&body);
    }

    #[test]
    fn decoder_survives_mutated_messages(
        u in arb_update(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut b = codec().encode(&Message::Update(u)).unwrap();
        for (i, v) in flips {
            let n = b.len();
            b[19 + i % (n - 19)] = v;
        }
        let _ = codec().decode(&b);
        let n = 19 + cut % (b.len() - 18);
        let mut t = b[..n].to_vec();
        let len = t.len() as u16;
        t[16..18].copy_from_slice(&len.to_be_bytes());
        let _ = codec().decode(&t);
    }

    #[test]
    fn decoder_survives_mutated_opens(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let o = Open::new(64512, 90, Ipv4Addr::new(1, 2, 3, 4), &[(1, 1), (2, 1)]);
        let mut b = codec().encode(&Message::Open(o)).unwrap();
        for (i, v) in flips {
            let n = b.len();
            b[19 + i % (n - 19)] = v;
        }
        let _ = codec().decode(&b);
    }
}

/// Every message captured from BIRD, FRR and GoBGP (`tests/golden/bgp`, see its README).
fn golden() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/bgp");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "bin").then(|| {
                let name = p.file_name()?.to_string_lossy().into_owned();
                Some((name, std::fs::read(&p).ok()?))
            })?
        })
        .collect();
    out.sort();
    out
}

/// An UPDATE's path attributes as (flags without Extended Length, type, value), in wire order.
fn raw_attrs(msg: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
    let body = &msg[HEADER_LEN..];
    let wlen = u16::from_be_bytes([body[0], body[1]]) as usize;
    let at = 2 + wlen;
    let alen = u16::from_be_bytes([body[at], body[at + 1]]) as usize;
    let mut a = &body[at + 2..at + 2 + alen];
    let mut out = Vec::new();
    while !a.is_empty() {
        let (flags, tc) = (a[0], a[1]);
        let (len, hdr) = if flags & flag::EXTENDED_LENGTH != 0 {
            (u16::from_be_bytes([a[2], a[3]]) as usize, 4)
        } else {
            (a[2] as usize, 3)
        };
        out.push((
            flags & !flag::EXTENDED_LENGTH,
            tc,
            a[hdr..hdr + len].to_vec(),
        ));
        a = &a[hdr + len..];
    }
    out
}

/// The withdrawn routes and NLRI sections of an UPDATE, as bytes.
fn raw_prefix_sections(msg: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let body = &msg[HEADER_LEN..];
    let wlen = u16::from_be_bytes([body[0], body[1]]) as usize;
    let at = 2 + wlen;
    let alen = u16::from_be_bytes([body[at], body[at + 1]]) as usize;
    (body[2..at].to_vec(), body[at + 2 + alen..].to_vec())
}

#[test]
fn golden_messages_from_bird_frr_and_gobgp_decode_and_reencode() {
    let all = golden();
    assert!(all.len() >= 90, "{} golden messages", all.len());
    let (mut updates, mut exact) = (0, 0);
    for (name, bytes) in &all {
        let m = codec()
            .decode(bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours = codec().encode(&m).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            codec().decode(&ours).as_ref(),
            Ok(&m),
            "{name}: decode(encode(x))"
        );
        if ours == *bytes {
            exact += 1;
        }
        match &m {
            Message::Update(_) => {
                updates += 1;
                // The same attributes, flags and values, and the same prefixes; only the
                // order of attributes and the Extended Length bit may differ (our choices:
                // MP first, then ascending; Extended Length only past 255 bytes).
                let mut theirs = raw_attrs(bytes);
                let mut mine = raw_attrs(&ours);
                assert!(
                    mine.windows(2)
                        .all(|w| !(w[0].1 > w[1].1 && w[0].1 != 14 && w[0].1 != 15)),
                    "{name}: our order {mine:?}"
                );
                theirs.sort();
                mine.sort();
                assert_eq!(mine, theirs, "{name}");
                assert_eq!(
                    raw_prefix_sections(&ours),
                    raw_prefix_sections(bytes),
                    "{name}"
                );
                // BIRD orders and flags IPv4 UPDATEs as we do: byte for byte (on MP attributes
                // it sets Extended Length on short values, we do not).
                if name.starts_with("bird-") && name.contains("-v4-") {
                    assert_eq!(&ours, bytes, "{name}: byte for byte");
                }
            }
            Message::Open(o) => {
                // Single-parameter OPENs (BIRD, GoBGP) byte for byte; FRR puts every
                // capability in its own parameter, we in one.
                if !name.starts_with("frr-") {
                    assert_eq!(&ours, bytes, "{name}: byte for byte ({o:?})");
                }
            }
            Message::Keepalive | Message::Notification(_) | Message::RouteRefresh { .. } => {
                assert_eq!(&ours, bytes, "{name}: byte for byte")
            }
        }
    }
    assert!(updates >= 40, "{updates} UPDATEs");
    assert!(
        exact * 2 > all.len(),
        "only {exact} of {} byte for byte",
        all.len()
    );
}

#[test]
fn golden_updates_carry_what_the_routers_were_told_to_send() {
    let lc = LargeCommunity {
        global: 65000,
        local1: 7,
        local2: 8,
    };
    for (name, bytes) in golden() {
        let Ok(Message::Update(u)) = codec().decode(&bytes) else {
            continue;
        };
        if u.announced().next().is_none() {
            continue; // a withdrawal or an End-of-RIB
        }
        assert!(u.attrs.communities.contains(&((65000 << 16) | 1)), "{name}");
        assert!(u.attrs.large_communities.contains(&lc), "{name}");
        let path = u.attrs.as_path.clone().unwrap_or_default();
        if name.contains("-ibgp-") {
            assert!(path.is_empty(), "{name}: {path:?}");
            assert_eq!(u.attrs.local_pref, Some(250), "{name}");
        } else {
            assert_eq!(path, vec![AsSegment::Sequence(vec![64512])], "{name}");
        }
    }
}

proptest! {
    /// However a stream of valid messages is split into reads, the framer yields them whole
    /// and in order, holding no more than one partial message plus the last read.
    #[test]
    fn framing_does_not_depend_on_how_bytes_arrive(
        n in 1usize..20,
        cuts in proptest::collection::vec(0usize..200, 0..30),
    ) {
        let msgs: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let m = if i % 3 == 0 {
                    Message::Update(sample_update())
                } else {
                    Message::Keepalive
                };
                codec().encode(&m).unwrap()
            })
            .collect();
        let stream = msgs.concat();
        let mut f = Framer::default();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        for c in cuts.iter().copied().chain(std::iter::once(usize::MAX)) {
            let (a, b) = rest.split_at(c.min(rest.len()));
            f.push(a);
            prop_assert!(f.pending() <= MAX_MESSAGE_LEN + a.len());
            rest = b;
            while let Some(m) = f.next_frame().unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(got, msgs);
        prop_assert_eq!(f.pending(), 0);
    }
}

/// Found by the bgp_message fuzz target: opaque attributes out of type order re-encoded in
/// type order read back as a different message. They are a set; the decoder keeps them sorted.
#[test]
fn opaque_attributes_out_of_order_round_trip() {
    let mut body = vec![0, 0]; // no withdrawn routes
    let attrs = [
        &[0x40, 1, 1, 0][..],           // ORIGIN IGP
        &[0x40, 2, 0][..],              // empty AS_PATH
        &[0x80, 81, 2, 0xaa, 0xbb][..], // unknown optional 81
        &[0xc0, 33, 3, 1, 2, 3][..],    // unknown optional transitive 33
    ]
    .concat();
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(&attrs);
    let mut msg = vec![0xff; 16];
    msg.extend_from_slice(&((HEADER_LEN + body.len()) as u16).to_be_bytes());
    msg.push(2);
    msg.extend_from_slice(&body);
    let m = codec().decode(&msg).unwrap();
    let Message::Update(u) = &m else { panic!() };
    assert_eq!(
        u.attrs.other,
        vec![(0xc0, 33, vec![1, 2, 3]), (0x80, 81, vec![0xaa, 0xbb])]
    );
    assert_eq!(codec().decode(&codec().encode(&m).unwrap()), Ok(m));
}

/// RFC 8950: the Extended Next Hop capability (code 5) as FRR sends it for an unnumbered
/// peer, and back; a malformed one (not whole triples) refuses the OPEN.
#[test]
fn extended_next_hop_capability() {
    let mut o = Open::new(64512, 90, Ipv4Addr::new(10, 0, 0, 11), &[(1, 1), (2, 1)]);
    o.capabilities
        .push(Capability::ExtendedNextHop(vec![(1, 1, 2), (1, 128, 2)]));
    let b = codec().encode(&Message::Open(o.clone())).unwrap();
    assert!(
        b.windows(14)
            .any(|w| w == [5, 12, 0, 1, 0, 1, 0, 2, 0, 1, 0, 128, 0, 2]),
        "{b:?}"
    );
    let Message::Open(d) = roundtrip(&Message::Open(o.clone())) else {
        panic!()
    };
    assert_eq!(d, o);
    assert!(d.has_ipv4_over_ipv6());
    let plain = Open::new(64512, 90, Ipv4Addr::new(10, 0, 0, 11), &[(1, 1)]);
    assert!(!plain.has_ipv4_over_ipv6());
    let mut bad = plain.clone();
    bad.capabilities.push(Capability::Unknown {
        code: 5,
        data: vec![0, 1, 0, 1, 0],
    });
    let bytes = codec().encode(&Message::Open(bad)).unwrap();
    assert_eq!(
        codec().decode(&bytes),
        Err(DecodeError::MalformedOpen("capability length"))
    );
}

/// Issue 14: the Graceful Restart capability (RFC 4724 3) both ways; a malformed one is kept as
/// unknown rather than refusing the OPEN (a peer's oddity in a capability we only read).
#[test]
fn graceful_restart_capability_round_trips_and_a_malformed_one_is_kept() {
    let mut open = Open::new(
        64512,
        90,
        std::net::Ipv4Addr::new(10, 0, 0, 1),
        &[(1, 1), (2, 1)],
    );
    let gr = GracefulRestart {
        restarted: true,
        notification: false,
        restart_time: 120,
        families: vec![(1, 1, true), (2, 1, false)],
    };
    open.capabilities
        .push(Capability::GracefulRestart(gr.clone()));
    let codec = Codec::default();
    let bytes = codec.encode(&Message::Open(open.clone())).unwrap();
    // code 64, length 2 + 2 x 4, R and the 12-bit time 120, then (1, 1, F) and (2, 1, -).
    let cap = [64u8, 10, 0x80, 120, 0, 1, 1, 0x80, 0, 2, 1, 0];
    assert!(bytes.windows(cap.len()).any(|w| w == cap), "{bytes:?}");
    match codec.decode(&bytes).unwrap() {
        Message::Open(o) => assert_eq!(o.graceful_restart(), Some(&gr)),
        other => panic!("{other:?}"),
    }
    // Three bytes of value: not 2 + 4n. Kept as unknown; the OPEN stands.
    let mut odd = Open::new(64512, 90, std::net::Ipv4Addr::new(10, 0, 0, 1), &[(1, 1)]);
    odd.capabilities.push(Capability::Unknown {
        code: 64,
        data: vec![0, 120, 1],
    });
    let bytes = codec.encode(&Message::Open(odd)).unwrap();
    match codec.decode(&bytes).unwrap() {
        Message::Open(o) => {
            assert_eq!(o.graceful_restart(), None);
            assert!(o.capabilities.contains(&Capability::Unknown {
                code: 64,
                data: vec![0, 120, 1]
            }));
        }
        other => panic!("{other:?}"),
    }
}
