//! Image references, parsed and normalized the way Docker's `distribution/reference` does
//! (`python:3.12` → `docker.io/library/python:3.12`), plus `oci:PATH[:TAG]` for an OCI image layout
//! on disk.
//!
//! Our own code: the grammar is small and the normalization rules (which first component is a
//! registry, the `library/` prefix, `latest` only when neither tag nor digest is given) must match
//! Docker's exactly.

use std::fmt;

/// The registry Docker Hub names resolve to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Nothing was given.
    #[error("image reference is empty")]
    Empty,
    /// The repository path holds upper-case letters.
    #[error("repository name `{0}` must be lowercase")]
    NotLowercase(String),
    /// The name is longer than Docker allows.
    #[error("repository name is longer than {MAX_NAME_LEN} characters")]
    NameTooLong,
    /// Something does not follow the grammar; the message says what.
    #[error("invalid reference format: {0}")]
    Invalid(String),
}

/// A registry image reference, normalized: the registry is always present, Docker Hub
/// official images carry `library/`, and a reference given with neither tag nor digest gets
/// `latest`.
///
/// ```
/// use nullspace_plan::reference::ImageRef;
/// let r: ImageRef = "python:3.12-slim".parse().unwrap();
/// assert_eq!(r.to_string(), "docker.io/library/python:3.12-slim");
/// let r: ImageRef = "localhost:5000/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".parse().unwrap();
/// assert_eq!(r.registry(), "localhost:5000");
/// assert_eq!(r.tag(), None);
/// assert!("Python:3".parse::<ImageRef>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// The registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry, e.g. `library/python`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was given (or `latest` when neither tag nor digest was).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:…`), if one was given.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image pinned to `digest` (the tag is kept for readability).
    pub fn with_digest(&self, digest: impl Into<String>) -> Self {
        Self { digest: Some(digest.into()), ..self.clone() }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest)?;
                (rest, Some(digest.to_string()))
            }
            None => (input, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                validate_tag(tag)?;
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::Invalid(format!("`{input}` has no repository name")));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong);
        }
        let (registry, path) = split_registry(name);
        validate_registry(registry, input)?;
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::NotLowercase(path.to_string()));
        }
        for component in path.split('/') {
            validate_path_component(component, input)?;
        }
        let registry = if registry == LEGACY_DEFAULT_REGISTRY { DEFAULT_REGISTRY } else { registry };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{path}")
        } else {
            path.to_string()
        };
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag,
        };
        Ok(Self { registry: registry.to_string(), repository, tag, digest })
    }
}

/// Docker's rule: the first component is a registry when it has a `.` or `:`, is `localhost`,
/// or holds upper-case letters (which a repository path may not).
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

