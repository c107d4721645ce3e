//! BGP messages (RFC 4271 section 4) as our own small typed values, with encoding and decoding.
//!
//! Both directions are ours: [`encode`] writes OPEN and UPDATE bodies (it replaced zettabgp,
//! see there why), and decoding is a bounds-checked parser that never panics on what the
//! network sends. A decode error is typed and knows both the NOTIFICATION RFC 4271 section 6
//! asks for (code, subcode and the data: the offending attribute for flag, length and ORIGIN
//! errors) and how RFC 7606 handles it ([`Handling`]): most attribute errors make the UPDATE
//! "treat-as-withdraw" instead of resetting the session. We never import routes, so for us
//! treat-as-withdraw means: count it, drop it, keep the session.
//!
//! Round-trip tests check the encoder and the decoder against each other, and both against
//! golden messages captured from BIRD, FRR and GoBGP.

mod encode;

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Path attribute type codes.
pub mod attr {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MED: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// Path attribute flag bits (RFC 4271 4.3).
pub mod flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

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

    /// Whether the OPEN accepts IPv6 next hops for IPv4 unicast (RFC 8950).
    pub fn has_ipv4_over_ipv6(&self) -> bool {
        self.capabilities.iter().any(|c| {
            matches!(c, Capability::ExtendedNextHop(t)
                if t.contains(&(AFI_IPV4, u16::from(SAFI_UNICAST), AFI_IPV6)))
        })
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
    /// RFC 8950, code 5: (NLRI AFI, NLRI SAFI, next-hop AFI) triples the speaker accepts,
    /// e.g. (1, 1, 2): IPv4 unicast with IPv6 next hops.
    ExtendedNextHop(Vec<(u16, u16, u16)>),
    /// RFC 4724, code 64: the speaker keeps forwarding across a restart of its BGP.
    GracefulRestart(GracefulRestart),
    /// Anything else, kept as received.
    Unknown { code: u8, data: Vec<u8> },
}

/// The Graceful Restart capability's value (RFC 4724 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestart {
    /// R: the sender has just restarted (its peer must not wait for its End-of-RIB before
    /// sending its own routes).
    pub restarted: bool,
    /// N (RFC 8538): the sender also keeps routes across a NOTIFICATION other than a Hard
    /// Reset.
    pub notification: bool,
    /// Seconds the sender needs to come back (12 bits).
    pub restart_time: u16,
    /// (AFI, SAFI, F): the families it restarts gracefully, F when their forwarding state was
    /// kept across the restart.
    pub families: Vec<(u16, u8, bool)>,
}

impl Open {
    /// The Graceful Restart capability, if announced.
    pub fn graceful_restart(&self) -> Option<&GracefulRestart> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(g) => Some(g),
            _ => None,
        })
    }
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

impl Notification {
    /// The name RFC 4271 (and RFC 4486, 6608, 7313, 8538) gives this code and subcode.
    pub fn name(&self) -> &'static str {
        match (self.code, self.subcode) {
            (1, 1) => "message header error: connection not synchronized",
            (1, 2) => "message header error: bad message length",
            (1, 3) => "message header error: bad message type",
            (1, _) => "message header error",
            (2, 1) => "OPEN message error: unsupported version number",
            (2, 2) => "OPEN message error: bad peer AS",
            (2, 3) => "OPEN message error: bad BGP identifier",
            (2, 4) => "OPEN message error: unsupported optional parameter",
            (2, 6) => "OPEN message error: unacceptable hold time",
            (2, 7) => "OPEN message error: unsupported capability",
            (2, 11) => "OPEN message error: role mismatch",
            (2, _) => "OPEN message error",
            (3, 1) => "UPDATE message error: malformed attribute list",
            (3, 2) => "UPDATE message error: unrecognized well-known attribute",
            (3, 3) => "UPDATE message error: missing well-known attribute",
            (3, 4) => "UPDATE message error: attribute flags error",
            (3, 5) => "UPDATE message error: attribute length error",
            (3, 6) => "UPDATE message error: invalid ORIGIN attribute",
            (3, 8) => "UPDATE message error: invalid NEXT_HOP attribute",
            (3, 9) => "UPDATE message error: optional attribute error",
            (3, 10) => "UPDATE message error: invalid network field",
            (3, 11) => "UPDATE message error: malformed AS_PATH",
            (3, _) => "UPDATE message error",
            (4, _) => "hold timer expired",
            (5, 1) => "finite state machine error: unexpected message in OpenSent",
            (5, 2) => "finite state machine error: unexpected message in OpenConfirm",
            (5, 3) => "finite state machine error: unexpected message in Established",
            (5, _) => "finite state machine error",
            (6, 1) => "cease: maximum number of prefixes reached",
            (6, 2) => "cease: administrative shutdown",
            (6, 3) => "cease: peer de-configured",
            (6, 4) => "cease: administrative reset",
            (6, 5) => "cease: connection rejected",
            (6, 6) => "cease: other configuration change",
            (6, 7) => "cease: connection collision resolution",
            (6, 8) => "cease: out of resources",
            (6, 9) => "cease: hard reset",
            (6, 10) => "cease: BFD down",
            (6, _) => "cease",
            (7, _) => "ROUTE-REFRESH message error",
            _ => "unknown error code",
        }
    }

    /// The shutdown communication of an administrative shutdown or reset (RFC 9003): a
    /// length byte and that many bytes of UTF-8.
    pub fn shutdown_message(&self) -> Option<String> {
        if self.code != code::CEASE || !matches!(self.subcode, 2 | 4) {
            return None;
        }
        let (&len, text) = self.data.split_first()?;
        let text = text.get(..usize::from(len))?;
        (!text.is_empty()).then(|| String::from_utf8_lossy(text).into_owned())
    }
}

