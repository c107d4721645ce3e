//! `BGPAdvertisement`: announce pool addresses to BGP peers, with aggregation and attributes.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::LabelSelector;

/// Default IPv4 aggregation length: each address is announced as a /32.
pub const DEFAULT_AGGREGATION_LENGTH: u8 = 32;
/// Default IPv6 aggregation length: each address is announced as a /128.
pub const DEFAULT_AGGREGATION_LENGTH_V6: u8 = 128;

/// Announce addresses of some pools over BGP from some nodes to some peers.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "BGPAdvertisement",
    plural = "bgpadvertisements",
    namespaced,
    status = "super::ConfigStatus",
    printcolumn(
        name = "IPAddressPools",
        type_ = "string",
        json_path = ".spec.ipAddressPools"
    ),
    printcolumn(name = "Peers", type_ = "string", json_path = ".spec.peers"),
    printcolumn(
        name = "Node Selectors",
        type_ = "string",
        json_path = ".spec.nodeSelectors",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BGPAdvertisementSpec {
    /// Prefix length announced for IPv4 addresses (the address masked to it). Default 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    pub aggregation_length: Option<i32>,
    /// Prefix length announced for IPv6 addresses. Default 128.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "aggregationLengthV6"
    )]
    #[schemars(range(min = 1, max = 128))]
    pub aggregation_length_v6: Option<i32>,
    /// LOCAL_PREF sent to iBGP peers (ignored toward eBGP peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// Communities: `65000:100`, `large:65000:1:2`, or the name of a Community alias.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 253), regex(pattern = super::COMMUNITY_PATTERN)))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub communities: Vec<String>,
    /// Pools by name. With no pools and no pool selectors, every pool is announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub ip_address_pools: Vec<String>,
    /// Pools by label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes that announce (and so receive the traffic). Empty means every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// BGPPeer names to announce to. Empty means every peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub peers: Vec<String>,
    /// Limits the advertisement to Services with these labels (any selector matching is enough).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}
