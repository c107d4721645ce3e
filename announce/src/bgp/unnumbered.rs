//! Unnumbered peering (a BGPPeer's `interface`): the peer is the router at the other end of a
//! point-to-point link, known only by its IPv6 link-local address. We learn that address from
//! the router advertisements it sends on the link (FRR's zebra sends them for its own
//! interface peers; BIRD's `radv` protocol does), and send our own, with a router lifetime of
//! 0 so that nobody takes this node for a default router, so that the router learns ours (FRR
//! accepts an interface peer's connection only from an address it learned that way).
//!
//! The router advertisement is built and read here (RFC 4861 section 4.2): 16 bytes and one
//! option do not justify a packet crate's types.

use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often we advertise ourselves on the link.
pub const ADVERTISE_EVERY: Duration = Duration::from_secs(5);

const ROUTER_SOLICITATION: u8 = 133;
const ROUTER_ADVERTISEMENT: u8 = 134;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The router at the other end of an interface, as its advertisements reveal it.
#[derive(Debug)]
pub struct LinkPeer {
    index: u32,
    peer: watch::Receiver<Option<Ipv6Addr>>,
    task: JoinHandle<()>,
}

impl LinkPeer {
    /// Starts advertising on `interface` and listening for the peer's advertisements (inside a
    /// tokio runtime, in the node's network namespace; needs CAP_NET_RAW).
    pub fn start(interface: &str) -> io::Result<LinkPeer> {
        let index = nix::net::if_::if_nametoindex(interface)
            .map_err(|e| io::Error::other(format!("interface {interface}: {e}")))?;
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        socket.bind_device(Some(interface.as_bytes()))?;
        socket.set_multicast_hops_v6(255)?;
        socket.set_multicast_if_v6(index)?;
        socket.set_multicast_loop_v6(false)?;
        socket.set_unicast_hops_v6(255)?;
        socket.set_nonblocking(true)?;
        let mac = mac_of(interface)?;
        // A datagram socket to tokio: recvfrom/sendto are the same calls for a raw one.
        let fd = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(
            std::os::fd::OwnedFd::from(socket),
        ))?;
        let (tx, peer) = watch::channel(None);
        let name = interface.to_string();
        let task = tokio::spawn(async move {
            if let Err(e) = run(fd, index, mac, tx).await {
                tracing::warn!(interface = %name, "unnumbered peering: {e}");
            }
        });
        Ok(LinkPeer { index, peer, task })
    }

    /// Whether it still runs (false after the interface went away under it, say): the
    /// session then starts a new one, which also looks the interface up again.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// The peer's link-local address on the interface, once it has advertised.
    pub fn address(&self, port: u16) -> Option<SocketAddrV6> {
        (*self.peer.borrow()).map(|a| SocketAddrV6::new(a, port, 0, self.index))
    }
}

impl Drop for LinkPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    socket: UdpSocket,
    index: u32,
    mac: [u8; 6],
    peer: watch::Sender<Option<Ipv6Addr>>,
) -> io::Result<()> {
    let advertisement = router_advertisement(mac);
    let solicitation = router_solicitation(mac);
    let to = SocketAddrV6::new(ALL_NODES, 0, 0, index);
    let routers = SocketAddrV6::new(ALL_ROUTERS, 0, 0, index);
    let mut tick = tokio::time::interval(ADVERTISE_EVERY);
    let mut buf = [0u8; 1500];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = socket.send_to(&advertisement, to).await {
                    tracing::debug!("sending a router advertisement: {e}");
                }
                // Until the peer is known, ask for its advertisement rather than wait for
                // its next periodic one (FRR's come every 10 s or more).
                if peer.borrow().is_none()
                    && let Err(e) = socket.send_to(&solicitation, routers).await
                {
                    tracing::debug!("sending a router solicitation: {e}");
                }
            }
            got = socket.recv_from(&mut buf) => {
                let (n, from) = match got {
                    Ok(got) => got,
                    // Say it and go on (bounded by the wait); the session restarts the whole
                    // task if it ends.
                    Err(e) => {
                        tracing::warn!("receiving router advertisements: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let source = match from {
                    std::net::SocketAddr::V6(a) => *a.ip(),
                    std::net::SocketAddr::V4(_) => continue,
                };
                if source.is_unicast_link_local()
                    && buf[..n].first() == Some(&ROUTER_ADVERTISEMENT)
                    && *peer.borrow() != Some(source)
                {
                    tracing::info!(peer = %source, "unnumbered peer learned from its router advertisement");
                    peer.send_replace(Some(source));
                }
            }
        }
    }
}

/// A router advertisement that says "a router is here" and nothing else: hop limit and timers
/// unspecified, router lifetime 0 (not a default router), our link-layer address as option.
/// The kernel fills in the checksum of ICMPv6 raw sockets.
pub fn router_advertisement(mac: [u8; 6]) -> Vec<u8> {
    let mut m = vec![ROUTER_ADVERTISEMENT, 0, 0, 0];
    m.extend_from_slice(&[0, 0]); // current hop limit, flags
    m.extend_from_slice(&[0, 0]); // router lifetime
    m.extend_from_slice(&[0; 8]); // reachable time, retransmit timer
    m.extend_from_slice(&[1, 1]); // source link-layer address, 8 bytes
    m.extend_from_slice(&mac);
    m
}

/// A router solicitation (RFC 4861 section 4.1) with our link-layer address.
pub fn router_solicitation(mac: [u8; 6]) -> Vec<u8> {
    let mut m = vec![ROUTER_SOLICITATION, 0, 0, 0];
    m.extend_from_slice(&[0; 4]); // reserved
    m.extend_from_slice(&[1, 1]); // source link-layer address, 8 bytes
    m.extend_from_slice(&mac);
    m
}

/// The interface's MAC address (from the kernel through netlink, so it follows the calling
/// thread's network namespace, as /sys would not).
fn mac_of(interface: &str) -> io::Result<[u8; 6]> {
    nix::ifaddrs::getifaddrs()
        .map_err(io::Error::from)?
        .filter(|a| a.interface_name == interface)
        .find_map(|a| a.address.as_ref()?.as_link_addr()?.addr())
        .ok_or_else(|| io::Error::other(format!("{interface} has no MAC address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertisement_has_lifetime_zero_and_our_address() {
        let ra = router_advertisement([2, 0, 0, 0, 0, 7]);
        assert_eq!(ra.len(), 24);
        assert_eq!(ra[0], 134);
        assert_eq!(&ra[6..8], &[0, 0], "router lifetime 0");
        assert_eq!(&ra[16..], &[1, 1, 2, 0, 0, 0, 0, 7]);
    }
}