fn validate_registry(registry: &str, input: &str) -> Result<(), ReferenceError> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || registry.starts_with('[') => (host, Some(port)),
        _ => (registry, None),
    };
    let bad = || ReferenceError::Invalid(format!("`{registry}` in `{input}` is not a valid registry host"));
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    if let Some(inner) = host.strip_prefix('[') {
        let ipv6 = inner.strip_suffix(']').ok_or_else(bad)?;
        if ipv6.is_empty() || !ipv6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad());
        }
        return Ok(());
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.split('.').all(label_ok) { Ok(()) } else { Err(bad()) }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn validate_path_component(component: &str, input: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::Invalid(format!("path component `{component}` in `{input}` is invalid"));
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`
fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    let valid = tag.len() <= 128 && chars.next().is_some_and(word) && chars.all(|c| word(c) || c == '.' || c == '-');
    if valid { Ok(()) } else { Err(ReferenceError::Invalid(format!("tag `{tag}` is invalid"))) }
}

/// `algorithm:encoded`; sha256 and sha512 must have the right number of lower-case hex digits.
pub fn validate_digest(digest: &str) -> Result<(), ReferenceError> {
    let bad = |why: &str| ReferenceError::Invalid(format!("digest `{digest}` {why}"));
    let (algorithm, encoded) = digest.split_once(':').ok_or_else(|| bad("has no algorithm"))?;
    let algorithm_ok = algorithm.starts_with(|c: char| c.is_ascii_alphabetic())
        && algorithm.chars().all(|c| c.is_ascii_alphanumeric() || "+._-".contains(c));
    if !algorithm_ok {
        return Err(bad("has an invalid algorithm"));
    }
    let hex = |len: usize| encoded.len() == len && encoded.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match algorithm {
        "sha256" if !hex(64) => Err(bad("must have 64 lower-case hex digits")),
        "sha512" if !hex(128) => Err(bad("must have 128 lower-case hex digits")),
        _ if encoded.len() < 32 || !encoded.bytes().all(|b| b.is_ascii_alphanumeric() || "=_-".contains(b as char)) => {
            Err(bad("has an invalid encoded part"))
        }
        _ => Ok(()),
    }
}

/// Where a stage's base image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BaseImage {
    /// An image in a registry, normalized.
    Registry {
        /// The normalized reference, e.g. `docker.io/library/python:3.12`.
        reference: String,
    },
    /// An OCI image layout on disk: `oci:PATH[:TAG]`.
    OciLayout {
        /// The layout directory.
        path: String,
        /// The tag (the `org.opencontainers.image.ref.name` annotation), if given.
        tag: Option<String>,
    },
    /// An earlier stage of the same build.
    Stage {
        /// The stage's index in the plan.
        index: usize,
    },
    /// The empty image.
    Scratch,
}

impl BaseImage {
    /// Parses what a user wrote as a base image (`scratch`, `oci:PATH[:TAG]` or a registry
    /// reference); stage names are resolved by the caller before this.
    ///
    /// ```
    /// use nullspace_plan::reference::BaseImage;
    /// assert_eq!(
    ///     BaseImage::parse("oci:/var/images/busybox:1").unwrap(),
    ///     BaseImage::OciLayout { path: "/var/images/busybox".into(), tag: Some("1".into()) }
    /// );
    /// assert_eq!(BaseImage::parse("scratch").unwrap(), BaseImage::Scratch);
    /// ```
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input == "scratch" {
            return Ok(Self::Scratch);
        }
        if let Some(rest) = input.strip_prefix("oci:") {
            if rest.is_empty() {
                return Err(ReferenceError::Invalid("`oci:` needs a layout path".into()));
            }
            // A tag is what follows the last ':' after the last '/'.
            let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
            return Ok(match rest[last_slash..].rfind(':') {
                Some(i) => {
                    let tag = &rest[last_slash + i + 1..];
                    validate_tag(tag)?;
                    Self::OciLayout { path: rest[..last_slash + i].to_string(), tag: Some(tag.to_string()) }
                }
                None => Self::OciLayout { path: rest.to_string(), tag: None },
            });
        }
        let reference: ImageRef = input.parse()?;
        Ok(Self::Registry { reference: reference.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        s.parse::<ImageRef>().unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("ubuntu"), "docker.io/library/ubuntu:latest");
        assert_eq!(norm("library/ubuntu:22.04"), "docker.io/library/ubuntu:22.04");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("index.docker.io/user/app:1"), "docker.io/user/app:1");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("127.0.0.1:5000/a/b/c:v1.2"), "127.0.0.1:5000/a/b/c:v1.2");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(norm(&format!("ghcr.io/o/r:t@{digest}")), format!("ghcr.io/o/r:t@{digest}"));
        assert_eq!(norm(&format!("ghcr.io/o/r@{digest}")), format!("ghcr.io/o/r@{digest}"));
        assert_eq!(norm("a__b.c-d---e"), "docker.io/library/a__b.c-d---e:latest");
    }

    #[test]
    fn refuses_what_docker_refuses() {
        for bad in [
            "",
            "UPPER",
            "a//b",
            "a:",
            "a:-tag",
            "-a",
            "a_",
            "a@sha256:abc",
            "a@md5",
            "a___b",
            "a b",
            "host:port:1/x",
            ":tag",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad:?} should be refused");
        }
        assert_eq!("Foo/bar".parse::<ImageRef>().unwrap().registry(), "Foo");
        assert!(matches!("docker.io/Foo".parse::<ImageRef>(), Err(ReferenceError::NotLowercase(_))));
        assert!(format!("a:{}", "t".repeat(129)).parse::<ImageRef>().is_err());
    }

    #[test]
    fn oci_layout_refs() {
        assert_eq!(
            BaseImage::parse("oci:./images/bb").unwrap(),
            BaseImage::OciLayout { path: "./images/bb".into(), tag: None }
        );
        assert!(BaseImage::parse("oci:").is_err());
    }
}
