//! Ethernet MAC addresses.

use std::fmt;
use std::str::FromStr;

/// A 48-bit MAC address; displays as lowercase `aa:bb:cc:dd:ee:ff`, parses any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// The error of parsing a [`MacAddr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address: {0:?}")]
pub struct BadMac(pub String);

impl FromStr for MacAddr {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.trim().split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(|| BadMac(s.to_string()))?;
            if part.is_empty() || part.len() > 2 {
                return Err(BadMac(s.to_string()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| BadMac(s.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(BadMac(s.to_string()));
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let mac: MacAddr = "7A:9D:e8:fd:b7:85".parse().unwrap();
        assert_eq!(mac.to_string(), "7a:9d:e8:fd:b7:85");
        assert!("7a:9d:e8:fd:b7".parse::<MacAddr>().is_err());
        assert!("7a:9d:e8:fd:b7:85:00".parse::<MacAddr>().is_err());
        assert!("zz:9d:e8:fd:b7:85".parse::<MacAddr>().is_err());
    }
}
