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
    // The config kinds in every namespace: those of the controller's namespace make the config
    // (and get their Valid condition); one elsewhere is told it is ignored (WrongNamespace).
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
        group: "ferrolb.io",
        resource: "ipaddresspools/status",
        verbs: &["patch"],
    },
    Rule {
        group: "ferrolb.io",
        resource: "l2advertisements/status",
        verbs: &["patch"],
    },
    Rule {
        group: "ferrolb.io",
        resource: "bgpadvertisements/status",
        verbs: &["patch"],
    },
    Rule {
        group: "ferrolb.io",
        resource: "bgppeers/status",
        verbs: &["patch"],
    },
    Rule {
        group: "ferrolb.io",
        resource: "bfdprofiles/status",
        verbs: &["patch"],
    },
    Rule {
        group: "ferrolb.io",
        resource: "communities/status",
        verbs: &["patch"],
    },
];

/// What `config_source::watch` reads in the namespace of the config with `Scope::Namespace` (the
/// speaker's Role): the config kinds and the Secrets BGPPeers refer to. The controller reads the
/// kinds cluster-wide ([`CLUSTER_RULES`]) and the Secrets in its namespace ([`NAMESPACE_RULES`]).
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

/// Rules in the controller's own namespace (its Role).
pub const NAMESPACE_RULES: &[Rule] = &[
    // The Secrets BGPPeers refer to (passwordSecret), part of the config.
    Rule {
        group: "",
        resource: "secrets",
        verbs: READ,
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
