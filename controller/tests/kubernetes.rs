//! The controller against the in-process API server: real kube-runtime watches, real JSON,
//! and assertions on the exact requests it sends.

use std::sync::Arc;
use std::time::Duration;

use ferrolb_controller::metrics::Metrics;
use ferrolb_controller::reconciler::{self, Settings};
use ferrolb_controller::service_status::CONDITION_TYPE;
use ferrolb_crds::api;
use ferrolb_fake_apiserver::{FakeApiServer, Fault, RecordedRequest};
use http::Method;
use k8s_openapi::api::core::v1::{Namespace, Service};
use serde_json::{Value, json};
use tokio::sync::watch;

const NS: &str = "ferrolb-system";
const WAIT: Duration = Duration::from_secs(10);

struct Controller {
    leader: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
}

impl Controller {
    fn start(server: &FakeApiServer, settings: Settings, leader: bool) -> Self {
        let (leader_tx, leader_rx) = watch::channel(leader);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::new());
        let task = tokio::spawn(reconciler::run(
            server.client(),
            settings,
            metrics.clone(),
            leader_rx,
            shutdown_rx,
        ));
        Self {
            leader: leader_tx,
            shutdown: shutdown_tx,
            task,
            metrics,
        }
    }

    async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(WAIT, self.task).await;
    }
}

fn settings() -> Settings {
    Settings {
        namespace: NS.into(),
        ..Settings::default()
    }
}

fn pool(server: &FakeApiServer, name: &str, spec: Value) {
    let obj: api::IPAddressPool = serde_json::from_value(json!({
        "apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": NS}, "spec": spec,
    }))
    .unwrap();
    server.upsert(&obj);
}

fn namespace(server: &FakeApiServer, name: &str, labels: Value) {
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    server.upsert(&ns);
}

fn service(server: &FakeApiServer, name: &str, annotations: Value, spec: Value) -> Service {
    let mut full = json!({"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "ipFamilies": ["IPv4"]});
    if let (Some(f), Some(s)) = (full.as_object_mut(), spec.as_object()) {
        f.extend(s.clone());
    }
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": full,
    }))
    .unwrap();
    server.upsert(&svc);
    svc
}

fn get(server: &FakeApiServer, name: &str) -> Service {
    server
        .get::<Service>(Some("default"), name)
        .expect("service exists")
}

fn ingress(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .map(|i| i.iter().filter_map(|x| x.ip.clone()).collect())
        .unwrap_or_default()
}

fn condition(svc: &Service) -> Option<(String, String, String)> {
    svc.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == CONDITION_TYPE)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn pool_annotation(svc: &Service) -> Option<String> {
    svc.metadata
        .annotations
        .as_ref()?
        .get("ferrolb.io/ip-allocated-from-pool")
        .cloned()
}

async fn wait_for(
    server: &FakeApiServer,
    what: &str,
    mut check: impl FnMut(&FakeApiServer) -> bool,
) {
    assert!(
        server.wait_until(WAIT, |s| check(s)).await,
        "timed out waiting for {what}"
    );
}

async fn wait_ingress(server: &FakeApiServer, name: &str, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let ok = server
        .wait_until(WAIT, |s| {
            s.get::<Service>(Some("default"), name)
                .is_some_and(|svc| ingress(&svc) == want)
        })
        .await;
    assert!(
        ok,
        "{name}: want ingress {want:?}, have {:?} / {:?}",
        ingress(&get(server, name)),
        condition(&get(server, name))
    );
}

fn writes_to(requests: &[RecordedRequest], path_suffix: &str) -> Vec<RecordedRequest> {
    requests
        .iter()
        .filter(|r| r.is_write() && r.path.ends_with(path_suffix))
        .cloned()
        .collect()
}

/// Lets the controller go quiet: everything it reacts to has been handled.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

