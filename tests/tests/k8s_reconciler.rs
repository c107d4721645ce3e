//! The controller's reconciler on a real kube-apiserver: run in this process (so its leadership
//! can be switched and its metrics read) with a client that carries the chart's controller
//! ServiceAccount token (the server enforces its RBAC) and records every request, for assertions
//! on exactly what it writes. Each test has a fresh control plane with the chart's CRDs and RBAC
//! (Helm), no controller pod.
//!
//! Only what a real server cannot do on request stays on the in-process fake server
//! (`controller/tests/faults.rs`: API errors injected into chosen requests).

use std::sync::Arc;
use std::time::Duration;

use ferrolb_config::api;
use ferrolb_controller::metrics::Metrics;
use ferrolb_controller::reconciler::{self, Settings};
use ferrolb_controller::service_status::CONDITION_TYPE;
use ferrolb_tests::cluster::ferrolb::{CONTROLLER, NAMESPACE, RELEASE};
use ferrolb_tests::cluster::record::Recorder;
use ferrolb_tests::cluster::{self, Cluster};
use ferrolb_tests::lab;
use http::Method;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(20);

struct Controller {
    leader: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
}

fn cluster() -> Option<Cluster> {
    if !(lab::require_lab() && cluster::require_cluster()) {
        return None;
    }
    let c = Cluster::start().unwrap();
    // The chart's CRDs and RBAC; its controller pod is not run (the test runs the reconciler).
    c.helm_install(RELEASE, NAMESPACE, &["controller.replicas=1"])
        .unwrap();
    Some(c)
}

fn start(c: &Cluster, settings: Settings, leader: bool) -> Controller {
    let (client, recorder) = c.recording_client(NAMESPACE, CONTROLLER).unwrap();
    let (leader_tx, leader_rx) = watch::channel(leader);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let m = metrics.clone();
    let task = c.spawn(reconciler::run(client, settings, m, leader_rx, shutdown_rx));
    Controller {
        leader: leader_tx,
        shutdown: shutdown_tx,
        task,
        metrics,
        recorder,
    }
}

fn stop(c: &Cluster, ctl: Controller) {
    let _ = ctl.shutdown.send(true);
    let task = ctl.task;
    let _ = c.block_on(async move { tokio::time::timeout(WAIT, task).await });
}

fn settings() -> Settings {
    Settings {
        namespace: NAMESPACE.into(),
        ..Settings::default()
    }
}

fn apply(c: &Cluster, object: Value) {
    c.apply_yaml(&serde_json::to_string(&object).unwrap())
        .unwrap();
}

fn pool(c: &Cluster, name: &str, spec: Value) {
    apply(
        c,
        json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
                    "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}),
    );
}

