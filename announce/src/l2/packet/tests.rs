use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

const CLIENT_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x64]);
const OUR_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x0b]);
const VIP4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

fn vip6() -> Ipv6Addr {
    "fd00::200".parse().unwrap()
}
fn client6() -> Ipv6Addr {
    "fd00::100".parse().unwrap()
}

/// RFC 1071 over the IPv6 pseudo-header and the message, written independently of pnet.
fn icmpv6_sum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut data = Vec::new();
    data.extend_from_slice(&src.octets());
    data.extend_from_slice(&dst.octets());
    data.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    data.extend_from_slice(&[0, 0, 0, 58]);
    data.extend_from_slice(msg);
    if data.len() % 2 == 1 {
        data.push(0);
    }
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ARP who-has as arping sends it (bytes written out by hand).
fn arp_who_has(target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&CLIENT_MAC.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&CLIENT_MAC.0);
    f.extend_from_slice(&CLIENT4.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f.resize(60, 0);
    f
}

/// A Neighbor Solicitation as the kernel or ndisc6 sends it, checksummed independently.
fn ns_frame(src: Ipv6Addr, target: Ipv6Addr, with_sll: bool, hop_limit: u8) -> Vec<u8> {
    let dst = solicited_node(target);
    let mut msg = vec![135, 0, 0, 0, 0, 0, 0, 0];
    msg.extend_from_slice(&target.octets());
    if with_sll {
        msg.extend_from_slice(&[1, 1]);
        msg.extend_from_slice(&CLIENT_MAC.0);
    }
    let sum = icmpv6_sum(src, dst, &msg);
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = Mac::ipv6_multicast(dst).0.to_vec();
    f.extend_from_slice(&CLIENT_MAC.0);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, hop_limit]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&msg);
    f
}

