//! Reading an ignore file (moby/patternmatcher's `ignorefile.ReadAll`) and choosing which one
//! applies to a build (BuildKit's dockerui: `<Dockerfile>.dockerignore` beside the Dockerfile
//! wins over the context's `.dockerignore`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::gostr;

/// Go's `bufio.Scanner` refuses a line (with its `\r`, without its `\n`) this long or longer.
const MAX_LINE: usize = 64 * 1024;

/// Why an ignore file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreFileError {
    /// A line is too long for Go's line scanner, so Docker refuses the whole file.
    #[error("line {line} is {len} bytes long; Docker refuses ignore-file lines of {MAX_LINE} bytes or more")]
    LineTooLong {
        /// 1-based line number.
        line: usize,
        /// Length of the line in bytes.
        len: usize,
    },
    /// The file exists but could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The ignore file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Parses the contents of a `.dockerignore` file into patterns, as Docker does
/// (`ignorefile.ReadAll`):
///
/// - lines end at `\n` (a `\r` before it is dropped); a UTF-8 byte-order mark opening the file is
///   dropped;
/// - a line whose first byte is `#` is a comment (` #x`, with a space first, is the pattern `#x`);
/// - white space around a pattern, and after a leading `!`, is trimmed; empty lines are skipped;
/// - each pattern is cleaned (`filepath.Clean`: `a/./b/../c/` becomes `a/c`) and one leading `/`
///   is removed, keeping the `!` in front.
///
/// Patterns are bytes, because Docker does not require the file to be UTF-8.
///
/// ```
/// let patterns = nullspace_engine::context::ignore::read_all(b"# c\n  /build/  \n! ./keep//me\r\n")?;
/// assert_eq!(patterns, vec![b"build".to_vec(), b"!keep/me".to_vec()]);
/// # Ok::<(), nullspace_engine::context::ignore::IgnoreFileError>(())
/// ```
pub fn read_all(contents: &[u8]) -> Result<Vec<Vec<u8>>, IgnoreFileError> {
    let mut patterns = Vec::new();
    let contents = contents.strip_suffix(b"\n").unwrap_or(contents);
    if contents.is_empty() {
        return Ok(patterns);
    }
    for (index, raw) in contents.split(|&b| b == b'\n').enumerate() {
        if raw.len() >= MAX_LINE {
            return Err(IgnoreFileError::LineTooLong { line: index + 1, len: raw.len() });
        }
        let mut line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if index == 0 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.first() == Some(&b'#') {
            continue;
        }
        let mut pattern = gostr::trim_space(line);
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern[0] == b'!';
        if invert {
            pattern = gostr::trim_space(&pattern[1..]);
        }
        let mut out = Vec::with_capacity(pattern.len() + 1);
        if invert {
            out.push(b'!');
        }
        if !pattern.is_empty() {
            let cleaned = gostr::clean(pattern);
            let cleaned = match cleaned.as_slice() {
                [b'/', rest @ ..] if !rest.is_empty() => rest,
                all => all,
            };
            out.extend_from_slice(cleaned);
        }
        patterns.push(out);
    }
    Ok(patterns)
}

/// The ignore file that applies when building `context` with `dockerfile` (relative to
/// `context` unless absolute), as BuildKit chooses it: `<dir>/<name>.dockerignore` beside a
/// Dockerfile `<dir>/<name>` if that is a file (even an empty one), else `<context>/.dockerignore`
/// if that is a file, else none.
///
/// ```
/// use nullspace_engine::context::ignore::find_ignore_file;
/// let dir = tempfile::tempdir()?;
/// std::fs::create_dir(dir.path().join("docker"))?;
/// std::fs::write(dir.path().join(".dockerignore"), "*.log\n")?;
/// let df = std::path::Path::new("docker/app.Dockerfile");
/// assert_eq!(find_ignore_file(dir.path(), Some(df)), Some(dir.path().join(".dockerignore")));
/// std::fs::write(dir.path().join("docker/app.Dockerfile.dockerignore"), "")?;
/// assert_eq!(
///     find_ignore_file(dir.path(), Some(df)),
///     Some(dir.path().join("docker/app.Dockerfile.dockerignore"))
/// );
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn find_ignore_file(context: &Path, dockerfile: Option<&Path>) -> Option<PathBuf> {
    let beside_dockerfile = dockerfile.and_then(|dockerfile| {
        let dockerfile = context.join(dockerfile);
        let mut name: OsString = dockerfile.file_name()?.to_owned();
        name.push(".dockerignore");
        Some(dockerfile.with_file_name(name))
    });
    beside_dockerfile
        .into_iter()
        .chain(std::iter::once(context.join(".dockerignore")))
        .find(|candidate| candidate.is_file())
}

/// Reads and parses the ignore file at `path` (see [`read_all`]).
pub fn read_ignore_file(path: &Path) -> Result<Vec<Vec<u8>>, IgnoreFileError> {
    let contents = std::fs::read(path).map_err(|source| IgnoreFileError::Io { path: path.to_owned(), source })?;
    read_all(&contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(contents: &[u8]) -> Vec<String> {
        read_all(contents).expect("parses").iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect()
    }

    #[test]
    fn read_all_follows_ignorefile_tests() {
        // The expectations of moby/patternmatcher's ignorefile tests.
        let contents = b"test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! \n";
        assert_eq!(strings(contents), ["test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path", "!", "!"]);
    }

    #[test]
    fn comments_bom_and_crlf() {
        assert_eq!(strings(b"\xEF\xBB\xBF# comment\r\n #not-comment\r\nx\r\n"), ["#not-comment", "x"]);
        assert_eq!(strings(b"a\n\xEF\xBB\xBFb"), ["a", "\u{feff}b"], "a BOM is only dropped on the first line");
        assert_eq!(strings(b"/"), ["/"], "a lone / stays");
        assert_eq!(strings(b"./"), ["."]);
        assert_eq!(strings(b"a/../../b"), ["../b"]);
        assert!(strings(b"").is_empty());
        assert!(strings(b"\n\n   \n").is_empty());
    }

    #[test]
    fn very_long_line_is_refused() {
        let mut contents = b"ok\n".to_vec();
        contents.extend(std::iter::repeat_n(b'a', MAX_LINE));
        assert!(matches!(read_all(&contents), Err(IgnoreFileError::LineTooLong { line: 2, .. })));
        contents.truncate(3 + MAX_LINE - 1);
        assert_eq!(read_all(&contents).expect("fits").len(), 2);
    }
}