/// Creates or updates (server-side apply, as the test's own field manager) Service `name` in
/// `default`: IPv4, port 80, with `spec` merged in.
fn service(c: &Cluster, name: &str, annotations: Value, spec: Value) {
    let mut full = json!({"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "ipFamilies": ["IPv4"]});
    if let (Some(f), Some(s)) = (full.as_object_mut(), spec.as_object()) {
        f.extend(s.clone());
    }
    apply(
        c,
        json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": "default", "annotations": annotations}, "spec": full}),
    );
}

fn get(c: &Cluster, name: &str) -> Service {
    let api: Api<Service> = Api::namespaced(c.client(), "default");
    c.block_on(api.get(name)).unwrap()
}

fn ingress(svc: &Service) -> Vec<String> {
    (svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref()))
    .map(|i| i.iter().filter_map(|x| x.ip.clone()).collect())
    .unwrap_or_default()
}

fn condition(svc: &Service) -> Option<(String, String, String)> {
    (svc.status.as_ref()?.conditions.as_ref()?.iter())
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

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    lab::wait_until(what, WAIT, &mut check).unwrap_or_else(|e| panic!("{e}"));
}

fn wait_ingress(c: &Cluster, name: &str, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let ok = lab::wait_until(name, WAIT, || ingress(&get(c, name)) == want);
    assert!(
        ok.is_ok(),
        "{name}: want ingress {want:?}, have {:?} / {:?}",
        ingress(&get(c, name)),
        condition(&get(c, name))
    );
}

/// Lets the controller go quiet: everything it reacts to has been handled.
fn settle() {
    std::thread::sleep(Duration::from_millis(1500));
}

fn events(c: &Cluster, name: &str) -> Vec<(String, String)> {
    c.events_about("default", name)
}

#[test]
fn a_new_service_gets_an_ip_with_one_status_write_and_an_annotation() {
    let Some(c) = cluster() else { return };
    pool(&c, "default", json!({"addresses": ["10.10.0.0/30"]}));
    let ctl = start(&c, settings(), true);
    service(&c, "web", json!({}), json!({}));
    wait_ingress(&c, "web", &["10.10.0.0"]);
    wait_for("the pool annotation", || {
        pool_annotation(&get(&c, "web")).as_deref() == Some("default")
    });
    settle();

    let svc = get(&c, "web");
    assert_eq!(
        condition(&svc),
        Some((
            "True".into(),
            "Allocated".into(),
            "assigned 10.10.0.0 from pool default".into()
        ))
    );
    let status = ctl.recorder.writes_to("/services/web/status");
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
    let annotation = ctl.recorder.writes_to("/services/web");
    assert_eq!(annotation.len(), 1, "{annotation:#?}");
    assert_eq!(
        annotation[0].body,
        json!({"metadata": {"annotations": {"ferrolb.io/ip-allocated-from-pool": "default"}}})
    );
    assert!(
        events(&c, "web").iter().any(|(r, _)| r == "IPAllocated"),
        "{:?}",
        events(&c, "web")
    );

    // Nothing changes: nothing is written again, whatever else happens.
    ctl.recorder.clear();
    pool(&c, "unrelated", json!({"addresses": ["10.20.0.0/30"]}));
    settle();
    assert!(ctl.recorder.writes_to("/services/web/status").is_empty());
    stop(&c, ctl);
}

#[test]
fn pending_services_say_why_and_get_an_ip_as_soon_as_one_frees() {
    let Some(c) = cluster() else { return };
    pool(&c, "tiny", json!({"addresses": ["10.10.0.7/32"]}));
    let ctl = start(&c, settings(), true);
    service(&c, "first", json!({}), json!({}));
    wait_ingress(&c, "first", &["10.10.0.7"]);
    service(&c, "second", json!({}), json!({}));
    wait_for("the refusal", || {
        condition(&get(&c, "second")).is_some_and(|c| c.0 == "False")
    });
    let (_, reason, message) = condition(&get(&c, "second")).unwrap();
    assert_eq!(reason, "PoolExhausted");
    assert!(
        message.contains("pool tiny") && message.contains("1 of 1"),
        "{message}"
    );
    wait_for("the AllocationFailed event", || {
        events(&c, "second")
            .iter()
            .any(|(r, _)| r == "AllocationFailed")
    });

    let api: Api<Service> = Api::namespaced(c.client(), "default");
    c.block_on(api.delete("first", &DeleteParams::default()))
        .unwrap();
    wait_ingress(&c, "second", &["10.10.0.7"]);
    assert_eq!(condition(&get(&c, "second")).unwrap().0, "True");
    stop(&c, ctl);
}

#[test]
fn requests_pools_annotations_and_metallb_aliases() {
    let Some(c) = cluster() else { return };
    pool(&c, "a", json!({"addresses": ["10.1.0.0/30"]}));
    pool(
        &c,
        "b",
        json!({"addresses": ["10.2.0.0/30"], "autoAssign": false}),
    );
    let ctl = start(&c, settings(), true);
    service(
        &c,
        "by-pool",
        json!({"metallb.io/address-pool": "b"}),
        json!({}),
    );
    service(
        &c,
        "both",
        json!({"metallb.io/address-pool": "a", "ferrolb.io/address-pool": "b"}),
        json!({}),
    );
    service(
        &c,
        "by-ip",
        json!({"metallb.universe.tf/loadBalancerIPs": "10.1.0.3"}),
        json!({}),
    );
    service(
        &c,
        "spec-ip",
        json!({}),
        json!({"loadBalancerIP": "10.2.0.3"}),
    );
    service(
        &c,
        "outside",
        json!({}),
        json!({"loadBalancerIP": "192.168.77.1"}),
    );
    // Both ask for pool b (one through a MetalLB alias, one with both keys, where ours wins).
    let in_pool_b = |name: &str| {
        ingress(&get(&c, name))
            .first()
            .is_some_and(|ip| ip.starts_with("10.2.0."))
    };
    wait_for("by-pool and both in pool b", || {
        in_pool_b("by-pool") && in_pool_b("both")
    });
    assert_ne!(ingress(&get(&c, "by-pool")), ingress(&get(&c, "both")));
    wait_ingress(&c, "by-ip", &["10.1.0.3"]);
    wait_ingress(&c, "spec-ip", &["10.2.0.3"]);
    wait_for("outside refused", || {
        condition(&get(&c, "outside")).is_some_and(|c| c.1 == "IPOutsidePools")
    });

    // Changing the pool annotation moves the Service to the new pool.
    service(
        &c,
        "by-pool",
        json!({"ferrolb.io/address-pool": "a"}),
        json!({}),
    );
    wait_for("the move to pool a", || {
        ingress(&get(&c, "by-pool"))
            .first()
            .is_some_and(|ip| ip.starts_with("10.1.0."))
    });
    stop(&c, ctl);
}

#[test]
fn leaving_load_balancer_type_releases_and_clears() {
    let Some(c) = cluster() else { return };
    pool(&c, "tiny", json!({"addresses": ["10.10.0.7/32"]}));
    let ctl = start(&c, settings(), true);
    service(&c, "web", json!({}), json!({}));
    wait_ingress(&c, "web", &["10.10.0.7"]);
    service(&c, "next", json!({}), json!({}));
    wait_for("next pending", || {
        condition(&get(&c, "next")).is_some_and(|c| c.0 == "False")
    });

    // The real server clears status.loadBalancer itself when the type changes.
    service(&c, "web", json!({}), json!({"type": "ClusterIP"}));
    wait_ingress(&c, "web", &[]);
    wait_for("web cleared", || {
        let w = get(&c, "web");
        condition(&w).is_none() && pool_annotation(&w).is_none()
    });
    wait_ingress(&c, "next", &["10.10.0.7"]);
    stop(&c, ctl);
}

#[test]
fn load_balancer_class_filtering() {
    let Some(c) = cluster() else { return };
    pool(&c, "p", json!({"addresses": ["10.10.0.0/29"]}));
    let ctl = start(&c, settings(), true);
    service(&c, "classless", json!({}), json!({}));
    service(
        &c,
        "other",
        json!({}),
        json!({"loadBalancerClass": "example.com/other"}),
    );
    wait_ingress(&c, "classless", &["10.10.0.0"]);
    settle();
    assert!(
        ctl.recorder.writes_to("/services/other/status").is_empty(),
        "another class's Service is not touched"
    );
    stop(&c, ctl);

    // A controller of one class (its own view of the pool: it ignores every other Service, so
    // the first one's go first).
    let api: Api<Service> = Api::namespaced(c.client(), "default");
    for name in ["classless", "other"] {
        c.block_on(api.delete(name, &DeleteParams::default()))
            .unwrap();
    }
    let classed = Settings {
        lb_class: Some("ferrolb.io/lb".into()),
        ..settings()
    };
    let ctl = start(&c, classed, true);
    service(
        &c,
        "mine",
        json!({}),
        json!({"loadBalancerClass": "ferrolb.io/lb"}),
    );
    service(&c, "plain", json!({}), json!({}));
    wait_ingress(&c, "mine", &["10.10.0.0"]);
    settle();
    assert!(ctl.recorder.writes_to("/services/plain/status").is_empty());
    assert!(
        ctl.recorder
            .writes_to("/services/classless/status")
            .is_empty()
    );
    stop(&c, ctl);
}

#[test]
fn restart_reclaims_held_ips_before_pending_services_allocate() {
    let Some(c) = cluster() else { return };
    pool(&c, "p", json!({"addresses": ["10.10.0.0/30"]}));
    let ctl = start(&c, settings(), true);
    for name in ["a", "b", "c"] {
        service(&c, name, json!({}), json!({}));
        wait_for("an address", || !ingress(&get(&c, name)).is_empty());
    }
    wait_ingress(&c, "c", &["10.10.0.2"]);
    settle();
    stop(&c, ctl);

    // While no controller runs: "a" is deleted (freeing .0) and two Services are created whose
    // names sort before the held ones (Kubernetes before 1.37 wants Service names to start with a
    // letter). A restart must not hand "b"'s or "c"'s address to them.
    let api: Api<Service> = Api::namespaced(c.client(), "default");
    c.block_on(api.delete("a", &DeleteParams::default()))
        .unwrap();
    service(&c, "a-new", json!({}), json!({}));
    service(&c, "aa-new", json!({}), json!({}));
    let ctl = start(&c, settings(), true);
    wait_for("both new decided", || {
        condition(&get(&c, "a-new")).is_some() && condition(&get(&c, "aa-new")).is_some()
    });
    settle();
    assert_eq!(ingress(&get(&c, "b")), ["10.10.0.1"]);
    assert_eq!(ingress(&get(&c, "c")), ["10.10.0.2"]);
    let mut new_ips: Vec<String> = ["a-new", "aa-new"]
        .iter()
        .flat_map(|n| ingress(&get(&c, n)))
        .collect();
    new_ips.sort();
    assert_eq!(new_ips, ["10.10.0.0", "10.10.0.3"]);
    let rewritten: Vec<_> = ["b", "c"]
        .iter()
        .flat_map(|n| ctl.recorder.writes_to(&format!("/services/{n}/status")))
        .collect();
    assert!(
        rewritten.is_empty(),
        "held Services are not rewritten on restart: {rewritten:#?}"
    );
    stop(&c, ctl);
}

/// The Valid condition (status, message) among `conditions`.
fn valid_of(
    conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
) -> Option<(String, String)> {
    (conditions.into_iter())
        .find(|c| c.type_ == "Valid")
        .map(|c| (c.status, c.message))
}

fn pool_valid(c: &Cluster, name: &str) -> Option<(String, String)> {
    let api: Api<api::IPAddressPool> = Api::namespaced(c.client(), NAMESPACE);
    valid_of(c.block_on(api.get_opt(name)).ok()??.status?.conditions)
}

/// An L2Advertisement's Valid condition: (status, message).
fn l2_valid(c: &Cluster, name: &str) -> Option<(String, String)> {
    let api: Api<api::L2Advertisement> = Api::namespaced(c.client(), NAMESPACE);
    valid_of(c.block_on(api.get_opt(name)).ok()??.status?.conditions)
}

#[test]
fn an_invalid_config_object_is_reported_on_itself_and_the_last_good_config_stays() {
    let Some(c) = cluster() else { return };
    pool(&c, "good", json!({"addresses": ["10.10.0.0/30"]}));
    let ctl = start(&c, settings(), true);
    service(&c, "web", json!({}), json!({}));
    wait_ingress(&c, "web", &["10.10.0.0"]);

    pool(&c, "bad", json!({"addresses": ["10.10.0.2/31"]}));
    wait_for("the bad pool's condition", || {
        pool_valid(&c, "bad").is_some_and(|(s, _)| s == "False")
    });
    let (_, message) = pool_valid(&c, "bad").unwrap();
    assert!(
        message.contains("spec.addresses[0]") && message.contains("overlaps"),
        "{message}"
    );
    wait_for("the InvalidConfiguration event", || {
        c.events_about(NAMESPACE, "bad")
            .iter()
            .any(|(r, _)| r == "InvalidConfiguration")
    });
    assert!(
        ctl.metrics
            .encode()
            .contains("ferrolb_controller_config_valid 0")
    );

    // The last good config still serves new Services, and nothing moved.
    service(&c, "second", json!({}), json!({}));
    wait_ingress(&c, "second", &["10.10.0.1"]);
    assert_eq!(ingress(&get(&c, "web")), ["10.10.0.0"]);
    assert_eq!(pool_valid(&c, "good").map(|v| v.0).as_deref(), Some("True"));

    // Issue 13, class 2: while "bad" is refused, an unrelated change takes effect at once (a
    // new pool, used by a new Service), and an advertisement naming a pool that does not exist
    // yet is accepted and says so.
    pool(&c, "more", json!({"addresses": ["10.10.2.0/30"]}));
    service(
        &c,
        "from-more",
        json!({"ferrolb.io/address-pool": "more"}),
        json!({}),
    );
    wait_ingress(&c, "from-more", &["10.10.2.0"]);
    apply(
        &c,
        json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "L2Advertisement",
               "metadata": {"name": "early", "namespace": NAMESPACE},
               "spec": {"ipAddressPools": ["later"]}}),
    );
    wait_for("the early advertisement's condition", || {
        l2_valid(&c, "early").is_some_and(|(s, _)| s == "True")
    });
    let (_, message) = l2_valid(&c, "early").unwrap();
    assert!(
        message.contains("no IPAddressPool named \"later\" yet"),
        "{message}"
    );

    // An edit that breaks an accepted pool (a range the schema admits, the model refuses)
    // is refused on that pool alone: its last accepted addresses stay in force.
    pool(&c, "good", json!({"addresses": ["10.10.0.3-10.10.0.0"]}));
    wait_for("the broken edit refused", || {
        pool_valid(&c, "good").is_some_and(|(s, _)| s == "False")
    });
    let (_, message) = pool_valid(&c, "good").unwrap();
    assert!(
        message.contains("is after its end")
            && message.ends_with("its last accepted version stays in force"),
        "{message}"
    );
    service(&c, "third", json!({}), json!({}));
    wait_ingress(&c, "third", &["10.10.0.2"]);
    assert_eq!(ingress(&get(&c, "web")), ["10.10.0.0"]);
    assert_eq!(ingress(&get(&c, "second")), ["10.10.0.1"]);
    assert!(
        ctl.metrics
            .encode()
            .contains("ferrolb_controller_config_objects_refused 2"),
        "{}",
        ctl.metrics.encode()
    );

    // The accepted spec is on the pool's status, so a controller with no memory of it (a
    // restart, a new leader) keeps it in force too: the pool's addresses stay usable.
    let api: Api<api::IPAddressPool> = Api::namespaced(c.client(), NAMESPACE);
    let accepted = c
        .block_on(api.get("good"))
        .unwrap()
        .status
        .and_then(|s| s.accepted_spec);
    assert_eq!(accepted, Some(json!({"addresses": ["10.10.0.0/30"]})));
    stop(&c, ctl);
    let ctl = start(&c, settings(), true);
    service(&c, "fourth", json!({}), json!({}));
    wait_ingress(&c, "fourth", &["10.10.0.3"]);
    // The annotation is a write of its own, after the status (as in the first test).
    wait_for("fourth's pool annotation", || {
        pool_annotation(&get(&c, "fourth")).as_deref() == Some("good")
    });
    assert_eq!(ingress(&get(&c, "web")), ["10.10.0.0"]);
    // And "bad" still overlaps the pool in force, so it stays refused.
    assert_eq!(pool_valid(&c, "bad").map(|v| v.0).as_deref(), Some("False"));
    let (status, message) = pool_valid(&c, "good").unwrap();
    assert!(
        status == "False" && message.ends_with("its last accepted version stays in force"),
        "{message}"
    );
    pool(&c, "good", json!({"addresses": ["10.10.0.0/30"]}));

    // Fixing the object makes it valid again.
    pool(&c, "bad", json!({"addresses": ["10.10.1.0/31"]}));
    wait_for("the fixed pool valid", || {
        pool_valid(&c, "bad").is_some_and(|(s, _)| s == "True")
    });
    stop(&c, ctl);
}

