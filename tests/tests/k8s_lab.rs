//! ferrolb end to end on a real control plane and real packets: the chart installed by Helm into
//! a real kube-apiserver, the lab's node namespaces registered as Nodes, kube-proxy (nftables)
//! in each, pods whose Ready status the real EndpointSlice controller turns into EndpointSlices,
//! the controller and one speaker per node run from the installed Deployment and DaemonSet with
//! their own ServiceAccount tokens, BIRD as the router. Traffic goes client -> VIP -> node ->
//! kube-proxy -> pod.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use ferrolb_tests::cluster::ferrolb::{NAMESPACE, RELEASE};
use ferrolb_tests::cluster::install::PodProcess;
use ferrolb_tests::cluster::nodes::SimulatedPod;
use ferrolb_tests::cluster::{self, Cluster};
use ferrolb_tests::lab::{self, Afi, BgpConfig, BgpDaemon, Bird, Lab, LabSpec, Neighbor, Process};
use serde_json::json;

const ANNOUNCED: &str = "ferrolb.io/Announced";

/// Pools: `lan` (L2, on the LAN's subnets) and `routed` (BGP, a range only the router knows).
const CONFIG: &str = r#"
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: ferrolb-system}
spec:
  addresses: ["10.0.0.200-10.0.0.209", "fd00::200-fd00::209"]
  autoAssign: true
---
apiVersion: ferrolb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan, namespace: ferrolb-system}
spec: {ipAddressPools: [lan]}
---
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: routed, namespace: ferrolb-system}
spec:
  addresses: ["10.100.0.0/28"]
  autoAssign: false
---
apiVersion: ferrolb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: routed, namespace: ferrolb-system}
spec: {ipAddressPools: [routed], communities: ["65000:7"]}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata: {name: router, namespace: ferrolb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 10.0.0.1, holdTime: 9s}
"#;

/// Everything one test runs; dropped in reverse order (processes, then the cluster, then the lab).
struct Env {
    pods: Vec<SimulatedPod>,
    speakers: Vec<Option<PodProcess>>,
    controller: PodProcess,
    _proxies: Vec<Process>,
    bird: Bird,
    cluster: Cluster,
    lab: Lab,
}

impl Env {
    fn start(nodes: usize) -> Env {
        let lab = Lab::new(LabSpec {
            nodes,
            ..Default::default()
        })
        .unwrap();
        let cluster = Cluster::start().unwrap();
        cluster.helm_install(RELEASE, NAMESPACE, &[]).unwrap();
        cluster.register_nodes(&lab).unwrap();
        let proxies = lab
            .nodes()
            .iter()
            .map(|n| cluster.start_kube_proxy(n).unwrap())
            .collect();

        // The router: BGP with every node, routes into its kernel, forwarding for the client.
        let router = lab.router();
        router
            .exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .unwrap();
        let mut bird_cfg = BgpConfig::new(64500, router.ipv4);
        for n in lab.nodes() {
            bird_cfg = bird_cfg.neighbor(Neighbor::new(IpAddr::V4(n.ipv4), 64512).passive());
        }
        let bird = Bird::start_with(
            router,
            &bird_cfg,
            "protocol kernel { ipv4 { export all; }; merge paths on; }\n",
        )
        .unwrap();
        let router_ip = router.ipv4.to_string();
        lab.client()
            .exec_ok(&["ip", "route", "add", "10.100.0.0/24", "via", &router_ip])
            .unwrap();

        let controller = cluster.start_controller("ferrolb-controller-0").unwrap();
        let speakers = lab
            .nodes()
            .iter()
            .map(|n| Some(cluster.start_speaker(n).unwrap()))
            .collect();
        cluster.apply_yaml(CONFIG).unwrap();
        cluster.create_namespace("shop", &[]).unwrap();
        Env {
            pods: Vec::new(),
            speakers,
            controller,
            _proxies: proxies,
            bird,
            cluster,
            lab,
        }
    }

    fn pod(&mut self, node: usize, name: &str, app: &str) {
        let pod = self
            .cluster
            .run_pod(&self.lab, node, "shop", name, &[("app", app)])
            .unwrap();
        self.pods.push(pod);
    }

    /// Applies Service `name` in `shop` (port 80 to the pods labelled `app=<name>`) with
    /// `annotations`, and waits for its addresses.
    fn service(&self, name: &str, annotations: serde_json::Value) -> Vec<IpAddr> {
        self.cluster
            .apply_service("shop", name, json!({}), annotations)
            .unwrap();
        self.cluster
            .wait_ingress("shop", name, Duration::from_secs(30))
            .unwrap()
    }

