//! Frames from the LAN: parsing any bytes as ARP or Neighbor Solicitation never panics, and
//! the reply built from whatever parses (ARP reply, Neighbor Advertisement) goes to the asker
//! (or to all nodes, for a DAD probe) from our MAC, at a fixed size.
#![no_main]

use ferrolb_announce::l2::packet::{self, Mac, Request};
use libfuzzer_sys::fuzz_target;

const OURS: Mac = Mac([0x02, 0, 0, 0, 0, 0x01]);

fuzz_target!(|data: &[u8]| {
    match packet::parse(data) {
        Ok(Request::Arp(req)) => {
            let reply = packet::arp_reply(OURS, req.target_ip, &req);
            assert_eq!(reply.len(), 60, "a minimum Ethernet frame");
            assert_eq!(&reply[0..6], &req.eth_src.0);
            assert_eq!(&reply[6..12], &OURS.0);
        }
        Ok(Request::Ns(ns)) => {
            let reply = packet::neighbor_advertisement(OURS, ns.target, &ns);
            // Ethernet + IPv6 + NA with the target link-layer address option.
            assert_eq!(reply.len(), 14 + 40 + 32);
            assert_eq!(&reply[6..12], &OURS.0);
            if !ns.source_ip.is_unspecified() {
                assert_eq!(&reply[0..6], &ns.source_ll.unwrap_or(ns.eth_src).0);
            }
        }
        Err(_) => {}
    }
});
