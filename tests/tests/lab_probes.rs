//! Client probes with real tools and the kube-proxy stand-in.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ferrolb_tests::lab::{self, Lab, LabSpec};

const T: Duration = Duration::from_secs(2);

#[test]
fn arping_resolves_node_ipv4_to_its_mac() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let client = lab.client();
    for node in lab.nodes() {
        let reply = client.arping(node.ipv4, T).unwrap().expect("a reply");
        assert_eq!(
            reply.mac, node.mac,
            "{} answered by the wrong MAC",
            node.ipv4
        );
        assert!(reply.elapsed < Duration::from_secs(2), "{reply:?}");
    }
    // Nobody holds .250: no reply, no error.
    let none = client
        .arping(Ipv4Addr::new(10, 0, 0, 250), Duration::from_secs(1))
        .unwrap();
    assert_eq!(none, None);
}

#[test]
fn ndisc6_resolves_node_ipv6_to_its_mac() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let client = lab.client();
    for node in lab.nodes() {
        let reply = client
            .ndisc(node.ipv6, T)
            .unwrap()
            .expect("an advertisement");
        assert_eq!(reply.mac, node.mac);
    }
    let none = client
        .ndisc("fd00::250".parse().unwrap(), Duration::from_millis(500))
        .unwrap();
    assert_eq!(none, None);
}

#[test]
fn neighbour_table_shows_who_answered() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let (client, node) = (lab.client(), lab.node(0));
    assert_eq!(client.neighbour_mac(node.ipv4.into()).unwrap(), None);
    let ping = client
        .exec(&["ping", "-c", "1", "-W", "2", &node.ipv4.to_string()])
        .unwrap();
    assert!(ping.status.success());
    assert_eq!(
        client.neighbour_mac(node.ipv4.into()).unwrap(),
        Some(node.mac)
    );
    client.flush_neighbours().unwrap();
    // A static entry wins over resolution.
    let fake: IpAddr = "10.0.0.77".parse().unwrap();
    client.set_static_neighbour(fake, lab.router().mac).unwrap();
    let entry = client
        .neighbours()
        .unwrap()
        .into_iter()
        .find(|n| n.ip == fake)
        .unwrap();
    assert_eq!(entry.mac, Some(lab.router().mac));
    assert!(entry.state.iter().any(|s| s == "PERMANENT"), "{entry:?}");
}

#[test]
fn tcp_probe_reaches_a_backend_and_reports_failures() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let (client, node) = (lab.client(), lab.node(0));
    let addr = SocketAddr::new(node.ipv4.into(), 8080);
    let refused = client.tcp_probe(addr, T).unwrap();
    assert!(!refused.ok);
    assert!(refused.error.is_some());
    let backend = node.start_tcp_backend(addr, "node0").unwrap();
    let probe = client.tcp_probe(addr, T).unwrap();
    assert!(probe.ok, "{probe:?}");
    assert_eq!(probe.response, "node0 probe");
    assert!(probe.latency < T);
    assert_eq!(backend.served(), 1);
    // IPv6 too, with a backend on [::]:8081.
    let _b6 = node
        .start_tcp_backend("[::]:8081".parse().unwrap(), "node0-v6")
        .unwrap();
    let p6 = client
        .tcp_probe(SocketAddr::new(node.ipv6.into(), 8081), T)
        .unwrap();
    assert_eq!(p6.response, "node0-v6 probe", "{p6:?}");
    // HTTP flavour: a GET gets a 200 whose body is the backend's name.
    let http = client
        .in_netns(move || -> std::io::Result<String> {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect_timeout(&addr, T)?;
            s.set_read_timeout(Some(T))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
        .unwrap()
        .unwrap();
    assert!(http.starts_with("HTTP/1.0 200 OK"), "{http}");
    assert!(http.ends_with("\r\n\r\nnode0\n"), "{http}");
    drop(backend);
    let after = client.tcp_probe(addr, T).unwrap();
    assert!(!after.ok, "backend stopped on drop");
}

#[test]
fn service_dnat_delivers_vip_traffic_to_the_backend() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let (client, node) = (lab.client(), lab.node(1));
    let vip: IpAddr = "10.0.0.200".parse().unwrap();
    let backend_addr = SocketAddr::new(node.ipv4.into(), 8080);
    let _backend = node
        .start_tcp_backend(backend_addr, "svc-on-node1")
        .unwrap();
    // Stand-in for the L2 responder (later): the client sends VIP traffic to node1's MAC.
    client.set_static_neighbour(vip, node.mac).unwrap();

    let before = client
        .tcp_probe(SocketAddr::new(vip, 80), Duration::from_secs(1))
        .unwrap();
    assert!(
        !before.ok,
        "without DNAT nothing answers on the VIP: {before:?}"
    );

    node.install_service_dnat(vip, 80, node.ipv4.into(), 8080)
        .unwrap();
    let probe = client.tcp_probe(SocketAddr::new(vip, 80), T).unwrap();
    assert!(probe.ok, "{probe:?}");
    assert_eq!(probe.response, "svc-on-node1 probe");

    // IPv6 service on the same node.
    let vip6: IpAddr = "fd00::200".parse().unwrap();
    let _b6 = node
        .start_tcp_backend(SocketAddr::new(node.ipv6.into(), 8080), "svc6")
        .unwrap();
    client.set_static_neighbour(vip6, node.mac).unwrap();
    node.install_service_dnat(vip6, 80, node.ipv6.into(), 8080)
        .unwrap();
    let p6 = client.tcp_probe(SocketAddr::new(vip6, 80), T).unwrap();
    assert_eq!(p6.response, "svc6 probe", "{p6:?}");

    node.remove_service_dnat().unwrap();
    let gone = client
        .tcp_probe(SocketAddr::new(vip, 80), Duration::from_secs(1))
        .unwrap();
    assert!(!gone.ok, "{gone:?}");
    node.remove_service_dnat().unwrap(); // idempotent
}
