//! The Kubernetes permissions the speaker uses, in one place: the Helm chart's speaker
//! ClusterRole and Role grant exactly these, and a test (`tests/tests/deploy.rs`) keeps the
//! chart, this list and the API calls of the speaker's Kubernetes mode in step.

use super::{CONFIG_SOURCE_RULES, READ, Rule};

/// Cluster-wide rules (ClusterRole).
pub const CLUSTER_RULES: &[Rule] = &[
    // Reflectors: which Services to announce, where their endpoints are, which Nodes exist.
    Rule {
        group: "",
        resource: "services",
        verbs: READ,
    },
    Rule {
        group: "",
        resource: "nodes",
        verbs: READ,
    },
    Rule {
        group: "discovery.k8s.io",
        resource: "endpointslices",
        verbs: READ,
    },
    // The ferrolb.io/Announced condition.
    Rule {
        group: "",
        resource: "services/status",
        verbs: &["patch"],
    },
    // nodeAssigned / nodeWithdrawn Events.
    Rule {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
    },
];

/// This node's `BGPSessionState` objects (written, and deleted when a peer goes), and every
/// node's (read, for the Announced condition), in the speaker's namespace.
pub const SESSION_STATE_RULES: &[Rule] = &[
    Rule {
        group: "ferrolb.io",
        resource: "bgpsessionstates",
        verbs: &["get", "list", "watch", "create", "delete"],
    },
    Rule {
        group: "ferrolb.io",
        resource: "bgpsessionstates/status",
        verbs: &["patch"],
    },
];

/// Rules in the speaker's own namespace (Role): the config objects and the Secrets BGPPeers
/// refer to (`passwordSecret`), read through the same `ferrolb_kubernetes::config_source` as the
/// controller, and the [`SESSION_STATE_RULES`].
pub fn namespace_rules() -> Vec<Rule> {
    [CONFIG_SOURCE_RULES, SESSION_STATE_RULES].concat()
}
