//! Config errors: each names the object, the field and the reason, so a user can fix it
//! without reading code.

use std::fmt;
use std::time::Duration;

use crate::selector::SelectorError;

/// The ferrolb kinds that make up the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `IPAddressPool`
    IPAddressPool,
    /// `L2Advertisement`
    L2Advertisement,
    /// `BGPAdvertisement`
    BGPAdvertisement,
    /// `BGPPeer`
    BGPPeer,
    /// `BFDProfile`
    BFDProfile,
    /// `Community`
    Community,
    /// A core `Secret` (referenced by BGPPeer.passwordSecret).
    Secret,
}

impl Kind {
    /// The kind of this name (as [`fmt::Display`] writes it).
    pub fn from_name(name: &str) -> Option<Kind> {
        use Kind::*;
        [
            IPAddressPool,
            L2Advertisement,
            BGPAdvertisement,
            BGPPeer,
            BFDProfile,
            Community,
            Secret,
        ]
        .into_iter()
        .find(|k| k.to_string() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Which object an error is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace, when it has one.
    pub namespace: Option<String>,
    /// Its name (empty when the object has none).
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, clip(ns), clip(&self.name)),
            None => write!(f, "{} {}", self.kind, clip(&self.name)),
        }
    }
}

/// The most characters of one piece of user input an error quotes: a 10 MB scalar must not
/// become a 10 MB log line, status condition or event on every edit.
pub const QUOTED_MAX: usize = 100;

/// `s`, or its first [`QUOTED_MAX`] characters and how long it really was.
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(QUOTED_MAX) {
        None => s.to_string(),
        Some((end, _)) => format!("{}... ({} bytes)", &s[..end], s.len()),
    }
}

/// The longest object name Kubernetes accepts (a DNS subdomain, RFC 1123).
pub const MAX_NAME_LEN: usize = 253;

/// One problem in the configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {reason}")]
pub struct ConfigError {
    /// The object at fault.
    pub object: ObjectRef,
    /// The field at fault, as a JSON path (`spec.addresses[1]`).
    pub field: String,
    /// What is wrong.
    pub reason: Reason,
}

