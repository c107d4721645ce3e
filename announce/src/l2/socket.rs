//! A thin AF_PACKET socket: one interface, one protocol, a kernel-side filter so only the frames
//! the responder answers wake it up, and multicast membership for solicited-node groups.
//!
//! The socket, its filter and sending are socket2's. Three calls stay on libc, each an `unsafe`
//! block with its reason, because no maintained crate offers them safely: binding to a
//! `sockaddr_ll` (socket2 builds only IP and Unix addresses without `unsafe`; nix's `LinkAddr`
//! has no public constructor), `PACKET_ADD_MEMBERSHIP` (in neither), and `recvfrom` reading the
//! frame's `sll_pkttype` (socket2 receives into uninitialised buffers and hands back an address
//! that must be reinterpreted, which is no less `unsafe`). `poll` is libc's too.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, SockFilter, Socket, Type};

use super::packet::Mac;

/// `PACKET_OUTGOING`: a frame this host sent (AF_PACKET sockets see those too).
const PACKET_OUTGOING: u8 = 4;

/// Classic BPF: Ethernet ARP requests only (ethertype 0x0806, operation 1).
const ARP_REQUESTS: [SockFilter; 6] = [
    op(0x28, 0, 0, 12),     // ldh [12]
    op(0x15, 0, 3, 0x0806), // jeq ARP, else drop
    op(0x28, 0, 0, 20),     // ldh [20]
    op(0x15, 0, 1, 1),      // jeq request, else drop
    op(0x06, 0, 0, 0xffff), // accept
    op(0x06, 0, 0, 0),      // drop
];

/// Classic BPF: IPv6 whose next header is ICMPv6 and whose ICMPv6 type is 135 (NS).
const NEIGHBOR_SOLICITATIONS: [SockFilter; 8] = [
    op(0x28, 0, 0, 12),     // ldh [12]
    op(0x15, 0, 5, 0x86dd), // jeq IPv6, else drop
    op(0x30, 0, 0, 20),     // ldb [20] next header
    op(0x15, 0, 3, 58),     // jeq ICMPv6, else drop
    op(0x30, 0, 0, 54),     // ldb [54] ICMPv6 type
    op(0x15, 0, 1, 135),    // jeq NS, else drop
    op(0x06, 0, 0, 0xffff), // accept
    op(0x06, 0, 0, 0),      // drop
];

const fn op(code: u16, jt: u8, jf: u8, k: u32) -> SockFilter {
    SockFilter::new(code, jt, jf, k)
}

/// Which frames a [`PacketSocket`] receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// ARP requests.
    Arp,
    /// IPv6 Neighbor Solicitations.
    Ndp,
}

/// A raw packet socket bound to one interface.
#[derive(Debug)]
pub struct PacketSocket {
    socket: Socket,
    ifindex: u32,
}

/// An error with the operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} on interface index {ifindex}: {source}")]
pub struct SocketError {
    /// The call.
    pub op: &'static str,
    /// The interface.
    pub ifindex: u32,
    /// The OS error.
    pub source: io::Error,
}

impl PacketSocket {
    /// Opens a socket on `ifindex` that receives only `kind` frames. The filter is attached
    /// before binding, so no unfiltered frame is ever queued.
    pub fn open(ifindex: u32, kind: Kind) -> Result<PacketSocket, SocketError> {
        let err = |op| {
            move |source| SocketError {
                op,
                ifindex,
                source,
            }
        };
        let socket = Socket::new(Domain::PACKET, Type::RAW.nonblocking().cloexec(), None)
            .map_err(err("socket(AF_PACKET)"))?;
        let filter: &[SockFilter] = match kind {
            Kind::Arp => &ARP_REQUESTS,
            Kind::Ndp => &NEIGHBOR_SOLICITATIONS,
        };
        socket
            .attach_filter(filter)
            .map_err(err("SO_ATTACH_FILTER"))?;
        let protocol = match kind {
            Kind::Arp => libc::ETH_P_ARP,
            Kind::Ndp => libc::ETH_P_IPV6,
        } as u16;
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol.to_be();
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a live sockaddr_ll and we pass its exact size; the descriptor is
        // owned by `socket` for the whole call.
        let rc = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(err("bind")(io::Error::last_os_error()));
        }
        Ok(PacketSocket { socket, ifindex })
    }

    /// Joins (or leaves) an Ethernet multicast group on the interface. The kernel counts joins
    /// of the same group per socket, so two VIPs sharing a solicited-node group each join once
    /// and the group stays until both have left.
    pub fn multicast(&self, group: Mac, join: bool) -> Result<(), SocketError> {
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = self.ifindex as i32;
        mreq.mr_type = libc::PACKET_MR_MULTICAST as u16;
        mreq.mr_alen = 6;
        mreq.mr_address[..6].copy_from_slice(&group.0);
        let (opt, name) = if join {
            (libc::PACKET_ADD_MEMBERSHIP, "PACKET_ADD_MEMBERSHIP")
        } else {
            (libc::PACKET_DROP_MEMBERSHIP, "PACKET_DROP_MEMBERSHIP")
        };
        setsockopt(&self.socket, libc::SOL_PACKET, opt, &mreq).map_err(|source| SocketError {
            op: name,
            ifindex: self.ifindex,
            source,
        })
    }

    /// Receives one incoming frame into `buf` without blocking: `Ok(None)` when the queue is
    /// empty. Frames this host sent itself are skipped (reported as `Some(0)`).
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<usize>, SocketError> {
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buf` and `addr` are live and writable for the lengths passed; the kernel
        // writes at most that much; the descriptor is owned by `self.socket`.
        let n = unsafe {
            libc::recvfrom(
                self.socket.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut addr as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(SocketError {
                    op: "recvfrom",
                    ifindex: self.ifindex,
                    source: e,
                }),
            };
        }
        if addr.sll_pkttype == PACKET_OUTGOING {
            return Ok(Some(0));
        }
        Ok(Some(n as usize))
    }

    /// Sends one complete Ethernet frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> Result<(), SocketError> {
        self.socket
            .send(frame)
            .map(drop)
            .map_err(|source| SocketError {
                op: "send",
                ifindex: self.ifindex,
                source,
            })
    }

    /// The raw descriptor, for `poll`.
    pub fn raw_fd(&self) -> libc::c_int {
        self.socket.as_raw_fd()
    }
}

/// Waits until one of `fds` is readable or `timeout` passes; returns which are readable.
pub fn poll_readable(fds: &[libc::c_int], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfds` is a live, writable array of exactly the length passed.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}

fn setsockopt<T>(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live value of the size passed; the descriptor is owned by
    // `socket` for the whole call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
