//! Human durations (`100ms`, `30s`, `5m`, `1h`, `1m30s`, `1.5s`) for config values and flags.

use std::time::Duration;

/// What a duration may look like, for error messages.
pub const DURATION_HELP: &str =
    "expected a number with a unit (ms, s, m, h), e.g. 100ms, 30s, 1m30s";

/// Parse a duration made of one or more `<number><unit>` parts. Bare numbers are rejected: a
/// config that says `interval: 30` is ambiguous.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("empty duration: {DURATION_HELP}"));
    }
    let bad = || format!("invalid duration {text:?}: {DURATION_HELP}");
    let mut total = 0.0_f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "us" | "µs" => 1e-6,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += value * factor;
    }
    if !total.is_finite() || total > 1e9 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Format a duration the way a config would write it (`1.5s`, `100ms`, `30s`, `5m`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !d.as_nanos().is_multiple_of(1_000_000) {
        format!("{}us", d.as_micros())
    } else if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Serialize a `Duration` as float seconds (for `/config` and `--json`).
pub mod serde_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 250us "), Ok(Duration::from_micros(250)));
    }

    #[test]
    fn rejects_bare_numbers_and_unknown_units() {
        for bad in ["30", "", "10 parsecs", "s", "1.2.3s", "-1s", "1d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(
            parse_duration("10 parsecs")
                .unwrap_err()
                .contains("expected a number with a unit")
        );
    }

    #[test]
    fn formats_round_trip() {
        for s in ["100ms", "30s", "5m", "1h", "1500ms", "250us"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
