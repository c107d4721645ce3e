//! A BGP byte stream cut into messages: however the bytes arrive (split at the points the
//! first input bytes choose), the framer yields the same messages and the same error, never
//! holding more than one partial message plus the last read.
#![no_main]

use ferrolb_announce::bgp::message::{Framer, MAX_MESSAGE_LEN};
use libfuzzer_sys::fuzz_target;

/// Frames until the first error or the end: (frames, error?, bytes left over).
fn frame_all(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, bool, usize) {
    let mut f = Framer::default();
    let mut out = Vec::new();
    for c in chunks {
        f.push(c);
        assert!(f.pending() <= MAX_MESSAGE_LEN + c.len());
        loop {
            match f.next_frame() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(_) => return (out, true, 0),
            }
        }
    }
    let left = f.pending();
    (out, false, left)
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let cuts = usize::from(n % 8);
    if rest.len() < cuts {
        return;
    }
    let (sizes, stream) = rest.split_at(cuts);
    let whole = frame_all(&[stream]);
    let mut chunks = Vec::new();
    let mut s = stream;
    for &k in sizes {
        let k = usize::from(k).min(s.len());
        let (a, b) = s.split_at(k);
        chunks.push(a);
        s = b;
    }
    chunks.push(s);
    assert_eq!(frame_all(&chunks), whole);
});
