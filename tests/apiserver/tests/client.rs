//! The fake API server answers a real kube::Client the way the Kubernetes API server does.

use std::time::Duration;

use ferrolb_fake_apiserver::{FakeApiServer, Fault};
use futures::StreamExt;
use http::Method;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

fn service(name: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn create_get_list_patch_delete() {
    let server = FakeApiServer::new();
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let created = api
        .create(&PostParams::default(), &service("web"))
        .await
        .unwrap();
    assert_eq!(created.metadata.resource_version.as_deref(), Some("1"));
    assert_eq!(
        api.get("web").await.unwrap().metadata.name.as_deref(),
        Some("web")
    );
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.metadata.resource_version.as_deref(), Some("1"));

    let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}});
    let pp = PatchParams::default();
    let patched = api
        .patch_status("web", &pp, &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(
        patched
            .status
            .unwrap()
            .load_balancer
            .unwrap()
            .ingress
            .unwrap()[0]
            .ip
            .as_deref(),
        Some("10.0.0.1")
    );
    // Status patches on the main resource are ignored, as by the real server.
    let ignored = api
        .patch(
            "web",
            &pp,
            &Patch::Merge(&json!({"status": {"loadBalancer": {}}})),
        )
        .await
        .unwrap();
    assert!(
        ignored
            .status
            .unwrap()
            .load_balancer
            .unwrap()
            .ingress
            .is_some()
    );

    // A stale resourceVersion precondition is a 409 Conflict.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "status": {"loadBalancer": {}}});
    let err = api
        .patch_status("web", &pp, &Patch::Merge(&stale))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );

    api.delete("web", &Default::default()).await.unwrap();
    let err = api.get("web").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );

    let requests = server.requests();
    let status_patch = requests
        .iter()
        .find(|r| r.method == Method::PATCH && r.path.ends_with("/status"))
        .unwrap();
    assert_eq!(
        status_patch.path,
        "/api/v1/namespaces/default/services/web/status"
    );
    assert_eq!(
        status_patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(status_patch.body, patch);
}

#[tokio::test]
async fn watch_replays_from_a_resource_version_and_streams_live_changes() {
    let server = FakeApiServer::new();
    server.upsert(&service("a"));
    let rv_after_a = server.resource_version();
    server.upsert(&service("b"));
    let api: Api<Service> = Api::all(server.client());
    let wp = WatchParams::default();
    let mut stream = api
        .watch(&wp, &rv_after_a.to_string())
        .await
        .unwrap()
        .boxed();
    let first = stream.next().await.unwrap().unwrap();
    assert!(
        matches!(first, WatchEvent::Added(ref s) if s.metadata.name.as_deref() == Some("b")),
        "{first:?}"
    );
    let bookmark = stream.next().await.unwrap().unwrap();
    assert!(matches!(bookmark, WatchEvent::Bookmark(_)), "{bookmark:?}");
    assert!(server.remove::<Service>(Some("default"), "a"));
    let deleted = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(deleted, WatchEvent::Deleted(ref s) if s.metadata.name.as_deref() == Some("a")),
        "{deleted:?}"
    );
}

#[tokio::test]
async fn injected_faults_answer_with_kubernetes_status_errors() {
    let server = FakeApiServer::new();
    server.upsert(&service("web"));
    server.inject(Fault {
        method: Method::PATCH,
        path_suffix: "/status".into(),
        code: 500,
        times: 1,
    });
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let patch = Patch::Merge(json!({"status": {}}));
    let err = api
        .patch_status("web", &PatchParams::default(), &patch)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 500),
        "{err:?}"
    );
    api.patch_status("web", &PatchParams::default(), &patch)
        .await
        .unwrap();
}

/// What the fake cannot do faithfully it refuses, as the real server refuses what it does not
/// serve: a strategic merge patch (the real server merges lists by key; applied here as a JSON
/// merge patch it would "succeed" differently), server-side apply, an unknown subresource.
#[tokio::test]
async fn refuses_what_it_cannot_do_faithfully() {
    let server = FakeApiServer::new();
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    api.create(&PostParams::default(), &service("web"))
        .await
        .unwrap();
    let code = |r: Result<Service, kube::Error>| match r {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let ports = json!({"spec": {"ports": [{"port": 81, "protocol": "TCP"}]}});
    let smp = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(ports.clone()),
        )
        .await;
    assert_eq!(code(smp), 415);
    let apply = api
        .patch("web", &PatchParams::apply("t"), &Patch::Apply(ports))
        .await;
    assert_eq!(code(apply), 415);
    let scale = api.get_subresource("scale", "web").await;
    assert!(
        matches!(scale, Err(kube::Error::Api(ref s)) if s.code == 404),
        "{scale:?}"
    );
    // Nothing changed.
    let svc = api.get("web").await.unwrap();
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 80);
}