#[test]
fn solicited_node_group_and_its_mac() {
    let ip: Ipv6Addr = "fd00::1:2:3:4567:89ab".parse().unwrap();
    assert_eq!(
        solicited_node(ip),
        "ff02::1:ff67:89ab".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(
        Mac::ipv6_multicast(solicited_node(ip)),
        Mac([0x33, 0x33, 0xff, 0x67, 0x89, 0xab])
    );
    assert_eq!(OUR_MAC.to_string(), "02:00:00:00:00:0b");
}

#[test]
fn parses_an_arp_who_has() {
    let req = parse(&arp_who_has(VIP4)).unwrap();
    assert_eq!(
        req,
        Request::Arp(ArpRequest {
            eth_src: CLIENT_MAC,
            sender_mac: CLIENT_MAC,
            sender_ip: CLIENT4,
            target_ip: VIP4,
        })
    );
    assert_eq!(req.target(), std::net::IpAddr::V4(VIP4));
}

#[test]
fn arp_rejections_are_typed() {
    let mut reply = arp_who_has(VIP4);
    reply[21] = 2;
    assert_eq!(parse(&reply), Err(DecodeError::ArpNotRequest(2)));
    let mut garp = arp_who_has(VIP4);
    garp[28..32].copy_from_slice(&VIP4.octets());
    assert_eq!(parse(&garp), Err(DecodeError::ArpGratuitous(VIP4)));
    let mut ipx = arp_who_has(VIP4);
    ipx[16] = 0x81;
    assert!(matches!(
        parse(&ipx),
        Err(DecodeError::ArpNotEthernetIpv4 {
            protocol: 0x8100,
            ..
        })
    ));
    assert!(matches!(
        parse(&arp_who_has(VIP4)[..30]),
        Err(DecodeError::Truncated {
            what: "ARP packet",
            ..
        })
    ));
    assert!(matches!(
        parse(&[0; 10]),
        Err(DecodeError::Truncated { .. })
    ));
    let mut ipv4 = arp_who_has(VIP4);
    ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
    assert_eq!(parse(&ipv4), Err(DecodeError::OtherEtherType(0x0800)));
}

#[test]
fn arp_reply_answers_the_asker() {
    let Request::Arp(req) = parse(&arp_who_has(VIP4)).unwrap() else {
        panic!()
    };
    let f = arp_reply(OUR_MAC, VIP4, &req);
    assert_eq!(f.len(), 60);
    assert_eq!(&f[0..6], &CLIENT_MAC.0, "unicast to the asker");
    assert_eq!(&f[6..12], &OUR_MAC.0);
    assert_eq!(&f[12..14], &[0x08, 0x06]);
    assert_eq!(
        &f[14..22],
        &[0, 1, 0x08, 0, 6, 4, 0, 2],
        "Ethernet/IPv4 reply"
    );
    assert_eq!(&f[22..28], &OUR_MAC.0, "sender MAC is ours");
    assert_eq!(&f[28..32], &VIP4.octets(), "sender IP is the VIP");
    assert_eq!(&f[32..38], &CLIENT_MAC.0);
    assert_eq!(&f[38..42], &CLIENT4.octets());
    assert!(f[42..].iter().all(|&b| b == 0), "zero padding");
}

#[test]
fn gratuitous_arps_are_broadcast_with_sender_equal_target() {
    for (kind, op, tha) in [
        (GratuitousKind::Request, 1, Mac::ZERO),
        (GratuitousKind::Reply, 2, OUR_MAC),
    ] {
        let f = gratuitous_arp(OUR_MAC, VIP4, kind);
        assert_eq!(&f[0..6], &Mac::BROADCAST.0);
        assert_eq!(&f[6..12], &OUR_MAC.0);
        assert_eq!(f[21], op);
        assert_eq!(&f[22..28], &OUR_MAC.0);
        assert_eq!(&f[28..32], &VIP4.octets());
        assert_eq!(&f[32..38], &tha.0);
        assert_eq!(&f[38..42], &VIP4.octets());
        // Our own parser treats it as an announcement, never as a question to answer.
        let parsed = parse(&f);
        if op == 1 {
            assert_eq!(parsed, Err(DecodeError::ArpGratuitous(VIP4)));
        } else {
            assert_eq!(parsed, Err(DecodeError::ArpNotRequest(2)));
        }
    }
}

#[test]
fn parses_a_neighbor_solicitation() {
    let req = parse(&ns_frame(client6(), vip6(), true, 255)).unwrap();
    assert_eq!(
        req,
        Request::Ns(NeighborSolicitation {
            eth_src: CLIENT_MAC,
            source_ip: client6(),
            dest_ip: solicited_node(vip6()),
            target: vip6(),
            source_ll: Some(CLIENT_MAC),
        })
    );
    // Ethernet padding after the IPv6 payload is ignored.
    let mut padded = ns_frame(client6(), vip6(), true, 255);
    padded.extend_from_slice(&[0xee; 10]);
    assert_eq!(parse(&padded), Ok(req));
}

#[test]
fn ns_rejections_are_typed() {
    assert_eq!(
        parse(&ns_frame(client6(), vip6(), true, 64)),
        Err(DecodeError::BadHopLimit(64))
    );
    let mut bad_sum = ns_frame(client6(), vip6(), true, 255);
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 0x01;
    assert!(matches!(
        parse(&bad_sum),
        Err(DecodeError::BadChecksum { .. })
    ));
    let mut code = ns_frame(client6(), vip6(), true, 255);
    code[55] = 1;
    assert_eq!(parse(&code), Err(DecodeError::BadCode(1)));
    let mut echo = ns_frame(client6(), vip6(), true, 255);
    echo[54] = 128;
    assert_eq!(parse(&echo), Err(DecodeError::NotNeighborSolicitation(128)));
    let mut udp = ns_frame(client6(), vip6(), true, 255);
    udp[20] = 17;
    assert_eq!(parse(&udp), Err(DecodeError::NotIcmpv6(17)));
    let mut zero_len_opt = ns_frame(client6(), vip6(), true, 255);
    zero_len_opt[79] = 0;
    assert!(matches!(
        parse(&zero_len_opt),
        Err(DecodeError::BadOption(24) | DecodeError::BadChecksum { .. })
    ));
    let short = ns_frame(client6(), vip6(), true, 255);
    assert!(matches!(
        parse(&short[..short.len() - 4]),
        Err(DecodeError::Truncated {
            what: "IPv6 payload",
            ..
        })
    ));
    let multicast: Ipv6Addr = "ff02::1".parse().unwrap();
    assert_eq!(
        parse(&ns_frame(client6(), multicast, false, 255)),
        Err(DecodeError::MulticastTarget(multicast))
    );
    // DAD: from :: with a source link-layer option is malformed.
    assert!(matches!(
        parse(&ns_frame(Ipv6Addr::UNSPECIFIED, vip6(), true, 255)),
        Err(DecodeError::BadDadSolicitation(_))
    ));
    assert!(parse(&ns_frame(Ipv6Addr::UNSPECIFIED, vip6(), false, 255)).is_ok());
}

#[test]
fn option_walker_checks_lengths_in_units_of_eight() {
    // A zero-length option is an error (it would loop forever).
    assert_eq!(
        link_layer_option(&[1, 0, 0, 0, 0, 0, 0, 0], 1, 24),
        Err(DecodeError::BadOption(24))
    );
    // An option whose length runs past the end.
    assert_eq!(
        link_layer_option(&[1, 2, 1, 2, 3, 4, 5, 6], 1, 24),
        Err(DecodeError::BadOption(24))
    );
    // A nonce option (type 14) first, then the source link-layer address.
    let opts = [14, 1, 9, 9, 9, 9, 9, 9, 1, 1, 1, 2, 3, 4, 5, 6];
    assert_eq!(
        link_layer_option(&opts, 1, 24),
        Ok(Some(Mac([1, 2, 3, 4, 5, 6])))
    );
    assert_eq!(link_layer_option(&opts, 2, 24), Ok(None));
    // The largest length byte must not overflow (pnet's walker computes it in u8).
    assert_eq!(
        link_layer_option(&[1, 255, 0, 0], 1, 24),
        Err(DecodeError::BadOption(24))
    );
}

/// The fields Linux checks on a received NA (ndisc_recv_na and icmpv6_rcv).
fn check_na(f: &[u8], src_mac: Mac, dst_mac: Mac, vip: Ipv6Addr, dst: Ipv6Addr, flags: u8) {
    assert_eq!(f.len(), 14 + 40 + 32);
    assert_eq!(&f[0..6], &dst_mac.0);
    assert_eq!(&f[6..12], &src_mac.0);
    assert_eq!(&f[12..14], &[0x86, 0xdd]);
    let ip = &f[14..54];
    assert_eq!(ip[0] >> 4, 6);
    assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 32, "payload length");
    assert_eq!(ip[6], 58, "next header ICMPv6");
    assert_eq!(ip[7], 255, "hop limit 255, or Linux drops it");
    assert_eq!(&ip[8..24], &vip.octets());
    assert_eq!(&ip[24..40], &dst.octets());
    let msg = &f[54..];
    assert_eq!(msg[0], 136, "type NA");
    assert_eq!(msg[1], 0, "code 0");
    assert_eq!(
        icmpv6_sum(vip, dst, msg),
        0,
        "a correct checksum sums to zero"
    );
    assert_eq!(msg[4], flags);
    assert_eq!(&msg[5..8], &[0, 0, 0]);
    assert_eq!(&msg[8..24], &vip.octets(), "target");
    assert_eq!(&msg[24..26], &[2, 1], "target link-layer option, 8 bytes");
    assert_eq!(&msg[26..32], &src_mac.0);
}

