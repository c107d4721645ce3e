//! BFD Control packets (RFC 5880 section 4.1): our own encoder and panic-free decoder.
//!
//! Only the mandatory section is carried: ferrolb does not authenticate BFD (a BFDProfile has no
//! authentication fields), so a packet with the Authentication Present bit is refused, as
//! RFC 5880 6.8.6 says a system without authentication must. Demand mode and multipoint are not
//! used either; a packet asking for multipoint is refused.

use std::fmt;
use std::time::Duration;

/// The length of a Control packet without authentication.
pub const LEN: usize = 24;
/// The only version there is.
pub const VERSION: u8 = 1;

/// RFC 5880 4.1 session states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    AdminDown,
    Down,
    Init,
    Up,
}

impl State {
    fn bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    fn from_bits(b: u8) -> State {
        match b & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        })
    }
}

/// RFC 5880 4.1 diagnostic codes: why the sender's session last went down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Diag {
    None,
    ControlDetectionTimeExpired,
    EchoFunctionFailed,
    NeighborSignaledDown,
    ForwardingPlaneReset,
    PathDown,
    ConcatenatedPathDown,
    AdministrativelyDown,
    ReverseConcatenatedPathDown,
    /// A code RFC 5880 reserves (kept, so that it can be shown).
    Reserved(u8),
}

impl Diag {
    fn code(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::ControlDetectionTimeExpired => 1,
            Diag::EchoFunctionFailed => 2,
            Diag::NeighborSignaledDown => 3,
            Diag::ForwardingPlaneReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdministrativelyDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Reserved(c) => c & 0x1f,
        }
    }

    fn from_code(c: u8) -> Diag {
        match c & 0x1f {
            0 => Diag::None,
            1 => Diag::ControlDetectionTimeExpired,
            2 => Diag::EchoFunctionFailed,
            3 => Diag::NeighborSignaledDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdministrativelyDown,
            8 => Diag::ReverseConcatenatedPathDown,
            other => Diag::Reserved(other),
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diag::None => f.write_str("no diagnostic"),
            Diag::ControlDetectionTimeExpired => f.write_str("control detection time expired"),
            Diag::EchoFunctionFailed => f.write_str("echo function failed"),
            Diag::NeighborSignaledDown => f.write_str("neighbor signaled session down"),
            Diag::ForwardingPlaneReset => f.write_str("forwarding plane reset"),
            Diag::PathDown => f.write_str("path down"),
            Diag::ConcatenatedPathDown => f.write_str("concatenated path down"),
            Diag::AdministrativelyDown => f.write_str("administratively down"),
            Diag::ReverseConcatenatedPathDown => f.write_str("reverse concatenated path down"),
            Diag::Reserved(c) => write!(f, "diagnostic {c}"),
        }
    }
}

/// One Control packet (the mandatory section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    pub diag: Diag,
    pub state: State,
    /// P: the sender asks for a Final (a parameter change).
    pub poll: bool,
    /// F: the answer to a Poll.
    pub final_: bool,
    /// C: the sender's BFD is independent of its control plane.
    pub control_plane_independent: bool,
    /// D: demand mode (not used by ferrolb; kept as read).
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    /// Desired Min TX Interval.
    pub desired_min_tx: Duration,
    /// Required Min RX Interval.
    pub required_min_rx: Duration,
    /// Required Min Echo RX Interval (0: the sender loops no echo packets).
    pub required_min_echo_rx: Duration,
}

