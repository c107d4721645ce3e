//! `L2Advertisement`: announce pool addresses on the local network with ARP (IPv4) and NDP (IPv6).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::LabelSelector;

/// Announce addresses of some pools over layer 2 from some nodes and interfaces.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "L2Advertisement",
    plural = "l2advertisements",
    namespaced,
    status = "super::ConfigStatus",
    printcolumn(
        name = "IPAddressPools",
        type_ = "string",
        json_path = ".spec.ipAddressPools"
    ),
    printcolumn(
        name = "Node Selectors",
        type_ = "string",
        json_path = ".spec.nodeSelectors",
        priority = 1
    ),
    printcolumn(name = "Interfaces", type_ = "string", json_path = ".spec.interfaces")
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Pools by name. With no pools and no pool selectors, every pool is announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub ip_address_pools: Vec<String>,
    /// Pools by label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes that may announce. Empty means every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// Host interfaces to announce on, by exact name. Empty means every suitable interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// (1 to 15 characters without `/` or whitespace, as Linux allows; no repeats.)
    #[schemars(inner(length(min = 1, max = 15), regex(pattern = r"^[^/\s]+$")))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub interfaces: Vec<String>,
    /// Limits the advertisement to Services with these labels (any selector matching is enough).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}
