//! TCP socket options BGP needs that tokio does not expose: TCP MD5 signatures (RFC 2385)
//! and the TTL / hop limit (1 for directly connected eBGP, 255 for multihop). The TTL goes
//! through socket2; TCP_MD5SIG is in no maintained crate (socket2, nix, rustix), so its
//! `struct tcp_md5sig` is ours and set with libc.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use tokio::net::{TcpSocket, TcpStream};

/// Longest key Linux accepts (TCP_MD5SIG_MAXKEYLEN).
pub const MD5_MAX_KEY: usize = 80;

/// `struct tcp_md5sig` from linux/tcp.h (libc does not define it).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY],
}

/// `TCP_MD5SIG_EXT` and its flag for a key that belongs to one L3 domain (a VRF), from
/// linux/tcp.h (libc does not define them).
const TCP_MD5SIG_EXT: libc::c_int = 32;
const TCP_MD5SIG_FLAG_IFINDEX: u8 = 0x2;

/// Signs (and requires signatures on) segments exchanged with `peer` on this socket (on a
/// listening socket: on the connections it accepts from `peer`).
pub fn set_md5(fd: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    check_key(key)?;
    md5sig(fd, peer, key, None)
}

/// [`set_md5`] for a socket bound to the VRF device with index `vrf_index`: the key belongs
/// to that VRF (as FRR sets it), not to the default one.
pub fn set_md5_in_vrf(
    fd: &impl AsRawFd,
    peer: IpAddr,
    key: &[u8],
    vrf_index: u32,
) -> io::Result<()> {
    check_key(key)?;
    md5sig(fd, peer, key, Some(vrf_index))
}

fn check_key(key: &[u8]) -> io::Result<()> {
    if key.is_empty() || key.len() > MD5_MAX_KEY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TCP MD5 key must be 1..={MD5_MAX_KEY} bytes"),
        ));
    }
    Ok(())
}

/// Removes `peer`'s key from this socket (a zero-length key deletes it).
pub fn clear_md5(fd: &impl AsRawFd, peer: IpAddr) -> io::Result<()> {
    md5sig(fd, peer, &[], None)
}

fn md5sig(fd: &impl AsRawFd, peer: IpAddr, key: &[u8], vrf: Option<u32>) -> io::Result<()> {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    match peer {
        IpAddr::V4(a) => {
            let sin = &mut sig.addr as *mut libc::sockaddr_storage as *mut libc::sockaddr_in;
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe {
                (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
                (*sin).sin_addr.s_addr = u32::from_ne_bytes(a.octets());
            }
        }
        IpAddr::V6(a) => {
            let sin6 = &mut sig.addr as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6;
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe {
                (*sin6).sin6_family = libc::AF_INET6 as libc::sa_family_t;
                (*sin6).sin6_addr.s6_addr = a.octets();
            }
        }
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    match vrf {
        None => setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &sig),
        Some(index) => {
            sig.flags = TCP_MD5SIG_FLAG_IFINDEX;
            sig.ifindex = libc::c_int::try_from(index).unwrap_or(0);
            setsockopt(fd, libc::IPPROTO_TCP, TCP_MD5SIG_EXT, &sig)
        }
    }
}

/// This node's address of the other family on the interface that holds `local` (a
/// session's own address), for the next hop of the other family's routes over a dual-stack
/// session: a global one (not link-local) if there is one.
pub fn other_family_address(local: IpAddr) -> Option<IpAddr> {
    let addresses: Vec<(String, IpAddr)> = nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|a| {
            let ip = a.address.as_ref().and_then(|s| {
                s.as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            })?;
            Some((a.interface_name, ip))
        })
        .collect();
    let interface = &addresses.iter().find(|(_, ip)| *ip == local)?.0;
    addresses
        .iter()
        .filter(|(name, ip)| name == interface && ip.is_ipv4() != local.is_ipv4())
        .map(|(_, ip)| *ip)
        .find(|ip| match ip {
            IpAddr::V4(a) => !a.is_link_local(),
            IpAddr::V6(a) => !a.is_unicast_link_local(),
        })
}

/// Whether `peer` is on a subnet of one of this node's interfaces (one hop away): BFD to it is
/// single hop (RFC 5881), to anything else multihop (RFC 5883), as FRR decides. `None` when
/// the interfaces cannot be read.
pub fn directly_connected(peer: IpAddr) -> Option<bool> {
    let connected = nix::ifaddrs::getifaddrs().ok()?.any(|a| {
        let (Some(addr), Some(mask)) = (a.address.as_ref(), a.netmask.as_ref()) else {
            return false;
        };
        match (peer, addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
            (IpAddr::V4(p), Some(a), Some(m)) => {
                let m = u32::from(m.ip());
                m != u32::MAX && u32::from(a.ip()) & m == u32::from(p) & m
            }
            _ => match (peer, addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
                (IpAddr::V6(p), Some(a), Some(m)) => {
                    let m = u128::from(m.ip());
                    m != u128::MAX && u128::from(a.ip()) & m == u128::from(p) & m
                }
                _ => false,
            },
        }
    });
    Some(connected)
}

/// Sets the unicast TTL (IPv4) or hop limit (IPv6).
pub fn set_ttl(fd: &impl std::os::fd::AsFd, v6: bool, ttl: u8) -> io::Result<()> {
    let socket = socket2::SockRef::from(fd);
    if v6 {
        socket.set_unicast_hops_v6(u32::from(ttl))
    } else {
        socket.set_ttl_v4(u32::from(ttl))
    }
}

fn setsockopt<T>(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: &T,
) -> io::Result<()> {
    // SAFETY: `v` points to a live value of the size we pass.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            v as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How to open a BGP TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpOptions {
    pub peer: SocketAddr,
    pub source: Option<IpAddr>,
    pub md5_key: Option<Vec<u8>>,
    /// TTL / hop limit to set, if any.
    pub ttl: Option<u8>,
    /// The VRF device to bind the socket to, if any.
    pub vrf: Option<String>,
}

fn socket_for(opts: &TcpOptions) -> io::Result<TcpSocket> {
    let v6 = opts.peer.is_ipv6();
    let s = if v6 {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    if let Some(vrf) = &opts.vrf {
        s.bind_device(Some(vrf.as_bytes()))
            .map_err(|e| io::Error::new(e.kind(), format!("binding to VRF {vrf}: {e}")))?;
    }
    match (&opts.md5_key, &opts.vrf) {
        (Some(k), None) => set_md5(&s, opts.peer.ip(), k)?,
        (Some(k), Some(vrf)) => {
            let index = nix::net::if_::if_nametoindex(vrf.as_str())
                .map_err(|e| io::Error::other(format!("VRF {vrf}: {e}")))?;
            set_md5_in_vrf(&s, opts.peer.ip(), k, index)?;
        }
        (None, _) => {}
    }
    if let Some(t) = opts.ttl {
        set_ttl(&s, v6, t)?;
    }
    s.set_nodelay(true)?;
    Ok(s)
}

/// Connects with the options applied before the SYN goes out. The source address is used
/// when this node has it; otherwise the kernel chooses (as the BGPPeer's `sourceAddress` says),
/// instead of failing every attempt.
pub async fn connect(opts: &TcpOptions) -> io::Result<TcpStream> {
    let s = socket_for(opts)?;
    if let Some(src) = opts.source {
        match s.bind(SocketAddr::new(src, 0)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
                tracing::debug!(%src, peer = %opts.peer, "this node does not have the source address; the kernel chooses");
            }
            Err(e) => return Err(e),
        }
    }
    s.connect(opts.peer).await
}