#[test]
fn solicited_na_answers_the_solicitor() {
    let Request::Ns(ns) = parse(&ns_frame(client6(), vip6(), true, 255)).unwrap() else {
        panic!()
    };
    let f = neighbor_advertisement(OUR_MAC, vip6(), &ns);
    check_na(&f, OUR_MAC, CLIENT_MAC, vip6(), client6(), 0b0110_0000);
}

#[test]
fn dad_solicitation_is_answered_to_all_nodes_without_s() {
    let Request::Ns(ns) = parse(&ns_frame(Ipv6Addr::UNSPECIFIED, vip6(), false, 255)).unwrap()
    else {
        panic!()
    };
    let f = neighbor_advertisement(OUR_MAC, vip6(), &ns);
    check_na(
        &f,
        OUR_MAC,
        Mac([0x33, 0x33, 0, 0, 0, 1]),
        vip6(),
        ALL_NODES,
        0b0010_0000,
    );
}

#[test]
fn unsolicited_na_goes_to_all_nodes_with_override_only() {
    let f = unsolicited_na(OUR_MAC, vip6());
    check_na(
        &f,
        OUR_MAC,
        Mac([0x33, 0x33, 0, 0, 0, 1]),
        vip6(),
        ALL_NODES,
        0b0010_0000,
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    /// Random frames that start as ARP or IPv6/ICMPv6-NS, so the deep paths are reached.
    #[test]
    fn mutated_requests_never_panic(
        v6 in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        extra in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut f = if v6 { ns_frame(client6(), vip6(), true, 255) } else { arp_who_has(VIP4) };
        for (at, b) in flips {
            let i = at.index(f.len());
            f[i] = b;
        }
        f.extend_from_slice(&extra);
        let n = cut.index(f.len() + 1);
        let _ = parse(&f[..n]);
    }

    /// Any single corrupted byte of the ICMPv6 message is caught (by the checksum or a
    /// stricter check), so a damaged NS is never answered.
    #[test]
    fn a_corrupted_ns_is_never_accepted(at in 54usize..86, delta in 1u8..=255) {
        let mut f = ns_frame(client6(), vip6(), true, 255);
        f[at] = f[at].wrapping_add(delta);
        let got = parse(&f);
        // The ones' complement sum changes with any one-byte change, so Ok would be a bug.
        prop_assert!(got.is_err(), "{:?}", got);
    }

    #[test]
    fn built_nas_always_verify(mac in any::<[u8; 6]>(), vip in any::<u128>(), client in any::<u128>()) {
        let (vip, client) = (Ipv6Addr::from(vip), Ipv6Addr::from(client));
        let ns = NeighborSolicitation {
            eth_src: CLIENT_MAC,
            source_ip: client,
            dest_ip: solicited_node(vip),
            target: vip,
            source_ll: None,
        };
        let f = neighbor_advertisement(Mac(mac), vip, &ns);
        let dst = if client.is_unspecified() { ALL_NODES } else { client };
        prop_assert_eq!(icmpv6_sum(vip, dst, &f[54..]), 0);
        prop_assert_eq!(f[21], 255);
    }
}
