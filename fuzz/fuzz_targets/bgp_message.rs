//! BGP messages from a peer: decoding any bytes, with either AS-number width, never panics;
//! whatever decodes re-encodes to at most 4096 bytes that decode to the same message
//! (decode(encode(x)) = x). Seeded with the golden captures from BIRD, FRR and GoBGP.
#![no_main]

use ferrolb_announce::bgp::message::{Codec, MAX_MESSAGE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for four_octet_as in [false, true] {
        let codec = Codec { four_octet_as };
        let Ok(m) = codec.decode(data) else {
            continue;
        };
        // Encoding may refuse what we never send (say, capabilities past 255 bytes once
        // merged into one parameter); what it writes must read back the same.
        if let Ok(bytes) = codec.encode(&m) {
            assert!(bytes.len() <= MAX_MESSAGE_LEN, "{} bytes", bytes.len());
            assert_eq!(codec.decode(&bytes).as_ref(), Ok(&m), "{m:?}");
        }
    }
});
