//! A minimal, deterministic tar header writer (ustar + PAX extended headers).
//!
//! Our own code rather than the `tar` crate's builder: that builder falls back to GNU long-name
//! records and binary number fields, while OCI layers are conventionally ustar with PAX records
//! (what Go's `archive/tar` writes), and every field here must come from the caller alone so
//! the bytes are identical on any machine.

use std::io::{self, Write};

/// Size of one tar block.
pub(crate) const BLOCK: usize = 512;

/// Name given to PAX extended header entries; readers ignore it.
const PAX_NAME: &[u8] = b"PaxHeader";

/// Largest value of an 8-byte octal field (7 digits).
const MAX_OCTAL_8: u64 = 0o7_777_777;
/// Largest value of a 12-byte octal field (11 digits).
const MAX_OCTAL_12: u64 = 0o77_777_777_777;

/// Everything that goes into one entry's header.
#[derive(Debug, Clone, Default)]
pub(crate) struct Header {
    pub path: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: u64,
    pub linkname: Vec<u8>,
    pub devmajor: u32,
    pub devminor: u32,
}

/// Writes `header` (preceded by a PAX header when a field does not fit ustar).
pub(crate) fn write_header<W: Write>(w: &mut W, h: &Header) -> io::Result<()> {
    let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
    let split = split_ustar_path(&h.path);
    if split.is_none() {
        pax.push(("path", h.path.clone()));
    }
    if h.linkname.len() > 100 || !h.linkname.is_ascii() {
        pax.push(("linkpath", h.linkname.clone()));
    }
    if h.size > MAX_OCTAL_12 {
        pax.push(("size", h.size.to_string().into_bytes()));
    }
    if h.uid > MAX_OCTAL_8 {
        pax.push(("uid", h.uid.to_string().into_bytes()));
    }
    if h.gid > MAX_OCTAL_8 {
        pax.push(("gid", h.gid.to_string().into_bytes()));
    }
    if h.mtime > MAX_OCTAL_12 {
        pax.push(("mtime", h.mtime.to_string().into_bytes()));
    }
    if !pax.is_empty() {
        // Keys in a fixed order keep the bytes stable.
        pax.sort_by(|a, b| a.0.cmp(b.0));
        let mut records = Vec::new();
        for (key, value) in &pax {
            records.extend_from_slice(&pax_record(key, value));
        }
        let xh = Header {
            path: PAX_NAME.to_vec(),
            typeflag: b'x',
            mode: 0o644,
            size: records.len() as u64,
            mtime: h.mtime.min(MAX_OCTAL_12),
            ..Header::default()
        };
        w.write_all(&encode_block(&xh, Some((&[], PAX_NAME))))?;
        w.write_all(&records)?;
        write_padding(w, records.len() as u64)?;
    }
    let (prefix, name): (&[u8], &[u8]) = match split {
        Some(parts) => parts,
        // The PAX record carries the real path; keep a truncated copy for old readers.
        None => (&[], &h.path[..h.path.len().min(100)]),
    };
    w.write_all(&encode_block(h, Some((prefix, name))))
}

/// Pads the data of an entry of `size` bytes to a whole block.
pub(crate) fn write_padding<W: Write>(w: &mut W, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        w.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

/// Writes the two zero blocks that end an archive.
pub(crate) fn write_end<W: Write>(w: &mut W) -> io::Result<()> {
    w.write_all(&[0u8; 2 * BLOCK])
}

/// One `"%d key=value\n"` record, whose length counts its own digits.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut len = base + digits(base);
    if digits(len) != digits(base) {
        len = base + digits(len);
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

fn digits(n: usize) -> usize {
    n.to_string().len()
}

/// Splits a path into ustar's prefix (155 bytes) and name (100 bytes), if it fits and is ASCII.
fn split_ustar_path(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if !path.is_ascii() || path.contains(&0) {
        return None;
    }
    if path.len() <= 100 {
        return Some((&[], path));
    }
    // The split slash is dropped; pick the leftmost one that makes the name fit.
    let min_slash = path.len().saturating_sub(101);
    (min_slash..path.len().min(156))
        .find(|&i| path[i] == b'/' && i <= 155 && path.len() - i - 1 <= 100 && i + 1 < path.len())
        .map(|i| (&path[..i], &path[i + 1..]))
}

fn put_octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    let bytes = text.as_bytes();
    // Values were checked against the field width; clamp defensively so a bug cannot overflow.
    let start = bytes.len().saturating_sub(width);
    field[..width].copy_from_slice(&bytes[start..]);
    field[width] = 0;
}

fn encode_block(h: &Header, split: Option<(&[u8], &[u8])>) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    let (prefix, name) = split.unwrap_or((&[], &[]));
    b[..name.len()].copy_from_slice(name);
    put_octal(&mut b[100..108], u64::from(h.mode & 0o7777));
    put_octal(&mut b[108..116], h.uid.min(MAX_OCTAL_8));
    put_octal(&mut b[116..124], h.gid.min(MAX_OCTAL_8));
    put_octal(&mut b[124..136], if h.size > MAX_OCTAL_12 { 0 } else { h.size });
    put_octal(&mut b[136..148], h.mtime.min(MAX_OCTAL_12));
    b[156] = h.typeflag;
    let link = &h.linkname[..h.linkname.len().min(100)];
    b[157..157 + link.len()].copy_from_slice(link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    put_octal(&mut b[329..337], u64::from(h.devmajor).min(MAX_OCTAL_8));
    put_octal(&mut b[337..345], u64::from(h.devminor).min(MAX_OCTAL_8));
    b[345..345 + prefix.len()].copy_from_slice(prefix);
    b[148..156].fill(b' ');
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    put_octal(&mut b[148..155], sum);
    b[155] = b' ';
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for (k, v) in [("path", 5usize), ("path", 92), ("path", 93), ("path", 994), ("path", 995)] {
            let rec = pax_record(k, &vec![b'a'; v]);
            let text = String::from_utf8(rec.clone()).unwrap();
            let declared: usize = text.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(declared, rec.len(), "{k} {v}");
        }
    }

    #[test]
    fn long_paths_split_or_use_pax() {
        let p = format!("{}/{}", "d".repeat(150), "f".repeat(99));
        let (pre, name) = split_ustar_path(p.as_bytes()).unwrap();
        assert_eq!(pre.len(), 150);
        assert_eq!(name.len(), 99);
        assert!(split_ustar_path("x".repeat(101).as_bytes()).is_none());
        assert!(split_ustar_path("é".as_bytes()).is_none());
    }
}
