//! Which interfaces a responder may answer on. Pure: a rule over [`Link`]s.
//!
//! Answering ARP on the wrong interface is how an L2 load balancer breaks a cluster: a bridge
//! port or bond member would answer with a MAC the switch never sees, a CNI or veth device
//! would leak the VIP into pod networks, and a NOARP device cannot carry ARP at all.

use std::fmt;

use super::links::{ARPHRD_ETHER, IFF_LOOPBACK, IFF_NOARP, IFF_UP, Link};
use crate::election::Interfaces;

/// Default exclude patterns (`*` matches any run of characters): loopback, container, CNI,
/// overlay and kube-proxy devices, which never face the network clients are on.
pub const DEFAULT_EXCLUDE: &[&str] = &[
    "lo",
    "docker*",
    "veth*",
    "cni*",
    "flannel*",
    "cali*",
    "cilium*",
    "lxc*",
    "vxlan*",
    "genev_sys*",
    "kube-ipvs*",
    "kube-bridge",
    "nodelocaldns",
    "tunl*",
    "weave*",
    "virbr*",
];

/// Why an interface is not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Administratively down.
    Down,
    /// A member of a bond or bridge (the master answers instead).
    Enslaved,
    /// Flagged NOARP.
    NoArp,
    /// Loopback.
    Loopback,
    /// Not Ethernet, or no 6-byte MAC.
    NotEthernet,
    /// Matched an exclude pattern.
    Excluded(String),
    /// Not in the advertisement's interface list.
    NotSelected,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Down => f.write_str("down"),
            Skip::Enslaved => f.write_str("enslaved to a bond or bridge"),
            Skip::NoArp => f.write_str("NOARP"),
            Skip::Loopback => f.write_str("loopback"),
            Skip::NotEthernet => f.write_str("not Ethernet"),
            Skip::Excluded(p) => write!(f, "excluded by pattern {p:?}"),
            Skip::NotSelected => f.write_str("not in the advertisement's interfaces"),
        }
    }
}

/// Whether `link` may carry announcements at all (ignoring advertisements).
pub fn usable(link: &Link, exclude: &[String]) -> Result<(), Skip> {
    if link.flags & IFF_LOOPBACK != 0 {
        return Err(Skip::Loopback);
    }
    if link.flags & IFF_UP == 0 {
        return Err(Skip::Down);
    }
    if link.master.is_some() {
        return Err(Skip::Enslaved);
    }
    if link.flags & IFF_NOARP != 0 {
        return Err(Skip::NoArp);
    }
    if link.link_type != ARPHRD_ETHER || link.mac.is_none() {
        return Err(Skip::NotEthernet);
    }
    if let Some(p) = exclude.iter().find(|p| glob(p, &link.name)) {
        return Err(Skip::Excluded(p.clone()));
    }
    Ok(())
}

/// Whether `link` carries an IP announced on `wanted` interfaces.
pub fn selected(link: &Link, wanted: &Interfaces, exclude: &[String]) -> Result<(), Skip> {
    usable(link, exclude)?;
    if wanted.includes(&link.name) {
        Ok(())
    } else {
        Err(Skip::NotSelected)
    }
}

/// Shell-style match where `*` is any run of characters (including none); nothing else is
/// special. Interface names are short, so the simple backtracking is cheap.
pub fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::packet::Mac;
    use super::*;

    fn link(name: &str) -> Link {
        Link {
            index: 2,
            name: name.into(),
            flags: IFF_UP,
            link_type: ARPHRD_ETHER,
            mac: Some(Mac([2, 0, 0, 0, 0, 1])),
            master: None,
        }
    }

    fn defaults() -> Vec<String> {
        DEFAULT_EXCLUDE.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn globs() {
        assert!(glob("veth*", "veth1234"));
        assert!(glob("veth*", "veth"));
        assert!(!glob("veth*", "eth0"));
        assert!(glob("lo", "lo"));
        assert!(!glob("lo", "lo1"));
        assert!(glob("*-ipvs*", "kube-ipvs0"));
        assert!(glob("*", ""));
        assert!(!glob("", "x"));
    }

    #[test]
    fn table() {
        let ex = defaults();
        let all = Interfaces::All;
        let only_eth1 = Interfaces::Named(BTreeSet::from(["eth1".to_string()]));
        let only_veth1 = Interfaces::Named(BTreeSet::from(["veth1".to_string()]));
        let mut down = link("eth0");
        down.flags = 0;
        let mut slave = link("eth0");
        slave.master = Some(5);
        let mut noarp = link("wg0");
        noarp.flags |= IFF_NOARP;
        let mut lo = link("lo");
        lo.flags |= IFF_LOOPBACK;
        let mut tun = link("tun0");
        tun.link_type = 65534;
        let cases: Vec<(Link, &Interfaces, Result<(), Skip>)> = vec![
            (link("eth0"), &all, Ok(())),
            (link("bond0"), &all, Ok(())),
            (link("br0"), &all, Ok(())),
            (down, &all, Err(Skip::Down)),
            (slave, &all, Err(Skip::Enslaved)),
            (noarp, &all, Err(Skip::NoArp)),
            (lo, &all, Err(Skip::Loopback)),
            (tun, &all, Err(Skip::NotEthernet)),
            (link("veth12ab"), &all, Err(Skip::Excluded("veth*".into()))),
            (link("cali0"), &all, Err(Skip::Excluded("cali*".into()))),
            (link("docker0"), &all, Err(Skip::Excluded("docker*".into()))),
            (
                link("kube-ipvs0"),
                &all,
                Err(Skip::Excluded("kube-ipvs*".into())),
            ),
            (link("eth0"), &only_eth1, Err(Skip::NotSelected)),
            (link("eth1"), &only_eth1, Ok(())),
            // Exclusion applies even to interfaces an advertisement names.
            (
                link("veth1"),
                &only_veth1,
                Err(Skip::Excluded("veth*".into())),
            ),
        ];
        for (l, wanted, want) in cases {
            assert_eq!(selected(&l, wanted, &ex), want, "{}", l.name);
        }
        // With no patterns, veth interfaces are fine.
        assert_eq!(usable(&link("veth0"), &[]), Ok(()));
    }
}
