//! `BGPSessionState`: one node's BGP session with one peer, as that node's speaker sees it.
//! Written by the speaker (never by users), so that `kubectl get bgpsessionstates` shows which
//! node is up with which router. MetalLB's kind of the same name has the same status fields
//! (`node`, `peer`, `vrf`, `bgpStatus`, `bfdStatus`); ferrolb adds why and since when.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The label naming the node whose session an object describes.
pub const NODE_LABEL: &str = "ferrolb.io/node";
/// The label naming the BGPPeer whose session an object describes.
pub const PEER_LABEL: &str = "ferrolb.io/peer";

/// Nothing to set: the object is a report. Its name is derived from the node and the peer.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "BGPSessionState",
    plural = "bgpsessionstates",
    namespaced,
    status = "BGPSessionStateStatus",
    printcolumn(name = "Node", type_ = "string", json_path = ".status.node"),
    printcolumn(name = "Peer", type_ = "string", json_path = ".status.peerName"),
    printcolumn(name = "Address", type_ = "string", json_path = ".status.peer"),
    printcolumn(name = "BGP", type_ = "string", json_path = ".status.bgpStatus"),
    printcolumn(name = "BFD", type_ = "string", json_path = ".status.bfdStatus"),
    printcolumn(name = "Up", type_ = "date", json_path = ".status.establishedSince"),
    printcolumn(
        name = "Prefixes",
        type_ = "integer",
        json_path = ".status.prefixesAdvertised"
    ),
    printcolumn(
        name = "VRF",
        type_ = "string",
        json_path = ".status.vrf",
        priority = 1
    ),
    printcolumn(
        name = "Last Error",
        type_ = "string",
        json_path = ".status.lastError",
        priority = 1
    )
)]
pub struct BGPSessionStateSpec {}

/// The session as the node's speaker last saw it. Absent values serialize as `null`, so that a
/// merge patch of the whole status removes what no longer holds (an uptime once down).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BGPSessionStateStatus {
    /// The node.
    #[serde(default)]
    pub node: String,
    /// The peer's address, or its interface for an unnumbered peer (MetalLB's `peer`).
    #[serde(default)]
    pub peer: String,
    /// The BGPPeer's name.
    #[serde(default)]
    pub peer_name: String,
    /// The VRF the session runs in, if any.
    #[serde(default)]
    pub vrf: Option<String>,
    /// The RFC 4271 state: Idle, Connect, Active, OpenSent, OpenConfirm, Established.
    #[serde(default)]
    pub bgp_status: String,
    /// The BFD session's state, or `N/A` when the peer has no BFD profile.
    #[serde(default)]
    pub bfd_status: String,
    /// When the session last became Established (absent while it is not).
    #[serde(default)]
    pub established_since: Option<Time>,
    /// Prefixes the peer holds from this node.
    #[serde(default)]
    pub prefixes_advertised: u64,
    /// Times the session went down from Established since the speaker started.
    #[serde(default)]
    pub flaps: u64,
    /// The last failure, in words (kept after recovery).
    #[serde(default)]
    pub last_error: Option<String>,
    /// The last NOTIFICATION sent or received, in words.
    #[serde(default)]
    pub last_notification: Option<String>,
}

/// The object name for `node`'s session with `peer`: readable, and unique even where
/// `node-peer` is ambiguous (a short hash of both), within the 253 characters a name may have.
pub fn object_name(node: &str, peer: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(node.as_bytes());
    h.update([0]);
    h.update(peer.as_bytes());
    let digest = h.finalize();
    let suffix: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mut readable = format!("{node}-{peer}");
    readable.truncate(253 - suffix.len() - 1);
    let readable = readable.trim_end_matches(['-', '.']);
    format!("{readable}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_valid_and_bounded() {
        let a = object_name("a-b", "c");
        let b = object_name("a", "b-c");
        assert_ne!(a, b);
        assert!(a.starts_with("a-b-c-"));
        let long = object_name(&"n".repeat(253), &"p".repeat(253));
        assert!(long.len() <= 253, "{}", long.len());
        assert_ne!(long, object_name(&"n".repeat(253), &"q".repeat(253)));
        assert!(!object_name("x.", "-").contains(".-"));
    }
}