    /// The logs of the ferrolb processes, for a failure message.
    fn logs(&mut self) -> String {
        let mut out = format!(
            "[controller]\n{}\n",
            lab::tail(&self.controller.process.log(), 30)
        );
        for s in self.speakers.iter().flatten() {
            out += &format!("[{}]\n{}\n", s.name, lab::tail(&s.process.log(), 30));
        }
        out
    }

    /// Which node's MAC answers ARP (IPv4) or NDP (IPv6) for `vip` from the client.
    fn answered_by(&self, vip: IpAddr) -> Option<String> {
        let client = self.lab.client();
        let _ = client.flush_neighbours();
        let mac = match vip {
            IpAddr::V4(v4) => client
                .arping(v4, Duration::from_secs(1))
                .ok()
                .flatten()
                .map(|r| r.mac),
            IpAddr::V6(v6) => client
                .ndisc(v6, Duration::from_secs(1))
                .ok()
                .flatten()
                .map(|r| r.mac),
        }?;
        self.lab
            .nodes()
            .iter()
            .find(|n| n.mac == mac)
            .map(|n| n.name.clone())
    }

    /// Which pod answers a TCP connection to `vip:80` from the client (None: nobody).
    fn served_by(&self, vip: IpAddr) -> Option<String> {
        let probe = self
            .lab
            .client()
            .tcp_probe(SocketAddr::new(vip, 80), Duration::from_secs(1))
            .ok()?;
        probe.ok.then(|| {
            probe
                .response
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string()
        })
    }

    fn next_hops(&self, prefix: &str) -> Vec<IpAddr> {
        let mut hops: Vec<IpAddr> = (self.bird.routes(Afi::Ipv4).unwrap_or_default().into_iter())
            .filter(|r| r.prefix.to_string() == prefix)
            .flat_map(|r| r.next_hops)
            .collect();
        hops.sort();
        hops.dedup();
        hops
    }

    fn condition(&self, name: &str) -> Option<(String, String, String)> {
        self.cluster.service_condition("shop", name, ANNOUNCED)
    }
}

fn eventually(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("timed out after {timeout:?} waiting for {what}"))
}

fn ready() -> bool {
    lab::require_lab() && cluster::require_cluster()
}