/// What is wrong with a field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The object has no `metadata.name`.
    #[error("the object has no name")]
    MissingName,
    /// Two objects of one kind share a name.
    #[error("another {kind} has the same name")]
    DuplicateName {
        /// The kind.
        kind: Kind,
    },
    /// Not a CIDR or `start-end` range.
    #[error("{value:?} is not a CIDR or a 'start-end' range: {detail}")]
    InvalidAddress {
        /// What was given.
        value: String,
        /// The parser's complaint.
        detail: String,
    },
    /// A range whose start is after its end.
    #[error("range start {start} is after its end {end}")]
    RangeStartAfterEnd {
        /// First address given.
        start: String,
        /// Last address given.
        end: String,
    },
    /// A range with an IPv4 end and an IPv6 end.
    #[error("range {start}-{end} mixes IPv4 and IPv6")]
    RangeMixedFamilies {
        /// First address given.
        start: String,
        /// Last address given.
        end: String,
    },
    /// A pool with no addresses.
    #[error("the pool has no addresses")]
    EmptyPool,
    /// Addresses claimed by two entries.
    #[error("{entry} overlaps {other_entry} of {other}")]
    AddressOverlap {
        /// This entry.
        entry: String,
        /// The other object (may be this same pool).
        other: ObjectRef,
        /// The other entry.
        other_entry: String,
    },
    /// The same value twice in one list.
    #[error("{value:?} is listed more than once")]
    Duplicate {
        /// The repeated value.
        value: String,
    },
    /// A name that refers to no object.
    #[error("no {kind} named {name:?}")]
    UnknownReference {
        /// The kind referred to.
        kind: Kind,
        /// The name given.
        name: String,
    },
    /// Neither or both of peerAddress and interface.
    #[error("{}", if *both { "peerAddress and interface are mutually exclusive" } else { "one of peerAddress and interface is required" })]
    PeerAddressChoice {
        /// Both were set (else neither).
        both: bool,
    },
    /// A field an unnumbered (interface) session does not support yet, or has no use for.
    #[error("not supported with interface (unnumbered peering): {why}")]
    NotWithInterface {
        /// Why.
        why: &'static str,
    },
    /// Neither or both of peerASN and dynamicASN.
    #[error("{}", if *both { "peerASN and dynamicASN are mutually exclusive" } else { "one of peerASN and dynamicASN is required" })]
    PeerAsnChoice {
        /// Both were set (else neither).
        both: bool,
    },
    /// This change would make another object, in force and unchanged, invalid: it is refused
    /// instead of that one.
    #[error("refused, as it would make {other} invalid ({detail})")]
    BreaksOther {
        /// The object it would break.
        other: ObjectRef,
        /// That object's error, in words.
        detail: String,
    },
    /// A name that refers to an object that exists but is refused itself.
    #[error("{kind} {name:?} is refused (its status says why)")]
    RefusedReference {
        /// The kind referred to.
        kind: Kind,
        /// The name given.
        name: String,
    },
    /// A name that refers to no object yet (a note, not an error): the reference matches nothing
    /// until an object of that name exists, so objects can be applied in any order.
    #[error("no {kind} named {name:?} yet: it matches nothing until one is accepted")]
    DanglingReference {
        /// The kind referred to.
        kind: Kind,
        /// The name given.
        name: String,
    },
    /// A community that is neither `a:b`, `large:a:b:c` nor a known alias.
    #[error("{value:?} is not a valid community: {detail}")]
    InvalidCommunity {
        /// What was given.
        value: String,
        /// Why not.
        detail: String,
    },
    /// An integer outside its allowed range.
    #[error("{value} is out of range ({min} to {max})")]
    OutOfRange {
        /// What was given.
        value: i64,
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// An aggregation length shorter than a prefix of a pool it applies to.
    #[error(
        "aggregation length /{length} is shorter than prefix {prefix} of pool {pool:?}: it would announce addresses outside the pool"
    )]
    AggregationTooShort {
        /// The aggregation length.
        length: u8,
        /// The pool.
        pool: String,
        /// Its most specific prefix that the length does not fit.
        prefix: String,
    },
    /// A hold time between 0 and 3 s.
    #[error("hold time {hold:?} must be 0 or at least 3s")]
    HoldTimeTooShort {
        /// The hold time.
        hold: Duration,
    },
    /// A keepalive interval longer than the hold time.
    #[error("keepalive time {keepalive:?} is longer than hold time {hold:?}")]
    KeepaliveExceedsHold {
        /// The keepalive interval.
        keepalive: Duration,
        /// The hold time.
        hold: Duration,
    },
    /// A BGP timer that is not a whole number of seconds up to 65535.
    #[error("{value:?} must be a whole number of seconds from {min_secs}s to 65535s")]
    TimerNotWholeSeconds {
        /// What was given.
        value: String,
        /// Smallest allowed, in seconds.
        min_secs: u64,
    },
    /// Not a Go-style duration.
    #[error("{value:?} is not a duration like '90s' or '1m30s'")]
    InvalidDuration {
        /// What was given.
        value: String,
    },
    /// AS numbers 0 (RFC 7607) and 4294967295 (RFC 7300) are reserved.
    #[error("AS number {asn} is reserved")]
    ReservedAsn {
        /// The number given.
        asn: u32,
    },
    /// `ebgpMultiHop` on a peer in our own AS.
    #[error("ebgpMultiHop applies to eBGP only; myASN and peerASN are both {asn}")]
    EbgpMultiHopOnIbgp {
        /// The shared AS number.
        asn: u32,
    },
    /// A field or value ferrolb does not honour: refused rather than accepted and ignored.
    #[error("not supported: {why}")]
    NotSupported {
        /// Why, and what to do instead.
        why: &'static str,
    },
    /// An advertisement that picks Services and also aggregates their addresses.
    #[error(
        "serviceSelectors picks Services one by one, so it cannot go with an aggregationLength ({length}) that announces a wider prefix"
    )]
    ServiceSelectorsWithAggregation {
        /// The aggregation length given.
        length: u8,
    },
    /// A name longer than Kubernetes allows.
    #[error("the name is {len} characters long; Kubernetes allows at most 253")]
    NameTooLong {
        /// Its length.
        len: usize,
    },
    /// Not an IP address (or not of the family the field needs).
    #[error("{value:?} is not {expected}")]
    InvalidIp {
        /// What was given.
        value: String,
        /// What was wanted ("an IP address", "an IPv4 address").
        expected: &'static str,
    },
    /// Source and peer addresses of different families.
    #[error(
        "sourceAddress {source_address} and peerAddress {peer_address} are of different IP families"
    )]
    SourceFamilyMismatch {
        /// sourceAddress.
        source_address: String,
        /// peerAddress.
        peer_address: String,
    },
    /// Both `password` and `passwordSecret`.
    #[error("password and passwordSecret are mutually exclusive")]
    PasswordConflict,
    /// A password the kernel cannot use as a TCP MD5 key.
    #[error("the password must be 1 to 80 bytes long (found {len})")]
    PasswordLength {
        /// Its length in bytes.
        len: usize,
    },
    /// A passwordSecret that cannot be used.
    #[error("Secret {namespace}/{name}: {problem}")]
    BadSecret {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Two peers for the same router on the same nodes.
    #[error("BGPPeer {other:?} already peers with {address} port {port} from the same nodes")]
    DuplicatePeer {
        /// The other peer.
        other: String,
        /// The router's address.
        address: String,
        /// The router's port.
        port: u16,
    },
    /// A label selector that does not compile.
    #[error("invalid label selector: {0}")]
    InvalidSelector(SelectorError),
    /// An interface name Linux cannot have.
    #[error("{value:?} is not an interface name (1 to 15 characters, no '/', no whitespace)")]
    InvalidInterface {
        /// What was given.
        value: String,
    },
    /// Two advertisements send the same prefixes to the same peers with different LOCAL_PREF.
    #[error(
        "BGPAdvertisement {other:?} announces pool {pool:?} with the same aggregation to the same peers and nodes but LOCAL_PREF {other_pref:?} instead of {pref:?}"
    )]
    ConflictingLocalPref {
        /// The other advertisement.
        other: String,
        /// The shared pool.
        pool: String,
        /// This advertisement's LOCAL_PREF.
        pref: Option<u32>,
        /// The other's LOCAL_PREF.
        other_pref: Option<u32>,
    },
}

