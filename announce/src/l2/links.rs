//! The host's links as the responder needs them: index, name, MAC, flags, master, and whether
//! IPv6 is configured.
//!
//! Read over rtnetlink and `/proc/thread-self/net`, not `/sys/class/net`: sysfs shows the
//! network namespace of whoever mounted it, while a netlink socket and `thread-self` follow the
//! calling thread's namespace. The socket is socket2's. Parsing is ours, pure, and proptested
//! never to panic on what the kernel sends: it reads three attributes (name, address, master),
//! and netlink-packet-route, the maintained alternative, has panicked parsing link messages a
//! real kernel sent (rust-netlink/netlink-packet-route#143, open), which in the speaker would
//! take announcing down with it.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::packet::Mac;

/// One link from an `RTM_GETLINK` dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// `IFF_*` flags.
    pub flags: u32,
    /// ARPHRD_* device type (1 = Ethernet).
    pub link_type: u16,
    /// Hardware address, if it has a 6-byte one.
    pub mac: Option<Mac>,
    /// Index of the bond or bridge it is enslaved to.
    pub master: Option<u32>,
}

/// Why reading the links failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A netlink socket call failed.
    #[error("rtnetlink {op}: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel answered with an error code.
    #[error("rtnetlink dump refused: errno {0}")]
    Refused(i32),
    /// A message was cut short or mis-sized.
    #[error("malformed rtnetlink message at byte {0}")]
    Malformed(usize),
    /// The dump did not end within the bound.
    #[error("rtnetlink dump did not finish after {0} reads")]
    Unfinished(usize),
}

/// `IFF_UP`.
pub const IFF_UP: u32 = 0x1;
/// `IFF_LOOPBACK`.
pub const IFF_LOOPBACK: u32 = 0x8;
/// `IFF_NOARP`.
pub const IFF_NOARP: u32 = 0x80;
/// `ARPHRD_ETHER`.
pub const ARPHRD_ETHER: u16 = 1;

const NLMSG_HDR: usize = 16;
const IFINFO: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
/// Upper bound on reads of one dump (each read holds many links).
const MAX_READS: usize = 4096;

/// What one read of a dump held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    /// Links found.
    pub links: Vec<Link>,
    /// `NLMSG_DONE` was seen.
    pub done: bool,
}

/// Parses one datagram of an `RTM_GETLINK` dump.
pub fn parse_chunk(buf: &[u8]) -> Result<Chunk, LinkError> {
    let mut chunk = Chunk::default();
    let mut at = 0;
    while at + NLMSG_HDR <= buf.len() {
        let len = u32_at(buf, at).ok_or(LinkError::Malformed(at))? as usize;
        let kind = u16_at(buf, at + 4).ok_or(LinkError::Malformed(at))?;
        if len < NLMSG_HDR || at + len > buf.len() {
            return Err(LinkError::Malformed(at));
        }
        let body = &buf[at + NLMSG_HDR..at + len];
        match kind {
            NLMSG_DONE => {
                chunk.done = true;
                return Ok(chunk);
            }
            NLMSG_ERROR => {
                let errno = body
                    .get(0..4)
                    .and_then(|b| b.try_into().ok())
                    .map(i32::from_ne_bytes)
                    .ok_or(LinkError::Malformed(at))?;
                if errno != 0 {
                    return Err(LinkError::Refused(-errno));
                }
            }
            RTM_NEWLINK => chunk.links.push(parse_link(body, at + NLMSG_HDR)?),
            _ => {}
        }
        at += align4(len);
    }
    Ok(chunk)
}

fn parse_link(body: &[u8], base: usize) -> Result<Link, LinkError> {
    if body.len() < IFINFO {
        return Err(LinkError::Malformed(base));
    }
    let bad = || LinkError::Malformed(base);
    let link_type = u16_at(body, 2).ok_or_else(bad)?;
    let index = u32_at(body, 4).ok_or_else(bad)?;
    let flags = u32_at(body, 8).ok_or_else(bad)?;
    let mut link = Link {
        index,
        name: String::new(),
        flags,
        link_type,
        mac: None,
        master: None,
    };
    let mut at = IFINFO;
    while at + 4 <= body.len() {
        let len = usize::from(u16_at(body, at).ok_or_else(bad)?);
        let kind = u16_at(body, at + 2).ok_or_else(bad)? & 0x3fff;
        if len < 4 || at + len > body.len() {
            return Err(LinkError::Malformed(base + at));
        }
        let value = &body[at + 4..at + len];
        match kind {
            IFLA_IFNAME => {
                let name = value.split(|&b| b == 0).next().unwrap_or_default();
                link.name = String::from_utf8_lossy(name).into_owned();
            }
            IFLA_ADDRESS => link.mac = <[u8; 6]>::try_from(value).ok().map(Mac),
            IFLA_MASTER => link.master = u32_at(value, 0).filter(|&m| m != 0),
            _ => {}
        }
        at += align4(len);
    }
    Ok(link)
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at.checked_add(2)?)?
        .try_into()
        .ok()
        .map(u16::from_ne_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)?
        .try_into()
        .ok()
        .map(u32::from_ne_bytes)
}

