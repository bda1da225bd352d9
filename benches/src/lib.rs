//! Paths the benchmarks share: the repository's fixtures and the conformance corpora.
//!
//! ```
//! assert!(nullspace_benches::fixture("dockerfiles/large-1000.Dockerfile").is_file());
//! ```

use std::path::{Path, PathBuf};

/// A file under the repository's `fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(relative)
}

/// The conformance corpora: `NULLSPACE_CONFORMANCE_DIR`, or `../shared/conformance` beside the
/// repository.
pub fn conformance_dir() -> PathBuf {
    std::env::var_os("NULLSPACE_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"))
}

/// Writes a deterministic tree of `files` files totalling about `bytes` bytes under `dir`
/// (skipped when `dir/.complete` records the same shape), for layer-creation benchmarks.
///
/// The mix resembles a source tree with a few large assets: 99.5 % of the files are small
/// (0–16 KiB) text of words from a fixed vocabulary (compressible, like code), the rest share
/// the remaining bytes half as text, half as pseudo-random data (incompressible, like images or
/// wheels). Files are spread over nested directories, 50 per directory. The same arguments
/// always give the same bytes (an xorshift generator with a fixed seed).
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let total = nullspace_benches::generate_tree(dir.path(), 200, 2_000_000)?;
/// assert!(total > 1_000_000 && total < 3_000_000, "{total}");
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// Any I/O error writing the tree.
pub fn generate_tree(dir: &Path, files: usize, bytes: u64) -> std::io::Result<u64> {
    use std::io::Write as _;
    let stamp = format!("{files} {bytes} v1\n");
    let marker = dir.join(".complete");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(stamp.as_str()) {
        return tree_size(dir);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    const WORDS: &[&str] = &[
        "fn", "let", "mut", "self", "return", "impl", "struct", "pub", "use", "match", "Some", "None", "Ok", "Err",
        "import", "def", "class", "if", "else", "for", "in", "while", "value", "result", "config", "layer", "path",
        "buffer", "index", "error", "{", "}", "(", ")", ";", "=", "==", "->", "//", "0", "1", "42", "\n", "\n    ",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let large = (files / 200).max(1);
    let small = files.saturating_sub(large);
    let small_bytes = small as u64 * 8 * 1024;
    let large_each = bytes.saturating_sub(small_bytes) / large as u64;
    let step = (files / large).max(1);
    let mut total = 0;
    let mut buf = Vec::new();
    for i in 0..files {
        let sub = dir.join(format!("d{:02}/s{:03}", i / 2500, (i / 50) % 50));
        std::fs::create_dir_all(&sub)?;
        let (size, random) =
            if i % step == 0 { (large_each, (i / step) % 2 == 1) } else { (next() % (16 * 1024), false) };
        buf.clear();
        if random {
            while (buf.len() as u64) < size {
                buf.extend_from_slice(&next().to_le_bytes());
            }
        } else {
            while (buf.len() as u64) < size {
                buf.extend_from_slice(WORDS[(next() % WORDS.len() as u64) as usize].as_bytes());
                buf.push(b' ');
            }
        }
        buf.truncate(size as usize);
        let name = if random { format!("f{i:05}.bin") } else { format!("f{i:05}.txt") };
        std::fs::File::create(sub.join(name))?.write_all(&buf)?;
        total += size;
    }
    std::fs::write(marker, stamp)?;
    Ok(total)
}

/// Bytes in the regular files under `dir`.
fn tree_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                total += e.metadata()?.len();
            }
        }
    }
    Ok(total)
}

/// The busybox fixture layout (tag `busybox`), built by `fixtures/busybox/build.sh` into the
/// target directory on first use.
///
/// # Errors
/// If the script cannot run or fails.
pub fn busybox_fixture() -> std::io::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-fixtures/busybox-oci");
    std::fs::create_dir_all(dir.parent().unwrap_or(Path::new(".")))?;
    let status = std::process::Command::new("bash").arg(fixture("busybox/build.sh")).arg(&dir).status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!("fixtures/busybox/build.sh failed: {status}")));
    }
    Ok(dir)
}