#[tokio::test]
async fn a_new_service_gets_an_ip_with_one_status_write_and_an_annotation() {
    let server = FakeApiServer::new();
    pool(&server, "default", json!({"addresses": ["10.10.0.0/30"]}));
    let c = Controller::start(&server, settings(), true);
    service(&server, "web", json!({}), json!({}));
    wait_ingress(&server, "web", &["10.10.0.0"]).await;
    wait_for(&server, "annotation", |s| {
        pool_annotation(&get(s, "web")).as_deref() == Some("default")
    })
    .await;
    settle().await;

    let svc = get(&server, "web");
    assert_eq!(
        condition(&svc),
        Some((
            "True".into(),
            "Allocated".into(),
            "assigned 10.10.0.0 from pool default".into()
        ))
    );
    let requests = server.requests();
    let status = writes_to(&requests, "/services/web/status");
    assert_eq!(status.len(), 1, "exactly one status write: {status:#?}");
    let status = &status[0];
    assert_eq!(status.method, Method::PATCH);
    assert_eq!(
        status.path,
        "/api/v1/namespaces/default/services/web/status"
    );
    assert_eq!(
        status.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        status.query_param("fieldManager").as_deref(),
        Some("ferrolb-controller")
    );
    assert_eq!(
        status.body["status"]["loadBalancer"]["ingress"],
        json!([{"ip": "10.10.0.0"}])
    );
    assert!(
        status.body["metadata"]["resourceVersion"].is_string(),
        "guarded by resourceVersion"
    );
    let annotation = writes_to(&requests, "/services/web");
    assert_eq!(annotation.len(), 1, "{annotation:#?}");
    assert_eq!(
        annotation[0].body,
        json!({"metadata": {"annotations": {"ferrolb.io/ip-allocated-from-pool": "default"}}})
    );
    let events: Vec<_> = requests
        .iter()
        .filter(|r| r.path.contains("/events"))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.body["reason"] == "IPAllocated" && e.body["regarding"]["name"] == "web"),
        "{events:#?}"
    );

    // Nothing changes: nothing is written again, whatever the watches replay.
    server.clear_requests();
    server.send_bookmarks();
    pool(&server, "unrelated", json!({"addresses": ["10.20.0.0/30"]}));
    settle().await;
    assert!(writes_to(&server.requests(), "/services/web/status").is_empty());
    c.stop().await;
}

#[tokio::test]
async fn pending_services_say_why_and_get_an_ip_as_soon_as_one_frees() {
    let server = FakeApiServer::new();
    pool(&server, "tiny", json!({"addresses": ["10.10.0.7/32"]}));
    let c = Controller::start(&server, settings(), true);
    service(&server, "first", json!({}), json!({}));
    wait_ingress(&server, "first", &["10.10.0.7"]).await;
    service(&server, "second", json!({}), json!({}));
    wait_for(&server, "refusal", |s| {
        condition(&get(s, "second")).is_some_and(|c| c.0 == "False")
    })
    .await;
    let (_, reason, message) = condition(&get(&server, "second")).unwrap();
    assert_eq!(reason, "PoolExhausted");
    assert!(
        message.contains("pool tiny") && message.contains("1 of 1"),
        "{message}"
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.path.contains("/events") && r.body["reason"] == "AllocationFailed")
    );

    server.remove::<Service>(Some("default"), "first");
    wait_ingress(&server, "second", &["10.10.0.7"]).await;
    assert_eq!(condition(&get(&server, "second")).unwrap().0, "True");
    c.stop().await;
}

