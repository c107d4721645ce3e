//! The standalone state file (read at start; a crash or a hand edit can leave anything in it):
//! any text parses to a state or a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ferrolb_standalone::state::parse(text);
    }
});
