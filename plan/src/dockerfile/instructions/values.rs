//! Value syntaxes BuildKit takes from Go libraries: `time.ParseDuration`,
//! `go-units.RAMInBytes` and `go-csvvalue.Fields`. Written here to match them exactly; no crate
//! parses Go's syntax.

use crate::dockerfile::parser::go_quote;

/// Go's `time.ParseDuration`, in nanoseconds.
pub(crate) fn parse_go_duration(input: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(input));
    let mut s = input;
    let mut neg = false;
    if let Some(c) = s.chars().next()
        && (c == '-' || c == '+')
    {
        neg = c == '-';
        s = &s[1..];
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let pre = int_end > 0;
        let mut v: u64 = 0;
        for d in s[..int_end].bytes() {
            if v > (LIMIT - 1) / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(d - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
        }
        s = &s[int_end..];
        let mut frac: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if let Some(rest) = s.strip_prefix('.') {
            let frac_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            post = frac_end > 0;
            let mut overflow = false;
            for d in rest[..frac_end].bytes() {
                if overflow {
                    continue;
                }
                if frac > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = frac * 10 + u64::from(d - b'0');
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                frac = y;
                scale *= 10.0;
            }
            s = &rest[frac_end..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        let unit_end = s.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(s.len());
        let unit_str = &s[..unit_end];
        if unit_str.is_empty() {
            return Err(format!("time: missing unit in duration {}", go_quote(input)));
        }
        let unit: u64 = match unit_str {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!("time: unknown unit {} in duration {}", go_quote(unit_str), go_quote(input)));
            }
        };
        s = &s[unit_end..];
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if frac > 0 {
            // Go truncates the fractional part through float64 the same way.
            v += (frac as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total += v;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        return Ok((total as i128).wrapping_neg() as i64);
    }
    if total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(total as i64)
}

/// `go-units.RAMInBytes`: `64m`, `1.5GiB`, `512 kb`, `100` (binary multiples).
pub(crate) fn ram_in_bytes(size: &str) -> Result<i64, String> {
    let (num, sfx) = match size.split_once(' ') {
        Some(parts) => parts,
        None => {
            let Some(sep) = size.rfind(|c: char| c.is_ascii_digit() || c == '.') else {
                return Err(format!("invalid size: '{size}'"));
            };
            (&size[..=sep], &size[sep + 1..])
        }
    };
    let value: f64 = num
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| format!("strconv.ParseFloat: parsing {}: invalid syntax", go_quote(num)))?;
    if value < 0.0 {
        return Err(format!("invalid size: '{size}'"));
    }
    if sfx.is_empty() {
        return Ok(value as i64);
    }
    let bad = |s: &str| format!("invalid suffix: '{s}'");
    if sfx.len() > 3 {
        return Err(bad(sfx));
    }
    let lower = sfx.to_lowercase();
    let bytes = lower.as_bytes();
    if bytes[0] == b'b' {
        return if bytes.len() > 1 { Err(bad(&lower)) } else { Ok(value as i64) };
    }
    let mul: f64 = match bytes[0] {
        b'k' => 1024.0,
        b'm' => 1024.0 * 1024.0,
        b'g' => 1024.0 * 1024.0 * 1024.0,
        b't' => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        b'p' => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad(&lower)),
    };
    if (bytes.len() == 2 && bytes[1] != b'b') || (bytes.len() == 3 && &lower[1..] != "ib") {
        return Err(bad(&lower));
    }
    Ok((value * mul) as i64)
}

/// `go-csvvalue.Fields`: one CSV record, `""` escaping a quote inside a quoted field.
pub(crate) fn csv_fields(input: &str) -> Result<Vec<String>, String> {
    let line = input.strip_suffix("\r\n").or_else(|| input.strip_suffix('\n')).unwrap_or(input);
    if line.is_empty() {
        return Err("EOF".into());
    }
    let mut fields: Vec<String> = Vec::new();
    let mut rest = line;
    let mut pos = 0usize;
    loop {
        if !rest.starts_with('"') {
            let (field, more) = match rest.find(',') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            if let Some(j) = field.find('"') {
                return Err(format!("parse error on line 1, column {}: bare \" in non-quoted-field", pos + j + 1));
            }
            fields.push(field.to_owned());
            match more {
                Some(m) => {
                    pos += field.len() + 1;
                    rest = m;
                    continue;
                }
                None => return Ok(fields),
            }
        }
        rest = &rest[1..];
        pos += 1;
        let mut field = String::new();
        loop {
            let Some(i) = rest.find('"') else {
                return Err(format!(
                    "parse error on line 1, column {}: extraneous or missing \" in quoted-field",
                    pos + 1
                ));
            };
            field.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            pos += i + 1;
            if let Some(r) = rest.strip_prefix('"') {
                field.push('"');
                rest = r;
                pos += 1;
            } else if let Some(r) = rest.strip_prefix(',') {
                fields.push(std::mem::take(&mut field));
                rest = r;
                pos += 1;
                break;
            } else if rest.is_empty() {
                fields.push(field);
                return Ok(fields);
            } else {
                return Err(format!("parse error on line 1, column {}: extraneous or missing \" in quoted-field", pos));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5s"), Ok(5_000_000_000));
        assert_eq!(parse_go_duration("1h2m3.5s"), Ok(3_723_500_000_000));
        assert_eq!(parse_go_duration("1.5ms"), Ok(1_500_000));
        assert_eq!(parse_go_duration("-2us"), Ok(-2_000));
        assert_eq!(parse_go_duration("3\u{b5}s"), Ok(3_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration(".5s"), Ok(500_000_000));
        assert_eq!(parse_go_duration("1"), Err("time: missing unit in duration \"1\"".into()));
        assert_eq!(parse_go_duration("3x"), Err("time: unknown unit \"x\" in duration \"3x\"".into()));
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("s").is_err());
        assert!(parse_go_duration("9999999999h").is_err());
        assert_eq!(parse_go_duration("2562047h47m16.854775807s"), Ok(i64::MAX));
    }

    #[test]
    fn ram_sizes() {
        assert_eq!(ram_in_bytes("64m"), Ok(64 << 20));
        assert_eq!(ram_in_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(ram_in_bytes("512 kb"), Ok(512 << 10));
        assert_eq!(ram_in_bytes("100"), Ok(100));
        assert_eq!(ram_in_bytes("10b"), Ok(10));
        assert!(ram_in_bytes("10x").is_err());
        assert!(ram_in_bytes("10mbb").is_err());
        assert!(ram_in_bytes("-1").is_err());
        assert!(ram_in_bytes("abc").is_err());
    }

    #[test]
    fn csv_records() {
        assert_eq!(csv_fields("a,b=c,,d").unwrap(), ["a", "b=c", "", "d"]);
        assert_eq!(csv_fields("\"a,b\",c").unwrap(), ["a,b", "c"]);
        assert_eq!(csv_fields("\"say \"\"hi\"\"\"").unwrap(), ["say \"hi\""]);
        assert!(csv_fields("").is_err());
        assert!(csv_fields("a\"b").is_err());
        assert!(csv_fields("\"ab").is_err());
        assert!(csv_fields("\"a\"b").is_err());
    }
}
