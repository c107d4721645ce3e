//! ARP and NDP codecs over raw Ethernet frames: what the responder reads and writes.
//!
//! Pure functions over bytes, so every rule Linux applies to these packets is tested here rather
//! than discovered on the wire. Parsing never panics, whatever the bytes: each rejection is a
//! [`DecodeError`] naming why (malformed, or a valid frame the responder has no business with).
//! NDP options are walked by hand: pnet's option iterator computes `length * 8` in `u8` and would
//! overflow on a hostile length byte.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use pnet_base::MacAddr as PnetMac;
use pnet_packet::Packet;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{
    MutableNeighborAdvertPacket, NeighborAdvertFlags, NeighborSolicitPacket,
};
use pnet_packet::icmpv6::{self, Icmpv6Code, Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    /// `00:00:00:00:00:00` (the unknown target of an ARP request).
    pub const ZERO: Mac = Mac([0; 6]);

    /// The Ethernet multicast address an IPv6 multicast group maps to (`33:33` + low 32 bits).
    pub fn ipv6_multicast(group: Ipv6Addr) -> Mac {
        let o = group.octets();
        Mac([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }

    fn to_pnet(self) -> PnetMac {
        let [a, b, c, d, e, f] = self.0;
        PnetMac::new(a, b, c, d, e, f)
    }

    fn from_pnet(m: PnetMac) -> Mac {
        Mac([m.0, m.1, m.2, m.3, m.4, m.5])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// All IPv6 nodes (`ff02::1`): where unsolicited Neighbor Advertisements go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The solicited-node multicast group of `ip` (`ff02::1:ffXX:XXXX`): Neighbor Solicitations for
/// `ip` are sent there, so a responder must join it to hear them.
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// An ARP request: "who has `target_ip`? tell `sender_ip` at `sender_mac`".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRequest {
    /// Ethernet source of the frame.
    pub eth_src: Mac,
    /// ARP sender hardware address.
    pub sender_mac: Mac,
    /// ARP sender protocol address (`0.0.0.0` for an RFC 5227 probe).
    pub sender_ip: Ipv4Addr,
    /// The address asked for.
    pub target_ip: Ipv4Addr,
}

/// A Neighbor Solicitation: "who has `target`?", from `source_ip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborSolicitation {
    /// Ethernet source of the frame.
    pub eth_src: Mac,
    /// IPv6 source (`::` during duplicate address detection).
    pub source_ip: Ipv6Addr,
    /// IPv6 destination (solicited-node multicast, or the target itself for unicast probes).
    pub dest_ip: Ipv6Addr,
    /// The address asked for.
    pub target: Ipv6Addr,
    /// The solicitor's link-layer address option, if present.
    pub source_ll: Option<Mac>,
}

/// A request the responder may answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// IPv4.
    Arp(ArpRequest),
    /// IPv6.
    Ns(NeighborSolicitation),
}

impl Request {
    /// The address asked for.
    pub fn target(&self) -> std::net::IpAddr {
        match self {
            Request::Arp(r) => r.target_ip.into(),
            Request::Ns(r) => r.target.into(),
        }
    }
}

/// Why a frame is not a request to answer. Every variant is an ordinary outcome for traffic on a
/// shared segment: count it, never crash on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame ends before `what` does.
    #[error("truncated {what}: {len} bytes, need {need}")]
    Truncated {
        /// The part that is cut short.
        what: &'static str,
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Neither ARP nor IPv6.
    #[error("ethertype {0:#06x} is neither ARP nor IPv6")]
    OtherEtherType(u16),
    /// ARP for something other than IPv4 over Ethernet.
    #[error("ARP for hardware {hardware}, protocol {protocol:#06x}, lengths {hlen}/{plen}")]
    ArpNotEthernetIpv4 {
        /// Hardware type.
        hardware: u16,
        /// Protocol type.
        protocol: u16,
        /// Hardware address length.
        hlen: u8,
        /// Protocol address length.
        plen: u8,
    },
    /// An ARP reply or another operation.
    #[error("ARP operation {0} is not a request")]
    ArpNotRequest(u16),
    /// A gratuitous ARP (sender IP = target IP): an announcement, not a question.
    #[error("gratuitous ARP for {0}")]
    ArpGratuitous(Ipv4Addr),
    /// Not IPv6 version 6.
    #[error("IP version {0} in an IPv6 frame")]
    BadIpVersion(u8),
    /// IPv6 whose next header is not ICMPv6 (extension headers included: NS never carries them
    /// in practice, and skipping them is a parser we would have to harden for nothing).
    #[error("IPv6 next header {0} is not ICMPv6")]
    NotIcmpv6(u8),
    /// ICMPv6 but not a Neighbor Solicitation.
    #[error("ICMPv6 type {0} is not a Neighbor Solicitation")]
    NotNeighborSolicitation(u8),
    /// RFC 4861 7.1.1: the code must be 0.
    #[error("Neighbor Solicitation with code {0}")]
    BadCode(u8),
    /// RFC 4861 7.1.1: NDP packets must arrive with hop limit 255 (proves they are on-link).
    #[error("Neighbor Solicitation with hop limit {0}, want 255")]
    BadHopLimit(u8),
    /// The ICMPv6 checksum does not match.
    #[error("ICMPv6 checksum {got:#06x}, computed {want:#06x}")]
    BadChecksum {
        /// In the packet.
        got: u16,
        /// Computed over the pseudo-header and message.
        want: u16,
    },
    /// RFC 4861 7.1.1: the target must not be multicast.
    #[error("Neighbor Solicitation for multicast {0}")]
    MulticastTarget(Ipv6Addr),
    /// An NDP option of length 0 or running past the message.
    #[error("malformed NDP option at byte {0}")]
    BadOption(usize),
    /// RFC 4861 7.1.1: DAD solicitations (source `::`) go to a solicited-node group and carry no
    /// source link-layer option.
    #[error("Neighbor Solicitation from :: is malformed (destination {0})")]
    BadDadSolicitation(Ipv6Addr),
}

const ETH_LEN: usize = 14;
const ARP_LEN: usize = 28;
const IPV6_LEN: usize = 40;
const NS_LEN: usize = 24;
/// A Neighbor Advertisement with one link-layer address option.
const NA_LEN: usize = 24 + 8;
/// Ethernet frames shorter than this (without FCS) must be padded.
const MIN_FRAME: usize = 60;
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;

/// Parses one received Ethernet frame into a request to answer.
pub fn parse(frame: &[u8]) -> Result<Request, DecodeError> {
    let eth = EthernetPacket::new(frame).ok_or(DecodeError::Truncated {
        what: "Ethernet header",
        len: frame.len(),
        need: ETH_LEN,
    })?;
    let eth_src = Mac::from_pnet(eth.get_source());
    match eth.get_ethertype() {
        EtherTypes::Arp => parse_arp(eth_src, eth.payload()).map(Request::Arp),
        EtherTypes::Ipv6 => parse_ns(eth_src, eth.payload()).map(Request::Ns),
        other => Err(DecodeError::OtherEtherType(other.0)),
    }
}

fn parse_arp(eth_src: Mac, bytes: &[u8]) -> Result<ArpRequest, DecodeError> {
    let arp = ArpPacket::new(bytes).ok_or(DecodeError::Truncated {
        what: "ARP packet",
        len: bytes.len(),
        need: ARP_LEN,
    })?;
    if arp.get_hardware_type() != ArpHardwareTypes::Ethernet
        || arp.get_protocol_type() != EtherTypes::Ipv4
        || arp.get_hw_addr_len() != 6
        || arp.get_proto_addr_len() != 4
    {
        return Err(DecodeError::ArpNotEthernetIpv4 {
            hardware: arp.get_hardware_type().0,
            protocol: arp.get_protocol_type().0,
            hlen: arp.get_hw_addr_len(),
            plen: arp.get_proto_addr_len(),
        });
    }
    if arp.get_operation() != ArpOperations::Request {
        return Err(DecodeError::ArpNotRequest(arp.get_operation().0));
    }
    let (sender_ip, target_ip) = (arp.get_sender_proto_addr(), arp.get_target_proto_addr());
    if sender_ip == target_ip {
        return Err(DecodeError::ArpGratuitous(target_ip));
    }
    Ok(ArpRequest {
        eth_src,
        sender_mac: Mac::from_pnet(arp.get_sender_hw_addr()),
        sender_ip,
        target_ip,
    })
}

fn parse_ns(eth_src: Mac, bytes: &[u8]) -> Result<NeighborSolicitation, DecodeError> {
    let ip = Ipv6Packet::new(bytes).ok_or(DecodeError::Truncated {
        what: "IPv6 header",
        len: bytes.len(),
        need: IPV6_LEN,
    })?;
    if ip.get_version() != 6 {
        return Err(DecodeError::BadIpVersion(ip.get_version()));
    }
    if ip.get_next_header() != IpNextHeaderProtocols::Icmpv6 {
        return Err(DecodeError::NotIcmpv6(ip.get_next_header().0));
    }
    let declared = usize::from(ip.get_payload_length());
    let available = bytes.len() - IPV6_LEN;
    if declared > available {
        return Err(DecodeError::Truncated {
            what: "IPv6 payload",
            len: available,
            need: declared,
        });
    }
    // Ethernet padding may follow the payload: use the declared length, not the frame's.
    let msg = &bytes[IPV6_LEN..IPV6_LEN + declared];
    let icmp = Icmpv6Packet::new(msg).ok_or(DecodeError::Truncated {
        what: "ICMPv6 header",
        len: msg.len(),
        need: 4,
    })?;
    if icmp.get_icmpv6_type() != Icmpv6Types::NeighborSolicit {
        return Err(DecodeError::NotNeighborSolicitation(
            icmp.get_icmpv6_type().0,
        ));
    }
    if icmp.get_icmpv6_code() != Icmpv6Code(0) {
        return Err(DecodeError::BadCode(icmp.get_icmpv6_code().0));
    }
    if ip.get_hop_limit() != 255 {
        return Err(DecodeError::BadHopLimit(ip.get_hop_limit()));
    }
    let ns = NeighborSolicitPacket::new(msg).ok_or(DecodeError::Truncated {
        what: "Neighbor Solicitation",
        len: msg.len(),
        need: NS_LEN,
    })?;
    let (src, dst) = (ip.get_source(), ip.get_destination());
    let want = icmpv6::checksum(&icmp, &src, &dst);
    if icmp.get_checksum() != want {
        return Err(DecodeError::BadChecksum {
            got: icmp.get_checksum(),
            want,
        });
    }
    let target = ns.get_target_addr();
    if target.is_multicast() {
        return Err(DecodeError::MulticastTarget(target));
    }
    let source_ll = link_layer_option(&msg[NS_LEN..], OPT_SOURCE_LL, NS_LEN)?;
    if src.is_unspecified() && (source_ll.is_some() || dst != solicited_node(target)) {
        return Err(DecodeError::BadDadSolicitation(dst));
    }
    Ok(NeighborSolicitation {
        eth_src,
        source_ip: src,
        dest_ip: dst,
        target,
        source_ll,
    })
}

/// Walks NDP options (RFC 4861 4.6: type, length in units of 8 bytes, never 0) and returns the
/// first link-layer address option of `kind`. `base` is the options' offset, for errors.
fn link_layer_option(options: &[u8], kind: u8, base: usize) -> Result<Option<Mac>, DecodeError> {
    let mut found = None;
    let mut at = 0;
    while at < options.len() {
        let rest = &options[at..];
        let len = rest.get(1).map(|&l| usize::from(l) * 8).unwrap_or(0);
        if len == 0 || len > rest.len() {
            return Err(DecodeError::BadOption(base + at));
        }
        if rest[0] == kind && found.is_none() {
            let mac: [u8; 6] = rest
                .get(2..8)
                .and_then(|m| m.try_into().ok())
                .ok_or(DecodeError::BadOption(base + at))?;
            found = Some(Mac(mac));
        }
        at += len;
    }
    Ok(found)
}

/// Which gratuitous ARP to send. Hosts differ in which one updates their cache, so a takeover
/// sends both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GratuitousKind {
    /// A broadcast request with sender = target = the VIP.
    Request,
    /// A broadcast reply with sender = target = the VIP.
    Reply,
}

