//! BFD Control packets from the network: any bytes decode or are refused without a panic; what
//! decodes encodes back to the same packet; and the session state machine takes it in any
//! state without a panic.
#![no_main]

use ferrolb_announce::bfd::fsm::{Event, Fsm, Timers};
use ferrolb_announce::bfd::packet::Control;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = Control::decode(data) else { return };
    assert_eq!(Control::decode(&c.encode()), Ok(c));
    let timers = Timers {
        desired_min_tx: Duration::from_millis(300),
        required_min_rx: Duration::from_millis(300),
        detect_mult: 3,
    };
    for passive in [false, true] {
        let mut fsm = Fsm::new(timers, passive, 7);
        let _ = fsm.handle(Event::Received(c));
        let _ = fsm.handle(Event::Received(c));
        let _ = fsm.tx_interval();
        let _ = fsm.detection_time();
        let _ = fsm.packet(c.poll).encode();
    }
});