#[tokio::test]
async fn requests_pools_annotations_and_metallb_aliases() {
    let server = FakeApiServer::new();
    pool(&server, "a", json!({"addresses": ["10.1.0.0/30"]}));
    pool(
        &server,
        "b",
        json!({"addresses": ["10.2.0.0/30"], "autoAssign": false}),
    );
    let c = Controller::start(&server, settings(), true);
    service(
        &server,
        "by-pool",
        json!({"metallb.io/address-pool": "b"}),
        json!({}),
    );
    service(
        &server,
        "both",
        json!({"metallb.io/address-pool": "a", "ferrolb.io/address-pool": "b"}),
        json!({}),
    );
    service(
        &server,
        "by-ip",
        json!({"metallb.universe.tf/loadBalancerIPs": "10.1.0.3"}),
        json!({}),
    );
    service(
        &server,
        "spec-ip",
        json!({}),
        json!({"loadBalancerIP": "10.2.0.3"}),
    );
    service(
        &server,
        "outside",
        json!({}),
        json!({"loadBalancerIP": "192.168.77.1"}),
    );
    // Both ask for pool b (one through a MetalLB alias, one with both keys, where ours wins).
    let in_pool_b = |s: &FakeApiServer, name: &str| {
        ingress(&get(s, name))
            .first()
            .is_some_and(|ip| ip.starts_with("10.2.0."))
    };
    wait_for(&server, "by-pool and both in pool b", |s| {
        in_pool_b(s, "by-pool") && in_pool_b(s, "both")
    })
    .await;
    assert_ne!(
        ingress(&get(&server, "by-pool")),
        ingress(&get(&server, "both"))
    );
    wait_ingress(&server, "by-ip", &["10.1.0.3"]).await;
    wait_ingress(&server, "spec-ip", &["10.2.0.3"]).await;
    wait_for(&server, "outside refused", |s| {
        condition(&get(s, "outside")).is_some_and(|c| c.1 == "IPOutsidePools")
    })
    .await;

    // Changing the pool annotation moves the Service to the new pool.
    service(
        &server,
        "by-pool",
        json!({"ferrolb.io/address-pool": "a"}),
        json!({}),
    );
    wait_for(&server, "move to pool a", |s| {
        ingress(&get(s, "by-pool"))
            .first()
            .is_some_and(|ip| ip.starts_with("10.1.0."))
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn leaving_load_balancer_type_releases_and_clears() {
    let server = FakeApiServer::new();
    pool(&server, "tiny", json!({"addresses": ["10.10.0.7/32"]}));
    let c = Controller::start(&server, settings(), true);
    service(&server, "web", json!({}), json!({}));
    wait_ingress(&server, "web", &["10.10.0.7"]).await;
    service(&server, "next", json!({}), json!({}));
    wait_for(&server, "next pending", |s| {
        condition(&get(s, "next")).is_some_and(|c| c.0 == "False")
    })
    .await;

    let mut svc = get(&server, "web");
    if let Some(spec) = svc.spec.as_mut() {
        spec.type_ = Some("ClusterIP".into());
    }
    server.upsert(&svc);
    wait_ingress(&server, "web", &[]).await;
    wait_for(&server, "cleared", |s| {
        let w = get(s, "web");
        condition(&w).is_none() && pool_annotation(&w).is_none()
    })
    .await;
    wait_ingress(&server, "next", &["10.10.0.7"]).await;
    c.stop().await;
}

#[tokio::test]
async fn load_balancer_class_filtering() {
    let server = FakeApiServer::new();
    pool(&server, "p", json!({"addresses": ["10.10.0.0/29"]}));
    let c = Controller::start(&server, settings(), true);
    service(&server, "classless", json!({}), json!({}));
    service(
        &server,
        "other",
        json!({}),
        json!({"loadBalancerClass": "example.com/other"}),
    );
    wait_ingress(&server, "classless", &["10.10.0.0"]).await;
    settle().await;
    assert!(
        writes_to(&server.requests(), "/services/other/status").is_empty(),
        "another class's Service is not touched"
    );
    c.stop().await;

    let server = FakeApiServer::new();
    pool(&server, "p", json!({"addresses": ["10.10.0.0/29"]}));
    let classed = Settings {
        lb_class: Some("ferrolb.io/lb".into()),
        ..settings()
    };
    let c = Controller::start(&server, classed, true);
    service(&server, "classless", json!({}), json!({}));
    service(
        &server,
        "mine",
        json!({}),
        json!({"loadBalancerClass": "ferrolb.io/lb"}),
    );
    wait_ingress(&server, "mine", &["10.10.0.0"]).await;
    settle().await;
    assert!(writes_to(&server.requests(), "/services/classless/status").is_empty());
    c.stop().await;
}

#[tokio::test]
async fn restart_reclaims_held_ips_before_pending_services_allocate() {
    let server = FakeApiServer::new();
    pool(&server, "p", json!({"addresses": ["10.10.0.0/30"]}));
    let c = Controller::start(&server, settings(), true);
    for name in ["a", "b", "c"] {
        service(&server, name, json!({}), json!({}));
    }
    wait_ingress(&server, "c", &["10.10.0.2"]).await;
    settle().await;
    c.stop().await;

    // While no controller runs: "a" is deleted (freeing .0) and two Services are created whose
    // names sort first. A restart must not hand "b"'s or "c"'s address to them.
    server.remove::<Service>(Some("default"), "a");
    service(&server, "0-new", json!({}), json!({}));
    service(&server, "00-new", json!({}), json!({}));
    server.clear_requests();
    let c = Controller::start(&server, settings(), true);
    wait_for(&server, "both new decided", |s| {
        condition(&get(s, "0-new")).is_some() && condition(&get(s, "00-new")).is_some()
    })
    .await;
    settle().await;
    assert_eq!(ingress(&get(&server, "b")), ["10.10.0.1"]);
    assert_eq!(ingress(&get(&server, "c")), ["10.10.0.2"]);
    let mut new_ips: Vec<String> = ["0-new", "00-new"]
        .iter()
        .flat_map(|n| ingress(&get(&server, n)))
        .collect();
    new_ips.sort();
    assert_eq!(new_ips, ["10.10.0.0", "10.10.0.3"]);
    let rewritten: Vec<_> = ["b", "c"]
        .iter()
        .flat_map(|n| writes_to(&server.requests(), &format!("/services/{n}/status")))
        .collect();
    assert!(
        rewritten.is_empty(),
        "held Services are not rewritten on restart: {rewritten:#?}"
    );
    c.stop().await;
}

#[tokio::test]
async fn an_invalid_config_object_is_reported_on_itself_and_the_last_good_config_stays() {
    let server = FakeApiServer::new();
    pool(&server, "good", json!({"addresses": ["10.10.0.0/30"]}));
    let c = Controller::start(&server, settings(), true);
    service(&server, "web", json!({}), json!({}));
    wait_ingress(&server, "web", &["10.10.0.0"]).await;

    pool(&server, "bad", json!({"addresses": ["10.10.0.2/31"]}));
    wait_for(&server, "bad pool condition", |s| {
        s.get::<api::IPAddressPool>(Some(NS), "bad")
            .and_then(|p| p.status)
            .is_some_and(|st| {
                st.conditions
                    .iter()
                    .any(|c| c.type_ == "Valid" && c.status == "False")
            })
    })
    .await;
    let bad = server.get::<api::IPAddressPool>(Some(NS), "bad").unwrap();
    let valid = bad
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Valid")
        .unwrap();
    assert!(
        valid.message.contains("spec.addresses[0]") && valid.message.contains("overlaps"),
        "{}",
        valid.message
    );
    wait_for(&server, "event", |s| {
        s.requests().iter().any(|r| {
            r.path.contains("/events")
                && r.body["reason"] == "InvalidConfiguration"
                && r.body["regarding"]["name"] == "bad"
        })
    })
    .await;
    assert!(
        c.metrics
            .encode()
            .contains("ferrolb_controller_config_valid 0")
    );

    // The last good config still serves new Services, and nothing moved.
    service(&server, "second", json!({}), json!({}));
    wait_ingress(&server, "second", &["10.10.0.1"]).await;
    assert_eq!(ingress(&get(&server, "web")), ["10.10.0.0"]);
    let good = server
        .get::<api::IPAddressPool>(Some(NS), "good")
        .unwrap()
        .status
        .unwrap();
    assert!(
        good.conditions
            .iter()
            .any(|c| c.type_ == "Valid" && c.status == "True")
    );

    // Fixing the object makes it valid again.
    pool(&server, "bad", json!({"addresses": ["10.10.1.0/31"]}));
    wait_for(&server, "fixed", |s| {
        s.get::<api::IPAddressPool>(Some(NS), "bad")
            .and_then(|p| p.status)
            .is_some_and(|st| {
                st.conditions
                    .iter()
                    .any(|c| c.type_ == "Valid" && c.status == "True")
            })
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn pool_status_counters_follow_allocations() {
    let server = FakeApiServer::new();
    pool(
        &server,
        "dual",
        json!({"addresses": ["10.10.0.0/30", "fd00:10::/126"]}),
    );
    let c = Controller::start(&server, settings(), true);
    service(&server, "v4", json!({}), json!({}));
    service(&server, "v6", json!({}), json!({"ipFamilies": ["IPv6"]}));
    wait_ingress(&server, "v6", &["fd00:10::"]).await;
    wait_for(&server, "counters", |s| {
        s.get::<api::IPAddressPool>(Some(NS), "dual")
            .and_then(|p| p.status)
            .is_some_and(|st| {
                (
                    st.assigned_ipv4,
                    st.available_ipv4,
                    st.assigned_ipv6,
                    st.available_ipv6,
                ) == (1, 3, 1, 3)
            })
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn namespace_selectors_follow_namespace_labels() {
    let server = FakeApiServer::new();
    namespace(&server, "default", json!({}));
    pool(
        &server,
        "team",
        json!({"addresses": ["10.30.0.0/30"], "autoAssign": true,
        "serviceAllocation": {"namespaceSelectors": [{"matchLabels": {"team": "a"}}]}}),
    );
    let c = Controller::start(&server, settings(), true);
    service(&server, "web", json!({}), json!({}));
    wait_for(&server, "refused", |s| {
        condition(&get(s, "web")).is_some_and(|c| c.0 == "False")
    })
    .await;
    namespace(&server, "default", json!({"team": "a"}));
    wait_ingress(&server, "web", &["10.30.0.0"]).await;
    c.stop().await;
}

#[tokio::test]
async fn api_errors_are_retried_with_backoff() {
    let server = FakeApiServer::new();
    pool(&server, "p", json!({"addresses": ["10.10.0.0/30"]}));
    server.inject(Fault {
        method: Method::PATCH,
        path_suffix: "/services/web/status".into(),
        code: 500,
        times: 2,
    });
    let c = Controller::start(&server, settings(), true);
    service(&server, "web", json!({}), json!({}));
    wait_ingress(&server, "web", &["10.10.0.0"]).await;
    assert_eq!(
        writes_to(&server.requests(), "/services/web/status").len(),
        3
    );
    assert!(
        c.metrics
            .encode()
            .contains("ferrolb_controller_api_errors_total{operation=\"patch_service_status\"} 2")
    );
    c.stop().await;
}

#[tokio::test]
async fn only_the_leader_writes_and_a_new_leader_moves_nothing() {
    let server = FakeApiServer::new();
    pool(&server, "p", json!({"addresses": ["10.10.0.0/29"]}));
    let a = Controller::start(&server, settings(), true);
    let b = Controller::start(&server, settings(), false);
    service(&server, "one", json!({}), json!({}));
    service(&server, "two", json!({}), json!({}));
    wait_ingress(&server, "two", &["10.10.0.1"]).await;
    settle().await;
    let writes_before = server.requests().iter().filter(|r| r.is_write()).count();

    // Hand over: a steps down, b leads.
    a.leader.send_replace(false);
    b.leader.send_replace(true);
    service(&server, "three", json!({}), json!({}));
    wait_ingress(&server, "three", &["10.10.0.2"]).await;
    settle().await;
    assert_eq!(ingress(&get(&server, "one")), ["10.10.0.0"]);
    assert_eq!(ingress(&get(&server, "two")), ["10.10.0.1"]);
    let new_writes: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.is_write())
        .skip(writes_before)
        .collect();
    assert!(
        new_writes
            .iter()
            .all(|r| !r.path.ends_with("/services/one/status")
                && !r.path.ends_with("/services/two/status")),
        "{new_writes:#?}"
    );
    a.stop().await;
    b.stop().await;
}

/// The speakers' membership Secret: created with a random key when missing, never replaced,
/// and an API failure names the Secret.
#[tokio::test]
async fn membership_secret_is_created_once_and_never_replaced() {
    use ferrolb_controller::membership_secret::{self, Outcome, SECRET_KEY};
    use k8s_openapi::api::core::v1::Secret;
    let server = FakeApiServer::new();
    let key_of = |s: &Secret| {
        s.string_data
            .as_ref()
            .and_then(|d| d.get(SECRET_KEY))
            .cloned()
            .expect("a key")
    };

    let created = membership_secret::ensure(server.client(), NS, "ferrolb-memberlist").await;
    assert_eq!(created.unwrap(), Outcome::Created);
    let first: Secret = server.get(Some(NS), "ferrolb-memberlist").expect("created");
    let key = key_of(&first);
    assert_eq!(key.len(), membership_secret::KEY_LENGTH);

    // A second replica (or a restart) finds it and leaves the key alone.
    let again = membership_secret::ensure(server.client(), NS, "ferrolb-memberlist").await;
    assert_eq!(again.unwrap(), Outcome::AlreadyExists);
    let second: Secret = server.get(Some(NS), "ferrolb-memberlist").unwrap();
    assert_eq!(key_of(&second), key);
    let posts = (server.requests().into_iter())
        .filter(|r| r.method == Method::POST && r.path.ends_with("/secrets"))
        .count();
    assert_eq!(posts, 2, "one create per call, nothing else");

    // A Secret the user made is kept as it is.
    let own: Secret = serde_json::from_value(json!({
        "metadata": {"name": "own", "namespace": NS},
        "stringData": {"secretkey": "users-key"},
    }))
    .unwrap();
    server.upsert(&own);
    let kept = membership_secret::ensure(server.client(), NS, "own").await;
    assert_eq!(kept.unwrap(), Outcome::AlreadyExists);
    let own_after: Secret = server.get(Some(NS), "own").unwrap();
    assert_eq!(key_of(&own_after), "users-key");

    // A failing API server: the error names the Secret, nothing is created.
    server.inject(Fault {
        method: Method::POST,
        path_suffix: "/secrets".into(),
        code: 500,
        times: 1,
    });
    let err = membership_secret::ensure(server.client(), NS, "other")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ferrolb-system/other"), "{err}");
    assert!(server.get::<Secret>(Some(NS), "other").is_none());
}
