//! A BGP peer of a few lines, for what real routers will not do on demand: stop reading
//! (a stalled peer), or send a million UPDATEs as fast as TCP takes them (a flood). It speaks
//! through our own codec, blocking std sockets, in a lab namespace.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ferrolb_announce::bgp::message::{
    AsSegment, Codec, HEADER_LEN, Message, Open, Origin, PathAttrs, Update, frame_len,
};
use ipnet::Ipv4Net;

/// Reads one whole message (blocking, with the stream's timeout).
pub fn read_message(s: &mut TcpStream) -> io::Result<Message> {
    let mut buf = vec![0u8; HEADER_LEN];
    s.read_exact(&mut buf)?;
    let len = match frame_len(&buf) {
        Ok(_) => u16::from_be_bytes([buf[16], buf[17]]) as usize,
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
    };
    buf.resize(len, 0);
    s.read_exact(&mut buf[HEADER_LEN..])?;
    Codec::default()
        .decode(&buf)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// Writes one message.
pub fn write_message(s: &mut TcpStream, m: &Message) -> io::Result<()> {
    let bytes = Codec::default()
        .encode(m)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    s.write_all(&bytes)
}

/// Who the scripted peer is.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    pub asn: u32,
    pub id: Ipv4Addr,
    pub hold_time: u16,
}

/// Answers the speaker's OPEN with ours and a KEEPALIVE and waits for its KEEPALIVE: the
/// session is Established on both sides when this returns (with the speaker's OPEN).
pub fn handshake(s: &mut TcpStream, me: Identity) -> io::Result<Open> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let theirs = match read_message(s)? {
        Message::Open(o) => o,
        m => {
            return Err(io::Error::other(format!("expected OPEN, got {}", m.kind())));
        }
    };
    let open = Open::new(me.asn, me.hold_time, me.id, &[(1, 1)]);
    write_message(s, &Message::Open(open))?;
    write_message(s, &Message::Keepalive)?;
    loop {
        match read_message(s)? {
            Message::Keepalive => return Ok(theirs),
            Message::Notification(n) => return Err(io::Error::other(format!("NOTIFICATION {n}"))),
            _ => {}
        }
    }
}

/// A listener with a small receive buffer (set before listen, so accepted sockets inherit it),
/// so that a peer that stops reading fills up quickly.
pub fn listen(addr: SocketAddr, receive_buffer: Option<usize>) -> io::Result<TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    s.set_reuse_address(true)?;
    if let Some(n) = receive_buffer {
        s.set_recv_buffer_size(n)?;
    }
    s.bind(&addr.into())?;
    s.listen(8)?;
    Ok(s.into())
}

/// `count` valid one-prefix UPDATEs from `asn` (eBGP path, next hop `next_hop`), each for
/// its own /32 in 10.128.0.0/9, encoded back to back.
pub fn updates(count: usize, asn: u32, next_hop: Ipv4Addr) -> Vec<u8> {
    let codec = Codec::default();
    let mut out = Vec::with_capacity(count * 56);
    for i in 0..count {
        let a = u32::from(Ipv4Addr::new(10, 128, 0, 0)) + (i as u32 % (1 << 23));
        let u = Update {
            withdrawn: Vec::new(),
            attrs: PathAttrs {
                origin: Some(Origin::Igp),
                as_path: Some(vec![AsSegment::Sequence(vec![asn])]),
                next_hop: Some(next_hop),
                ..Default::default()
            },
            nlri: vec![Ipv4Net::new(Ipv4Addr::from(a), 32).expect("a /32")],
        };
        match codec.encode(&Message::Update(u)) {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => panic!("encoding a flood UPDATE: {e}"),
        }
    }
    out
}

/// `count` KEEPALIVEs back to back.
pub fn keepalives(count: usize) -> Vec<u8> {
    let one = Codec::default()
        .encode(&Message::Keepalive)
        .expect("a KEEPALIVE encodes");
    one.repeat(count)
}

/// The address as a socket address on the BGP test port.
pub fn at(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}