/// The ARP reply to `req`: `vip` is at `our_mac`, unicast to the asker.
pub fn arp_reply(our_mac: Mac, vip: Ipv4Addr, req: &ArpRequest) -> Vec<u8> {
    arp_frame(
        our_mac,
        req.eth_src,
        ArpOperations::Reply.0,
        (our_mac, vip),
        (req.sender_mac, req.sender_ip),
    )
}

/// A gratuitous ARP announcing that `vip` is at `our_mac`, broadcast.
pub fn gratuitous_arp(our_mac: Mac, vip: Ipv4Addr, kind: GratuitousKind) -> Vec<u8> {
    let (op, target_mac) = match kind {
        GratuitousKind::Request => (ArpOperations::Request.0, Mac::ZERO),
        // Linux (arp_is_garp) takes a reply as gratuitous only if its target MAC is the
        // sender's; then it overrides the cache even within the 1 s lock time.
        GratuitousKind::Reply => (ArpOperations::Reply.0, our_mac),
    };
    arp_frame(
        our_mac,
        Mac::BROADCAST,
        op,
        (our_mac, vip),
        (target_mac, vip),
    )
}

fn arp_frame(
    src: Mac,
    dst: Mac,
    op: u16,
    sender: (Mac, Ipv4Addr),
    target: (Mac, Ipv4Addr),
) -> Vec<u8> {
    let mut buf = vec![0u8; MIN_FRAME];
    if let Some(mut eth) = MutableEthernetPacket::new(&mut buf) {
        eth.set_destination(dst.to_pnet());
        eth.set_source(src.to_pnet());
        eth.set_ethertype(EtherTypes::Arp);
    }
    if let Some(mut arp) = MutableArpPacket::new(&mut buf[ETH_LEN..]) {
        arp.set_hardware_type(ArpHardwareTypes::Ethernet);
        arp.set_protocol_type(EtherTypes::Ipv4);
        arp.set_hw_addr_len(6);
        arp.set_proto_addr_len(4);
        arp.set_operation(pnet_packet::arp::ArpOperation(op));
        arp.set_sender_hw_addr(sender.0.to_pnet());
        arp.set_sender_proto_addr(sender.1);
        arp.set_target_hw_addr(target.0.to_pnet());
        arp.set_target_proto_addr(target.1);
    }
    buf
}