impl Reason {
    /// The same reason with every quoted piece of user input cut to [`QUOTED_MAX`] characters.
    pub(crate) fn clipped(self) -> Reason {
        use Reason::*;
        let c = |s: String| clip(&s);
        match self {
            InvalidAddress { value, detail } => InvalidAddress {
                value: c(value),
                detail: c(detail),
            },
            RangeStartAfterEnd { start, end } => RangeStartAfterEnd {
                start: c(start),
                end: c(end),
            },
            RangeMixedFamilies { start, end } => RangeMixedFamilies {
                start: c(start),
                end: c(end),
            },
            AddressOverlap {
                entry,
                other,
                other_entry,
            } => AddressOverlap {
                entry: c(entry),
                other,
                other_entry: c(other_entry),
            },
            Duplicate { value } => Duplicate { value: c(value) },
            UnknownReference { kind, name } => UnknownReference {
                kind,
                name: c(name),
            },
            BreaksOther { other, detail } => BreaksOther {
                other,
                detail: c(detail),
            },
            RefusedReference { kind, name } => RefusedReference {
                kind,
                name: c(name),
            },
            DanglingReference { kind, name } => DanglingReference {
                kind,
                name: c(name),
            },
            InvalidCommunity { value, detail } => InvalidCommunity {
                value: c(value),
                detail: c(detail),
            },
            AggregationTooShort {
                length,
                pool,
                prefix,
            } => AggregationTooShort {
                length,
                pool: c(pool),
                prefix: c(prefix),
            },
            TimerNotWholeSeconds { value, min_secs } => TimerNotWholeSeconds {
                value: c(value),
                min_secs,
            },
            InvalidDuration { value } => InvalidDuration { value: c(value) },
            InvalidIp { value, expected } => InvalidIp {
                value: c(value),
                expected,
            },
            SourceFamilyMismatch {
                source_address,
                peer_address,
            } => SourceFamilyMismatch {
                source_address: c(source_address),
                peer_address: c(peer_address),
            },
            BadSecret {
                namespace,
                name,
                problem,
            } => BadSecret {
                namespace: c(namespace),
                name: c(name),
                problem: c(problem),
            },
            DuplicatePeer {
                other,
                address,
                port,
            } => DuplicatePeer {
                other: c(other),
                address: c(address),
                port,
            },
            InvalidInterface { value } => InvalidInterface { value: c(value) },
            ConflictingLocalPref {
                other,
                pool,
                pref,
                other_pref,
            } => ConflictingLocalPref {
                other: c(other),
                pool: c(pool),
                pref,
                other_pref,
            },
            r @ (MissingName
            | DuplicateName { .. }
            | EmptyPool
            | OutOfRange { .. }
            | HoldTimeTooShort { .. }
            | KeepaliveExceedsHold { .. }
            | ReservedAsn { .. }
            | EbgpMultiHopOnIbgp { .. }
            | ServiceSelectorsWithAggregation { .. }
            | NameTooLong { .. }
            | PeerAsnChoice { .. }
            | PeerAddressChoice { .. }
            | NotWithInterface { .. }
            | NotSupported { .. }
            | PasswordConflict
            | PasswordLength { .. }
            | InvalidSelector(_)) => r,
        }
    }
}

/// Every problem found in one configuration, in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors about one object (for its status conditions).
    pub fn for_object<'a>(
        &'a self,
        object: &'a ObjectRef,
    ) -> impl Iterator<Item = &'a ConfigError> + 'a {
        self.0.iter().filter(move |e| &e.object == object)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} configuration error(s)", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n- {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
