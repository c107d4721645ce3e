//! This node's BGP sessions as `BGPSessionState` objects (one per selected peer), so that
//! `kubectl get bgpsessionstates` shows which node is up with which router and why not.
//!
//! Written by a task of its own from the newest state the main loop hands over, each call
//! under a deadline, so a slow API server never stalls announcing. An object is written only
//! when what it says changes; the objects of peers this node no longer has are deleted; each is
//! owned by the Node, so the garbage collector removes them with it; a stopping speaker removes
//! its own.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ferrolb_announce::bfd::BfdStatus;
use ferrolb_announce::bgp::SessionStatus;
use ferrolb_config::Config;
use ferrolb_config::api::bgpsessionstate::{NODE_LABEL, PEER_LABEL, object_name};
use ferrolb_config::api::{BGPSessionState, BGPSessionStateSpec, BGPSessionStateStatus};
use ferrolb_kubernetes::client;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

/// What `bfdStatus` says when the peer has no BFD profile (MetalLB's words).
pub const BFD_NOT_RUN: &str = "N/A";

/// How long to wait before retrying writes that failed when nothing else changes.
const RETRY: Duration = Duration::from_secs(5);

/// The status each of this node's sessions should show, by object name. Pure.
pub fn desired(
    node: &str,
    sessions: &BTreeMap<String, SessionStatus>,
    bfd: &BTreeMap<String, BfdStatus>,
    config: &Config,
) -> BTreeMap<String, BGPSessionStateStatus> {
    sessions
        .iter()
        .map(|(peer_name, s)| {
            let peer = config.peers.get(peer_name);
            let status = BGPSessionStateStatus {
                node: node.to_string(),
                peer: peer.map(|p| p.address.to_string()).unwrap_or_default(),
                peer_name: peer_name.clone(),
                vrf: peer.and_then(|p| p.vrf.clone()),
                bgp_status: format!("{:?}", s.state),
                bfd_status: match bfd.get(peer_name) {
                    None => BFD_NOT_RUN.to_string(),
                    Some(b) => match &b.error {
                        Some(e) => format!("{} ({e})", b.state),
                        None => b.state.to_string(),
                    },
                },
                established_since: s
                    .is_up()
                    .then_some(s.established_at)
                    .flatten()
                    .and_then(whole_seconds),
                prefixes_advertised: s.prefixes_sent as u64,
                flaps: s.flaps,
                last_error: s.last_error.clone(),
                last_notification: s.last_notification.clone(),
            };
            (object_name(node, peer_name), status)
        })
        .collect()
}

fn whole_seconds(t: SystemTime) -> Option<Time> {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    let secs = i64::try_from(secs).ok()?;
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .ok()
        .map(Time)
}

/// Who writes: this node, in the speaker's namespace.
#[derive(Clone, Debug)]
pub struct Writer {
    /// This Node's name.
    pub node: String,
    /// This Node's UID, for the owner reference (none: the objects are not owned).
    pub node_uid: Option<String>,
    /// The speaker's namespace.
    pub namespace: String,
}

