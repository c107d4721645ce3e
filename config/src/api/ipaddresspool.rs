//! `IPAddressPool`: the addresses ferrolb may hand out, and who may get them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::LabelSelector;

/// A set of IP addresses that LoadBalancer Services get their external IPs from.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "IPAddressPool",
    plural = "ipaddresspools",
    namespaced,
    status = "IPAddressPoolStatus",
    printcolumn(
        name = "Auto Assign",
        type_ = "boolean",
        json_path = ".spec.autoAssign"
    ),
    printcolumn(
        name = "Avoid Buggy IPs",
        type_ = "boolean",
        json_path = ".spec.avoidBuggyIPs"
    ),
    printcolumn(name = "Addresses", type_ = "string", json_path = ".spec.addresses"),
    printcolumn(
        name = "Assigned IPv4",
        type_ = "integer",
        json_path = ".status.assignedIPv4"
    ),
    printcolumn(
        name = "Available IPv4",
        type_ = "integer",
        json_path = ".status.availableIPv4"
    ),
    printcolumn(
        name = "Assigned IPv6",
        type_ = "integer",
        json_path = ".status.assignedIPv6"
    ),
    printcolumn(
        name = "Available IPv6",
        type_ = "integer",
        json_path = ".status.availableIPv6",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// CIDRs (`192.168.10.0/24`, `fd00:10::/64`) and inclusive ranges (`192.168.9.1-192.168.9.5`),
    /// IPv4 and IPv6 in any mix.
    #[schemars(length(min = 1, max = 1024), inner(length(min = 1, max = 128)))]
    #[x_kube(validation = kube::core::Rule::new(
        "self.all(a, isCIDR(a) || (a.split('-').size() == 2 && isIP(a.split('-')[0].trim()) \
         && isIP(a.split('-')[1].trim()) \
         && ip(a.split('-')[0].trim()).family() == ip(a.split('-')[1].trim()).family()))"
    ).message("each address must be a CIDR or a 'start-end' range of two addresses of one family"))]
    pub addresses: Vec<String>,

    /// Whether Services get addresses from this pool without asking for it. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_assign: Option<bool>,

    /// Skip IPv4 addresses ending in `.0` and `.255`, which some old equipment drops.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "avoidBuggyIPs"
    )]
    pub avoid_buggy_ips: Option<bool>,

    /// Restricts the pool to some Services and orders it against other pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_allocation: Option<ServiceAllocation>,
}

/// Which Services may take addresses from a pool, and in what order pools are tried.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Lower numbers are tried first; unset or 0 (as in MetalLB) is tried after every set
    /// priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub priority: Option<i32>,
    /// Namespaces whose Services may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub namespaces: Vec<String>,
    /// Namespaces, by label, whose Services may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Services, by label, that may use the pool (any selector matching is enough).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}

/// What the controller reports about a pool. Counters saturate rather than overflow or go negative.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolStatus {
    /// IPv4 addresses of the pool held by Services.
    #[serde(rename = "assignedIPv4", default)]
    pub assigned_ipv4: u64,
    /// IPv6 addresses of the pool held by Services.
    #[serde(rename = "assignedIPv6", default)]
    pub assigned_ipv6: u64,
    /// IPv4 addresses still free.
    #[serde(rename = "availableIPv4", default)]
    pub available_ipv4: u64,
    /// IPv6 addresses still free (saturates at 2^63-1 for huge ranges: the API stores int64).
    #[serde(rename = "availableIPv6", default)]
    pub available_ipv6: u64,
    /// `Valid` (config accepted) and similar conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec the controller last accepted: what stays in force while a newer one is
    /// refused, in every controller and speaker, restarted or not.
    #[serde(
        rename = "acceptedSpec",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "super::any_object")]
    pub accepted_spec: Option<serde_json::Value>,
}
