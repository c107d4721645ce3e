//! Lease election against the in-process API server: one winner, a follower that takes over
//! when the leader releases the lease, and optimistic concurrency on every update.

use std::time::Duration;

use ferrolb_controller::leader::{self, LeaseSettings};
use ferrolb_fake_apiserver::FakeApiServer;
use http::Method;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::sync::watch;

fn settings(identity: &str) -> LeaseSettings {
    LeaseSettings {
        name: "ferrolb-controller".into(),
        namespace: "ferrolb-system".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(15),
        retry_period: Duration::from_millis(50),
    }
}

#[tokio::test]
async fn one_leader_at_a_time_and_handover_on_release() {
    let server = FakeApiServer::new();
    let api: Api<Lease> = Api::namespaced(server.client(), "ferrolb-system");
    let (a_tx, a_rx) = watch::channel(false);
    let (b_tx, b_rx) = watch::channel(false);
    let (stop_a_tx, stop_a) = watch::channel(false);
    let (stop_b_tx, stop_b) = watch::channel(false);
    let a = tokio::spawn(leader::run(api.clone(), settings("a"), a_tx, stop_a));
    let mut a_rx2 = a_rx.clone();
    tokio::time::timeout(Duration::from_secs(5), a_rx2.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let b = tokio::spawn(leader::run(api.clone(), settings("b"), b_tx, stop_b));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(*a_rx.borrow() && !*b_rx.borrow(), "exactly one leader");
    let lease = server
        .get::<Lease>(Some("ferrolb-system"), "ferrolb-controller")
        .unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("a"));

    // Every renewal is a PUT carrying the resourceVersion that was read.
    let puts: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::PUT)
        .collect();
    assert!(
        !puts.is_empty()
            && puts
                .iter()
                .all(|r| r.body["metadata"]["resourceVersion"].is_string())
    );

    stop_a_tx.send(true).unwrap();
    let _ = a.await;
    let mut b_rx2 = b_rx.clone();
    tokio::time::timeout(Duration::from_secs(5), b_rx2.wait_for(|l| *l))
        .await
        .expect("b takes over")
        .unwrap();
    let lease = server
        .get::<Lease>(Some("ferrolb-system"), "ferrolb-controller")
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("b"));
    assert_eq!(lease.lease_transitions, Some(1));
    stop_b_tx.send(true).unwrap();
    let _ = b.await;
}
