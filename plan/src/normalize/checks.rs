//! Field checks shared by declarative and Dockerfile input.

use crate::duration::parse_go_duration;

/// Why a COPY/ADD source path may not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePathProblem {
    /// `/etc/passwd`.
    Absolute,
    /// `../secrets` (after cleaning).
    EscapesContext,
    /// Empty.
    Empty,
}

/// Checks a context source path lexically: relative, and not leaving the context after `..`
/// components are resolved.
pub fn check_source_path(path: &str) -> Result<(), SourcePathProblem> {
    if path.is_empty() {
        return Err(SourcePathProblem::Empty);
    }
    if path.starts_with('/') {
        return Err(SourcePathProblem::Absolute);
    }
    let mut depth: usize = 0;
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => depth = depth.checked_sub(1).ok_or(SourcePathProblem::EscapesContext)?,
            _ => depth += 1,
        }
    }
    Ok(())
}

/// An octal file mode such as `755` or `0644` (at most `07777`).
pub fn parse_octal_mode(mode: &str) -> Option<u32> {
    if mode.is_empty() || mode.len() > 5 {
        return None;
    }
    u32::from_str_radix(mode, 8).ok().filter(|m| *m <= 0o7777)
}

/// `user[:group]` where each part is a name or a numeric id.
pub fn valid_owner(owner: &str) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "_.-$".contains(c) || c == '{' || c == '}')
    };
    match owner.split_once(':') {
        Some((user, group)) => part_ok(user) && part_ok(group),
        None => part_ok(owner),
    }
}

/// A POSIX environment variable name.
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Debian package name (with an optional `=version` or `/release`), which also keeps it free
/// of shell syntax.
pub fn valid_apt_package(name: &str) -> bool {
    let (base, suffix) = match name.find(['=', '/']) {
        Some(i) => name.split_at(i),
        None => (name, ""),
    };
    let base_ok = base.len() >= 2
        && base.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && base.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.:".contains(c));
    let suffix_ok =
        suffix.chars().skip(1).all(|c| c.is_ascii_alphanumeric() || "+-.:~_".contains(c)) && suffix.len() != 1;
    base_ok && suffix_ok
}

/// A ready-check or build secret id: BuildKit allows letters, digits and `-_.`.
pub fn valid_secret_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// An `http`/`https` URL with a host and an optional valid port.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(inner) = host_port.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or("has an unterminated IPv6 address")?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("has no valid host");
    }
    if let Some(port) = port {
        match port.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => {}
            _ => return Err("has an invalid port"),
        }
    }
    if url.chars().any(char::is_whitespace) {
        return Err("contains whitespace");
    }
    Ok(())
}

/// A positive Go duration.
pub fn check_duration(duration: &str) -> Result<i64, String> {
    match parse_go_duration(duration) {
        Ok(ns) if ns > 0 => Ok(ns),
        Ok(_) => Err(format!("duration `{duration}` must be positive")),
        Err(e) => Err(e),
    }
}

/// Quotes a word for `/bin/sh` so that it reaches the command unchanged.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_.,:/=+@%^".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_paths() {
        assert_eq!(check_source_path("a/../b"), Ok(()));
        assert_eq!(check_source_path("./a/*.py"), Ok(()));
        assert_eq!(check_source_path("a/../../b"), Err(SourcePathProblem::EscapesContext));
        assert_eq!(check_source_path(".."), Err(SourcePathProblem::EscapesContext));
        assert_eq!(check_source_path("/etc"), Err(SourcePathProblem::Absolute));
        assert_eq!(check_source_path(""), Err(SourcePathProblem::Empty));
    }

    #[test]
    fn small_grammars() {
        assert_eq!(parse_octal_mode("0755"), Some(0o755));
        assert_eq!(parse_octal_mode("644"), Some(0o644));
        assert_eq!(parse_octal_mode("0999"), None);
        assert_eq!(parse_octal_mode("17777"), None);
        assert!(valid_owner("app:app") && valid_owner("1000") && !valid_owner("a:") && !valid_owner("a b"));
        assert!(valid_env_name("_A1") && !valid_env_name("1A") && !valid_env_name("A-B"));
        assert!(valid_apt_package("libssl3") && valid_apt_package("curl=7.88.1-10") && valid_apt_package("g++"));
        assert!(!valid_apt_package("curl; rm -rf /") && !valid_apt_package("Curl") && !valid_apt_package("a"));
        assert!(check_url("http://localhost:8080/health").is_ok());
        assert!(check_url("https://[::1]:443/").is_ok());
        assert!(
            check_url("ftp://x").is_err() && check_url("http://:80").is_err() && check_url("http://h:99999").is_err()
        );
        assert!(check_duration("10s").is_ok() && check_duration("0s").is_err() && check_duration("ten").is_err());
        assert_eq!(shell_quote("flask==3.0"), "flask==3.0");
        assert_eq!(shell_quote("numpy>=2"), "'numpy>=2'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