/// Keeps this node's `BGPSessionState` objects in step with `wanted` until the sender is
/// dropped, then deletes them (the caller bounds that last step).
pub async fn write(
    client: Client,
    writer: Writer,
    mut wanted: watch::Receiver<BTreeMap<String, BGPSessionStateStatus>>,
) {
    let api: Api<BGPSessionState> = Api::namespaced(client, &writer.namespace);
    // What the objects say now: none known yet, so that every wanted one is written once, and
    // leftovers of an earlier run of this node are found and deleted.
    let mut written: BTreeMap<String, Option<BGPSessionStateStatus>> = BTreeMap::new();
    let selector = ListParams::default().labels(&format!("{NODE_LABEL}={}", writer.node));
    match client::call(api.list(&selector)).await {
        Ok(list) => {
            for o in list.items {
                written.insert(o.name_any(), None);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not list this node's BGPSessionStates"),
    }
    let mut failed = false;
    loop {
        let closed = if failed {
            tokio::select! {
                r = wanted.changed() => r.is_err(),
                _ = tokio::time::sleep(RETRY) => false,
            }
        } else {
            wanted.changed().await.is_err()
        };
        if closed {
            for name in written.keys() {
                delete(&api, name).await;
            }
            return;
        }
        let now = wanted.borrow_and_update().clone();
        failed = false;
        for (name, status) in &now {
            if written.get(name).and_then(Option::as_ref) == Some(status) {
                continue;
            }
            match upsert(&api, &writer, name, status).await {
                Ok(()) => {
                    written.insert(name.clone(), Some(status.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, object = %name, "could not write BGPSessionState");
                    failed = true;
                }
            }
        }
        let gone: Vec<String> = (written.keys())
            .filter(|n| !now.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            if delete(&api, &name).await {
                written.remove(&name);
            } else {
                failed = true;
            }
        }
    }
}

/// Replaces the object's status, creating the object first when it does not exist.
async fn upsert(
    api: &Api<BGPSessionState>,
    writer: &Writer,
    name: &str,
    status: &BGPSessionStateStatus,
) -> Result<(), client::CallError> {
    // The whole status, absent values as null: the merge removes what no longer holds.
    let patch = serde_json::json!({"status": status});
    let patch = Patch::Merge(&patch);
    let params = PatchParams {
        field_manager: Some("ferrolb-speaker".into()),
        ..Default::default()
    };
    let replace = || api.patch_status(name, &params, &patch);
    match client::call(replace()).await {
        Err(e) if e.status() == Some(404) => {}
        other => return other.map(drop),
    }
    let object = BGPSessionState {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(writer.namespace.clone()),
            labels: Some(
                [
                    (NODE_LABEL.to_string(), label_value(&writer.node)),
                    (PEER_LABEL.to_string(), label_value(&status.peer_name)),
                ]
                .into(),
            ),
            owner_references: writer.node_uid.as_ref().map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: writer.node.clone(),
                    uid: uid.clone(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: BGPSessionStateSpec {},
        status: None,
    };
    match client::call(api.create(&PostParams::default(), &object)).await {
        Ok(_) => {}
        Err(e) if e.is_conflict() => {}
        Err(e) => return Err(e),
    }
    client::call(replace()).await.map(drop)
}

/// A label value (at most 63 characters); longer names are cut, the object name stays exact.
fn label_value(name: &str) -> String {
    let mut v: String = name.chars().take(63).collect();
    while v.ends_with(['-', '.', '_']) {
        v.pop();
    }
    v
}

/// Deletes the object; true when it is gone.
async fn delete(api: &Api<BGPSessionState>, name: &str) -> bool {
    match client::call(api.delete(name, &DeleteParams::default())).await {
        Ok(_) => true,
        Err(e) if e.status() == Some(404) => true,
        Err(e) => {
            tracing::debug!(error = %e, object = %name, "could not delete BGPSessionState");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_announce::bgp::State;

    fn config() -> Config {
        let yaml = r#"
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata: {name: tor, namespace: ferrolb-system}
spec: {myASN: 64512, peerASN: 64513, peerAddress: 10.0.0.254}
"#;
        let docs = ferrolb_config::parse_documents(yaml).unwrap();
        ferrolb_config::build(&docs.config).unwrap()
    }

    #[test]
    fn an_established_session_says_since_when_and_a_down_one_why() {
        let up = SessionStatus {
            state: State::Established,
            established_at: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)),
            prefixes_sent: 3,
            ..SessionStatus::idle()
        };
        let sessions = BTreeMap::from([("tor".to_string(), up)]);
        let bfd = BTreeMap::from([(
            "tor".to_string(),
            BfdStatus {
                state: ferrolb_announce::bfd::State::Up,
                diag: ferrolb_announce::bfd::packet::Diag::None,
                up_since: None,
                flaps: 0,
                error: None,
            },
        )]);
        let d = desired("node0", &sessions, &bfd, &config());
        let (name, s) = d.iter().next().unwrap();
        assert_eq!(name, &object_name("node0", "tor"));
        assert_eq!(s.peer, "10.0.0.254");
        assert_eq!(s.bgp_status, "Established");
        assert_eq!(s.bfd_status, "Up");
        assert_eq!(s.prefixes_advertised, 3);
        assert_eq!(
            s.established_since.as_ref().map(|t| t.0.as_second()),
            Some(1_700_000_000)
        );

        let down = SessionStatus {
            state: State::Active,
            established_at: Some(SystemTime::UNIX_EPOCH),
            last_error: Some("connection refused".into()),
            flaps: 1,
            ..SessionStatus::idle()
        };
        let sessions = BTreeMap::from([("tor".to_string(), down)]);
        let d = desired("node0", &sessions, &BTreeMap::new(), &config());
        let s = d.values().next().unwrap();
        assert_eq!(s.bfd_status, "N/A", "no BFD profile");
        assert_eq!(s.bgp_status, "Active");
        assert_eq!(s.established_since, None, "not up: no uptime");
        assert_eq!(s.last_error.as_deref(), Some("connection refused"));
        assert_eq!(s.flaps, 1);
    }

    #[test]
    fn label_values_are_bounded() {
        assert_eq!(label_value(&"a".repeat(100)).len(), 63);
        assert_eq!(
            label_value(&format!("{}-b", "a".repeat(62))),
            "a".repeat(62)
        );
    }
}
