//! BGP messages from a peer: decoding any bytes, with either AS-number width, never panics.
#![no_main]

use ferrolb_announce::bgp::message::Codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for four_octet_as in [false, true] {
        let _ = Codec { four_octet_as }.decode(data);
    }
});