/// Why bytes are not a Control packet we accept (RFC 5880 6.8.6: each is discarded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} bytes: shorter than a Control packet")]
    Short(usize),
    #[error("version {0}: only version 1 exists")]
    Version(u8),
    #[error("length field {field} does not fit the {got} bytes received (at least 24)")]
    Length { field: u8, got: usize },
    #[error("authentication present: not supported")]
    Authenticated,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("detect multiplier 0")]
    ZeroDetectMult,
    #[error("my discriminator 0")]
    ZeroMyDiscriminator,
    #[error("your discriminator 0 in state {0}")]
    ZeroYourDiscriminator(State),
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Control {
    /// The packet's bytes.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = (VERSION << 5) | self.diag.code();
        b[1] = (self.state.bits() << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.control_plane_independent) << 3)
            | (u8::from(self.demand) << 1);
        b[2] = self.detect_mult;
        b[3] = LEN as u8;
        b[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        b[12..16].copy_from_slice(&micros(self.desired_min_tx).to_be_bytes());
        b[16..20].copy_from_slice(&micros(self.required_min_rx).to_be_bytes());
        b[20..24].copy_from_slice(&micros(self.required_min_echo_rx).to_be_bytes());
        b
    }

    /// Reads a packet, applying the checks RFC 5880 6.8.6 makes before any session is looked
    /// up. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Control, DecodeError> {
        if bytes.len() < LEN {
            return Err(DecodeError::Short(bytes.len()));
        }
        let version = bytes[0] >> 5;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let length = bytes[3];
        if usize::from(length) < LEN || usize::from(length) > bytes.len() {
            return Err(DecodeError::Length {
                field: length,
                got: bytes.len(),
            });
        }
        let flags = bytes[1];
        if flags & 0x04 != 0 {
            return Err(DecodeError::Authenticated);
        }
        if flags & 0x01 != 0 {
            return Err(DecodeError::Multipoint);
        }
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let state = State::from_bits(flags >> 6);
        let c = Control {
            diag: Diag::from_code(bytes[0]),
            state,
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult: bytes[2],
            my_discriminator: word(4),
            your_discriminator: word(8),
            desired_min_tx: Duration::from_micros(u64::from(word(12))),
            required_min_rx: Duration::from_micros(u64::from(word(16))),
            required_min_echo_rx: Duration::from_micros(u64::from(word(20))),
        };
        if c.detect_mult == 0 {
            return Err(DecodeError::ZeroDetectMult);
        }
        if c.my_discriminator == 0 {
            return Err(DecodeError::ZeroMyDiscriminator);
        }
        if c.your_discriminator == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(DecodeError::ZeroYourDiscriminator(state));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Control {
        Control {
            diag: Diag::ControlDetectionTimeExpired,
            state: State::Up,
            poll: true,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 7,
            your_discriminator: 9,
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            required_min_echo_rx: Duration::ZERO,
        }
    }

    #[test]
    fn encodes_the_rfc_layout() {
        let b = sample().encode();
        assert_eq!(b[0], 0x21, "version 1, diag 1");
        assert_eq!(b[1], 0xe0, "state Up (3) and P");
        assert_eq!(b[2], 3);
        assert_eq!(b[3], 24);
        assert_eq!(&b[4..8], &[0, 0, 0, 7]);
        assert_eq!(&b[12..16], &300_000u32.to_be_bytes());
        assert_eq!(Control::decode(&b), Ok(sample()));
    }

    #[test]
    fn refuses_what_rfc_5880_discards() {
        let good = sample().encode();
        let with = |f: &dyn Fn(&mut [u8; LEN])| {
            let mut b = good;
            f(&mut b);
            Control::decode(&b)
        };
        assert_eq!(Control::decode(&good[..23]), Err(DecodeError::Short(23)));
        assert_eq!(with(&|b| b[0] = 0x41), Err(DecodeError::Version(2)));
        assert_eq!(
            with(&|b| b[3] = 30),
            Err(DecodeError::Length { field: 30, got: 24 })
        );
        assert_eq!(with(&|b| b[1] |= 0x04), Err(DecodeError::Authenticated));
        assert_eq!(with(&|b| b[1] |= 0x01), Err(DecodeError::Multipoint));
        assert_eq!(with(&|b| b[2] = 0), Err(DecodeError::ZeroDetectMult));
        assert_eq!(
            with(&|b| b[4..8].copy_from_slice(&[0; 4])),
            Err(DecodeError::ZeroMyDiscriminator)
        );
        assert_eq!(
            with(&|b| b[8..12].copy_from_slice(&[0; 4])),
            Err(DecodeError::ZeroYourDiscriminator(State::Up))
        );
        // Your discriminator 0 is fine while the sender is Down (it does not know ours yet).
        assert!(
            with(&|b| {
                b[8..12].copy_from_slice(&[0; 4]);
                b[1] = 0x40;
            })
            .is_ok()
        );
        // A longer packet (a length field below what was read) is fine: trailing bytes ignored.
        let mut long = good.to_vec();
        long.extend_from_slice(&[0; 8]);
        assert_eq!(Control::decode(&long), Ok(sample()));
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(c) = Control::decode(&bytes) {
                prop_assert_eq!(Control::decode(&c.encode()), Ok(c));
            }
        }
    }
}
