//! The lab's topology and teardown: namespaces, addresses, MACs, reachability, cleanup.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrolb_tests::lab::{self, Lab, LabSpec};

fn our_namespaces(lab_id: &str) -> Vec<String> {
    let prefix = format!("{lab_id}-");
    lab::list_netns()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn hosts_have_addresses_macs_and_reach_each_other() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    // lan + router + 2 nodes + client
    let mut listed = our_namespaces(lab.id());
    listed.sort();
    let mut expected = lab.namespaces();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(expected.len(), 5);

    let macs: std::collections::HashSet<_> = lab.hosts().map(|h| h.mac).collect();
    assert_eq!(macs.len(), 4, "every host has its own MAC");
    assert_eq!(lab.node(0).ipv4.to_string(), "10.0.0.11");
    assert_eq!(lab.node(1).ipv6.to_string(), "fd00::12");
    assert_eq!(lab.router().ipv4.to_string(), "10.0.0.1");
    assert_eq!(lab.client().ipv6.to_string(), "fd00::100");

    for host in lab.hosts() {
        // lo is up, eth0 holds both addresses, IPv6 is not tentative (DAD off).
        let addrs = host.exec_ok(&["ip", "-j", "addr", "show"]).unwrap();
        assert!(addrs.contains(&format!("\"{}\"", host.ipv4)), "{addrs}");
        assert!(addrs.contains(&format!("\"{}\"", host.ipv6)), "{addrs}");
        assert!(!addrs.contains("tentative"), "{addrs}");
        let mac = lab::read_mac(&host.netns, &host.ifname).unwrap();
        assert_eq!(mac, host.mac);
    }
    let client = lab.client();
    for target in [lab.node(0), lab.node(1), lab.router()] {
        let v4 = target.ipv4.to_string();
        let out = client.exec(&["ping", "-c", "1", "-W", "2", &v4]).unwrap();
        assert!(out.status.success(), "ping {v4}: {out:?}");
        let v6 = target.ipv6.to_string();
        let out = client
            .exec(&["ping", "-6", "-c", "1", "-W", "2", &v6])
            .unwrap();
        assert!(out.status.success(), "ping {v6}: {out:?}");
    }
    // Nothing leaves the lab: the hosts have no default route.
    let routes = client.exec_ok(&["ip", "route", "show", "default"]).unwrap();
    assert!(routes.trim().is_empty(), "{routes}");
}

#[test]
fn drop_deletes_namespaces_processes_and_temp_dir() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let id = lab.id().to_string();
    let dir = lab.dir().to_path_buf();
    // A process whose handle is leaked must still die with the lab.
    let sleeper = lab.node(0).spawn(&["sleep", "300"]).unwrap();
    let pid = sleeper.pid();
    std::mem::forget(sleeper);
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(our_namespaces(&id).len(), 4);
    assert!(dir.is_dir());
    drop(lab);
    assert!(our_namespaces(&id).is_empty(), "{:?}", our_namespaces(&id));
    assert!(!dir.exists());
    // Killed (possibly a zombie until reaped by us, since its Child handle was leaked).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z "), "{stat}");
}

#[test]
fn a_panicking_test_still_cleans_up() {
    if !lab::require_lab() {
        return;
    }
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen2 = Arc::clone(&seen);
    let result = std::panic::catch_unwind(move || {
        let lab = Lab::new(LabSpec::default()).unwrap();
        let _daemon = lab.router().spawn(&["sleep", "300"]).unwrap();
        *seen2.lock().unwrap() = lab.namespaces();
        panic!("test failure inside a lab");
    });
    assert!(result.is_err());
    let namespaces = seen.lock().unwrap().clone();
    assert_eq!(namespaces.len(), 4);
    let left = lab::list_netns().unwrap();
    for ns in namespaces {
        assert!(!left.contains(&ns), "{ns} survived the panic");
    }
}

#[test]
fn sweep_removes_leftovers_of_dead_processes() {
    if !lab::require_lab() {
        return;
    }
    // Find a pid that does not exist.
    let dead = (3_000_000u32..4_000_000)
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let name = format!("{}{dead}-0-node0", lab::PREFIX);
    let mine = format!("{}{}-999-node0", lab::PREFIX, std::process::id());
    lab::run_command_ok(&["ip", "netns", "add", &name], Duration::from_secs(5)).unwrap();
    lab::run_command_ok(&["ip", "netns", "add", &mine], Duration::from_secs(5)).unwrap();
    // Lab::new sweeps once per process too, possibly concurrently: either sweep may win.
    lab::sweep_stale();
    let left = lab::list_netns().unwrap();
    let _ = lab::run_command(&["ip", "netns", "del", &mine], Duration::from_secs(5));
    assert!(!left.contains(&name));
    assert!(
        left.contains(&mine),
        "a live process's namespace must be kept"
    );
}

#[test]
fn require_lab_passes_here() {
    // Under CI the lab must be available; elsewhere this documents why it is not.
    match lab::lab_unavailable() {
        None => assert!(lab::require_lab()),
        Some(reason) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
            eprintln!("skipping: {reason}");
        }
    }
}
