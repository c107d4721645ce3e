//! The Kubernetes permissions the controller uses: the Helm chart's controller ClusterRole and
//! Role grant exactly these, and `tests/tests/deploy.rs` keeps the two in step.

use super::{READ, Rule};

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
