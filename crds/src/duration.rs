//! Go-style durations as users write them in every weft resource (`250ms`, `10s`, `1m30s`, `1.5h`, `48h`):
//! the grammar of [`crate::DURATION_PATTERN`], read with checked arithmetic so that no input can overflow
//! or panic. The operator reads spec fields and its own flags with it.

use std::time::Duration;

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration like 250ms, 10s, 1m30s or 1.5h")]
    Syntax(String),
    #[error("{0:?} is too long a duration")]
    Overflow(String),
}

/// Parses one or more `<digits>[.<digits>]<unit>` with unit `ms`, `s`, `m` or `h`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(text.to_string());
    let overflow = || DurationError::Overflow(text.to_string());
    if text.is_empty() {
        return Err(syntax());
    }
    let mut total_nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(syntax)?;
        let (number, tail) = rest.split_at(number_len);
        let (unit_nanos, unit_len): (u128, usize) = if tail.starts_with("ms") {
            (1_000_000, 2)
        } else if tail.starts_with('s') {
            (1_000_000_000, 1)
        } else if tail.starts_with('m') {
            (60_000_000_000, 1)
        } else if tail.starts_with('h') {
            (3_600_000_000_000, 1)
        } else {
            return Err(syntax());
        };
        rest = &tail[unit_len..];

        let (whole, fraction) = match number.split_once('.') {
            Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
            Some(_) => return Err(syntax()),
            None => (number, ""),
        };
        if whole.is_empty() || fraction.contains('.') {
            return Err(syntax());
        }
        let mut nanos = digits_value(whole)
            .ok_or_else(overflow)?
            .checked_mul(unit_nanos)
            .ok_or_else(overflow)?;
        // Fractions below a nanosecond are dropped, as Go does.
        let mut scale = unit_nanos;
        for digit in fraction.bytes() {
            scale /= 10;
            nanos = nanos
                .checked_add(u128::from(digit - b'0') * scale)
                .ok_or_else(overflow)?;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(overflow)?;
    }
    let nanos = u64::try_from(total_nanos).map_err(|_| overflow())?;
    Ok(Duration::from_nanos(nanos))
}

/// The value of a string of ASCII digits, or `None` when it does not fit.
fn digits_value(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |value, digit| {
        value.checked_mul(10)?.checked_add(u128::from(digit - b'0'))
    })
}

/// Formats a duration the way a spec writes it (`48h`, `1h30m`, `15s`, `250ms`), for messages.
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
    fn reads_every_unit_and_combinations() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0.25s"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_malformed_text() {
        for text in [
            "", "10", "s", "10x", "1.s", ".5s", "1..5s", "-1s", "1 s", "10sec", "1.2.3s",
        ] {
            assert!(
                matches!(parse(text), Err(DurationError::Syntax(_))),
                "{text:?} was accepted"
            );
        }
    }

    #[test]
    fn formats_for_humans() {
        assert_eq!(format(Duration::from_secs(48 * 3600)), "48h");
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_millis(15_250)), "15s250ms");
        assert_eq!(format(Duration::ZERO), "0s");
    }

    #[test]
    fn parses_what_the_schema_pattern_admits_and_nothing_else() {
        let pattern = regex_lite_match;
        for text in ["48h", "1h30m", "1.5h", "500ms", "0.25s", "8760h", "2m3s"] {
            assert!(pattern(text) && parse(text).is_ok(), "{text:?}");
        }
        for text in ["", "10", "h", "10d", "1.h", ".5h", "-1h", "1 h"] {
            assert!(!pattern(text) && parse(text).is_err(), "{text:?}");
        }
    }

    /// The schema's pattern, `^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`, by hand (no regex dependency).
    fn regex_lite_match(text: &str) -> bool {
        let mut rest = text;
        if rest.is_empty() {
            return false;
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return false;
            }
            rest = &rest[digits..];
            if let Some(after_dot) = rest.strip_prefix('.') {
                let fraction = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                if fraction == 0 {
                    return false;
                }
                rest = &after_dot[fraction..];
            }
            rest = match ["ms", "s", "m", "h"].iter().find(|u| rest.starts_with(**u)) {
                Some(unit) => &rest[unit.len()..],
                None => return false,
            };
        }
        true
    }

    #[test]
    fn rejects_overflow_without_panicking() {
        let huge = format!("{}h", "9".repeat(40));
        assert!(matches!(parse(&huge), Err(DurationError::Overflow(_))));
        assert!(matches!(
            parse("9999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }
}
