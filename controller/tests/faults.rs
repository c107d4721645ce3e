//! The controller against the in-process fake API server, for what a real kube-apiserver cannot
//! do on request: failures injected into chosen requests. Everything else about the controller
//! on Kubernetes is tested on a real kube-apiserver (tests/tests/k8s_*.rs).

use std::sync::Arc;
use std::time::Duration;

use ferrolb_config::api;
use ferrolb_controller::metrics::Metrics;
use ferrolb_controller::reconciler::{self, Settings};
use ferrolb_fake_apiserver::{FakeApiServer, Fault};
use http::Method;
use k8s_openapi::api::core::v1::Service;
use serde_json::json;
use tokio::sync::watch;

const NS: &str = "ferrolb-system";
const WAIT: Duration = Duration::from_secs(10);

fn ingress(server: &FakeApiServer, name: &str) -> Vec<String> {
    (server.get::<Service>(Some("default"), name))
        .and_then(|s| s.status?.load_balancer?.ingress)
        .map(|i| i.into_iter().filter_map(|x| x.ip).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn api_errors_are_retried_with_backoff() {
    let server = FakeApiServer::new();
    let pool: api::IPAddressPool = serde_json::from_value(json!({
        "apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "p", "namespace": NS}, "spec": {"addresses": ["10.10.0.0/30"]},
    }))
    .unwrap();
    server.upsert(&pool);
    server.inject(Fault {
        method: Method::PATCH,
        path_suffix: "/services/web/status".into(),
        code: 500,
        times: 2,
    });
    let (_leader, leader_rx) = watch::channel(true);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let settings = Settings {
        namespace: NS.into(),
        ..Settings::default()
    };
    let task = tokio::spawn(reconciler::run(
        server.client(),
        settings,
        metrics.clone(),
        leader_rx,
        shutdown_rx,
    ));
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "ipFamilies": ["IPv4"]},
    }))
    .unwrap();
    server.upsert(&svc);
    let assigned = server
        .wait_until(WAIT, |s| ingress(s, "web") == ["10.10.0.0"])
        .await;
    assert!(assigned, "assigned after two failed writes");
    let writes = (server.requests().into_iter())
        .filter(|r| r.is_write() && r.path.ends_with("/services/web/status"))
        .count();
    assert_eq!(writes, 3, "two failures, then the write that lands");
    assert!(
        metrics
            .encode()
            .contains("ferrolb_controller_api_errors_total{operation=\"patch_service_status\"} 2")
    );
    let _ = shutdown.send(true);
    let _ = tokio::time::timeout(WAIT, task).await;
}
