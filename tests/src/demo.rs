//! The README's demo: the network lab, ferrolb in standalone mode on two nodes, a client reaching
//! a Service through the announcing node, and a timed failover when that node dies.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::lab::{Afi, BgpConfig, BgpDaemon, Bird, Host, Lab, LabError, LabSpec, Neighbor};

/// Where the demo writes (stdout, or a test's buffer).
pub type Out<'a> = &'a mut dyn Write;

/// The demo's config directory: a pool announced over layer 2 on the LAN, a pool announced over
/// BGP to the router, the two Nodes and two Services (one in each pool).
pub const CONFIG: &str = r#"# ferrolb standalone config: the same kinds a cluster would hold.
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan}
spec: {addresses: [10.0.0.200-10.0.0.209]}
---
apiVersion: ferrolb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan}
spec: {ipAddressPools: [lan], interfaces: [eth0]}
---
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: routed}
spec: {addresses: [10.99.0.0/28], autoAssign: false}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: routed}
spec: {ipAddressPools: [routed], communities: ["65000:100"]}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata: {name: router}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 10.0.0.1, holdTime: 9s}
---
apiVersion: v1
kind: Node
metadata: {name: node0}
---
apiVersion: v1
kind: Node
metadata: {name: node1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: demo, annotations: {ferrolb.io/address-pool: routed}}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"#;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The lab failed.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// Writing a file or the output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Something did not happen in time.
    #[error("{0}")]
    Timeout(String),
}

/// What the demo measured.
#[derive(Clone, Debug)]
pub struct Figures {
    /// The addresses assigned, as `namespace/name -> ip`.
    pub assigned: Vec<(String, String)>,
    /// The node that answered the client for the BGP Service.
    pub bgp_served_by: String,
    /// The router's next hops for the BGP Service's prefix.
    pub bgp_next_hops: Vec<IpAddr>,
    /// The node that answered for the first Service.
    pub owner: String,
    /// The node that took over.
    pub survivor: String,
    /// From the kill to the client's first answer through the survivor.
    pub failover: Duration,
}

fn served_by(
    client: &Host,
    target: SocketAddr,
    timeout: Duration,
) -> Result<Option<(String, Duration)>, LabError> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let probe = client.tcp_probe(target, Duration::from_millis(50))?;
        if probe.ok {
            return Ok(probe
                .response
                .split_whitespace()
                .next()
                .map(|s| (s.to_string(), start.elapsed())));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(None)
}

