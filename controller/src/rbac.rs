//! The Kubernetes permissions the controller uses, in one place: the Helm chart renders its
//! ClusterRole and Role from this list, and a test keeps the two in step.

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

const READ: &[&str] = &["get", "list", "watch"];

/// Cluster-wide rules (ClusterRole).
pub const CLUSTER_RULES: &[Rule] = &[
    Rule {
        group: "",
        resource: "services",
        verbs: &["get", "list", "watch", "patch"],
    },
    Rule {
        group: "",
        resource: "services/status",
        verbs: &["patch"],
    },
    Rule {
        group: "",
        resource: "namespaces",
        verbs: READ,
    },
    Rule {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
    },
];

/// What `config_source::watch` reads in the namespace of the config (the controller's and the
/// speaker's): the config kinds and the Secrets BGPPeers refer to.
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

/// Rules in the controller's own namespace besides [`CONFIG_SOURCE_RULES`] (its Role grants
/// both).
pub const NAMESPACE_RULES: &[Rule] = &[
    Rule {
        group: "ferrolb.io",
        resource: "ipaddresspools/status",
        verbs: &["patch"],
    },
    Rule {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
    },
];

/// With `--membership-secret-name` only (the plain manifest; Helm's default creates the Secret
/// itself): creating the speakers' membership key when it does not exist (membership_secret.rs).
pub const MEMBERSHIP_SECRET_RULES: &[Rule] = &[Rule {
    group: "",
    resource: "secrets",
    verbs: &["create"],
}];