#[test]
fn pool_status_counters_follow_allocations() {
    let Some(c) = cluster() else { return };
    pool(
        &c,
        "dual",
        json!({"addresses": ["10.10.0.0/30", "fd00:10::/126"]}),
    );
    let ctl = start(&c, settings(), true);
    service(&c, "v4", json!({}), json!({}));
    service(&c, "v6", json!({}), json!({"ipFamilies": ["IPv6"]}));
    wait_ingress(&c, "v6", &["fd00:10::"]);
    let api: Api<api::IPAddressPool> = Api::namespaced(c.client(), NAMESPACE);
    wait_for("the counters", || {
        c.block_on(api.get("dual"))
            .ok()
            .and_then(|p| p.status)
            .is_some_and(|st| {
                (
                    st.assigned_ipv4,
                    st.available_ipv4,
                    st.assigned_ipv6,
                    st.available_ipv6,
                ) == (1, 3, 1, 3)
            })
    });
    stop(&c, ctl);
}

#[test]
fn namespace_selectors_follow_namespace_labels() {
    let Some(c) = cluster() else { return };
    pool(
        &c,
        "team",
        json!({"addresses": ["10.30.0.0/30"], "autoAssign": true,
               "serviceAllocation": {"namespaceSelectors": [{"matchLabels": {"team": "a"}}]}}),
    );
    let ctl = start(&c, settings(), true);
    service(&c, "web", json!({}), json!({}));
    wait_for("the refusal", || {
        condition(&get(&c, "web")).is_some_and(|c| c.0 == "False")
    });
    let namespaces: Api<Namespace> = Api::all(c.client());
    c.block_on(namespaces.patch(
        "default",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
    ))
    .unwrap();
    wait_ingress(&c, "web", &["10.30.0.0"]);
    stop(&c, ctl);
}