/// Data bytes shown in a log line: at most this many (a NOTIFICATION can carry 4 KiB).
const SHOWN_DATA: usize = 32;

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}/{})", self.name(), self.code, self.subcode)?;
        if let Some(m) = self.shutdown_message() {
            let m: String = m.chars().take(128).collect();
            return write!(f, ": {m:?}");
        }
        if !self.data.is_empty() {
            write!(f, ", data ")?;
            for b in self.data.iter().take(SHOWN_DATA) {
                write!(f, "{b:02x}")?;
            }
            if self.data.len() > SHOWN_DATA {
                write!(f, "... ({} bytes)", self.data.len())?;
            }
        }
        Ok(())
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
    pub const UPD_UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    pub const UPD_MISSING_WELL_KNOWN: u8 = 3;
    pub const UPD_ATTR_FLAGS: u8 = 4;
    pub const UPD_ATTR_LENGTH: u8 = 5;
    pub const UPD_INVALID_ORIGIN: u8 = 6;
    pub const UPD_OPTIONAL_ATTR: u8 = 9;
    pub const UPD_INVALID_NETWORK: u8 = 10;
    pub const UPD_MALFORMED_AS_PATH: u8 = 11;

    /// RFC 6608 subcodes: an unexpected message in OpenSent / OpenConfirm / Established.
    pub const FSM_IN_OPEN_SENT: u8 = 1;
    pub const FSM_IN_OPEN_CONFIRM: u8 = 2;
    pub const FSM_IN_ESTABLISHED: u8 = 3;

    pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
    pub const CEASE_CONNECTION_REJECTED: u8 = 5;
    pub const CEASE_COLLISION: u8 = 7;
}

/// How RFC 7606 wants an UPDATE error handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// NOTIFICATION and close (RFC 4271 section 6; RFC 7606 "session reset").
    SessionReset,
    /// The UPDATE's routes count as withdrawn; the session stays up (RFC 7606 section 2).
    TreatAsWithdraw,
}

/// One path attribute exactly as received (flags, type, length and value): the data of the
/// NOTIFICATIONs that name an attribute (RFC 4271 6.3).
#[derive(Clone, PartialEq, Eq)]
pub struct RawAttribute(pub Vec<u8>);

impl fmt::Debug for RawAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawAttribute({} bytes)", self.0.len())
    }
}

