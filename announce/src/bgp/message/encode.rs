//! Our BGP encoder: OPEN and UPDATE bodies, written straight from RFC 4271, 4760, 5492,
//! 6793, 1997 and 8092.
//!
//! It replaced zettabgp (0.6), which wrote AS_SEQUENCE as AS_SET, a NOTIFICATION with exactly
//! two data bytes, LARGE_COMMUNITIES with the Partial bit set, and needed a 16 KiB scratch
//! buffer per UPDATE; every caller had to work around it. What we send is small (a handful of
//! attributes and unicast prefixes), so the encoder is too, and the wire choices are ours:
//! - MP_REACH_NLRI / MP_UNREACH_NLRI first, the other attributes in ascending type order
//!   (RFC 7606 section 5.1 and RFC 4271 section 5);
//! - the Extended Length bit only on values longer than 255 bytes;
//! - all capabilities in one optional parameter (as BIRD and FRR send them).
//!
//! The golden messages captured from BIRD, FRR and GoBGP (`announce/tests/golden/bgp`) are
//! decoded and re-encoded in the tests to check both directions against real routers.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{
    AFI_IPV4, AFI_IPV6, AS_TRANS, AsSegment, Capability, Codec, EncodeError, MpReach, Open, Origin,
    SAFI_UNICAST, Update, attr, flag,
};

/// Appends one path attribute: flags (Extended Length set only when needed), type, length,
/// value.
fn put_attr(out: &mut Vec<u8>, flags: u8, tc: u8, value: &[u8]) -> Result<(), EncodeError> {
    let flags = flags & !flag::EXTENDED_LENGTH;
    if let Ok(len) = u8::try_from(value.len()) {
        out.extend_from_slice(&[flags, tc, len]);
    } else {
        let len = u16::try_from(value.len()).map_err(|_| EncodeError::TooLong(value.len()))?;
        out.extend_from_slice(&[flags | flag::EXTENDED_LENGTH, tc]);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(value);
    Ok(())
}

/// Appends prefixes in NLRI encoding (length in bits, then the significant bytes).
fn put_prefixes<'a>(out: &mut Vec<u8>, prefixes: impl IntoIterator<Item = &'a IpNet>) {
    for p in prefixes {
        let n = (p.prefix_len() as usize).div_ceil(8);
        out.push(p.prefix_len());
        match p.network() {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..n]),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..n]),
        }
    }
}

/// The one family of a run of prefixes (an MP attribute carries one).
fn family(prefixes: &[IpNet]) -> Result<u16, EncodeError> {
    let v4 = prefixes.iter().filter(|p| p.addr().is_ipv4()).count();
    match (v4, prefixes.len() - v4) {
        (0, _) => Ok(AFI_IPV6),
        (_, 0) => Ok(AFI_IPV4),
        _ => Err(EncodeError::Unsupported(
            "one MP attribute carries one family",
        )),
    }
}

fn mp_reach_value(mp: &MpReach) -> Result<Vec<u8>, EncodeError> {
    let mut next_hop = Vec::with_capacity(32);
    let next_hop_afi = match mp.next_hops.as_slice() {
        [IpAddr::V4(a)] => {
            next_hop.extend_from_slice(&a.octets());
            AFI_IPV4
        }
        // Global, optionally followed by link-local (RFC 2545 section 3).
        [IpAddr::V6(g)] => {
            next_hop.extend_from_slice(&g.octets());
            AFI_IPV6
        }
        [IpAddr::V6(g), IpAddr::V6(ll)] => {
            next_hop.extend_from_slice(&g.octets());
            next_hop.extend_from_slice(&ll.octets());
            AFI_IPV6
        }
        _ => {
            return Err(EncodeError::Unsupported(
                "MP_REACH needs one next hop (or IPv6 global plus link-local)",
            ));
        }
    };
    // The prefixes' family; IPv4 prefixes may have IPv6 next hops (RFC 8950), not the reverse.
    let afi = if mp.prefixes.is_empty() {
        next_hop_afi
    } else {
        family(&mp.prefixes)?
    };
    if afi == AFI_IPV6 && next_hop_afi == AFI_IPV4 {
        return Err(EncodeError::Unsupported(
            "MP_REACH with IPv6 prefixes and an IPv4 next hop",
        ));
    }
    let mut v = Vec::with_capacity(5 + next_hop.len() + 17 * mp.prefixes.len());
    v.extend_from_slice(&afi.to_be_bytes());
    v.push(SAFI_UNICAST);
    v.push(next_hop.len() as u8);
    v.extend_from_slice(&next_hop);
    v.push(0); // reserved (was: number of SNPAs)
    put_prefixes(&mut v, &mp.prefixes);
    Ok(v)
}

