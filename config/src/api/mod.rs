//! The `ferrolb.io/v1beta1` API: one module per kind, with MetalLB's field names and meaning
//! so that migrating from MetalLB is a rename of the API group.
//!
//! What the API server can check on its own (types, ranges, syntax, CEL rules) is declared here
//! and lands in the generated CRDs; what needs several objects at once (overlaps, references)
//! lives in the crate root ([`crate::build`], [`crate::Config`]).

// `printcolumn(...)` repeats `type_`/`json_path` keys by design; clippy reads them as duplicate attributes.
#![allow(clippy::duplicated_attributes)]

pub mod bfdprofile;
pub mod bgpadvertisement;
pub mod bgppeer;
pub mod bgpsessionstate;
pub mod community;
pub mod ipaddresspool;
pub mod l2advertisement;

pub use bfdprofile::{BFDProfile, BFDProfileSpec};
pub use bgpadvertisement::{BGPAdvertisement, BGPAdvertisementSpec};
pub use bgppeer::{BGPPeer, BGPPeerSpec, DynamicAsn, SecretReference};
pub use bgpsessionstate::{BGPSessionState, BGPSessionStateSpec, BGPSessionStateStatus};
pub use community::{Community, CommunityAlias, CommunitySpec};
pub use ipaddresspool::{IPAddressPool, IPAddressPoolSpec, IPAddressPoolStatus, ServiceAllocation};
pub use l2advertisement::{L2Advertisement, L2AdvertisementSpec};

/// The API group of every ferrolb kind.
pub const GROUP: &str = "ferrolb.io";
/// The one served and stored version.
pub const VERSION: &str = "v1beta1";

/// The Kubernetes label selector, as every Kubernetes API spells it.
pub type LabelSelector = k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A Go-style duration as `metav1.Duration` accepts it (`90s`, `1m30s`, `500ms`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// `a:b` (16-bit halves), `large:a:b:c` (32-bit parts), or an alias defined by a Community object.
pub const COMMUNITY_PATTERN: &str = r"^([0-9]{1,5}:[0-9]{1,5}|large:[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}|[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$";

/// The status of the config kinds that have no counters: whether the controller accepted the
/// object (condition `Valid`), and why not.
#[derive(
    kube::KubeSchema, serde::Serialize, serde::Deserialize, Clone, Debug, Default, PartialEq,
)]
pub struct ConfigStatus {
    /// `Valid`: True when the object passed validation, False with the errors as message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    /// The spec the controller last accepted: what stays in force while a newer one is
    /// refused, in every controller and speaker, restarted or not.
    #[serde(
        rename = "acceptedSpec",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "any_object")]
    pub accepted_spec: Option<serde_json::Value>,
}

/// An object of any fields (a spec kept as it was: its own schema was checked when it was
/// applied), for `acceptedSpec`.
pub(crate) fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The condition type that reports whether a config object was accepted.
pub const CONDITION_VALID: &str = "Valid";

/// Every kind, for the CRD generator and the tests.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    let mut crds = vec![
        IPAddressPool::crd(),
        L2Advertisement::crd(),
        BGPAdvertisement::crd(),
        BGPPeer::crd(),
        BFDProfile::crd(),
        Community::crd(),
        BGPSessionState::crd(),
    ];
    for crd in &mut crds {
        let kind = crd.spec.names.kind.clone();
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                kubernetes_formats(schema);
                if kind == "L2Advertisement" || kind == "BGPAdvertisement" {
                    spec_optional(schema);
                }
            }
        }
        if kind == "BGPPeer" {
            serve_as_metallb_serves(crd);
        }
    }
    crds
}

/// MetalLB serves (and its samples write) BGPPeer as `v1beta2`; ferrolb serves that version
/// too, with the same schema, so a MetalLB file with only its group renamed applies as it is.
/// Stored as `v1beta1`: the two differ in name only, so no conversion webhook is needed.
pub const BGPPEER_METALLB_VERSION: &str = "v1beta2";

fn serve_as_metallb_serves(
    crd: &mut k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) {
    let Some(mut alias) = crd.spec.versions.first().cloned() else {
        return;
    };
    alias.name = BGPPEER_METALLB_VERSION.into();
    alias.storage = false;
    alias.served = true;
    crd.spec.versions.push(alias);
}

/// MetalLB documents an L2Advertisement and a BGPAdvertisement with no `spec` at all (every
/// pool, every node, every interface or peer): the API server accepts them and defaults `spec`
/// to `{}`, which our types read as exactly that. kube-derive always requires `spec`, so the schema is adjusted here.
fn spec_optional(
    schema: &mut k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps,
) {
    if let Some(required) = schema.required.as_mut() {
        required.retain(|r| r != "spec");
    }
    if let Some(spec) = schema.properties.as_mut().and_then(|p| p.get_mut("spec")) {
        spec.default = Some(
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                serde_json::json!({}),
            ),
        );
    }
}

/// Rust's unsigned integers come out of schemars as `format: uint32`/`uint64`, which the API
/// server does not know (kubectl warns "unrecognized format" on every apply). Kubernetes knows
/// `int32` and `int64`: every unsigned field here fits `int64` (with its `minimum: 0` kept).
fn kubernetes_formats(
    schema: &mut k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps,
) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray;
    if matches!(
        schema.format.as_deref(),
        Some("uint8" | "uint16" | "uint32" | "uint64")
    ) {
        schema.format = Some("int64".into());
    }
    for p in schema.properties.iter_mut().flat_map(|m| m.values_mut()) {
        kubernetes_formats(p);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(s)) => kubernetes_formats(s),
        Some(JSONSchemaPropsOrArray::Schemas(v)) => v.iter_mut().for_each(kubernetes_formats),
        None => {}
    }
    for list in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of] {
        list.iter_mut().flatten().for_each(kubernetes_formats);
    }
}
