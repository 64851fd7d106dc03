//! Go-style durations as users write them in the spec (`48h`, `1h30m`, `1.5h`, `500ms`), the same
//! grammar the CRD schema's pattern admits.

use std::time::Duration;

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration like 48h, 90m, 1h30m or 500ms: {why}")]
pub struct DurationError {
    pub text: String,
    pub why: &'static str,
}

/// Parses a sequence of `<number>[.<fraction>]<unit>` with units `ms`, `s`, `m`, `h`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let fail = |why| DurationError {
        text: text.to_string(),
        why,
    };
    if text.is_empty() {
        return Err(fail("empty"));
    }
    let mut total_nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| fail("missing unit (ms, s, m, h)"))?;
        let (number, tail) = rest.split_at(number_len);
        let (unit_nanos, unit_len): (u128, usize) = if tail.starts_with("ms") {
            (1_000_000, 2)
        } else if tail.starts_with('s') {
            (1_000_000_000, 1)
        } else if tail.starts_with('m') {
            (60 * 1_000_000_000, 1)
        } else if tail.starts_with('h') {
            (3600 * 1_000_000_000, 1)
        } else {
            return Err(fail("unknown unit (ms, s, m, h)"));
        };
        total_nanos = total_nanos
            .checked_add(scaled(number, unit_nanos).ok_or_else(|| fail("malformed number"))?)
            .ok_or_else(|| fail("too long"))?;
        rest = &tail[unit_len..];
    }
    let seconds = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| fail("too long"))?;
    // Below u32::MAX by construction of the remainder.
    let nanos = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(seconds, nanos))
}

/// `number` (digits, optionally `.digits`) times `unit_nanos`, exactly, in nanoseconds.
fn scaled(number: &str, unit_nanos: u128) -> Option<u128> {
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if number.contains('.')
        && (fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let whole: u128 = whole.parse().ok()?;
    let mut nanos = whole.checked_mul(unit_nanos)?;
    // Fractions finer than a nanosecond are dropped; 18 digits keep the arithmetic in range.
    let mut scale = unit_nanos;
    for digit in fraction.bytes().take(18) {
        scale /= 10;
        nanos = nanos.checked_add(u128::from(digit - b'0') * scale)?;
    }
    Some(nanos)
}

/// Formats a duration the way the spec writes it (`48h`, `1h30m`, `15s`, `250ms`), for messages.
pub fn format(duration: Duration) -> String {
    let total_ms = duration.as_millis();
    if total_ms == 0 {
        return "0s".to_string();
    }
    let hours = total_ms / 3_600_000;
    let minutes = (total_ms / 60_000) % 60;
    let seconds = (total_ms / 1000) % 60;
    let millis = total_ms % 1000;
    let mut out = String::new();
    for (value, unit) in [(hours, "h"), (minutes, "m"), (seconds, "s"), (millis, "ms")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_schema_admits() {
        assert_eq!(parse("48h"), Ok(Duration::from_secs(48 * 3600)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m3s"), Ok(Duration::from_secs(123)));
        assert_eq!(parse("0.25s"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("8760h"), Ok(Duration::from_secs(8760 * 3600)));
    }

    #[test]
    fn rejects_what_the_schema_rejects() {
        for bad in [
            "", "10", "h", "10d", "1.h", ".5h", "-1h", "1h-", "1 h", "5x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn rejects_overflow_instead_of_wrapping() {
        assert!(parse("99999999999999999999999999999999999999h").is_err());
    }

    #[test]
    fn formats_for_humans() {
        assert_eq!(format(Duration::from_secs(48 * 3600)), "48h");
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_millis(15_250)), "15s250ms");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