/// An empty MP_UNREACH is IPv6's (the IPv4 withdrawals travel in the classic field).
fn mp_unreach_value(withdrawn: &[IpNet]) -> Result<Vec<u8>, EncodeError> {
    let mut v = Vec::with_capacity(3 + 17 * withdrawn.len());
    v.extend_from_slice(&family(withdrawn)?.to_be_bytes());
    v.push(SAFI_UNICAST);
    put_prefixes(&mut v, withdrawn);
    Ok(v)
}

impl Codec {
    /// The UPDATE body (after the header).
    pub(super) fn encode_update(&self, u: &Update) -> Result<Vec<u8>, EncodeError> {
        let a = &u.attrs;
        let mut attrs = Vec::with_capacity(128);
        if let Some(w) = &a.mp_unreach {
            put_attr(
                &mut attrs,
                flag::OPTIONAL,
                attr::MP_UNREACH_NLRI,
                &mp_unreach_value(w)?,
            )?;
        }
        if let Some(mp) = &a.mp_reach {
            put_attr(
                &mut attrs,
                flag::OPTIONAL,
                attr::MP_REACH_NLRI,
                &mp_reach_value(mp)?,
            )?;
        }
        // The rest in ascending type order: ours, then the opaque ones slotted in.
        let mut rest: Vec<(u8, u8, Vec<u8>)> = Vec::with_capacity(8 + a.other.len());
        if let Some(o) = a.origin {
            let v = match o {
                Origin::Igp => 0,
                Origin::Egp => 1,
                Origin::Incomplete => 2,
            };
            rest.push((attr::ORIGIN, flag::TRANSITIVE, vec![v]));
        }
        if let Some(path) = &a.as_path {
            rest.push((attr::AS_PATH, flag::TRANSITIVE, self.encode_as_path(path)?));
        }
        if let Some(nh) = a.next_hop {
            rest.push((attr::NEXT_HOP, flag::TRANSITIVE, nh.octets().to_vec()));
        }
        if let Some(m) = a.med {
            rest.push((attr::MED, flag::OPTIONAL, m.to_be_bytes().to_vec()));
        }
        if let Some(lp) = a.local_pref {
            rest.push((
                attr::LOCAL_PREF,
                flag::TRANSITIVE,
                lp.to_be_bytes().to_vec(),
            ));
        }
        if !a.communities.is_empty() {
            let v = a.communities.iter().flat_map(|c| c.to_be_bytes()).collect();
            rest.push((attr::COMMUNITIES, flag::OPTIONAL | flag::TRANSITIVE, v));
        }
        if !a.large_communities.is_empty() {
            let v = a
                .large_communities
                .iter()
                .flat_map(|c| {
                    [c.global, c.local1, c.local2]
                        .into_iter()
                        .flat_map(u32::to_be_bytes)
                })
                .collect();
            rest.push((
                attr::LARGE_COMMUNITIES,
                flag::OPTIONAL | flag::TRANSITIVE,
                v,
            ));
        }
        for (flags, tc, v) in &a.other {
            if rest.iter().any(|(t, ..)| t == tc)
                || matches!(*tc, attr::MP_REACH_NLRI | attr::MP_UNREACH_NLRI)
                    && (a.mp_reach.is_some() || a.mp_unreach.is_some())
            {
                return Err(EncodeError::Unsupported("an attribute twice"));
            }
            rest.push((*tc, *flags, v.clone()));
        }
        rest.sort_by_key(|(tc, ..)| *tc);
        for (tc, flags, v) in &rest {
            put_attr(&mut attrs, *flags, *tc, v)?;
        }

        let withdrawn: Vec<IpNet> = u.withdrawn.iter().map(|&n| IpNet::V4(n)).collect();
        let nlri: Vec<IpNet> = u.nlri.iter().map(|&n| IpNet::V4(n)).collect();
        let mut w = Vec::new();
        put_prefixes(&mut w, &withdrawn);
        let mut body = Vec::with_capacity(4 + w.len() + attrs.len() + 5 * nlri.len());
        let wlen = u16::try_from(w.len()).map_err(|_| EncodeError::TooLong(w.len()))?;
        body.extend_from_slice(&wlen.to_be_bytes());
        body.extend_from_slice(&w);
        let alen = u16::try_from(attrs.len()).map_err(|_| EncodeError::TooLong(attrs.len()))?;
        body.extend_from_slice(&alen.to_be_bytes());
        body.extend_from_slice(&attrs);
        put_prefixes(&mut body, &nlri);
        Ok(body)
    }