#[test]
fn l2_and_bgp_traffic_reaches_pods_through_kube_proxy() {
    if !ready() {
        return;
    }
    let mut env = Env::start(2);
    env.pod(1, "web-0", "web");
    env.pod(0, "api-0", "api");
    let c = &env.cluster;
    c.apply_service(
        "shop",
        "web",
        json!({"ipFamilyPolicy": "RequireDualStack"}),
        json!({}),
    )
    .unwrap();
    c.apply_service(
        "shop",
        "api",
        json!({}),
        json!({"ferrolb.io/address-pool": "routed"}),
    )
    .unwrap();
    let web = c
        .wait_ingress("shop", "web", Duration::from_secs(30))
        .unwrap();
    let api = c
        .wait_ingress("shop", "api", Duration::from_secs(30))
        .unwrap();
    let web4 = *web
        .iter()
        .find(|ip| ip.is_ipv4())
        .expect("web has an IPv4 address");
    let web6 = *web
        .iter()
        .find(|ip| ip.is_ipv6())
        .expect("web has an IPv6 address");
    assert!(
        matches!(web4, IpAddr::V4(a) if a >= Ipv4Addr::new(10, 0, 0, 200)),
        "{web:?}"
    );
    assert!(
        matches!(web6, IpAddr::V6(a) if a >= Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x200)),
        "{web:?}"
    );
    assert!(api[0].to_string().starts_with("10.100.0."), "{api:?}");

    // L2: one node answers ARP and NDP, and the pod answers through kube-proxy, over both families.
    let r = eventually(
        "the pod to answer on web's IPv4 address",
        Duration::from_secs(30),
        || env.served_by(web4).as_deref() == Some("web-0"),
    );
    let logs = env.logs();
    r.unwrap_or_else(|e| panic!("{e}\n{logs}"));
    eventually(
        "the pod to answer on web's IPv6 address",
        Duration::from_secs(20),
        || env.served_by(web6).as_deref() == Some("web-0"),
    )
    .unwrap();
    let owner = env.answered_by(web4).expect("a node answers ARP for web");
    assert_eq!(
        env.answered_by(web6).as_deref(),
        Some(owner.as_str()),
        "one node per Service (first address's owner)"
    );
    // ... and says so: the Announced condition and a nodeAssigned Event on the Service.
    let r = eventually(
        "the Announced condition naming the owner",
        Duration::from_secs(20),
        || {
            env.condition("web").is_some_and(|(s, _, m)| {
                s == "True" && m.contains(&format!("node {owner} announces"))
            })
        },
    );
    let logs = env.logs();
    r.unwrap_or_else(|e| panic!("{e}: {:?}\n{logs}", env.condition("web")));
    let events = env.cluster.events_about("shop", "web");
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "nodeAssigned" && note.contains(&owner)),
        "{events:?}"
    );

    // BGP: both nodes advertise api's address to the router, which forwards the client to them.
    let prefix = format!("{}/32", api[0]);
    eventually(
        "both nodes to advertise api over BGP",
        Duration::from_secs(30),
        || env.next_hops(&prefix).len() == 2,
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", env.next_hops(&prefix)));
    let community = env.bird.routes(Afi::Ipv4).unwrap().into_iter().any(|r| {
        r.prefix.to_string() == prefix && r.communities.iter().any(|c| c.to_string() == "65000:7")
    });
    assert!(community, "the route carries the advertisement's community");
    eventually(
        "the pod to answer on api's routed address",
        Duration::from_secs(20),
        || env.served_by(api[0]).as_deref() == Some("api-0"),
    )
    .unwrap();
    eventually(
        "api's condition to name its BGP announcers",
        Duration::from_secs(20),
        || {
            env.condition("api").is_some_and(|(s, r, m)| {
                s == "True" && r == "BGP" && m.contains("advertised over BGP")
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", env.condition("api")));

    // externalTrafficPolicy Local follows the real EndpointSlices: only web-0's node (node1)
    // answers, and only api-0's node (node0) advertises.
    let c = &env.cluster;
    c.apply_service(
        "shop",
        "web",
        json!({"ipFamilyPolicy": "RequireDualStack", "externalTrafficPolicy": "Local"}),
        json!({}),
    )
    .unwrap();
    c.apply_service(
        "shop",
        "api",
        json!({"externalTrafficPolicy": "Local"}),
        json!({"ferrolb.io/address-pool": "routed"}),
    )
    .unwrap();
    let node1 = env.lab.node(1).name.clone();
    eventually(
        "node1 (web-0's) to answer ARP for web",
        Duration::from_secs(20),
        || env.answered_by(web4).as_deref() == Some(node1.as_str()),
    )
    .unwrap();
    assert_eq!(env.served_by(web4).as_deref(), Some("web-0"));
    let node0_ip = IpAddr::V4(env.lab.node(0).ipv4);
    eventually(
        "only node0 (api-0's) to advertise api",
        Duration::from_secs(20),
        || env.next_hops(&prefix) == vec![node0_ip],
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", env.next_hops(&prefix)));

    // web-0 not ready: no endpoint anywhere, nobody announces web, and the condition says why.
    let web_pod = env.pods.iter().find(|p| p.name == "web-0").unwrap();
    env.cluster.set_pod_ready(web_pod, false).unwrap();
    eventually(
        "web's Announced condition to say nobody announces it",
        Duration::from_secs(20),
        || {
            env.condition("web")
                .is_some_and(|(s, _, m)| s == "False" && m.contains("no node announces"))
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", env.condition("web")));
    eventually(
        "nobody to answer ARP for web",
        Duration::from_secs(10),
        || env.answered_by(web4).is_none(),
    )
    .unwrap();
    let api_pod = env.pods.iter().find(|p| p.name == "api-0").unwrap();
    env.cluster.set_pod_ready(api_pod, false).unwrap();
    eventually(
        "api to be withdrawn from the router",
        Duration::from_secs(20),
        || env.next_hops(&prefix).is_empty(),
    )
    .unwrap();
    // Ready again: announced again.
    env.cluster.set_pod_ready(web_pod, true).unwrap();
    eventually("web to be served again", Duration::from_secs(20), || {
        env.served_by(web4).as_deref() == Some("web-0")
    })
    .unwrap();
}

#[test]
fn speakers_hand_over_on_sigterm_and_a_rolling_restart_loses_no_address() {
    if !ready() {
        return;
    }
    let mut env = Env::start(2);
    env.pod(0, "web-0", "web");
    env.pod(1, "web-1", "web");
    let vip = env.service("web", json!({}))[0];
    eventually("web to be served", Duration::from_secs(30), || {
        env.served_by(vip).is_some()
    })
    .unwrap();
    let owner = env.answered_by(vip).expect("an owner");
    let o = env
        .lab
        .nodes()
        .iter()
        .position(|n| n.name == owner)
        .unwrap();
    eventually(
        "the owner's nodeAssigned event",
        Duration::from_secs(20),
        || {
            env.cluster
                .events_about("shop", "web")
                .iter()
                .any(|(r, n)| r == "nodeAssigned" && n.contains(&owner))
        },
    )
    .unwrap();

    // SIGTERM of the owner's speaker, as the kubelet does: it hands over, says so, and exits
    // within its grace period; the other node answers.
    let probe = env
        .lab
        .client()
        .start_outage_probe(
            SocketAddr::new(vip, 80),
            Duration::from_millis(5),
            Duration::from_millis(200),
        )
        .unwrap();
    let mut speaker = env.speakers[o].take().unwrap();
    let (took, clean) = speaker.terminate();
    let log = lab::tail(&speaker.process.log(), 30);
    assert!(
        clean,
        "the speaker exits by itself within its grace period ({:?}); log:\n{log}",
        speaker.grace
    );
    let other = env.lab.node(1 - o).name.clone();
    eventually("the other node to answer", Duration::from_secs(10), || {
        env.answered_by(vip).as_deref() == Some(other.as_str())
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let report = probe.stop();
    eprintln!(
        "SIGTERM hand-over: the speaker exited in {took:?}; longest gap {:?} ({report:?})",
        report.longest_gap
    );
    assert!(
        env.cluster
            .events_about("shop", "web")
            .iter()
            .any(|(r, n)| r == "nodeWithdrawn" && n.contains(&owner)),
        "the leaving speaker says it no longer announces: {:?}",
        env.cluster.events_about("shop", "web")
    );
    assert!(
        report.longest_gap < Duration::from_secs(2),
        "hand-over gap {:?}",
        report.longest_gap
    );

    // The speaker back (a new pod), then a DaemonSet-style rolling restart of every speaker:
    // one at a time, the next only when the new one runs.
    env.speakers[o] = Some(env.cluster.start_speaker(env.lab.node(o)).unwrap());
    eventually("two speakers live again", Duration::from_secs(20), || {
        env.cluster
            .kubectl(&[
                "get",
                "svc",
                "web",
                "-n",
                "shop",
                "-o",
                "jsonpath={.status.conditions}",
            ])
            .is_ok()
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let probe = env
        .lab
        .client()
        .start_outage_probe(
            SocketAddr::new(vip, 80),
            Duration::from_millis(5),
            Duration::from_millis(200),
        )
        .unwrap();
    for i in 0..env.lab.nodes().len() {
        let mut old = env.speakers[i].take().unwrap();
        let (_, clean) = old.terminate();
        assert!(clean, "speaker {i} exits within its grace period");
        env.speakers[i] = Some(env.cluster.start_speaker(env.lab.node(i)).unwrap());
        std::thread::sleep(Duration::from_secs(3));
    }
    let report = probe.stop();
    eprintln!(
        "rolling restart: longest gap {:?} ({report:?})",
        report.longest_gap
    );
    let logs = env.logs();
    assert!(report.served > 100, "the probe ran: {report:?}");
    assert!(
        report.longest_gap < Duration::from_secs(2),
        "rolling restart gap {:?}\n{logs}",
        report.longest_gap
    );
}

/// One node alone: nobody to hand over to, and still a prompt exit on SIGTERM.
#[test]
fn a_lone_speaker_exits_on_sigterm() {
    if !ready() {
        return;
    }
    let mut env = Env::start(1);
    env.pod(0, "web-0", "web");
    let vip = env.service("web", json!({}))[0];
    eventually("web to be served", Duration::from_secs(30), || {
        env.served_by(vip).as_deref() == Some("web-0")
    })
    .unwrap();
    let mut speaker = env.speakers[0].take().unwrap();
    let (took, clean) = speaker.terminate();
    let log = lab::tail(&speaker.process.log(), 30);
    assert!(
        clean,
        "the last speaker exits within its grace period ({took:?}); log:\n{log}"
    );
    eventually("nobody to answer for web", Duration::from_secs(5), || {
        env.answered_by(vip).is_none()
    })
    .unwrap();
    assert!(
        env.cluster
            .events_about("shop", "web")
            .iter()
            .any(|(r, _)| r == "nodeWithdrawn"),
        "{:?}",
        env.cluster.events_about("shop", "web")
    );
}

/// A speaker whose connection to the API server hangs (bytes held, connection open) takes over
/// when the owner crashes, and still exits at once on SIGTERM: its API writes (the
/// `nodeAssigned` event and the Announced condition the takeover calls for) are its report
/// task's, under deadlines, never in the way of its main loop.
#[test]
fn a_speaker_whose_api_connection_hangs_takes_over_and_exits_on_sigterm() {
    if !ready() {
        return;
    }
    let mut env = Env::start(2);
    env.pod(0, "web-0", "web");
    env.pod(1, "web-1", "web");
    let vip = env.service("web", json!({}))[0];
    eventually("web to be served", Duration::from_secs(30), || {
        env.served_by(vip).is_some()
    })
    .unwrap();
    let owner = env.answered_by(vip).expect("an owner");
    let o = (env.lab.nodes().iter())
        .position(|n| n.name == owner)
        .unwrap();
    let other = env.lab.node(1 - o).name.clone();
    assert!(env.cluster.freeze_api_from(&other, true));
    // The owner crashes: the other node takes over with no word from the API server, and has
    // writes to make that cannot land.
    let mut crashed = env.speakers[o].take().unwrap();
    crashed.process.kill();
    eventually("the other node to answer", Duration::from_secs(10), || {
        env.answered_by(vip).as_deref() == Some(other.as_str())
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let mut speaker = env.speakers[1 - o].take().unwrap();
    let (took, clean) = speaker.terminate();
    let log = lab::tail(&speaker.process.log(), 30);
    env.cluster.freeze_api_from(&other, false);
    eprintln!("with its API connection hung, the speaker exited {took:?} after SIGTERM");
    assert!(
        clean,
        "the speaker exits within its grace period ({:?}) with its API connection hung; log:\n{log}",
        speaker.grace
    );
    assert!(
        took < Duration::from_secs(5),
        "exit bounded by the 2 s report deadline, not by the hung calls: {took:?}"
    );
    eventually("nobody to answer for web", Duration::from_secs(5), || {
        env.answered_by(vip).is_none()
    })
    .unwrap();
}

/// The late Service's EndpointSlices, as `kubectl get -o OUTPUT` prints them.
fn late_slices(cluster: &Cluster, output: &str) -> Result<String, lab::LabError> {
    cluster.kubectl(&[
        "get",
        "endpointslices",
        "-n",
        "shop",
        "-l",
        "kubernetes.io/service-name=late",
        "-o",
        output,
    ])
}

/// The control plane away for 60 s: every speaker keeps announcing what it announced (the client
/// is served throughout, the router keeps its routes); etcd's history is compacted meanwhile, so
/// every watch resumes into 410 Gone and must relist; then the controller and the speakers pick
/// up a Service created after the API server is back.
#[test]
fn sixty_seconds_without_the_api_server_lose_nothing() {
    if !ready() {
        return;
    }
    let mut env = Env::start(2);
    env.pod(0, "web-0", "web");
    env.pod(1, "api-0", "api");
    let web = env.service("web", json!({}))[0];
    let api = env.service("api", json!({"ferrolb.io/address-pool": "routed"}))[0];
    let prefix = format!("{api}/32");
    eventually("both Services served", Duration::from_secs(30), || {
        env.served_by(web).is_some()
            && env.served_by(api).is_some()
            && env.next_hops(&prefix).len() == 2
    })
    .unwrap();
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(env.cluster.client(), "shop");
    let seen_rv = env
        .cluster
        .block_on(services.list(&Default::default()))
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    let probe_web = env
        .lab
        .client()
        .start_outage_probe(
            SocketAddr::new(web, 80),
            Duration::from_millis(20),
            Duration::from_millis(300),
        )
        .unwrap();
    let probe_api = env
        .lab
        .client()
        .start_outage_probe(
            SocketAddr::new(api, 80),
            Duration::from_millis(20),
            Duration::from_millis(300),
        )
        .unwrap();
    env.cluster.stop_apiserver();
    let compacted = env.cluster.compact_etcd().unwrap();
    std::thread::sleep(Duration::from_secs(60));
    let hops_during = env.next_hops(&prefix);
    env.cluster.restart_apiserver().unwrap();
    let (web_report, api_report) = (probe_web.stop(), probe_api.stop());
    eprintln!(
        "API server down 60 s (etcd compacted at revision {compacted}): web {web_report:?}, api {api_report:?}"
    );
    assert!(
        web_report.served > 1000 && api_report.served > 1000,
        "{web_report:?} {api_report:?}"
    );
    assert!(
        web_report.longest_gap < Duration::from_secs(1),
        "L2 kept answering: {web_report:?}"
    );
    assert!(
        api_report.longest_gap < Duration::from_secs(1),
        "BGP kept routing: {api_report:?}"
    );
    assert_eq!(
        hops_during.len(),
        2,
        "the BGP sessions and routes stayed up"
    );

    // A watch from before the outage is now expired: resuming it gets 410 Gone.
    let old = env.cluster.block_on(async {
        use futures::TryStreamExt;
        let params = kube::api::WatchParams::default().timeout(5);
        match services.watch(&params, &seen_rv).await {
            Ok(stream) => stream
                .try_collect::<Vec<_>>()
                .await
                .map(|events| format!("{events:?}")),
            Err(e) => Err(e),
        }
    });
    let expired = match &old {
        Ok(events) => events.contains("410") || events.contains("too old"),
        Err(e) => e.to_string().contains("410") || e.to_string().contains("too old"),
    };
    assert!(
        expired,
        "a watch from resourceVersion {seen_rv} is expired after compaction: {old:?}"
    );

    // Everyone relisted: a Service created now is assigned and announced.
    env.pod(1, "late-0", "late");
    env.cluster
        .apply_service("shop", "late", json!({}), json!({}))
        .unwrap();
    // Within 20 s: every watch retries at most 5 s apart (kube-runtime's default waited up to a
    // minute here, so a new Service waited that long for its address).
    let late = env
        .cluster
        .wait_ingress("shop", "late", Duration::from_secs(20))
        .unwrap_or_else(|e| {
            let logs = env.logs();
            panic!("{e}\n{logs}")
        })[0];
    // The EndpointSlice comes from kube-controller-manager, whose client-go watches retry up to
    // a minute apart after the outage. The slice can exist before its endpoint does (KCM's pod
    // informer catches up later): a Service without a ready endpoint is not announced, so the
    // bound below starts when the slice has a ready endpoint.
    let slice_ready = || {
        late_slices(
            &env.cluster,
            "jsonpath={.items[*].endpoints[*].conditions.ready}",
        )
        .is_ok_and(|out| out.split_whitespace().any(|r| r == "true"))
    };
    let t = Instant::now();
    eventually(
        "kube-controller-manager to publish a ready endpoint for the late Service",
        Duration::from_secs(120),
        slice_ready,
    )
    .unwrap();
    let slice_after = t.elapsed();
    let t = Instant::now();
    let announced = eventually(
        "a node to answer ARP for the late Service",
        Duration::from_secs(20),
        || env.answered_by(late).is_some(),
    );
    let announced_after = t.elapsed();
    let logs = env.logs();
    announced.unwrap_or_else(|e| {
        // What the speakers had to go on: the slice's endpoints and their conditions.
        let slice = late_slices(&env.cluster, "jsonpath={.items[*].endpoints}");
        panic!("{e}\nthe late Service's EndpointSlice endpoints: {slice:?}\n{logs}")
    });
    // kube-proxy, client-go too, may still be catching up.
    eventually(
        "the late Service to be served",
        Duration::from_secs(120),
        || env.served_by(late).as_deref() == Some("late-0"),
    )
    .unwrap();
    eprintln!(
        "late Service: EndpointSlice after {slice_after:?}, then announced after {announced_after:?}, served after {:?} more",
        t.elapsed()
    );
    assert_eq!(env.served_by(web).as_deref(), Some("web-0"));
    assert_eq!(
        env.cluster.ingress("shop", "web"),
        vec![web],
        "web kept its address"
    );
}

/// The `BGPSessionState` objects in the speakers' namespace: (node, peer name, BGP state,
/// last error), sorted.
fn session_states(cluster: &Cluster) -> Vec<(String, String, String, String)> {
    let out = cluster
        .kubectl(&["get", "bgpsessionstates", "-n", NAMESPACE, "-o", "json"])
        .unwrap_or_default();
    let list: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let mut states: Vec<_> = (list["items"].as_array().into_iter().flatten())
        .map(|o| {
            let s = &o["status"];
            let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (
                text("node"),
                text("peerName"),
                text("bgpStatus"),
                text("lastError"),
            )
        })
        .collect();
    states.sort();
    states
}

#[test]
fn bgp_sessions_and_announcers_are_visible_from_kubectl() {
    if !ready() {
        return;
    }
    let mut env = Env::start(2);
    env.pod(0, "api-0", "api");
    env.pod(1, "web-0", "web");
    let api = env.service("api", json!({"ferrolb.io/address-pool": "routed"}));
    let nodes: Vec<String> = env.lab.nodes().iter().map(|n| n.name.clone()).collect();

    // One object per node and peer, Established, listed with printer columns.
    let r = eventually(
        "a BGPSessionState per node, Established",
        Duration::from_secs(30),
        || {
            let s = session_states(&env.cluster);
            s.len() == 2
                && s.iter()
                    .all(|(_, p, state, _)| p == "router" && state == "Established")
        },
    );
    let logs = env.logs();
    r.unwrap_or_else(|e| panic!("{e}: {:?}\n{logs}", session_states(&env.cluster)));
    let table = env
        .cluster
        .kubectl(&["get", "bgpsessionstates", "-n", NAMESPACE])
        .unwrap();
    eprintln!("{table}");
    assert!(
        table.contains("NODE") && table.contains("BGP") && table.contains("Established"),
        "{table}"
    );
    let mut seen: Vec<String> = session_states(&env.cluster)
        .into_iter()
        .map(|s| s.0)
        .collect();
    let mut expected = nodes.clone();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected, "one object per node");

    // The BGP-only Service's condition names its nodes and peer; each node says so in an Event.
    let r = eventually(
        "api's Announced condition to name both nodes and the peer",
        Duration::from_secs(20),
        || {
            env.condition("api").is_some_and(|(s, reason, m)| {
                s == "True"
                    && reason == "BGP"
                    && !m.contains("not yet")
                    && nodes
                        .iter()
                        .all(|n| m.contains(&format!("node {n} to peer router")))
            })
        },
    );
    r.unwrap_or_else(|e| panic!("{e}: {:?}", env.condition("api")));
    eprintln!("announced: {:?}", env.condition("api"));
    eventually(
        "a BGP nodeAssigned Event per node",
        Duration::from_secs(20),
        || {
            let events = env.cluster.events_about("shop", "api");
            nodes.iter().all(|n| {
                events.iter().any(|(r, note)| {
                    r == "nodeAssigned"
                        && note.contains("protocol bgp")
                        && note.contains(n.as_str())
                })
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", env.cluster.events_about("shop", "api")));

    // The speaker's metrics say the same, under our names and MetalLB's.
    let wanted = [
        format!(
            "ferrolb_speaker_addresses_announced{{node=\"{}\",mode=\"bgp\"}} 1",
            nodes[0]
        ),
        "metallb_bgp_session_up{peer=\"10.0.0.1\"} 1".to_string(),
        format!(
            "metallb_speaker_announced{{service=\"shop/api\",protocol=\"bgp\",node=\"{}\",ip=\"{}\"}} 1",
            nodes[0], api[0]
        ),
        "metallb_k8s_client_config_stale_bool 0".to_string(),
    ];
    let metrics = || {
        (env.speakers[0].as_ref())
            .and_then(|s| s.http_get(7473, "/metrics"))
            .map(|(_, body)| body)
            .unwrap_or_default()
    };
    eventually("the speaker's metrics", Duration::from_secs(10), || {
        let m = metrics();
        wanted.iter().all(|w| m.contains(w.as_str()))
    })
    .unwrap_or_else(|e| panic!("{e}: {wanted:?} in\n{}", metrics()));

    // `kubectl ferrolb explain`: announced (pool and why, each session), and pending.
    let text = env
        .cluster
        .kubectl_ferrolb(&["explain", "api", "-n", "shop"])
        .unwrap();
    eprintln!("{text}");
    assert!(text.starts_with("Service shop/api: announced"), "{text}");
    assert!(
        text.contains("the address-pool annotation names pool routed"),
        "{text}"
    );
    for n in &nodes {
        assert!(
            text.contains(&format!("node {n} to peer router: Established")),
            "{text}"
        );
    }
    env.cluster
        .apply_service(
            "shop",
            "lost",
            json!({}),
            json!({"ferrolb.io/address-pool": "nowhere"}),
        )
        .unwrap();
    let explain_json = |name: &str| -> serde_json::Value {
        let out = env
            .cluster
            .kubectl_ferrolb(&["explain", &format!("shop/{name}"), "-o", "json"])
            .unwrap();
        serde_json::from_str(&out).unwrap()
    };
    let lost = explain_json("lost");
    assert_eq!(lost["verdict"], "pending", "{lost}");
    assert!(
        lost["pendingReason"].as_str().unwrap().contains("nowhere"),
        "{lost}"
    );

    // Layer 2 on an interface the owner does not have: owned, answered nowhere, and said so.
    let web = env.service("web", json!({}));
    env.cluster
        .apply_yaml(
            "apiVersion: ferrolb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: lan, namespace: ferrolb-system}\nspec: {ipAddressPools: [lan], interfaces: [eth9]}\n",
        )
        .unwrap();
    eventually(
        "web's condition to say its owner answers on no interface",
        Duration::from_secs(20),
        || {
            env.condition("web").is_some_and(|(s, r, m)| {
                s == "False"
                    && r == "noUsableInterface"
                    && m.contains(&format!("owns {}", web[0]))
                    && m.contains("eth9: not on this node")
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", env.condition("web")));
    eprintln!("no interface: {:?}", env.condition("web"));

    // The router goes down: every session object leaves Established and says why; the
    // condition turns False, naming the sessions; the nodes withdraw in Events.
    env.bird.stop();
    let r = eventually(
        "the session objects to leave Established",
        Duration::from_secs(30),
        || {
            let s = session_states(&env.cluster);
            s.len() == 2 && s.iter().all(|(_, _, state, _)| state != "Established")
        },
    );
    r.unwrap_or_else(|e| panic!("{e}: {:?}", session_states(&env.cluster)));
    eprintln!("router down: {:?}", session_states(&env.cluster));
    eventually(
        "api's condition to say no session is established",
        Duration::from_secs(20),
        || {
            env.condition("api").is_some_and(|(s, reason, m)| {
                s == "False"
                    && reason == "noEstablishedSession"
                    && m.contains(&format!("no node announces {}", api[0]))
                    && nodes
                        .iter()
                        .all(|n| m.contains(&format!("node {n} to peer router (")))
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", env.condition("api")));
    eprintln!("router down: {:?}", env.condition("api"));
    eventually("BGP nodeWithdrawn Events", Duration::from_secs(20), || {
        let events = env.cluster.events_about("shop", "api");
        events
            .iter()
            .any(|(r, note)| r == "nodeWithdrawn" && note.contains("over BGP"))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", env.cluster.events_about("shop", "api")));

    let text = env
        .cluster
        .kubectl_ferrolb(&["explain", "api", "-n", "shop"])
        .unwrap();
    eprintln!("{text}");
    assert!(
        text.starts_with("Service shop/api: assigned, but no node announces it"),
        "{text}"
    );

    // The peer goes: its objects go with it.
    env.cluster
        .kubectl(&["delete", "bgppeer", "router", "-n", NAMESPACE])
        .unwrap();
    eventually(
        "the session objects to be deleted with the peer",
        Duration::from_secs(20),
        || session_states(&env.cluster).is_empty(),
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", session_states(&env.cluster)));

    // The peer back: its objects are back. A node that dies and is deleted (its speaker killed,
    // so it cannot clean up) loses its object through the garbage collector: each is owned by
    // its Node.
    env.cluster
        .apply_yaml(
            "apiVersion: ferrolb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: router, namespace: ferrolb-system}\nspec: {myASN: 64512, peerASN: 64500, peerAddress: 10.0.0.1, holdTime: 9s}\n",
        )
        .unwrap();
    eventually("the session objects back", Duration::from_secs(20), || {
        session_states(&env.cluster).len() == 2
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", session_states(&env.cluster)));
    if let Some(mut s) = env.speakers[1].take() {
        s.process.kill();
    }
    env.cluster
        .kubectl(&["delete", "node", &nodes[1], "--wait=false"])
        .unwrap();
    eventually(
        "the dead node's object to go with its Node",
        Duration::from_secs(30),
        || {
            let s = session_states(&env.cluster);
            s.len() == 1 && s[0].0 == nodes[0]
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", session_states(&env.cluster)));

    // The pool moves: api keeps its address (stale policy keep), and explain says it is stale.
    env.cluster
        .apply_yaml(
            "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: routed, namespace: ferrolb-system}\nspec: {addresses: [\"10.100.1.0/28\"], autoAssign: false}\n",
        )
        .unwrap();
    eventually("explain to call api stale", Duration::from_secs(20), || {
        explain_json("api")["verdict"] == "stale"
    })
    .unwrap_or_else(|e| panic!("{e}: {}", explain_json("api")));
    let stale = explain_json("api");
    eprintln!("{stale}");
    assert!(
        stale["staleReason"]
            .as_str()
            .unwrap()
            .contains(&format!("{} is in no pool in force", api[0])),
        "{stale}"
    );
}