fn assigned(state: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(state) else {
        return Vec::new();
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    value["services"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v["ips"][0].as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the demo with the `ferrolb` binary at `ferrolb`, printing as it goes.
pub fn run(ferrolb: &Path, out: Out) -> Result<Figures, DemoError> {
    writeln!(
        out,
        "== ferrolb demo: the network lab (router, node0, node1, client on one LAN)"
    )?;
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })?;
    for h in [lab.router(), lab.node(0), lab.node(1), lab.client()] {
        writeln!(out, "   {:<7} {} {} mac {}", h.name, h.ipv4, h.ipv6, h.mac)?;
    }
    let client = lab.client();
    let router = lab.router();
    let conf = lab.dir().join("conf");
    std::fs::create_dir_all(&conf)?;
    std::fs::write(conf.join("ferrolb.yaml"), CONFIG)?;
    let secret = lab.dir().join("membership-secret");
    std::fs::write(&secret, "demo-secret")?;
    writeln!(out, "\n== the config directory ({}):", conf.display())?;
    for line in CONFIG
        .lines()
        .filter(|l| l.starts_with("kind") || l.starts_with("metadata") || l.starts_with("spec"))
    {
        writeln!(out, "   {line}")?;
    }

    writeln!(
        out,
        "\n== the router: BIRD (AS 64500) peering with node0 and node1, installing ECMP routes"
    )?;
    router.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    let mut bird_cfg = BgpConfig::new(64500, router.ipv4);
    for i in 0..2 {
        bird_cfg = bird_cfg.neighbor(Neighbor::new(IpAddr::V4(lab.node(i).ipv4), 64512).passive());
    }
    let bird = Bird::start_with(
        router,
        &bird_cfg,
        "protocol kernel { ipv4 { export all; }; merge paths on; }\n",
    )?;
    let router_ip = router.ipv4.to_string();
    client.exec_ok(&[
        "ip",
        "route",
        "add",
        "10.99.0.0/24",
        "via",
        router_ip.as_str(),
    ])?;

    writeln!(
        out,
        "\n== ferrolb standalone on node0 and node1 (kube-proxy stand-in: VIP:80 -> a local backend)"
    )?;
    let mut procs = Vec::new();
    let mut backends = Vec::new();
    let mut states: Vec<PathBuf> = Vec::new();
    for i in 0..2 {
        let node = lab.node(i);
        let other = lab.node(1 - i);
        let state = node.workdir().join("state.json");
        let addr = format!("{}:7946", node.ipv4);
        let seed = format!("{}:7946", other.ipv4);
        let (Some(bin), Some(conf_s), Some(state_s), Some(secret_s)) = (
            ferrolb.to_str(),
            conf.to_str(),
            state.to_str(),
            secret.to_str(),
        ) else {
            return Err(DemoError::Timeout("paths must be UTF-8".into()));
        };
        let argv = [
            bin,
            "standalone",
            "--interval-ms",
            "100",
            "--config",
            conf_s,
            "--state",
            state_s,
            "--node",
            node.name.as_str(),
            "--membership-addr",
            addr.as_str(),
            "--membership-seeds",
            seed.as_str(),
            "--membership-secret-file",
            secret_s,
        ];
        procs.push(node.spawn(&argv)?);
        backends.push(
            node.start_tcp_backend(SocketAddr::new(IpAddr::V4(node.ipv4), 8080), &node.name)?,
        );
        let vips = (200..210)
            .map(|i| IpAddr::from([10, 0, 0, i]))
            .chain((0..16).map(|i| IpAddr::from([10, 99, 0, i])));
        for vip in vips {
            node.install_service_dnat(vip, 80, IpAddr::V4(node.ipv4), 8080)?;
        }
        states.push(state);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut figures_assigned = Vec::new();
    while Instant::now() < deadline {
        figures_assigned = assigned(&states[0]);
        if figures_assigned.len() == 2 && assigned(&states[1]) == figures_assigned {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if figures_assigned.len() != 2 {
        return Err(DemoError::Timeout(
            "the two Services were not assigned within 15 s".into(),
        ));
    }
    writeln!(
        out,
        "\n== assigned (both hosts agree, from their state files):"
    )?;
    for (svc, ip) in &figures_assigned {
        writeln!(out, "   {svc:<10} {ip}")?;
    }
    let address_of = |name: &str| -> Result<IpAddr, DemoError> {
        figures_assigned
            .iter()
            .find(|(s, _)| s == name)
            .and_then(|(_, ip)| ip.parse().ok())
            .ok_or_else(|| DemoError::Timeout(format!("{name} has no address")))
    };

    // BGP: both nodes announce demo/api to the router; the client goes through the router.
    let api = address_of("demo/api")?;
    let prefix = format!("{api}/32");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut next_hops: Vec<IpAddr> = Vec::new();
    while Instant::now() < deadline && next_hops.len() < 2 {
        next_hops = bird
            .routes(Afi::Ipv4)?
            .into_iter()
            .filter(|r| r.prefix.to_string() == prefix)
            .flat_map(|r| r.next_hops)
            .collect();
        next_hops.sort();
        next_hops.dedup();
        std::thread::sleep(Duration::from_millis(200));
    }
    writeln!(
        out,
        "\n== the router's BGP table for demo/api (birdc show route {prefix} all):"
    )?;
    let table = bird
        .birdc(&["show", "route", prefix.as_str(), "all"])
        .unwrap_or_default();
    for line in table
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("BIRD"))
    {
        writeln!(out, "   {line}")?;
    }
    if next_hops.len() < 2 {
        return Err(DemoError::Timeout(format!(
            "the router did not learn {prefix} from both nodes: {next_hops:?}"
        )));
    }
    let (bgp_served_by, via_bgp) =
        served_by(client, SocketAddr::new(api, 80), Duration::from_secs(10))?.ok_or_else(|| {
            DemoError::Timeout(format!(
                "the client could not reach {api}:80 through the router"
            ))
        })?;
    writeln!(
        out,
        "\n== the client reaches demo/api at {api}:80 through the router (BGP, ECMP over both nodes)"
    )?;
    writeln!(out, "   answered by {bgp_served_by} after {via_bgp:.0?}")?;

    // Layer 2: one node answers ARP for demo/web.
    let vip = address_of("demo/web")?;
    let target = SocketAddr::new(vip, 80);
    let (owner, first) = served_by(client, target, Duration::from_secs(10))?
        .ok_or_else(|| DemoError::Timeout(format!("the client could not reach {target}")))?;
    let owner_mac = client.neighbour_mac(vip).ok().flatten();
    writeln!(
        out,
        "\n== the client reaches demo/web at {target} over layer 2"
    )?;
    writeln!(
        out,
        "   answered by {owner} after {first:.0?}; the client's neighbour entry for {vip}: {}",
        owner_mac
            .map(|m| m.to_string())
            .unwrap_or_else(|| "?".into())
    )?;

    let dead = if owner == "node0" { 0 } else { 1 };
    writeln!(
        out,
        "\n== killing {owner}: SIGKILL to its ferrolb and its link cut"
    )?;
    let killed = Instant::now();
    procs[dead].kill();
    lab.node(dead).link_down()?;
    let (survivor, _) = served_by(client, target, Duration::from_secs(10))?
        .ok_or_else(|| DemoError::Timeout(format!("nobody took {target} over within 10 s")))?;
    let failover = killed.elapsed();
    writeln!(
        out,
        "   the client reached {target} again through {survivor} after {failover:.0?}"
    )?;
    writeln!(out, "\n== tearing the lab down")?;
    drop(procs);
    drop(backends);
    drop(bird);
    drop(lab);
    writeln!(out, "   done")?;
    Ok(Figures {
        assigned: figures_assigned,
        bgp_served_by,
        bgp_next_hops: next_hops,
        owner,
        survivor,
        failover,
    })
}
