//! The Kubernetes permissions ferrolb uses, in one place per component: the Helm chart grants
//! exactly these, and `tests/tests/deploy.rs` keeps chart, lists and API calls in step.

pub mod controller;
pub mod speaker;

/// One RBAC rule: API group, resource, verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// API group ("" for core).
    pub group: &'static str,
    /// Resource (with `/status` for a subresource).
    pub resource: &'static str,
    /// Verbs.
    pub verbs: &'static [&'static str],
}

/// Read access.
pub(crate) const READ: &[&str] = &["get", "list", "watch"];

/// What `config_source::watch` reads in the namespace of the config with `Scope::Namespace` (the
/// speaker's Role): the config kinds and the Secrets BGPPeers refer to. The controller reads the
/// kinds cluster-wide ([`controller::CLUSTER_RULES`]) and the Secrets in its namespace ([`controller::NAMESPACE_RULES`]).
pub const CONFIG_SOURCE_RULES: &[Rule] = &[
    Rule {
        group: "ferrolb.io",
        resource: "ipaddresspools",
        verbs: READ,
    },
    Rule {
        group: "ferrolb.io",
        resource: "l2advertisements",
        verbs: READ,
    },
    Rule {
        group: "ferrolb.io",
        resource: "bgpadvertisements",
        verbs: READ,
    },
    Rule {
        group: "ferrolb.io",
        resource: "bgppeers",
        verbs: READ,
    },
    Rule {
        group: "ferrolb.io",
        resource: "bfdprofiles",
        verbs: READ,
    },
    Rule {
        group: "ferrolb.io",
        resource: "communities",
        verbs: READ,
    },
    Rule {
        group: "",
        resource: "secrets",
        verbs: READ,
    },
];
