//! BGP messages (RFC 4271 section 4) as our own small typed values, with encoding and decoding.
//!
//! Encoding goes through `zettabgp` for OPEN (capabilities) and UPDATE (ORIGIN, AS_PATH,
//! NEXT_HOP, LOCAL_PREF, COMMUNITIES, MP_REACH/MP_UNREACH and the NLRI encoding). Three parts
//! are ours, on purpose:
//! - **Decoding.** zettabgp's decoders index buffers without bounds checks (for example the
//!   attribute loop reads `buf[pos + 1]` past the end, the header computes `len - 19` which
//!   underflows, capability lengths are subtracted unchecked) and guess ADD-PATH encoding from
//!   the bytes (`fuzzy_pathid`); with an IPv6 transport it even reads classic NLRI as IPv6.
//!   A decoder fed by the network must never panic, so decoding is a bounds-checked parser
//!   here that returns a [`DecodeError`] carrying the NOTIFICATION code to send.
//! - **NOTIFICATION**: zettabgp's always carries exactly two data bytes (RFC 4271 data is
//!   variable: empty for Cease, the AS for Bad Peer AS...).
//! - **AS_PATH**: zettabgp 0.6 writes an AS_SEQUENCE with segment type 1, which is AS_SET
//!   (RFC 4271 4.3 says 1 = AS_SET, 2 = AS_SEQUENCE; its own decoder reads 1 as a set), and
//!   keeps sets sorted. An eBGP path `[my ASN]` would reach routers as `{my ASN}`.
//! - **LARGE_COMMUNITIES** (RFC 8092): zettabgp sets the Partial bit on the attribute it
//!   originates; we encode it as a raw attribute with flags optional+transitive.
//!
//! Round-trip tests therefore check two independent implementations against each other.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use zettabgp::prelude::{
    BgpAddr, BgpAddrV4, BgpAddrV6, BgpAddrs, BgpAttrItem, BgpAttrOrigin, BgpAttrUnknown,
    BgpCommunity, BgpCommunityList, BgpLocalpref, BgpMED, BgpMPUpdates, BgpMPWithdraws, BgpNextHop,
    BgpOpenMessage, BgpOrigin, BgpUpdateMessage,
};
use zettabgp::{BgpCapability, BgpMessage, BgpSessionParams, BgpTransportMode};

/// Length of the fixed header (marker, length, type).
pub const HEADER_LEN: usize = 19;
/// Largest message allowed without the extended message capability (RFC 4271).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// AS_TRANS (RFC 6793): the 2-octet placeholder for a 4-octet AS number.
pub const AS_TRANS: u16 = 23456;

/// Address family / subsequent address family pairs we speak.
pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
pub const SAFI_UNICAST: u8 = 1;

/// A BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    /// ROUTE-REFRESH (RFC 2918): the peer asks us to resend our routes of this family.
    RouteRefresh {
        afi: u16,
        safi: u8,
    },
}

impl Message {
    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Open(_) => "OPEN",
            Message::Update(_) => "UPDATE",
            Message::Notification(_) => "NOTIFICATION",
            Message::Keepalive => "KEEPALIVE",
            Message::RouteRefresh { .. } => "ROUTE-REFRESH",
        }
    }
}

/// An OPEN message. `my_as` is the 2-octet field (AS_TRANS for large ASNs); see [`Open::asn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// An OPEN for `asn` (the 2-octet field becomes AS_TRANS if it does not fit) with the
    /// capabilities we always announce: 4-octet AS, route refresh and the given families.
    pub fn new(asn: u32, hold_time: u16, bgp_id: Ipv4Addr, families: &[(u16, u8)]) -> Open {
        let mut capabilities: Vec<Capability> = families
            .iter()
            .map(|&(afi, safi)| Capability::Multiprotocol { afi, safi })
            .collect();
        capabilities.push(Capability::RouteRefresh);
        capabilities.push(Capability::FourOctetAs(asn));
        Open {
            version: 4,
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_id,
            capabilities,
        }
    }

    /// The speaker's AS: from the 4-octet capability if present, else the 2-octet field.
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(u32::from(self.my_as))
    }

    /// The AS of the 4-octet AS capability, if announced.
    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(a) => Some(*a),
            _ => None,
        })
    }

    /// Whether the OPEN announces multiprotocol support for `afi`/`safi`.
    pub fn has_family(&self, afi: u16, safi: u8) -> bool {
        self.capabilities
            .contains(&Capability::Multiprotocol { afi, safi })
    }

    /// Whether the OPEN announces the route refresh capability.
    pub fn has_route_refresh(&self) -> bool {
        self.capabilities.contains(&Capability::RouteRefresh)
    }
}

