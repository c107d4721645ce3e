//! The validated configuration: what the allocator and the speakers act on. Every value here
//! has been parsed, defaulted and cross-checked by [`super::build`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;

use crate::selector::{Labels, Selector, any_matches};

/// An IP family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// An inclusive range of addresses of one family (`first <= last`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRange {
    first: IpAddr,
    last: IpAddr,
}

impl IpRange {
    /// A range from `first` to `last` inclusive; `None` when the families differ or `first > last`.
    pub fn new(first: IpAddr, last: IpAddr) -> Option<Self> {
        (Family::of(first) == Family::of(last) && first <= last).then_some(Self { first, last })
    }

    /// Every address of a CIDR (host bits are ignored: `10.0.0.7/24` is `10.0.0.0/24`).
    pub fn from_net(net: IpNet) -> Self {
        Self {
            first: net.network(),
            last: net.broadcast(),
        }
    }

    /// The lowest address.
    pub fn first(&self) -> IpAddr {
        self.first
    }

    /// The highest address.
    pub fn last(&self) -> IpAddr {
        self.last
    }

    /// The family of both ends.
    pub fn family(&self) -> Family {
        Family::of(self.first)
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.first <= ip && ip <= self.last
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &IpRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// The number of addresses; `u128` holds even `::/0` minus one, so this saturates only there.
    pub fn size(&self) -> u128 {
        (to_u128(self.last) - to_u128(self.first)).saturating_add(1)
    }

    /// The smallest set of CIDRs covering exactly this range.
    pub fn cidrs(&self) -> Vec<IpNet> {
        match (self.first, self.last) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                ipnet::Ipv4Subnets::new(a, b, 0).map(IpNet::V4).collect()
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                ipnet::Ipv6Subnets::new(a, b, 0).map(IpNet::V6).collect()
            }
            _ => Vec::new(),
        }
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// An address as a 128-bit number (IPv4 in the low 32 bits), for range arithmetic.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The whole validated configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// Address pools by name.
    pub pools: BTreeMap<String, Pool>,
    /// Layer 2 advertisements, by name order.
    pub l2_advertisements: Vec<L2Advertisement>,
    /// BGP advertisements, by name order.
    pub bgp_advertisements: Vec<BgpAdvertisement>,
    /// BGP peers by name.
    pub peers: BTreeMap<String, Peer>,
    /// BFD profiles by name.
    pub bfd_profiles: BTreeMap<String, BfdProfile>,
}

/// A validated `IPAddressPool`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    /// The pool's name.
    pub name: String,
    /// The pool object's labels (for `ipAddressPoolSelectors`).
    pub labels: Labels,
    /// Its addresses: sorted, non-overlapping, both families possible.
    pub ranges: Vec<IpRange>,
    /// Whether Services get addresses from it without asking.
    pub auto_assign: bool,
    /// Skip IPv4 `.0` and `.255` addresses.
    pub avoid_buggy_ips: bool,
    /// Restrictions and priority; `None` means "anyone, after the restricted pools".
    pub allocation: Option<ServiceAllocation>,
}

impl Pool {
    /// Whether the pool holds `ip` (ignoring avoidBuggyIPs).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Whether the pool has addresses of `family`.
    pub fn offers(&self, family: Family) -> bool {
        self.ranges.iter().any(|r| r.family() == family)
    }

    /// Whether `ip` is one avoidBuggyIPs excludes (IPv4 ending in .0 or .255).
    pub fn is_buggy(&self, ip: IpAddr) -> bool {
        self.avoid_buggy_ips && is_buggy_ipv4(ip)
    }
}

/// IPv4 addresses ending in `.0` or `.255`.
pub fn is_buggy_ipv4(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(a) if matches!(a.octets()[3], 0 | 255))
}

/// Which Services may use a pool, and its priority among pools.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceAllocation {
    /// Lower is tried first; `None` (unset or 0 in the object, as in MetalLB) after every set
    /// priority.
    pub priority: Option<i32>,
    /// Namespaces allowed by name.
    pub namespaces: BTreeSet<String>,
    /// Namespaces allowed by label.
    pub namespace_selectors: Vec<Selector>,
    /// Services allowed by label.
    pub service_selectors: Vec<Selector>,
}

impl ServiceAllocation {
    /// Whether a Service in `namespace` (with `namespace_labels`) and with `service_labels` may use the pool.
    /// Namespace constraints (names or selectors, either suffices) and service selectors must both hold
    /// when set; an allocation with neither matches every Service.
    pub fn allows(
        &self,
        namespace: &str,
        namespace_labels: &Labels,
        service_labels: &Labels,
    ) -> bool {
        let namespace_ok = (self.namespaces.is_empty() && self.namespace_selectors.is_empty())
            || self.namespaces.contains(namespace)
            || self
                .namespace_selectors
                .iter()
                .any(|s| s.matches(namespace_labels));
        namespace_ok && any_matches(&self.service_selectors, service_labels)
    }
}