/// Why bytes are not a valid message. [`DecodeError::notification`] is what to send back,
/// [`DecodeError::handling`] whether to send it at all.
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
    /// The withdrawn-routes or total-attribute length does not fit the message, or MP_REACH /
    /// MP_UNREACH appears twice (RFC 7606 3 g).
    #[error("UPDATE: malformed attribute list: {0}")]
    MalformedAttributeList(&'static str),
    /// An attribute's length runs past the attribute list (RFC 7606 section 4).
    #[error("UPDATE: attribute {0}: its length runs past the attribute list")]
    AttributeOverrun(u8),
    #[error("UPDATE: attribute {tc}: bad flags {flags:#04x}")]
    AttributeFlags {
        tc: u8,
        flags: u8,
        attr: RawAttribute,
    },
    #[error("UPDATE: attribute {tc}: bad length {len}")]
    AttributeLength {
        tc: u8,
        len: usize,
        attr: RawAttribute,
    },
    #[error("UPDATE: invalid ORIGIN {value}")]
    InvalidOrigin { value: u8, attr: RawAttribute },
    #[error("UPDATE: unrecognized well-known attribute {tc}")]
    UnrecognizedWellKnown { tc: u8, attr: RawAttribute },
    #[error("UPDATE: malformed AS_PATH")]
    MalformedAsPath,
    /// MP_REACH_NLRI / MP_UNREACH_NLRI that cannot be parsed (RFC 4760 section 7).
    #[error("UPDATE: malformed {name}: {why}")]
    MalformedMp {
        name: &'static str,
        why: &'static str,
        attr: RawAttribute,
    },
    #[error("UPDATE: invalid network field: {0}")]
    InvalidNetwork(&'static str),
    #[error("UPDATE: missing well-known attribute {0}")]
    MissingWellKnown(u8),
    #[error("{0}: bad length")]
    BadBodyLength(&'static str),
}

impl DecodeError {
    /// The NOTIFICATION RFC 4271 6.1–6.3 asks for, with its data.
    pub fn notification(&self) -> Notification {
        use code::*;
        match self {
            DecodeError::NotSynchronized => Notification::new(HEADER, HDR_NOT_SYNCHRONIZED),
            DecodeError::BadLength(l) => {
                Notification::with_data(HEADER, HDR_BAD_LENGTH, l.to_be_bytes().to_vec())
            }
            DecodeError::BadBodyLength(_) => Notification::new(HEADER, HDR_BAD_LENGTH),
            DecodeError::BadType(t) => Notification::with_data(HEADER, HDR_BAD_TYPE, vec![*t]),
            DecodeError::UnsupportedVersion(_) => {
                Notification::with_data(OPEN, OPEN_UNSUPPORTED_VERSION, 4u16.to_be_bytes().into())
            }
            DecodeError::UnsupportedOptionalParameter(_) => {
                Notification::new(OPEN, OPEN_UNSUPPORTED_OPT_PARAM)
            }
            DecodeError::MalformedOpen(_) => Notification::new(OPEN, 0),
            DecodeError::MalformedAttributeList(_) | DecodeError::AttributeOverrun(_) => {
                Notification::new(UPDATE, UPD_MALFORMED_ATTR_LIST)
            }
            DecodeError::AttributeFlags { attr, .. } => {
                Notification::with_data(UPDATE, UPD_ATTR_FLAGS, attr.0.clone())
            }
            DecodeError::AttributeLength { attr, .. } => {
                Notification::with_data(UPDATE, UPD_ATTR_LENGTH, attr.0.clone())
            }
            DecodeError::InvalidOrigin { attr, .. } => {
                Notification::with_data(UPDATE, UPD_INVALID_ORIGIN, attr.0.clone())
            }
            DecodeError::UnrecognizedWellKnown { attr, .. } => {
                Notification::with_data(UPDATE, UPD_UNRECOGNIZED_WELL_KNOWN, attr.0.clone())
            }
            DecodeError::MalformedAsPath => Notification::new(UPDATE, UPD_MALFORMED_AS_PATH),
            DecodeError::MalformedMp { attr, .. } => {
                Notification::with_data(UPDATE, UPD_OPTIONAL_ATTR, attr.0.clone())
            }
            DecodeError::InvalidNetwork(_) => Notification::new(UPDATE, UPD_INVALID_NETWORK),
            DecodeError::MissingWellKnown(t) => {
                Notification::with_data(UPDATE, UPD_MISSING_WELL_KNOWN, vec![*t])
            }
        }
    }

    /// RFC 7606's choice for this error. Errors in one attribute's content (flags, length,
    /// ORIGIN, AS_PATH, a missing well-known attribute, an attribute running past the list)
    /// are treat-as-withdraw; errors that lose the message's structure (the NLRI, the MP
    /// attributes, the lengths of the sections) and everything outside UPDATE reset the
    /// session. An unrecognized well-known attribute stays a reset (RFC 4271 6.3).
    pub fn handling(&self) -> Handling {
        match self {
            DecodeError::AttributeOverrun(_)
            | DecodeError::AttributeFlags { .. }
            | DecodeError::AttributeLength { .. }
            | DecodeError::InvalidOrigin { .. }
            | DecodeError::MalformedAsPath
            | DecodeError::MissingWellKnown(_) => Handling::TreatAsWithdraw,
            _ => Handling::SessionReset,
        }
    }

    /// The type of the message the error is in, when the header was sound (1 OPEN, 2 UPDATE):
    /// an error in a message the state does not expect is an FSM error (RFC 6608).
    pub fn message_type(&self) -> Option<u8> {
        match self {
            DecodeError::NotSynchronized
            | DecodeError::BadLength(_)
            | DecodeError::BadType(_)
            | DecodeError::BadBodyLength(_) => None,
            DecodeError::UnsupportedVersion(_)
            | DecodeError::UnsupportedOptionalParameter(_)
            | DecodeError::MalformedOpen(_) => Some(1),
            _ => Some(2),
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

/// Cuts a TCP byte stream into whole messages, holding at most one partial message plus what
/// was pushed last: the reader pushes what the socket gave, then takes frames until `None`.
/// How the bytes were split across reads never changes the frames (a fuzz target checks it).
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    start: usize,
}

impl Framer {
    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` if more bytes are needed, or the header error that
    /// makes the rest of the stream unreadable.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        match frame_len(&self.buf[self.start..])? {
            Some(n) => {
                let frame = self.buf[self.start..self.start + n].to_vec();
                self.start += n;
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }

    /// Bytes held (a partial message).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
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

    /// An UPDATE body. Structural errors return at once; an error in one attribute's content
    /// is remembered while the rest is still parsed (a later structural error wins, RFC 7606
    /// section 3), then returned.
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
        let (attrs, soft) = self.decode_attrs(attr_bytes)?;
        if let Some(e) = soft {
            return Err(e);
        }
        let announces = !nlri.is_empty() || attrs.mp_reach.is_some();
        if announces {
            if attrs.origin.is_none() {
                return Err(DecodeError::MissingWellKnown(attr::ORIGIN));
            }
            if attrs.as_path.is_none() {
                return Err(DecodeError::MissingWellKnown(attr::AS_PATH));
            }
        }
        if !nlri.is_empty() && attrs.next_hop.is_none() {
            return Err(DecodeError::MissingWellKnown(attr::NEXT_HOP));
        }
        Ok(Update {
            withdrawn,
            attrs,
            nlri,
        })
    }

    /// The attributes, and the first treat-as-withdraw error met among them (parsing goes on
    /// after one, so a later session-reset error is still found).
    fn decode_attrs(&self, bytes: &[u8]) -> Result<(PathAttrs, Option<DecodeError>), DecodeError> {
        let mut attrs = PathAttrs::default();
        let mut soft: Option<DecodeError> = None;
        let mut seen = [false; 256];
        let mut r = Reader(bytes);
        while !r.0.is_empty() {
            let start = r.0;
            let (Some(flags), Some(tc)) = (r.u8(), r.u8()) else {
                soft.get_or_insert(DecodeError::AttributeOverrun(0));
                break;
            };
            let len = if flags & flag::EXTENDED_LENGTH != 0 {
                r.u16().map(usize::from)
            } else {
                r.u8().map(usize::from)
            };
            let Some(v) = len.and_then(|len| r.take(len)) else {
                // RFC 7606 section 4: treat-as-withdraw; the total attribute length still
                // locates the NLRI, so nothing after this attribute can be parsed or trusted.
                soft.get_or_insert(DecodeError::AttributeOverrun(tc));
                break;
            };
            let len = v.len();
            let raw = || RawAttribute(start[..start.len() - r.0.len()].to_vec());
            let is_mp = matches!(tc, attr::MP_REACH_NLRI | attr::MP_UNREACH_NLRI);
            if std::mem::replace(&mut seen[tc as usize], true) {
                if is_mp {
                    return Err(DecodeError::MalformedAttributeList("MP attribute repeated"));
                }
                // RFC 7606 3 g: every occurrence after the first is discarded.
                continue;
            }
            if let Some(want) = expected_flags(tc) {
                let got = flags & (flag::OPTIONAL | flag::TRANSITIVE | flag::PARTIAL);
                // The Partial bit is meaningful on optional transitive attributes only.
                let got = if want == flag::OPTIONAL | flag::TRANSITIVE {
                    got & !flag::PARTIAL
                } else {
                    got
                };
                if got != want {
                    let e = DecodeError::AttributeFlags {
                        tc,
                        flags,
                        attr: raw(),
                    };
                    if is_mp {
                        return Err(e);
                    }
                    soft.get_or_insert(e);
                    continue;
                }
            } else if flags & flag::OPTIONAL == 0 {
                return Err(DecodeError::UnrecognizedWellKnown { tc, attr: raw() });
            }
            let bad_len = || DecodeError::AttributeLength {
                tc,
                len,
                attr: raw(),
            };
            match tc {
                attr::ORIGIN => match v {
                    [0] => attrs.origin = Some(Origin::Igp),
                    [1] => attrs.origin = Some(Origin::Egp),
                    [2] => attrs.origin = Some(Origin::Incomplete),
                    [o] => {
                        soft.get_or_insert(DecodeError::InvalidOrigin {
                            value: *o,
                            attr: raw(),
                        });
                    }
                    _ => {
                        soft.get_or_insert(bad_len());
                    }
                },
                attr::AS_PATH => match decode_as_path(v, self.four_octet_as) {
                    Ok(p) => attrs.as_path = Some(p),
                    Err(e) => {
                        soft.get_or_insert(e);
                    }
                },
                attr::NEXT_HOP => match <[u8; 4]>::try_from(v) {
                    Ok(a) => attrs.next_hop = Some(Ipv4Addr::from(a)),
                    Err(_) => {
                        soft.get_or_insert(bad_len());
                    }
                },
                attr::MED | attr::LOCAL_PREF => match <[u8; 4]>::try_from(v) {
                    Ok(a) if tc == attr::MED => attrs.med = Some(u32::from_be_bytes(a)),
                    Ok(a) => attrs.local_pref = Some(u32::from_be_bytes(a)),
                    Err(_) => {
                        soft.get_or_insert(bad_len());
                    }
                },
                attr::ATOMIC_AGGREGATE if !v.is_empty() => {
                    soft.get_or_insert(bad_len());
                }
                attr::AGGREGATOR if !(v.len() == 8 || v.len() == 6 && !self.four_octet_as) => {
                    soft.get_or_insert(bad_len());
                }
                attr::COMMUNITIES if v.is_empty() || v.len() % 4 != 0 => {
                    soft.get_or_insert(bad_len());
                }
                attr::COMMUNITIES => {
                    attrs.communities = v
                        .chunks_exact(4)
                        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                }
                attr::LARGE_COMMUNITIES if v.is_empty() || v.len() % 12 != 0 => {
                    soft.get_or_insert(bad_len());
                }
                attr::LARGE_COMMUNITIES => {
                    attrs.large_communities = v
                        .chunks_exact(12)
                        .map(|c| LargeCommunity {
                            global: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                            local1: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                            local2: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                        })
                        .collect();
                }
                attr::MP_REACH_NLRI => {
                    match decode_mp_reach(v).map_err(|why| mp_error(tc, why, raw()))? {
                        Some(m) => attrs.mp_reach = Some(m),
                        None => attrs
                            .other
                            .push((flags & !flag::EXTENDED_LENGTH, tc, v.to_vec())),
                    }
                }
                attr::MP_UNREACH_NLRI => {
                    match decode_mp_unreach(v).map_err(|why| mp_error(tc, why, raw()))? {
                        Some(m) => attrs.mp_unreach = Some(m),
                        None => attrs
                            .other
                            .push((flags & !flag::EXTENDED_LENGTH, tc, v.to_vec())),
                    }
                }
                // Extended Length is the encoder's choice, not the attribute's.
                _ => attrs
                    .other
                    .push((flags & !flag::EXTENDED_LENGTH, tc, v.to_vec())),
            }
        }
        // Attributes are keyed by type code (one of each), not ordered: the canonical order
        // is the encoder's, so that decode(encode(x)) = x (found by fuzzing).
        attrs.other.sort_by_key(|(_, tc, _)| *tc);
        Ok((attrs, soft))
    }

    /// Encodes a message, at most 4096 bytes.
    pub fn encode(&self, msg: &Message) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![0xffu8; HEADER_LEN];
        let ty = match msg {
            Message::Open(o) => {
                out.extend_from_slice(&encode::encode_open(o)?);
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
                (5, v) if !v.is_empty() && v.len() % 6 == 0 => Capability::ExtendedNextHop(
                    v.chunks_exact(6)
                        .map(|t| {
                            let n = |i: usize| u16::from_be_bytes([t[i], t[i + 1]]);
                            (n(0), n(2), n(4))
                        })
                        .collect(),
                ),
                (64, [f, t, rest @ ..]) if rest.len() % 4 == 0 => {
                    Capability::GracefulRestart(GracefulRestart {
                        restarted: f & 0x80 != 0,
                        notification: f & 0x40 != 0,
                        restart_time: u16::from_be_bytes([f & 0x0f, *t]),
                        families: rest
                            .chunks_exact(4)
                            .map(|a| (u16::from_be_bytes([a[0], a[1]]), a[2], a[3] & 0x80 != 0))
                            .collect(),
                    })
                }
                (1 | 2 | 5 | 65, _) => {
                    return Err(DecodeError::MalformedOpen("capability length"));
                }
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

/// The flags RFC 4271 / 4760 / 1997 / 8092 define for the attributes we know (optional,
/// transitive, partial bits); `None` for the rest.
fn expected_flags(tc: u8) -> Option<u8> {
    use flag::*;
    match tc {
        attr::ORIGIN
        | attr::AS_PATH
        | attr::NEXT_HOP
        | attr::LOCAL_PREF
        | attr::ATOMIC_AGGREGATE => Some(TRANSITIVE),
        attr::MED | attr::MP_REACH_NLRI | attr::MP_UNREACH_NLRI => Some(OPTIONAL),
        attr::AGGREGATOR | attr::COMMUNITIES | attr::LARGE_COMMUNITIES => {
            Some(OPTIONAL | TRANSITIVE)
        }
        _ => None,
    }
}

/// A malformed MP attribute: an invalid prefix in it is an invalid network field (3/10),
/// anything else an optional attribute error (3/9, RFC 4760 section 7).
fn mp_error(tc: u8, why: MpError, attr: RawAttribute) -> DecodeError {
    match why {
        MpError::Network(w) => DecodeError::InvalidNetwork(w),
        MpError::Attribute(why) => DecodeError::MalformedMp {
            name: if tc == attr::MP_REACH_NLRI {
                "MP_REACH_NLRI"
            } else {
                "MP_UNREACH_NLRI"
            },
            why,
            attr,
        },
    }
}

/// What is wrong inside an MP attribute.
enum MpError {
    Attribute(&'static str),
    Network(&'static str),
}

/// An MP attribute that ends before its fixed fields do.
const MP_SHORT: MpError = MpError::Attribute("shorter than its fields");

/// The AFI of an MP attribute (AFI and SAFI read from `r`); `None` for families we do not
/// speak (the attribute is then kept opaque).
fn mp_family(r: &mut Reader<'_>) -> Result<Option<u16>, MpError> {
    let afi = r.u16().ok_or(MP_SHORT)?;
    let safi = r.u8().ok_or(MP_SHORT)?;
    Ok((safi == SAFI_UNICAST && (afi == AFI_IPV4 || afi == AFI_IPV6)).then_some(afi))
}

/// The prefixes that end an MP attribute.
fn mp_prefixes(v: &[u8], afi: u16) -> Result<Vec<IpNet>, MpError> {
    decode_prefixes(v, afi).map_err(|e| match e {
        DecodeError::InvalidNetwork(w) => MpError::Network(w),
        _ => MpError::Network("prefix"),
    })
}

/// Returns `None` for families we do not speak (kept as an opaque attribute).
fn decode_mp_reach(v: &[u8]) -> Result<Option<MpReach>, MpError> {
    let mut r = Reader(v);
    let Some(afi) = mp_family(&mut r)? else {
        return Ok(None);
    };
    let nhlen = r.u8().ok_or(MP_SHORT)? as usize;
    let nh = r.take(nhlen).ok_or(MpError::Attribute("next hop length"))?;
    let next_hops = match (afi, nh.len()) {
        (AFI_IPV4, 4) => vec![IpAddr::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3]))],
        // IPv6 next hops for either family (IPv4 ones by RFC 8950).
        (AFI_IPV4 | AFI_IPV6, 16 | 32) => nh
            .chunks_exact(16)
            .map(|c| {
                let mut a = [0u8; 16];
                a.copy_from_slice(c);
                IpAddr::V6(Ipv6Addr::from(a))
            })
            .collect(),
        _ => return Err(MpError::Attribute("next hop length")),
    };
    let _reserved = r.u8().ok_or(MP_SHORT)?;
    Ok(Some(MpReach {
        next_hops,
        prefixes: mp_prefixes(r.0, afi)?,
    }))
}

fn decode_mp_unreach(v: &[u8]) -> Result<Option<Vec<IpNet>>, MpError> {
    let mut r = Reader(v);
    let Some(afi) = mp_family(&mut r)? else {
        return Ok(None);
    };
    mp_prefixes(r.0, afi).map(Some)
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
