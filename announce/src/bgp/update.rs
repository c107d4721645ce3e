//! The UPDATE builder, pure: from the routes we want a peer to hold and the routes it holds,
//! the fewest UPDATEs that take it from one to the other. A change sends only what changed
//! (withdrawals, and announcements grouped by identical attributes); the full table is sent
//! only when a session comes up or the peer asks for a route refresh.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use super::message::{
    AsSegment, Codec, EncodeError, LargeCommunity, MAX_MESSAGE_LEN, Message, MpReach, Origin,
    PathAttrs, Update, prefix_wire_len,
};

/// What one advertised prefix carries, independent of the peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteAttrs {
    /// Sent to iBGP peers only (100 when unset, as LOCAL_PREF is expected inside an AS).
    pub local_pref: Option<u32>,
    pub communities: BTreeSet<u32>,
    pub large_communities: BTreeSet<LargeCommunity>,
}

/// The routes for one peer: prefix -> attributes.
pub type Table = BTreeMap<IpNet, RouteAttrs>;

/// How routes are sent to one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    pub local_asn: u32,
    pub ibgp: bool,
    /// Next hop self for IPv4 prefixes: an IPv4 one goes in the classic NEXT_HOP, an IPv6 one
    /// (RFC 8950, unnumbered sessions) in MP_REACH; `None`: IPv4 is not sent.
    pub next_hop_v4: Option<IpAddr>,
    /// Next hop self for IPv6 prefixes (MP_REACH); `None`: IPv6 is not sent.
    pub next_hop_v6: Option<Ipv6Addr>,
    pub codec: Codec,
}

/// Default LOCAL_PREF toward iBGP peers.
pub const DEFAULT_LOCAL_PREF: u32 = 100;

impl PeerView {
    /// Whether this peer gets `prefix` at all (its family has a next hop).
    pub fn carries(&self, prefix: &IpNet) -> bool {
        match prefix {
            IpNet::V4(_) => self.next_hop_v4.is_some(),
            IpNet::V6(_) => self.next_hop_v6.is_some(),
        }
    }

    /// The path attributes `r` gets toward this peer (without reachability).
    pub fn path_attrs(&self, r: &RouteAttrs) -> PathAttrs {
        PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(if self.ibgp {
                Vec::new()
            } else {
                vec![AsSegment::Sequence(vec![self.local_asn])]
            }),
            local_pref: self
                .ibgp
                .then(|| r.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)),
            communities: r.communities.clone(),
            large_communities: r.large_communities.clone(),
            ..Default::default()
        }
    }
}

/// The UPDATEs taking a peer from `old` to `new`. Unchanged prefixes are not sent; a prefix
/// whose attributes changed is re-announced (an implicit withdrawal); withdrawals come first.
pub fn diff(view: &PeerView, old: &Table, new: &Table) -> Result<Vec<Update>, EncodeError> {
    let mut out = Vec::new();
    let gone = old
        .keys()
        .filter(|p| view.carries(p) && !new.contains_key(p))
        .copied();
    withdraw(view, gone, &mut out)?;
    let mut groups: BTreeMap<&RouteAttrs, (Vec<IpNet>, Vec<IpNet>)> = BTreeMap::new();
    for (p, a) in new {
        if view.carries(p) && old.get(p) != Some(a) {
            let g = groups.entry(a).or_default();
            match p {
                IpNet::V4(_) => g.0.push(*p),
                IpNet::V6(_) => g.1.push(*p),
            }
        }
    }
    for (attrs, (v4, v6)) in groups {
        announce(view, attrs, &v4, &v6, &mut out)?;
    }
    Ok(out)
}

/// Everything in `table`, as on a fresh session.
pub fn full(view: &PeerView, table: &Table) -> Result<Vec<Update>, EncodeError> {
    diff(view, &Table::new(), table)
}

fn size(view: &PeerView, u: &Update) -> Result<usize, EncodeError> {
    Ok(view.codec.encode(&Message::Update(u.clone()))?.len())
}

/// Packs `prefixes` into as few messages as fit, starting from `template` (whose encoded
/// size is measured once) and appending with `push`.
fn pack(
    view: &PeerView,
    template: Update,
    prefixes: impl Iterator<Item = IpNet>,
    push: impl Fn(&mut Update, IpNet),
    out: &mut Vec<Update>,
) -> Result<(), EncodeError> {
    let base = size(view, &template)?;
    let mut cur = template.clone();
    let mut len = base;
    let mut any = false;
    for p in prefixes {
        let w = prefix_wire_len(&p);
        if any && len + w > MAX_MESSAGE_LEN {
            out.push(std::mem::replace(&mut cur, template.clone()));
            len = base;
        }
        push(&mut cur, p);
        len += w;
        any = true;
    }
    if any && len > base {
        out.push(cur);
    }
    Ok(())
}

fn withdraw(
    view: &PeerView,
    gone: impl Iterator<Item = IpNet>,
    out: &mut Vec<Update>,
) -> Result<(), EncodeError> {
    let (v4, v6): (Vec<IpNet>, Vec<IpNet>) = gone.partition(|p| p.addr().is_ipv4());
    pack(
        view,
        Update::default(),
        v4.into_iter(),
        |u, p| {
            if let IpNet::V4(n) = p {
                u.withdrawn.push(n)
            }
        },
        out,
    )?;
    let t = Update {
        attrs: PathAttrs {
            mp_unreach: Some(Vec::new()),
            ..Default::default()
        },
        ..Default::default()
    };
    pack(
        view,
        t,
        v6.into_iter(),
        |u, p| {
            if let Some(w) = u.attrs.mp_unreach.as_mut() {
                w.push(p)
            }
        },
        out,
    )
}

fn announce(
    view: &PeerView,
    attrs: &RouteAttrs,
    v4: &[IpNet],
    v6: &[IpNet],
    out: &mut Vec<Update>,
) -> Result<(), EncodeError> {
    let pa = view.path_attrs(attrs);
    match view.next_hop_v4 {
        Some(IpAddr::V4(nh)) => {
            let t = Update {
                attrs: PathAttrs {
                    next_hop: Some(nh),
                    ..pa.clone()
                },
                ..Default::default()
            };
            pack(
                view,
                t,
                v4.iter().copied(),
                |u, p| {
                    if let IpNet::V4(n) = p {
                        u.nlri.push(n)
                    }
                },
                out,
            )?;
        }
        Some(nh @ IpAddr::V6(_)) => mp_announce(view, &pa, nh, v4, out)?,
        None => {}
    }
    if let Some(nh) = view.next_hop_v6 {
        mp_announce(view, &pa, nh.into(), v6, out)?;
    }
    Ok(())
}

/// `prefixes` in MP_REACH with next hop `nh`.
fn mp_announce(
    view: &PeerView,
    pa: &PathAttrs,
    nh: IpAddr,
    prefixes: &[IpNet],
    out: &mut Vec<Update>,
) -> Result<(), EncodeError> {
    let t = Update {
        attrs: PathAttrs {
            mp_reach: Some(MpReach {
                next_hops: vec![nh],
                prefixes: Vec::new(),
            }),
            ..pa.clone()
        },
        ..Default::default()
    };
    pack(
        view,
        t,
        prefixes.iter().copied(),
        |u, p| {
            if let Some(m) = u.attrs.mp_reach.as_mut() {
                m.prefixes.push(p)
            }
        },
        out,
    )
}

#[cfg(test)]
mod tests;
