//! `Community`: names for BGP community values, used by BGPAdvertisements.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A set of named BGP communities.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "Community",
    status = "super::ConfigStatus",
    plural = "communities",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct CommunitySpec {
    /// The aliases. Names must be unique across every Community object.
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub communities: Vec<CommunityAlias>,
}

/// One alias: `name` stands for `value` in BGPAdvertisement.communities.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CommunityAlias {
    /// The alias.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `a:b` or `large:a:b:c`.
    #[schemars(regex(
        pattern = r"^([0-9]{1,5}:[0-9]{1,5}|large:[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10})$"
    ))]
    pub value: String,
}