/// The Neighbor Advertisement answering `ns` for `vip`: Solicited and Override set, with our MAC
/// in the target link-layer option, unicast to the solicitor. A solicitation from `::` (duplicate
/// address detection) is answered to all nodes without the Solicited flag (RFC 4861 7.2.4).
///
/// The IPv6 source is the VIP itself: it is the address being defended, and Linux accepts an NA
/// from any source as long as hop limit (255), code and checksum are right.
pub fn neighbor_advertisement(our_mac: Mac, vip: Ipv6Addr, ns: &NeighborSolicitation) -> Vec<u8> {
    if ns.source_ip.is_unspecified() {
        return na_frame(
            our_mac,
            Mac::ipv6_multicast(ALL_NODES),
            vip,
            ALL_NODES,
            NeighborAdvertFlags::Override,
        );
    }
    na_frame(
        our_mac,
        ns.source_ll.unwrap_or(ns.eth_src),
        vip,
        ns.source_ip,
        NeighborAdvertFlags::Solicited | NeighborAdvertFlags::Override,
    )
}

/// An unsolicited Neighbor Advertisement for `vip` to all nodes (`ff02::1`), Override set and
/// Solicited clear: the IPv6 counterpart of a gratuitous ARP.
pub fn unsolicited_na(our_mac: Mac, vip: Ipv6Addr) -> Vec<u8> {
    na_frame(
        our_mac,
        Mac::ipv6_multicast(ALL_NODES),
        vip,
        ALL_NODES,
        NeighborAdvertFlags::Override,
    )
}

