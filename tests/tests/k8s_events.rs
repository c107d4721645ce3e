//! Events on a real API server (issue 18): a repeat of a recent event becomes a series update
//! of its Event, and a repeat whose Event the API server has already expired (deleted by its
//! --event-ttl) is published as a new Event instead of failing with 404 and being lost.

use ferrolb_kubernetes::events::{Event, EventType, Publisher};
use ferrolb_tests::cluster::{self, Cluster};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, DeleteParams, ListParams};

fn events(c: &Cluster) -> Vec<KubeEvent> {
    let api: Api<KubeEvent> = Api::namespaced(c.client(), "default");
    c.block_on(api.list(&ListParams::default())).unwrap().items
}

#[test]
fn a_repeat_after_the_event_expired_is_published_again() {
    if !cluster::require_cluster() {
        return;
    }
    let c = Cluster::start().unwrap();
    let publisher = Publisher::new(c.client(), "ferrolb-test", "test-0", 16);
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        namespace: Some("default".into()),
        name: Some("web".into()),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Normal,
        reason: "nodeAssigned".into(),
        note: "announcing from node node0".into(),
        action: "Announce".into(),
    };
    c.block_on(publisher.publish(&event, &regarding)).unwrap();
    c.block_on(publisher.publish(&event, &regarding)).unwrap();
    let list = events(&c);
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0].series.as_ref().map(|s| s.count), Some(2));

    // The API server expires it (as its --event-ttl does after an hour).
    let api: Api<KubeEvent> = Api::namespaced(c.client(), "default");
    let name = list[0].metadata.name.clone().unwrap();
    c.block_on(api.delete(&name, &DeleteParams::default()))
        .unwrap();
    assert!(events(&c).is_empty());

    // The next repeat is not lost: a new Event, and later repeats fold into it.
    c.block_on(publisher.publish(&event, &regarding))
        .expect("a repeat of an expired event is published again");
    c.block_on(publisher.publish(&event, &regarding)).unwrap();
    let list = events(&c);
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_ne!(list[0].metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(list[0].note.as_deref(), Some("announcing from node node0"));
    assert_eq!(list[0].series.as_ref().map(|s| s.count), Some(2));
}