/// Dumps every link of the calling thread's network namespace.
pub fn list_links() -> Result<Vec<Link>, LinkError> {
    let io = |op| move |source| LinkError::Io { op, source };
    let mut socket = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW.cloexec(),
        Some(Protocol::from(libc::NETLINK_ROUTE)),
    )
    .map_err(io("socket"))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(io("SO_RCVTIMEO"))?;
    let mut req = [0u8; NLMSG_HDR + IFINFO];
    req[0..4].copy_from_slice(&((NLMSG_HDR + IFINFO) as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[NLMSG_HDR] = libc::AF_UNSPEC as u8;
    socket.send(&req).map_err(io("send"))?;
    let mut links = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..MAX_READS {
        let n = socket.read(&mut buf).map_err(io("recv"))?;
        let chunk = parse_chunk(&buf[..n])?;
        links.extend(chunk.links);
        if chunk.done {
            return Ok(links);
        }
    }
    Err(LinkError::Unfinished(MAX_READS))
}

/// Names of the interfaces that have at least one IPv6 address, from the text of
/// `/proc/net/if_inet6` (`addr ifindex prefixlen scope flags name` per line).
pub fn parse_if_inet6(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(str::to_string)
        .collect()
}

/// Interfaces with IPv6 in the calling thread's namespace (none if IPv6 is disabled).
pub fn ipv6_interfaces() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/thread-self/net/if_inet6")
        .map(|t| parse_if_inet6(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        while !a.len().is_multiple_of(4) {
            a.push(0);
        }
        a
    }

    fn newlink(index: u32, flags: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![0u8, 0];
        body.extend_from_slice(&ARPHRD_ETHER.to_ne_bytes());
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend_from_slice(&flags.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        for a in attrs {
            body.extend_from_slice(a);
        }
        message(RTM_NEWLINK, &body)
    }

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = ((NLMSG_HDR + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn parses_links_and_done() {
        let mut buf = newlink(
            2,
            IFF_UP,
            &[
                attr(IFLA_IFNAME, b"eth0\0"),
                attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 0x0b]),
                attr(IFLA_MASTER, &7u32.to_ne_bytes()),
                attr(99, &[1, 2, 3]),
            ],
        );
        buf.extend(newlink(
            1,
            IFF_UP | IFF_LOOPBACK,
            &[attr(IFLA_IFNAME, b"lo\0")],
        ));
        let chunk = parse_chunk(&buf).unwrap();
        assert!(!chunk.done);
        assert_eq!(
            chunk.links[0],
            Link {
                index: 2,
                name: "eth0".into(),
                flags: IFF_UP,
                link_type: ARPHRD_ETHER,
                mac: Some(Mac([2, 0, 0, 0, 0, 0x0b])),
                master: Some(7),
            }
        );
        assert_eq!(chunk.links[1].name, "lo");
        assert_eq!(chunk.links[1].master, None);
        let done = parse_chunk(&message(NLMSG_DONE, &[0; 4])).unwrap();
        assert!(done.done && done.links.is_empty());
    }

    #[test]
    fn errors_are_typed() {
        let refused = message(NLMSG_ERROR, &(-1i32).to_ne_bytes());
        assert!(matches!(parse_chunk(&refused), Err(LinkError::Refused(1))));
        let mut cut = newlink(2, 0, &[attr(IFLA_IFNAME, b"eth0\0")]);
        cut.truncate(cut.len() - 4);
        assert!(matches!(parse_chunk(&cut), Err(LinkError::Malformed(0))));
    }

    #[test]
    fn if_inet6_lists_names() {
        let text = "fd000000000000000000000000000011 02 40 00 80     eth0\n\
                    00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(
            parse_if_inet6(text),
            BTreeSet::from(["eth0".to_string(), "lo".to_string()])
        );
    }

    #[test]
    fn lists_this_namespaces_links() {
        // Every Linux namespace has lo; this runs unprivileged.
        let links = list_links().unwrap();
        assert!(
            links
                .iter()
                .any(|l| l.name == "lo" && l.flags & IFF_LOOPBACK != 0)
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_chunk(&bytes);
        }

        #[test]
        fn mutated_dumps_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
            let mut buf = newlink(2, IFF_UP, &[attr(IFLA_IFNAME, b"eth0\0"), attr(IFLA_ADDRESS, &[1; 6])]);
            for (at, b) in flips {
                let i = at.index(buf.len());
                buf[i] = b;
            }
            let _ = parse_chunk(&buf);
        }
    }
}