#[test]
fn only_the_leader_writes_and_a_new_leader_moves_nothing() {
    let Some(c) = cluster() else { return };
    pool(&c, "p", json!({"addresses": ["10.10.0.0/29"]}));
    let a = start(&c, settings(), true);
    let b = start(&c, settings(), false);
    service(&c, "one", json!({}), json!({}));
    wait_ingress(&c, "one", &["10.10.0.0"]);
    service(&c, "two", json!({}), json!({}));
    wait_ingress(&c, "two", &["10.10.0.1"]);
    settle();
    assert!(
        b.recorder.requests().iter().all(|r| !r.is_write()),
        "the follower writes nothing"
    );

    // Hand over: a steps down, b leads.
    a.leader.send_replace(false);
    b.leader.send_replace(true);
    a.recorder.clear();
    service(&c, "three", json!({}), json!({}));
    wait_ingress(&c, "three", &["10.10.0.2"]);
    settle();
    assert_eq!(ingress(&get(&c, "one")), ["10.10.0.0"]);
    assert_eq!(ingress(&get(&c, "two")), ["10.10.0.1"]);
    let rewritten: Vec<_> = ["one", "two"]
        .iter()
        .flat_map(|n| b.recorder.writes_to(&format!("/services/{n}/status")))
        .collect();
    assert!(
        rewritten.is_empty(),
        "the new leader moves nothing: {rewritten:#?}"
    );
    assert!(
        a.recorder.requests().iter().all(|r| !r.is_write()),
        "the old leader is quiet"
    );
    stop(&c, a);
    stop(&c, b);
}

