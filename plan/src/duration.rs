//! Go's `time.ParseDuration` syntax (`300ms`, `1.5h`, `2h45m`), which Dockerfile HEALTHCHECK flags
//! and ready checks use. Our own: no crate parses exactly Go's grammar.

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {reason}")]
pub struct DurationError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a Go duration into signed nanoseconds.
///
/// ```
/// use nullspace_plan::duration::parse_go_duration;
/// assert_eq!(parse_go_duration("1m30s").unwrap(), 90_000_000_000);
/// assert_eq!(parse_go_duration("1.5ms").unwrap(), 1_500_000);
/// assert_eq!(parse_go_duration("0").unwrap(), 0);
/// assert!(parse_go_duration("10").is_err());
/// assert!(parse_go_duration("5 s").is_err());
/// ```
pub fn parse_go_duration(input: &str) -> Result<i64, DurationError> {
    let err = |reason| DurationError { input: input.to_string(), reason };
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(after) => {
                let frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(frac_len)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err("expected a number"));
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(err("missing unit"));
        }
        let scale = UNITS.iter().find(|(name, _)| *name == unit).map(|(_, s)| *s).ok_or_else(|| err("unknown unit"))?;
        let whole: u128 =
            if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| err("number too large"))? };
        let mut value = whole.checked_mul(scale).ok_or_else(|| err("overflow"))?;
        let mut divisor = 1u128;
        let mut fraction = 0u128;
        for digit in frac_part.bytes().take(18) {
            fraction = fraction * 10 + u128::from(digit - b'0');
            divisor *= 10;
        }
        value += fraction * scale / divisor;
        total = total.checked_add(value).ok_or_else(|| err("overflow"))?;
        if total > i64::MAX as u128 {
            return Err(err("overflow"));
        }
        rest = after;
    }
    let total = total as i64;
    Ok(if negative { -total } else { total })
}