/// A capability from an OPEN (RFC 5492).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// RFC 4760, code 1.
    Multiprotocol { afi: u16, safi: u8 },
    /// RFC 2918, code 2.
    RouteRefresh,
    /// RFC 6793, code 65.
    FourOctetAs(u32),
    /// Anything else, kept as received.
    Unknown { code: u8, data: Vec<u8> },
}

/// ORIGIN values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Igp,
    Egp,
    Incomplete,
}

/// One AS_PATH segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AsSegment {
    Sequence(Vec<u32>),
    Set(Vec<u32>),
}

/// A large community (RFC 8092).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global: u32,
    pub local1: u32,
    pub local2: u32,
}

/// Reachability carried in MP_REACH_NLRI (IPv4 or IPv6 unicast).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    /// One next hop, or global plus link-local for IPv6.
    pub next_hops: Vec<IpAddr>,
    pub prefixes: Vec<IpNet>,
}

/// Path attributes of an UPDATE. Communities are sets: the wire order carries no meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathAttrs {
    pub origin: Option<Origin>,
    pub as_path: Option<Vec<AsSegment>>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub communities: BTreeSet<u32>,
    pub large_communities: BTreeSet<LargeCommunity>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<Vec<IpNet>>,
    /// Attributes we do not interpret: (flags, type code, value).
    pub other: Vec<(u8, u8, Vec<u8>)>,
}

/// An UPDATE: classic IPv4 withdrawals and NLRI plus attributes (IPv6 rides in MP_*).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub withdrawn: Vec<Ipv4Net>,
    pub attrs: PathAttrs,
    pub nlri: Vec<Ipv4Net>,
}

impl Update {
    /// Every prefix this UPDATE announces (classic NLRI and MP_REACH).
    pub fn announced(&self) -> impl Iterator<Item = IpNet> + '_ {
        let mp = self
            .attrs
            .mp_reach
            .iter()
            .flat_map(|m| m.prefixes.iter().copied());
        self.nlri.iter().map(|&n| IpNet::V4(n)).chain(mp)
    }

    /// Every prefix this UPDATE withdraws (classic and MP_UNREACH).
    pub fn withdrawn_all(&self) -> impl Iterator<Item = IpNet> + '_ {
        let mp = self.attrs.mp_unreach.iter().flat_map(|m| m.iter().copied());
        self.withdrawn.iter().map(|&n| IpNet::V4(n)).chain(mp)
    }
}

/// A NOTIFICATION (RFC 4271 4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8) -> Self {
        Notification {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    pub fn with_data(code: u8, subcode: u8, data: Vec<u8>) -> Self {
        Notification {
            code,
            subcode,
            data,
        }
    }

    /// Cease / Administrative Shutdown (RFC 4486): what we send on a graceful stop.
    pub fn cease_shutdown() -> Self {
        Notification::new(code::CEASE, 2)
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, s) = (self.code, self.subcode);
        let name = match (c, s) {
            (1, 1) => "header: connection not synchronized",
            (1, 2) => "header: bad message length",
            (1, 3) => "header: bad message type",
            (2, 1) => "OPEN: unsupported version number",
            (2, 2) => "OPEN: bad peer AS",
            (2, 3) => "OPEN: bad BGP identifier",
            (2, 4) => "OPEN: unsupported optional parameter",
            (2, 6) => "OPEN: unacceptable hold time",
            (2, 7) => "OPEN: unsupported capability",
            (2, _) => "OPEN message error",
            (3, _) => "UPDATE message error",
            (4, _) => "hold timer expired",
            (5, _) => "finite state machine error",
            (6, 1) => "cease: maximum number of prefixes reached",
            (6, 2) => "cease: administrative shutdown",
            (6, 3) => "cease: peer de-configured",
            (6, 4) => "cease: administrative reset",
            (6, 5) => "cease: connection rejected",
            (6, 6) => "cease: other configuration change",
            (6, 7) => "cease: connection collision resolution",
            (6, 8) => "cease: out of resources",
            (6, _) => "cease",
            _ => "unknown error",
        };
        write!(f, "{name} ({c}/{s})")
    }
}

/// NOTIFICATION error codes (RFC 4271 4.5) and the subcodes we use.
pub mod code {
    pub const HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;

    pub const HDR_NOT_SYNCHRONIZED: u8 = 1;
    pub const HDR_BAD_LENGTH: u8 = 2;
    pub const HDR_BAD_TYPE: u8 = 3;