/// The speakers' membership Secret: created with a random key when missing, never replaced.
#[test]
fn membership_secret_is_created_once_and_never_replaced() {
    use ferrolb_controller::membership_secret::{self, KEY_LENGTH, Outcome, SECRET_KEY};
    use k8s_openapi::api::core::v1::Secret;
    let Some(c) = cluster() else { return };
    // The manifest's controller, which may create it (Helm's default makes it itself).
    c.helm(&[
        "upgrade",
        RELEASE,
        &cluster::install::chart_dir().display().to_string(),
        "-n",
        NAMESPACE,
        "--set",
        "speaker.membership.createSecret=false",
        "--set",
        "speaker.membership.controllerCreatesSecret=true",
    ])
    .unwrap();
    let (client, recorder) = c.recording_client(NAMESPACE, CONTROLLER).unwrap();
    let secrets: Api<Secret> = Api::namespaced(c.client(), NAMESPACE);
    let key_of = |name: &str| -> String {
        let s = c.block_on(secrets.get(name)).unwrap();
        String::from_utf8(s.data.unwrap()[SECRET_KEY].0.clone()).unwrap()
    };
    let name = "ferrolb-memberlist";
    let _ = c.block_on(secrets.delete(name, &DeleteParams::default()));
    assert_eq!(
        c.block_on(membership_secret::ensure(client.clone(), NAMESPACE, name))
            .unwrap(),
        Outcome::Created
    );
    let key = key_of(name);
    assert_eq!(key.len(), KEY_LENGTH);
    // A second replica (or a restart) finds it and leaves the key alone.
    assert_eq!(
        c.block_on(membership_secret::ensure(client.clone(), NAMESPACE, name))
            .unwrap(),
        Outcome::AlreadyExists
    );
    assert_eq!(key_of(name), key);
    let posts = recorder
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::POST && r.path.ends_with("/secrets"))
        .count();
    assert_eq!(posts, 2, "one create per call, nothing else");
    // A Secret the user made is kept as it is.
    apply(
        &c,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "own", "namespace": NAMESPACE},
                     "stringData": {"secretkey": "users-key"}}),
    );
    assert_eq!(
        c.block_on(membership_secret::ensure(client.clone(), NAMESPACE, "own"))
            .unwrap(),
        Outcome::AlreadyExists
    );
    assert_eq!(key_of("own"), "users-key");
    // Where the account may not create it, the error names the Secret.
    let err = c
        .block_on(membership_secret::ensure(client, "default", "other"))
        .unwrap_err();
    assert!(err.to_string().contains("default/other"), "{err}");
}