    /// AS_PATH value bytes. Without the 4-octet capability a large ASN travels as AS_TRANS
    /// (RFC 6793 4.2.2; the AS4_PATH that would carry the real path is not sent: every peer we
    /// target speaks 4-octet ASNs).
    pub(super) fn encode_as_path(&self, path: &[AsSegment]) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        for s in path {
            let (ty, v) = match s {
                AsSegment::Set(v) => (1u8, v),
                AsSegment::Sequence(v) => (2u8, v),
            };
            let n =
                u8::try_from(v.len())
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(EncodeError::Unsupported(
                        "AS_PATH segment of 0 or more than 255 ASNs",
                    ))?;
            out.extend_from_slice(&[ty, n]);
            for &a in v {
                if self.four_octet_as {
                    out.extend_from_slice(&a.to_be_bytes());
                } else {
                    let a = u16::try_from(a).unwrap_or(AS_TRANS);
                    out.extend_from_slice(&a.to_be_bytes());
                }
            }
        }
        Ok(out)
    }
}

/// The OPEN body (after the header): version, AS, hold time, identifier and one optional
/// parameter (type 2) holding every capability.
pub(super) fn encode_open(o: &Open) -> Result<Vec<u8>, EncodeError> {
    if o.version != 4 {
        return Err(EncodeError::Unsupported("BGP version other than 4"));
    }
    let mut caps = Vec::new();
    for c in &o.capabilities {
        let (code, value): (u8, Vec<u8>) = match c {
            Capability::Multiprotocol { afi, safi } => {
                let a = afi.to_be_bytes();
                (1, vec![a[0], a[1], 0, *safi])
            }
            Capability::RouteRefresh => (2, Vec::new()),
            Capability::FourOctetAs(a) => (65, a.to_be_bytes().to_vec()),
            Capability::ExtendedNextHop(triples) => (
                5,
                (triples.iter())
                    .flat_map(|(a, s, n)| [a.to_be_bytes(), s.to_be_bytes(), n.to_be_bytes()])
                    .flatten()
                    .collect(),
            ),
            Capability::GracefulRestart(g) => {
                let time = g.restart_time.min(0x0fff).to_be_bytes();
                let flags = (u8::from(g.restarted) << 7) | (u8::from(g.notification) << 6);
                let mut v = vec![flags | time[0], time[1]];
                for (afi, safi, forwarding) in &g.families {
                    v.extend_from_slice(&afi.to_be_bytes());
                    v.extend_from_slice(&[*safi, u8::from(*forwarding) << 7]);
                }
                (64, v)
            }
            Capability::Unknown { code, data } => (*code, data.clone()),
        };
        let len = u8::try_from(value.len())
            .map_err(|_| EncodeError::Unsupported("a capability longer than 255 bytes"))?;
        caps.extend_from_slice(&[code, len]);
        caps.extend_from_slice(&value);
    }
    let mut out = Vec::with_capacity(12 + caps.len());
    out.push(o.version);
    out.extend_from_slice(&o.my_as.to_be_bytes());
    out.extend_from_slice(&o.hold_time.to_be_bytes());
    out.extend_from_slice(&o.bgp_id.octets());
    if caps.is_empty() {
        out.push(0);
    } else {
        let plen =
            u8::try_from(caps.len())
                .ok()
                .filter(|&l| l <= 253)
                .ok_or(EncodeError::Unsupported(
                    "optional parameters longer than 255 bytes",
                ))?;
        out.extend_from_slice(&[plen + 2, 2, plen]);
        out.extend_from_slice(&caps);
    }
    Ok(out)
}