fn na_frame(src_mac: Mac, dst_mac: Mac, vip: Ipv6Addr, dst_ip: Ipv6Addr, flags: u8) -> Vec<u8> {
    let mut buf = vec![0u8; ETH_LEN + IPV6_LEN + NA_LEN];
    if let Some(mut eth) = MutableEthernetPacket::new(&mut buf) {
        eth.set_destination(dst_mac.to_pnet());
        eth.set_source(src_mac.to_pnet());
        eth.set_ethertype(EtherTypes::Ipv6);
    }
    if let Some(mut ip) = MutableIpv6Packet::new(&mut buf[ETH_LEN..]) {
        ip.set_version(6);
        ip.set_payload_length(NA_LEN as u16);
        ip.set_next_header(IpNextHeaderProtocols::Icmpv6);
        ip.set_hop_limit(255);
        ip.set_source(vip);
        ip.set_destination(dst_ip);
    }
    let msg = &mut buf[ETH_LEN + IPV6_LEN..];
    if let Some(mut na) = MutableNeighborAdvertPacket::new(msg) {
        na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
        na.set_icmpv6_code(Icmpv6Code(0));
        na.set_flags(flags);
        na.set_target_addr(vip);
    }
    msg[24..32].copy_from_slice(&[
        OPT_TARGET_LL,
        1,
        src_mac.0[0],
        src_mac.0[1],
        src_mac.0[2],
        src_mac.0[3],
        src_mac.0[4],
        src_mac.0[5],
    ]);
    let sum = Icmpv6Packet::new(msg).map(|p| icmpv6::checksum(&p, &vip, &dst_ip));
    if let Some(sum) = sum {
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    buf
}

#[cfg(test)]
mod tests;