    pub const OPEN_UNSUPPORTED_VERSION: u8 = 1;
    pub const OPEN_BAD_PEER_AS: u8 = 2;
    pub const OPEN_BAD_BGP_ID: u8 = 3;
    pub const OPEN_UNSUPPORTED_OPT_PARAM: u8 = 4;
    pub const OPEN_UNACCEPTABLE_HOLD_TIME: u8 = 6;

    pub const UPD_MALFORMED_ATTR_LIST: u8 = 1;
    pub const UPD_MISSING_WELL_KNOWN: u8 = 3;
    pub const UPD_ATTR_FLAGS: u8 = 4;
    pub const UPD_ATTR_LENGTH: u8 = 5;
    pub const UPD_INVALID_ORIGIN: u8 = 6;
    pub const UPD_INVALID_NETWORK: u8 = 10;
    pub const UPD_MALFORMED_AS_PATH: u8 = 11;

    pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
    pub const CEASE_COLLISION: u8 = 7;
}

/// Why bytes are not a valid message. [`DecodeError::notification`] is what to send back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("marker is not all ones")]
    NotSynchronized,
    #[error("bad message length {0}")]
    BadLength(u16),
    #[error("bad message type {0}")]
    BadType(u8),
    #[error("OPEN: unsupported version {0}")]
    UnsupportedVersion(u8),
    #[error("OPEN: unsupported optional parameter {0}")]
    UnsupportedOptionalParameter(u8),
    #[error("OPEN: malformed: {0}")]
    MalformedOpen(&'static str),
    #[error("UPDATE: malformed attribute list: {0}")]
    MalformedAttributeList(&'static str),
    #[error("UPDATE: attribute {0}: bad flags {1:#04x}")]
    AttributeFlags(u8, u8),
    #[error("UPDATE: attribute {0}: bad length {1}")]
    AttributeLength(u8, usize),
    #[error("UPDATE: invalid ORIGIN {0}")]
    InvalidOrigin(u8),
    #[error("UPDATE: malformed AS_PATH")]
    MalformedAsPath,
    #[error("UPDATE: invalid network field: {0}")]
    InvalidNetwork(&'static str),
    #[error("UPDATE: missing well-known attribute {0}")]
    MissingWellKnown(u8),
    #[error("{0}: bad length")]
    BadBodyLength(&'static str),
}

impl DecodeError {
    /// The NOTIFICATION RFC 4271 6.1–6.3 asks for.
    pub fn notification(&self) -> Notification {
        use code::*;
        match *self {
            DecodeError::NotSynchronized => Notification::new(HEADER, HDR_NOT_SYNCHRONIZED),
            DecodeError::BadLength(l) => {
                Notification::with_data(HEADER, HDR_BAD_LENGTH, l.to_be_bytes().to_vec())
            }
            DecodeError::BadBodyLength(_) => Notification::new(HEADER, HDR_BAD_LENGTH),
            DecodeError::BadType(t) => Notification::with_data(HEADER, HDR_BAD_TYPE, vec![t]),
            DecodeError::UnsupportedVersion(_) => {
                Notification::with_data(OPEN, OPEN_UNSUPPORTED_VERSION, 4u16.to_be_bytes().into())
            }
            DecodeError::UnsupportedOptionalParameter(_) => {
                Notification::new(OPEN, OPEN_UNSUPPORTED_OPT_PARAM)
            }
            DecodeError::MalformedOpen(_) => Notification::new(OPEN, 0),
            DecodeError::MalformedAttributeList(_) => {
                Notification::new(UPDATE, UPD_MALFORMED_ATTR_LIST)
            }
            DecodeError::AttributeFlags(..) => Notification::new(UPDATE, UPD_ATTR_FLAGS),
            DecodeError::AttributeLength(..) => Notification::new(UPDATE, UPD_ATTR_LENGTH),
            DecodeError::InvalidOrigin(_) => Notification::new(UPDATE, UPD_INVALID_ORIGIN),
            DecodeError::MalformedAsPath => Notification::new(UPDATE, UPD_MALFORMED_AS_PATH),
            DecodeError::InvalidNetwork(_) => Notification::new(UPDATE, UPD_INVALID_NETWORK),
            DecodeError::MissingWellKnown(t) => {
                Notification::with_data(UPDATE, UPD_MISSING_WELL_KNOWN, vec![t])
            }
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("message would be {0} bytes, more than 4096")]
    TooLong(usize),
    #[error("cannot encode: {0}")]
    Unsupported(&'static str),
    #[error("codec: {0}")]
    Codec(String),
}

impl From<zettabgp::error::BgpError> for EncodeError {
    fn from(e: zettabgp::error::BgpError) -> Self {
        EncodeError::Codec(e.to_string())
    }
}

/// Session facts that change the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    /// Both sides announced the 4-octet AS capability: AS_PATH carries 4-octet ASNs.
    pub four_octet_as: bool,
}

impl Default for Codec {
    fn default() -> Self {
        Codec {
            four_octet_as: true,
        }
    }
}

/// If `buf` starts with a whole message, its length (from the header); `Ok(None)` if more
/// bytes are needed. Errors on a bad marker or an impossible length, so a stream reader can
/// frame without decoding.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16].iter().any(|&b| b != 0xff) {
        return Err(DecodeError::NotSynchronized);
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]);
    if (len as usize) < HEADER_LEN || len as usize > MAX_MESSAGE_LEN {
        return Err(DecodeError::BadLength(len));
    }
    Ok((buf.len() >= len as usize).then_some(len as usize))
}

impl Codec {
    /// Decodes exactly one message (`buf` must hold exactly the framed message).
    pub fn decode(&self, buf: &[u8]) -> Result<Message, DecodeError> {
        let len = match frame_len(buf)? {
            Some(l) => l,
            None => return Err(DecodeError::BadLength(buf.len().min(65535) as u16)),
        };
        if len != buf.len() {
            return Err(DecodeError::BadLength(len as u16));
        }
        let body = &buf[HEADER_LEN..];
        let bad_len = DecodeError::BadLength(len as u16);
        match buf[18] {
            1 => {
                if len < HEADER_LEN + 10 {
                    return Err(bad_len);
                }
                decode_open(body).map(Message::Open)
            }
            2 => {
                if len < HEADER_LEN + 4 {
                    return Err(bad_len);
                }
                self.decode_update(body).map(Message::Update)
            }
            3 => {
                if len < HEADER_LEN + 2 {
                    return Err(bad_len);
                }
                Ok(Message::Notification(Notification {
                    code: body[0],
                    subcode: body[1],
                    data: body[2..].to_vec(),
                }))
            }
            4 => {
                if len != HEADER_LEN {
                    return Err(bad_len);
                }
                Ok(Message::Keepalive)
            }
            5 => {
                if len != HEADER_LEN + 4 {
                    return Err(bad_len);
                }
                Ok(Message::RouteRefresh {
                    afi: u16::from_be_bytes([body[0], body[1]]),
                    safi: body[3],
                })
            }
            t => Err(DecodeError::BadType(t)),
        }
    }

    fn decode_update(&self, body: &[u8]) -> Result<Update, DecodeError> {
        let mut r = Reader(body);
        let wlen = r
            .u16()
            .ok_or(DecodeError::MalformedAttributeList("short"))? as usize;
        let withdrawn_bytes = r
            .take(wlen)
            .ok_or(DecodeError::MalformedAttributeList("withdrawn length"))?;
        let alen = r
            .u16()
            .ok_or(DecodeError::MalformedAttributeList("short"))? as usize;
        let attr_bytes = r
            .take(alen)
            .ok_or(DecodeError::MalformedAttributeList("attribute length"))?;
        let withdrawn = decode_prefixes(withdrawn_bytes, AFI_IPV4)?
            .into_iter()
            .filter_map(as_v4)
            .collect();
        let nlri: Vec<Ipv4Net> = decode_prefixes(r.0, AFI_IPV4)?
            .into_iter()
            .filter_map(as_v4)
            .collect();
        let attrs = self.decode_attrs(attr_bytes)?;
        let announces = !nlri.is_empty() || attrs.mp_reach.is_some();
        if announces {
            if attrs.origin.is_none() {
                return Err(DecodeError::MissingWellKnown(1));
            }
            if attrs.as_path.is_none() {
                return Err(DecodeError::MissingWellKnown(2));
            }
        }
        if !nlri.is_empty() && attrs.next_hop.is_none() {
            return Err(DecodeError::MissingWellKnown(3));
        }
        Ok(Update {
            withdrawn,
            attrs,
            nlri,
        })
    }

    fn decode_attrs(&self, bytes: &[u8]) -> Result<PathAttrs, DecodeError> {
        let mut attrs = PathAttrs::default();
        let mut seen = [false; 256];
        let mut r = Reader(bytes);
        while !r.0.is_empty() {
            let flags = r.u8().ok_or(DecodeError::MalformedAttributeList("short"))?;
            let tc = r.u8().ok_or(DecodeError::MalformedAttributeList("short"))?;
            let len = if flags & 0x10 != 0 {
                r.u16().map(usize::from)
            } else {
                r.u8().map(usize::from)
            }
            .ok_or(DecodeError::MalformedAttributeList("short"))?;
            let v = r.take(len).ok_or(DecodeError::AttributeLength(tc, len))?;
            if std::mem::replace(&mut seen[tc as usize], true) {
                return Err(DecodeError::MalformedAttributeList("repeated attribute"));
            }
            let optional = flags & 0x80 != 0;
            let well_known = matches!(tc, 1 | 2 | 3 | 5);
            if (well_known && optional)
                || (!well_known && matches!(tc, 4 | 8 | 14 | 15 | 32) && !optional)
            {
                return Err(DecodeError::AttributeFlags(tc, flags));
            }
            match tc {
                1 => {
                    let [o] = v else {
                        return Err(DecodeError::AttributeLength(tc, len));
                    };
                    attrs.origin = Some(match o {
                        0 => Origin::Igp,
                        1 => Origin::Egp,
                        2 => Origin::Incomplete,
                        o => return Err(DecodeError::InvalidOrigin(*o)),
                    });
                }
                2 => attrs.as_path = Some(decode_as_path(v, self.four_octet_as)?),
                3 => {
                    let a: [u8; 4] = v
                        .try_into()
                        .map_err(|_| DecodeError::AttributeLength(tc, len))?;
                    attrs.next_hop = Some(Ipv4Addr::from(a));
                }
                4 | 5 => {
                    let a: [u8; 4] = v
                        .try_into()
                        .map_err(|_| DecodeError::AttributeLength(tc, len))?;
                    let x = u32::from_be_bytes(a);
                    if tc == 4 {
                        attrs.med = Some(x);
                    } else {
                        attrs.local_pref = Some(x);
                    }
                }
                8 => {
                    if v.len() % 4 != 0 {
                        return Err(DecodeError::AttributeLength(tc, len));
                    }
                    attrs.communities = v
                        .chunks_exact(4)
                        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                }
                32 => {
                    if v.len() % 12 != 0 {
                        return Err(DecodeError::AttributeLength(tc, len));
                    }
                    attrs.large_communities = v
                        .chunks_exact(12)
                        .map(|c| LargeCommunity {
                            global: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                            local1: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                            local2: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                        })
                        .collect();
                }
                14 => match decode_mp_reach(v)? {
                    Some(m) => attrs.mp_reach = Some(m),
                    None => attrs.other.push((flags, tc, v.to_vec())),
                },
                15 => match decode_mp_unreach(v)? {
                    Some(m) => attrs.mp_unreach = Some(m),
                    None => attrs.other.push((flags, tc, v.to_vec())),
                },
                _ => attrs.other.push((flags, tc, v.to_vec())),
            }
        }
        Ok(attrs)
    }

    /// Encodes a message, at most 4096 bytes.
    pub fn encode(&self, msg: &Message) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![0xffu8; HEADER_LEN];
        let ty = match msg {
            Message::Open(o) => {
                out.extend_from_slice(&encode_open(o)?);
                1
            }
            Message::Update(u) => {
                out.extend_from_slice(&self.encode_update(u)?);
                2
            }
            Message::Notification(n) => {
                out.extend_from_slice(&[n.code, n.subcode]);
                out.extend_from_slice(&n.data);
                3
            }
            Message::Keepalive => 4,
            Message::RouteRefresh { afi, safi } => {
                out.extend_from_slice(&afi.to_be_bytes());
                out.extend_from_slice(&[0, *safi]);
                5
            }
        };
        if out.len() > MAX_MESSAGE_LEN {
            return Err(EncodeError::TooLong(out.len()));
        }
        let len = out.len() as u16;
        out[16..18].copy_from_slice(&len.to_be_bytes());
        out[18] = ty;
        Ok(out)
    }

    /// The session parameters zettabgp's encoders consult.
    fn params(&self) -> BgpSessionParams {
        let mut p = BgpSessionParams::new(
            0,
            0,
            BgpTransportMode::IPv4,
            Ipv4Addr::UNSPECIFIED,
            Vec::new(),
        );
        p.has_as32bit = self.four_octet_as;
        p.fuzzy_pathid = false;
        p
    }

    fn encode_update(&self, u: &Update) -> Result<Vec<u8>, EncodeError> {
        let a = &u.attrs;
        let mut attrs = Vec::new();
        if let Some(o) = a.origin {
            attrs.push(BgpAttrItem::Origin(BgpOrigin::new(match o {
                Origin::Igp => BgpAttrOrigin::Igp,
                Origin::Egp => BgpAttrOrigin::Egp,
                Origin::Incomplete => BgpAttrOrigin::Incomplete,
            })));
        }
        if let Some(path) = &a.as_path {
            let value = self.encode_as_path(path)?;
            let mut raw = BgpAttrUnknown::new(2, 0x40 | if value.len() > 255 { 0x10 } else { 0 });
            raw.value = value;
            attrs.push(BgpAttrItem::Unknown(raw));
        }
        if let Some(nh) = a.next_hop {
            attrs.push(BgpAttrItem::NextHop(BgpNextHop::new(IpAddr::V4(nh))));
        }
        if let Some(m) = a.med {
            attrs.push(BgpAttrItem::MED(BgpMED::new(m)));
        }
        if let Some(lp) = a.local_pref {
            attrs.push(BgpAttrItem::LocalPref(BgpLocalpref::new(lp)));
        }
        if !a.communities.is_empty() {
            attrs.push(BgpAttrItem::CommunityList(BgpCommunityList::from_vec(
                a.communities
                    .iter()
                    .map(|&c| BgpCommunity::new(c))
                    .collect(),
            )));
        }
        if let Some(mp) = &a.mp_reach {
            let nexthop = match mp.next_hops.as_slice() {
                [IpAddr::V6(g)] => BgpAddr::V6(*g),
                [IpAddr::V4(g)] => BgpAddr::V4(*g),
                _ => {
                    return Err(EncodeError::Unsupported(
                        "MP_REACH needs exactly one next hop",
                    ));
                }
            };
            attrs.push(BgpAttrItem::MPUpdates(BgpMPUpdates {
                nexthop,
                addrs: addrs_of(&mp.prefixes)?,
            }));
        }
        if let Some(w) = &a.mp_unreach {
            attrs.push(BgpAttrItem::MPWithdraws(BgpMPWithdraws {
                addrs: addrs_of(w)?,
            }));
        }
        if !a.large_communities.is_empty() {
            let mut value = Vec::with_capacity(a.large_communities.len() * 12);
            for c in &a.large_communities {
                value.extend_from_slice(&c.global.to_be_bytes());
                value.extend_from_slice(&c.local1.to_be_bytes());
                value.extend_from_slice(&c.local2.to_be_bytes());
            }
            let mut raw = BgpAttrUnknown::new(32, 0xc0 | if value.len() > 255 { 0x10 } else { 0 });
            raw.value = value;
            attrs.push(BgpAttrItem::Unknown(raw));
        }
        for (flags, tc, v) in &a.other {
            let mut raw = BgpAttrUnknown::new(*tc, *flags | if v.len() > 255 { 0x10 } else { 0 });
            raw.value = v.clone();
            attrs.push(BgpAttrItem::Unknown(raw));
        }
        let msg = BgpUpdateMessage {
            updates: if u.nlri.is_empty() {
                BgpAddrs::None
            } else {
                BgpAddrs::IPV4U(
                    u.nlri
                        .iter()
                        .map(|n| BgpAddrV4::new(n.network(), n.prefix_len()))
                        .collect(),
                )
            },
            withdraws: if u.withdrawn.is_empty() {
                BgpAddrs::None
            } else {
                BgpAddrs::IPV4U(
                    u.withdrawn
                        .iter()
                        .map(|n| BgpAddrV4::new(n.network(), n.prefix_len()))
                        .collect(),
                )
            },
            attrs,
        };
        // zettabgp writes into a fixed buffer; a bigger one lets us report the real size.
        let mut buf = vec![0u8; 4 * MAX_MESSAGE_LEN];
        let n = msg.encode_to(&self.params(), &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// AS_PATH value bytes. Without the 4-octet capability a large ASN travels as AS_TRANS
    /// (RFC 6793 4.2.2; the AS4_PATH that would carry the real path is not sent: every peer we
    /// target speaks 4-octet ASNs).
    fn encode_as_path(&self, path: &[AsSegment]) -> Result<Vec<u8>, EncodeError> {
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

fn addrs_of(prefixes: &[IpNet]) -> Result<BgpAddrs, EncodeError> {
    let v4: Vec<BgpAddrV4> = prefixes
        .iter()
        .filter_map(|p| match p {
            IpNet::V4(n) => Some(BgpAddrV4::new(n.network(), n.prefix_len())),
            IpNet::V6(_) => None,
        })
        .collect();
    let v6: Vec<BgpAddrV6> = prefixes
        .iter()
        .filter_map(|p| match p {
            IpNet::V6(n) => Some(BgpAddrV6::new(n.network(), n.prefix_len())),
            IpNet::V4(_) => None,
        })
        .collect();
    match (v4.is_empty(), v6.is_empty()) {
        (false, true) => Ok(BgpAddrs::IPV4U(v4)),
        (true, _) => Ok(BgpAddrs::IPV6U(v6)),
        (false, false) => Err(EncodeError::Unsupported(
            "one MP attribute carries one family",
        )),
    }
}

fn encode_open(o: &Open) -> Result<Vec<u8>, EncodeError> {
    let caps = o
        .capabilities
        .iter()
        .map(|c| match c {
            Capability::Multiprotocol { afi: 1, safi: 1 } => Ok(BgpCapability::SafiIPv4u),
            Capability::Multiprotocol { afi: 2, safi: 1 } => Ok(BgpCapability::SafiIPv6u),
            Capability::Multiprotocol { .. } => Err(EncodeError::Unsupported(
                "families other than IPv4/IPv6 unicast",
            )),
            Capability::RouteRefresh => Ok(BgpCapability::CapRR),
            Capability::FourOctetAs(a) => Ok(BgpCapability::CapASN32(*a)),
            Capability::Unknown { .. } => Err(EncodeError::Unsupported("unknown capability")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if o.version != 4 {
        return Err(EncodeError::Unsupported("BGP version other than 4"));
    }
    let msg = BgpOpenMessage {
        as_num: u32::from(o.my_as),
        hold_time: o.hold_time,
        router_id: o.bgp_id,
        caps,
    };
    let mut buf = vec![0u8; MAX_MESSAGE_LEN];
    let params = BgpSessionParams::new(0, 0, BgpTransportMode::IPv4, o.bgp_id, Vec::new());
    let n = msg.encode_to(&params, &mut buf)?;
    if n - 10 > 255 {
        return Err(EncodeError::Unsupported(
            "optional parameters longer than 255 bytes",
        ));
    }
    buf.truncate(n);
    Ok(buf)
}

fn decode_open(body: &[u8]) -> Result<Open, DecodeError> {
    let mut r = Reader(body);
    let short = DecodeError::MalformedOpen("short");
    let version = r.u8().ok_or(short.clone())?;
    if version != 4 {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let my_as = r.u16().ok_or(short.clone())?;
    let hold_time = r.u16().ok_or(short.clone())?;
    let id = r.take(4).ok_or(short.clone())?;
    let bgp_id = Ipv4Addr::new(id[0], id[1], id[2], id[3]);
    let opt_len = r.u8().ok_or(short)? as usize;
    if r.0.len() != opt_len {
        return Err(DecodeError::MalformedOpen("optional parameters length"));
    }
    let mut capabilities = Vec::new();
    while !r.0.is_empty() {
        let ptype = r.u8().ok_or(DecodeError::MalformedOpen("parameter"))?;
        let plen = r.u8().ok_or(DecodeError::MalformedOpen("parameter"))? as usize;
        let pval = r
            .take(plen)
            .ok_or(DecodeError::MalformedOpen("parameter length"))?;
        if ptype != 2 {
            return Err(DecodeError::UnsupportedOptionalParameter(ptype));
        }
        let mut c = Reader(pval);
        while !c.0.is_empty() {
            let code = c.u8().ok_or(DecodeError::MalformedOpen("capability"))?;
            let clen = c.u8().ok_or(DecodeError::MalformedOpen("capability"))? as usize;
            let v = c
                .take(clen)
                .ok_or(DecodeError::MalformedOpen("capability length"))?;
            capabilities.push(match (code, v) {
                (1, [a0, a1, _, safi]) => Capability::Multiprotocol {
                    afi: u16::from_be_bytes([*a0, *a1]),
                    safi: *safi,
                },
                (2, []) => Capability::RouteRefresh,
                (65, [a, b, c, d]) => Capability::FourOctetAs(u32::from_be_bytes([*a, *b, *c, *d])),
                (1 | 2 | 65, _) => return Err(DecodeError::MalformedOpen("capability length")),
                (code, v) => Capability::Unknown {
                    code,
                    data: v.to_vec(),
                },
            });
        }
    }
    Ok(Open {
        version,
        my_as,
        hold_time,
        bgp_id,
        capabilities,
    })
}

fn decode_as_path(v: &[u8], four: bool) -> Result<Vec<AsSegment>, DecodeError> {
    let width = if four { 4 } else { 2 };
    let mut r = Reader(v);
    let mut out = Vec::new();
    while !r.0.is_empty() {
        let ty = r.u8().ok_or(DecodeError::MalformedAsPath)?;
        let n = r.u8().ok_or(DecodeError::MalformedAsPath)? as usize;
        let bytes = r.take(n * width).ok_or(DecodeError::MalformedAsPath)?;
        if n == 0 {
            return Err(DecodeError::MalformedAsPath);
        }
        let asns: Vec<u32> = bytes
            .chunks_exact(width)
            .map(|c| match *c {
                [a, b] => u32::from(u16::from_be_bytes([a, b])),
                [a, b, c, d] => u32::from_be_bytes([a, b, c, d]),
                _ => 0,
            })
            .collect();
        out.push(match ty {
            1 => AsSegment::Set(asns),
            2 => AsSegment::Sequence(asns),
            // AS_CONFED_SEQUENCE / AS_CONFED_SET (RFC 5065) are not for us: malformed.
            _ => return Err(DecodeError::MalformedAsPath),
        });
    }
    Ok(out)
}

/// Returns `None` for families we do not speak (kept as an opaque attribute).
fn decode_mp_reach(v: &[u8]) -> Result<Option<MpReach>, DecodeError> {
    let mut r = Reader(v);
    let bad = DecodeError::AttributeLength(14, v.len());
    let afi = r.u16().ok_or(bad.clone())?;
    let safi = r.u8().ok_or(bad.clone())?;
    if safi != SAFI_UNICAST || !(afi == AFI_IPV4 || afi == AFI_IPV6) {
        return Ok(None);
    }
    let nhlen = r.u8().ok_or(bad.clone())? as usize;
    let nh = r.take(nhlen).ok_or(bad.clone())?;
    let next_hops = match (afi, nh.len()) {
        (AFI_IPV4, 4) => vec![IpAddr::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3]))],
        (AFI_IPV6, 16 | 32) => nh
            .chunks_exact(16)
            .map(|c| {
                let mut a = [0u8; 16];
                a.copy_from_slice(c);
                IpAddr::V6(Ipv6Addr::from(a))
            })
            .collect(),
        _ => return Err(DecodeError::InvalidNetwork("MP_REACH next hop length")),
    };
    let _snpa = r.u8().ok_or(bad)?;
    let prefixes = decode_prefixes(r.0, afi)?;
    Ok(Some(MpReach {
        next_hops,
        prefixes,
    }))
}

fn decode_mp_unreach(v: &[u8]) -> Result<Option<Vec<IpNet>>, DecodeError> {
    let mut r = Reader(v);
    let bad = DecodeError::AttributeLength(15, v.len());
    let afi = r.u16().ok_or(bad.clone())?;
    let safi = r.u8().ok_or(bad)?;
    if safi != SAFI_UNICAST || !(afi == AFI_IPV4 || afi == AFI_IPV6) {
        return Ok(None);
    }
    decode_prefixes(r.0, afi).map(Some)
}

/// Decodes a run of (length, prefix bytes) for `afi`.
fn decode_prefixes(mut v: &[u8], afi: u16) -> Result<Vec<IpNet>, DecodeError> {
    let max = if afi == AFI_IPV4 { 32 } else { 128 };
    let mut out = Vec::new();
    while let Some((&plen, rest)) = v.split_first() {
        if plen > max {
            return Err(DecodeError::InvalidNetwork("prefix length"));
        }
        let nbytes = (plen as usize).div_ceil(8);
        if rest.len() < nbytes {
            return Err(DecodeError::InvalidNetwork("truncated prefix"));
        }
        let (bytes, tail) = rest.split_at(nbytes);
        v = tail;
        let net = if afi == AFI_IPV4 {
            let mut a = [0u8; 4];
            a[..nbytes].copy_from_slice(bytes);
            Ipv4Net::new(Ipv4Addr::from(a), plen)
                .map(|n| IpNet::V4(n.trunc()))
                .map_err(|_| DecodeError::InvalidNetwork("prefix length"))?
        } else {
            let mut a = [0u8; 16];
            a[..nbytes].copy_from_slice(bytes);
            Ipv6Net::new(Ipv6Addr::from(a), plen)
                .map(|n| IpNet::V6(n.trunc()))
                .map_err(|_| DecodeError::InvalidNetwork("prefix length"))?
        };
        out.push(net);
    }
    Ok(out)
}

fn as_v4(n: IpNet) -> Option<Ipv4Net> {
    match n {
        IpNet::V4(n) => Some(n),
        IpNet::V6(_) => None,
    }
}

/// Bytes needed for one prefix in NLRI encoding (for packing UPDATEs).
pub fn prefix_wire_len(p: &IpNet) -> usize {
    1 + (p.prefix_len() as usize).div_ceil(8)
}

/// A bounds-checked cursor.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests;