/// Lease election on the real Lease API: one winner, a follower that takes over when the leader
/// releases the Lease, and every renewal a PUT carrying the resourceVersion it read.
#[test]
fn one_leader_at_a_time_and_handover_on_release() {
    use ferrolb_controller::leader::{self, LeaseSettings, Term};
    use k8s_openapi::api::coordination::v1::Lease;
    let Some(c) = cluster() else { return };
    let settings = |identity: &str| LeaseSettings {
        name: "ferrolb-controller".into(),
        namespace: NAMESPACE.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_millis(200),
    };
    let (client_a, recorder_a) = c.recording_client(NAMESPACE, CONTROLLER).unwrap();
    let (client_b, _) = c.recording_client(NAMESPACE, CONTROLLER).unwrap();
    let (a_tx, a_rx) = watch::channel(false);
    let (b_tx, b_rx) = watch::channel(false);
    let (stop_a_tx, stop_a) = watch::channel(false);
    let (stop_b_tx, stop_b) = watch::channel(false);
    let a = c.spawn(leader::run(
        Api::namespaced(client_a, NAMESPACE),
        settings("a"),
        a_tx,
        Term::ended(),
        stop_a,
    ));
    wait_for("a to lead", || *a_rx.borrow());
    let b = c.spawn(leader::run(
        Api::namespaced(client_b, NAMESPACE),
        settings("b"),
        b_tx,
        Term::ended(),
        stop_b,
    ));
    std::thread::sleep(Duration::from_secs(1));
    assert!(*a_rx.borrow() && !*b_rx.borrow(), "exactly one leader");
    let leases: Api<Lease> = Api::namespaced(c.client(), NAMESPACE);
    let holder = |c: &Cluster| {
        c.block_on(leases.get("ferrolb-controller"))
            .unwrap()
            .spec
            .unwrap()
    };
    assert_eq!(holder(&c).holder_identity.as_deref(), Some("a"));
    let puts: Vec<_> = recorder_a
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::PUT)
        .collect();
    assert!(
        !puts.is_empty()
            && puts
                .iter()
                .all(|r| r.body["metadata"]["resourceVersion"].is_string()),
        "{puts:#?}"
    );

    stop_a_tx.send(true).unwrap();
    let _ = c.block_on(a);
    wait_for("b to take over", || *b_rx.borrow());
    let lease = holder(&c);
    assert_eq!(lease.holder_identity.as_deref(), Some("b"));
    assert_eq!(lease.lease_transitions, Some(1));
    stop_b_tx.send(true).unwrap();
    let _ = c.block_on(b);
}