/// A validated `L2Advertisement`.
#[derive(Clone, Debug, PartialEq)]
pub struct L2Advertisement {
    /// The advertisement's name.
    pub name: String,
    /// The pools it announces (resolved from names and selectors).
    pub pools: BTreeSet<String>,
    /// Nodes that may announce; empty means all.
    pub node_selectors: Vec<Selector>,
    /// Interfaces to announce on; empty means every suitable one.
    pub interfaces: BTreeSet<String>,
    /// Services it applies to; empty means all.
    pub service_selectors: Vec<Selector>,
}

/// A BGP community value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommunityValue {
    /// RFC 1997: two 16-bit halves.
    Standard(u16, u16),
    /// RFC 8092: global administrator and two local parts.
    Large(u32, u32, u32),
}

impl std::fmt::Display for CommunityValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommunityValue::Standard(a, b) => write!(f, "{a}:{b}"),
            CommunityValue::Large(a, b, c) => write!(f, "large:{a}:{b}:{c}"),
        }
    }
}

/// A validated `BGPAdvertisement`.
#[derive(Clone, Debug, PartialEq)]
pub struct BgpAdvertisement {
    /// The advertisement's name.
    pub name: String,
    /// The pools it announces (resolved from names and selectors).
    pub pools: BTreeSet<String>,
    /// Prefix length for IPv4 addresses.
    pub aggregation_length: u8,
    /// Prefix length for IPv6 addresses.
    pub aggregation_length_v6: u8,
    /// LOCAL_PREF toward iBGP peers.
    pub local_pref: Option<u32>,
    /// Communities, aliases resolved, sorted and without repeats.
    pub communities: BTreeSet<CommunityValue>,
    /// Nodes that announce; empty means all.
    pub node_selectors: Vec<Selector>,
    /// Peers announced to; empty means all.
    pub peers: BTreeSet<String>,
    /// Services it applies to; empty means all.
    pub service_selectors: Vec<Selector>,
}

/// A validated `BGPPeer`, with timers defaulted.
#[derive(Clone, Debug, PartialEq)]
pub struct Peer {
    /// The peer's name.
    pub name: String,
    /// Local AS.
    pub my_asn: u32,
    /// Remote AS: named, or learned from the peer's OPEN (`dynamicASN`).
    pub peer_asn: PeerAsn,
    /// The router: its address, or the interface of an unnumbered session.
    pub address: PeerAddress,
    /// The router's TCP port.
    pub port: u16,
    /// Source address, if pinned.
    pub source_address: Option<IpAddr>,
    /// Proposed hold time (zero: no keepalives).
    pub hold_time: Duration,
    /// Keepalive interval.
    pub keepalive_time: Duration,
    /// First connect-retry interval.
    pub connect_time: Duration,
    /// BGP identifier, if pinned.
    pub router_id: Option<Ipv4Addr>,
    /// Nodes that peer with it; empty means all.
    pub node_selectors: Vec<Selector>,
    /// TCP MD5 key, resolved from the spec or the Secret.
    pub password: Option<String>,
    /// BFD profile name (exists in [`Config::bfd_profiles`]).
    pub bfd_profile: Option<String>,
    /// Negotiate graceful restart.
    pub graceful_restart: bool,
    /// eBGP multi-hop (TTL 255).
    pub ebgp_multihop: bool,
    /// Both address families over this session (`dualStackAddressFamily`).
    pub dual_stack: bool,
    /// The VRF device the session's socket is bound to.
    pub vrf: Option<String>,
}

impl Peer {
    /// iBGP when both ends are in one AS.
    pub fn is_ibgp(&self) -> bool {
        self.peer_asn.is_ibgp(self.my_asn)
    }
}

/// Where a peer is: an address, or (unnumbered) the node's interface toward it, its IPv6
/// link-local address learned at run time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerAddress {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// The interface of an unnumbered session.
    Interface(String),
}

impl std::fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAddress::Ip(ip) => ip.fmt(f),
            PeerAddress::Interface(name) => write!(f, "interface {name}"),
        }
    }
}

/// The peer's AS number: named (`peerASN`), or any the peer's OPEN gives within the rule of
/// `dynamicASN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAsn {
    /// Exactly this AS.
    Is(u32),
    /// The local AS (iBGP).
    Internal,
    /// Any AS but the local one (eBGP).
    External,
}

impl From<u32> for PeerAsn {
    fn from(asn: u32) -> PeerAsn {
        PeerAsn::Is(asn)
    }
}

impl PeerAsn {
    /// Whether the session is iBGP, given the local AS.
    pub fn is_ibgp(self, my_asn: u32) -> bool {
        match self {
            PeerAsn::Is(asn) => asn == my_asn,
            PeerAsn::Internal => true,
            PeerAsn::External => false,
        }
    }
}

/// A validated `BFDProfile`, with defaults applied. Intervals in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdProfile {
    /// The profile's name.
    pub name: String,
    /// Required minimum receive interval, ms.
    pub receive_interval_ms: u32,
    /// Desired minimum transmit interval, ms.
    pub transmit_interval_ms: u32,
    /// Detection multiplier.
    pub detect_multiplier: u32,
    /// Echo interval, ms.
    pub echo_interval_ms: u32,
    /// Echo mode on.
    pub echo_mode: bool,
    /// Passive mode on.
    pub passive_mode: bool,
    /// Minimum TTL accepted.
    pub minimum_ttl: u32,
}
