//! `BGPPeer`: a router that speakers open BGP sessions to.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LabelSelector;

/// Default TCP port of a BGP peer.
pub const DEFAULT_PEER_PORT: u16 = 179;

/// A BGP router. Every node whose labels match `nodeSelectors` (all nodes when empty) opens a session to it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "BGPPeer",
    plural = "bgppeers",
    namespaced,
    status = "super::ConfigStatus",
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.peerAddress"),
    printcolumn(name = "Interface", type_ = "string", json_path = ".spec.interface"),
    printcolumn(name = "ASN", type_ = "integer", json_path = ".spec.peerASN"),
    printcolumn(name = "Dynamic ASN", type_ = "string", json_path = ".spec.dynamicASN"),
    printcolumn(name = "My ASN", type_ = "integer", json_path = ".spec.myASN"),
    printcolumn(name = "BFD Profile", type_ = "string", json_path = ".spec.bfdProfile"),
    printcolumn(
        name = "Multi Hops",
        type_ = "boolean",
        json_path = ".spec.ebgpMultiHop",
        priority = 1
    )
)]
#[x_kube(validation = kube::core::Rule::new("!(has(self.password) && has(self.passwordSecret))")
    .message("password and passwordSecret are mutually exclusive"))]
#[x_kube(validation = kube::core::Rule::new("has(self.peerASN) != has(self.dynamicASN)")
    .message("exactly one of peerASN and dynamicASN must be set"))]
#[x_kube(validation = kube::core::Rule::new("has(self.peerAddress) != has(self.interface)")
    .message("exactly one of peerAddress and interface must be set"))]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    /// The AS number of the speakers (4-octet ASNs allowed).
    #[serde(rename = "myASN")]
    #[schemars(range(min = 1, max = 4_294_967_295u32))]
    pub my_asn: u32,
    /// The AS number of the peer; equal to myASN for iBGP. Either this or dynamicASN.
    #[serde(rename = "peerASN", default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_295u32))]
    pub peer_asn: Option<u32>,
    /// Learn the peer's AS number from its OPEN instead of naming it: `internal` (it must be
    /// myASN: iBGP) or `external` (it must differ: eBGP). Either this or peerASN.
    #[serde(
        rename = "dynamicASN",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dynamic_asn: Option<DynamicAsn>,
    /// The peer's IPv4 or IPv6 address. Either this or interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = kube::core::Rule::new("isIP(self)").message("peerAddress must be an IP address"))]
    pub peer_address: Option<String>,
    /// Unnumbered peering: the node's interface toward the peer (a point-to-point link). The
    /// peer's IPv6 link-local address is learned from its router advertisements (the speaker
    /// sends its own, with router lifetime 0), and IPv4 routes get IPv6 next hops (RFC 8950).
    /// Either this or peerAddress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub interface: Option<String>,
    /// The peer's TCP port. Default 179.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub peer_port: Option<u32>,
    /// Source address of the session, when the node has it; otherwise the kernel chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = kube::core::Rule::new("isIP(self)").message("sourceAddress must be an IP address"))]
    pub source_address: Option<String>,
    /// Proposed hold time (`90s`); 0 or at least 3s. Default 90s, or 3 x keepaliveTime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::DURATION_PATTERN))]
    pub hold_time: Option<String>,
    /// Keepalive interval, at most the hold time. Default holdTime / 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::DURATION_PATTERN))]
    pub keepalive_time: Option<String>,
    /// First interval between connection attempts (later ones back off), 1s to 65535s in whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::DURATION_PATTERN))]
    pub connect_time: Option<String>,
    /// BGP identifier (an IPv4 address). Default: derived from the node's address.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "routerID")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = kube::core::Rule::new("isIP(self) && ip(self).family() == 4")
        .message("routerID must be an IPv4 address"))]
    pub router_id: Option<String>,
    /// Nodes that open a session to this peer. Empty means every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// TCP MD5 signature key (RFC 2385), in clear. Prefer passwordSecret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 80))]
    pub password: Option<String>,
    /// A Secret of type `kubernetes.io/basic-auth` whose `password` key holds the MD5 key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretReference>,
    /// Name of a BFDProfile to run BFD with on this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd_profile: Option<String>,
    /// Negotiate graceful restart (RFC 4724). Fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("enableGracefulRestart cannot be changed"))]
    pub enable_graceful_restart: Option<bool>,
    /// Carry both address families over this session (RFC 4760), not only the family of
    /// peerAddress: the other family's routes get this node's address of that family on the
    /// session's interface as next hop. Default false.
    #[serde(
        rename = "dualStackAddressFamily",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dual_stack_address_family: Option<bool>,
    /// The VRF (its Linux device name) whose routing table reaches the peer: the session's
    /// socket is bound to it. The speaker only connects to such a peer (it does not take its
    /// connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub vrf: Option<String>,
    /// The eBGP peer is more than one hop away: send with a TTL of 255.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebgp_multi_hop: Option<bool>,
}

/// How the peer's AS number is learned when it is not named (MetalLB's `dynamicASN`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DynamicAsn {
    /// The peer's AS is ours: iBGP.
    #[serde(rename = "internal")]
    Internal,
    /// The peer's AS is any other: eBGP.
    #[serde(rename = "external")]
    External,
}

/// Where a Secret lives. Namespace defaults to the BGPPeer's own.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretReference {
    /// The Secret's name.
    pub name: String,
    /// The Secret's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}