/// A leader whose connection to the API server hangs (requests held unanswered, then delivered
/// when it comes back, as on a half-open connection) stops writing when its renew deadline
/// passes, before another replica can take over; the writes it had in flight are abandoned, not
/// delivered late over the new leader's. Two full controllers (elector + reconciler) on the real
/// Lease API, each with its own connection.
#[test]
fn a_leader_whose_connection_hangs_stops_writing_before_another_takes_over() {
    use ferrolb_controller::leader::{self, LeaseSettings, Term};
    let Some(c) = cluster() else { return };
    pool(&c, "default", json!({"addresses": ["10.10.0.0/28"]}));
    let lease_settings = |identity: &str| LeaseSettings {
        name: "ferrolb-controller".into(),
        namespace: NAMESPACE.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(6),
        renew_deadline: Duration::from_secs(4),
        retry_period: Duration::from_millis(500),
    };
    struct Replica {
        leader: watch::Receiver<bool>,
        recorder: Recorder,
        stop: watch::Sender<bool>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    }
    let replica = |identity: &str| {
        let (client, recorder) = c.recording_client(NAMESPACE, CONTROLLER).unwrap();
        let (leader_tx, leader_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let term = Term::ended();
        let elector = c.spawn(leader::run(
            Api::namespaced(client.clone(), NAMESPACE),
            lease_settings(identity),
            leader_tx,
            term.clone(),
            stop_rx.clone(),
        ));
        let settings = Settings {
            term,
            instance: identity.into(),
            ..settings()
        };
        let metrics = Arc::new(Metrics::new());
        let reconciler = c.spawn(reconciler::run(
            client,
            settings,
            metrics,
            leader_rx.clone(),
            stop_rx,
        ));
        Replica {
            leader: leader_rx,
            recorder,
            stop: stop_tx,
            tasks: vec![elector, reconciler],
        }
    };
    let a = replica("a");
    wait_for("a to lead", || *a.leader.borrow());
    let b = replica("b");
    service(&c, "first", json!({}), json!({}));
    wait_ingress(&c, "first", &["10.10.0.0"]);
    assert!(!*b.leader.borrow());

    // a's connection hangs. Services created now reach a through the watch it already has, so
    // it tries to write them; those writes are held.
    a.recorder.freeze();
    let frozen_at = std::time::Instant::now();
    for name in ["second", "third"] {
        service(&c, name, json!({}), json!({}));
    }
    wait_for("a to try writing while its connection hangs", || {
        a.recorder.waiting() > 1
    });
    // b takes over once it has seen no renewal for a lease duration; it assigns both.
    let long = Duration::from_secs(30);
    lab::wait_until("b to take over", long, || *b.leader.borrow()).unwrap();
    wait_ingress(&c, "second", &["10.10.0.1"]);
    wait_ingress(&c, "third", &["10.10.0.2"]);
    let b_took_over = std::time::Instant::now();
    // The connection comes back: whatever a still had waiting is delivered now.
    std::thread::sleep(Duration::from_secs(1));
    a.recorder.thaw();
    std::thread::sleep(Duration::from_secs(3));

    let is_service_write =
        |r: &ferrolb_tests::cluster::record::Recorded| r.is_write() && !r.path.contains("/leases/");
    let b_first = (b.recorder.requests().into_iter())
        .filter(is_service_write)
        .map(|r| r.sent_at)
        .min()
        .expect("b wrote the new Services");
    let a_late: Vec<_> = (a.recorder.requests().into_iter())
        .filter(is_service_write)
        .filter(|r| r.sent_at >= frozen_at)
        .collect();
    assert!(
        a_late.is_empty(),
        "a sent writes after its connection hung (b's first write {:?} after the freeze): {a_late:#?}",
        b_first - frozen_at
    );
    let abandoned: Vec<_> = (a.recorder.abandoned().into_iter())
        .filter(is_service_write)
        .collect();
    assert!(
        !abandoned.is_empty(),
        "a had writes in flight when its term ended, and abandoned them"
    );
    assert!(!*a.leader.borrow(), "a follows after the thaw");
    assert!(*b.leader.borrow());
    eprintln!(
        "b took over {:.1} s after the freeze; a abandoned {} writes",
        (b_took_over - frozen_at).as_secs_f64(),
        abandoned.len()
    );
    for r in [a, b] {
        let _ = r.stop.send(true);
        for t in r.tasks {
            let _ = c.block_on(async move { tokio::time::timeout(WAIT, t).await });
        }
    }
}
