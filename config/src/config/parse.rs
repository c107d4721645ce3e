//! Parsers for the string-typed fields: address entries, durations and communities.
//! Each returns the [`Reason`] a config error should carry.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::error::Reason;
use super::model::{CommunityValue, IpRange};

/// Parses one `IPAddressPool.spec.addresses` entry: a CIDR or an inclusive `start-end` range
/// (spaces around the addresses allowed, as MetalLB allows them).
pub fn address_entry(entry: &str) -> Result<IpRange, Reason> {
    let invalid = |detail: &str| Reason::InvalidAddress {
        value: entry.to_string(),
        detail: detail.to_string(),
    };
    if let Some((start, end)) = entry.split_once('-') {
        let (start, end) = (start.trim(), end.trim());
        let first: IpAddr = start
            .parse()
            .map_err(|_| invalid("the range start is not an IP address"))?;
        let last: IpAddr = end
            .parse()
            .map_err(|_| invalid("the range end is not an IP address"))?;
        if first.is_ipv4() != last.is_ipv4() {
            return Err(Reason::RangeMixedFamilies {
                start: start.into(),
                end: end.into(),
            });
        }
        return IpRange::new(first, last).ok_or_else(|| Reason::RangeStartAfterEnd {
            start: start.into(),
            end: end.into(),
        });
    }
    let net: IpNet = entry
        .trim()
        .parse()
        .map_err(|_| invalid("not a CIDR such as 10.0.0.0/24"))?;
    Ok(IpRange::from_net(net))
}

/// Parses a Go `time.ParseDuration` string as `metav1.Duration` stores it (`90s`, `1m30s`, `1.5h`, `0`).
pub fn duration(text: &str) -> Result<Duration, Reason> {
    let invalid = || Reason::InvalidDuration {
        value: text.to_string(),
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

/// Parses a literal community: `a:b` (16-bit halves) or `large:a:b:c` (32-bit parts).
/// Returns `Ok(None)` for something that can only be an alias name.
pub fn community_literal(text: &str) -> Result<Option<CommunityValue>, Reason> {
    let invalid = |detail: &str| Reason::InvalidCommunity {
        value: text.to_string(),
        detail: detail.to_string(),
    };
    if let Some(large) = text.strip_prefix("large:") {
        let parts: Vec<&str> = large.split(':').collect();
        let [a, b, c] = parts.as_slice() else {
            return Err(invalid("a large community has three parts: large:a:b:c"));
        };
        let part = |p: &str| {
            p.parse::<u32>()
                .map_err(|_| invalid("each large community part is a number from 0 to 4294967295"))
        };
        return Ok(Some(CommunityValue::Large(part(a)?, part(b)?, part(c)?)));
    }
    if !text.contains(':') {
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        return Ok(None);
    }
    let parts: Vec<&str> = text.split(':').collect();
    let [a, b] = parts.as_slice() else {
        return Err(invalid("a standard community has two parts: a:b"));
    };
    let half = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| invalid("each half of a standard community is a number from 0 to 65535"))
    };
    Ok(Some(CommunityValue::Standard(half(a)?, half(b)?)))
}

/// Whether Linux accepts `name` as an interface name.
pub fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains(char::is_whitespace)
        && !name.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_go_syntax() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("90s", Some(Duration::from_secs(90))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("1.5h", Some(Duration::from_secs(5400))),
            ("500ms", Some(Duration::from_millis(500))),
            ("0", Some(Duration::ZERO)),
            ("0s", Some(Duration::ZERO)),
            ("", None),
            ("90", None),
            ("s", None),
            ("1d", None),
            ("-5s", None),
            ("1..5s", None),
        ];
        for (text, want) in cases {
            assert_eq!(duration(text).ok(), *want, "{text:?}");
        }
    }

    #[test]
    fn address_entries() {
        let ok = address_entry("10.0.0.0/30").unwrap();
        assert_eq!(
            (ok.first().to_string(), ok.last().to_string()),
            ("10.0.0.0".into(), "10.0.0.3".into())
        );
        let r = address_entry("10.0.0.5 - 10.0.0.9").unwrap();
        assert_eq!(r.size(), 5);
        assert_eq!(address_entry("fd00::/64").unwrap().size(), 1u128 << 64);
        assert!(matches!(
            address_entry("10.0.0.9-10.0.0.5"),
            Err(Reason::RangeStartAfterEnd { .. })
        ));
        assert!(matches!(
            address_entry("10.0.0.1-fd00::1"),
            Err(Reason::RangeMixedFamilies { .. })
        ));
        assert!(matches!(
            address_entry("10.0.0.1"),
            Err(Reason::InvalidAddress { .. })
        ));
        assert!(matches!(
            address_entry("10.0.0.0/33"),
            Err(Reason::InvalidAddress { .. })
        ));
        assert!(matches!(
            address_entry("a-b-c"),
            Err(Reason::InvalidAddress { .. })
        ));
    }

    #[test]
    fn communities() {
        assert_eq!(
            community_literal("65000:100"),
            Ok(Some(CommunityValue::Standard(65000, 100)))
        );
        assert_eq!(
            community_literal("large:4200000000:1:2"),
            Ok(Some(CommunityValue::Large(4_200_000_000, 1, 2)))
        );
        assert_eq!(community_literal("no-export-alias"), Ok(None));
        for bad in ["65536:1", "1:2:3", "large:1:2", "large:1:2:x", "a:b", ""] {
            assert!(community_literal(bad).is_err(), "{bad:?}");
        }
    }
}
