//! Membership datagrams from the LAN: any bytes through the MAC check, and any payload sealed
//! with the right key (as if a member had sent it) through our direct messages' decoding and
//! foca's, never panic.
#![no_main]

use ferrolb_announce::membership::{read_untrusted, seal};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzzing-membership-secret";

fuzz_target!(|data: &[u8]| {
    let _ = read_untrusted(KEY, data);
    let _ = read_untrusted(KEY, &seal(KEY, data));
});
