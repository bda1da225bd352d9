//! Value syntaxes BuildKit takes from Go libraries: `go-units.RAMInBytes` and
//! `go-csvvalue.Fields` (`time.ParseDuration` is [`crate::duration`]). Written here to match them exactly; no crate
//! parses Go's syntax.

use std::borrow::Cow;

use crate::dockerfile::parser::{find_byte, go_quote};

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

/// `go-csvvalue.Fields`: one CSV record, `""` escaping a quote inside a quoted field. Unquoted
/// fields are borrowed from the input.
pub(crate) fn csv_fields(input: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let line = input.strip_suffix("\r\n").or_else(|| input.strip_suffix('\n')).unwrap_or(input);
    if line.is_empty() {
        return Err("EOF".into());
    }
    let mut fields: Vec<Cow<'_, str>> = Vec::new();
    let mut rest = line;
    let mut pos = 0usize;
    loop {
        if !rest.starts_with('"') {
            let (field, more) = match find_byte(rest, b',') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            if let Some(j) = find_byte(field, b'"') {
                return Err(format!("parse error on line 1, column {}: bare \" in non-quoted-field", pos + j + 1));
            }
            fields.push(Cow::Borrowed(field));
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
            let Some(i) = find_byte(rest, b'"') else {
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
                fields.push(Cow::Owned(std::mem::take(&mut field)));
                rest = r;
                pos += 1;
                break;
            } else if rest.is_empty() {
                fields.push(Cow::Owned(field));
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
