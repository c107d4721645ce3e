//! Frames from the LAN: parsing any bytes as ARP or Neighbor Solicitation never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferrolb_announce::l2::packet::parse(data);
});
