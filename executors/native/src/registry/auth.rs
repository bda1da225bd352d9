//! Registry credentials: from the builder, or from a docker `config.json`.
//!
//! Read here rather than through `docker_credential`: we need the file's `identitytoken` and a
//! typed error naming the file. Credential helpers (`credsStore`, `credHelpers`) are not run.
//! An `identitytoken` (like the builder's `Credentials::Token`) is sent as a bearer token; the
//! OAuth2 refresh-token exchange some registries expect for identity tokens is not done, as
//! `oci-client` has no such flow.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use nullspace_plan::builder::Credentials;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::error::RegistryError;

/// The `auths` of a docker `config.json`, keyed by registry host (`host[:port]`).
///
/// ```
/// use nullspace_native::registry::DockerConfig;
/// use nullspace_plan::builder::Credentials;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("config.json");
/// // "alice:s3cret" in base64
/// std::fs::write(&path, r#"{"auths": {"https://registry.example:5000/v1/": {"auth": "YWxpY2U6czNjcmV0"}}}"#)?;
/// let config = DockerConfig::load(&path)?;
/// match config.get("registry.example:5000") {
///     Some(Credentials::Basic { username, .. }) => assert_eq!(username, "alice"),
///     other => panic!("unexpected {other:?}"),
/// }
/// assert!(config.get("other.example").is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct DockerConfig {
    auths: HashMap<String, Credentials>,
}

impl std::fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut hosts: Vec<&String> = self.auths.keys().collect();
        hosts.sort();
        f.debug_struct("DockerConfig").field("hosts", &hosts).finish()
    }
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    auths: HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl DockerConfig {
    /// The default location: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".docker").join("config.json"))
    }

    /// Loads the file at the default location; no file means no credentials.
    ///
    /// # Errors
    /// [`RegistryError::DockerConfig`] if the file exists but is malformed.
    pub fn load_default() -> Result<Self, RegistryError> {
        match Self::default_path() {
            Some(path) if path.exists() => Self::load(&path),
            _ => Ok(Self::default()),
        }
    }

    /// Loads `path`.
    ///
    /// # Errors
    /// [`RegistryError::DockerConfig`] if it cannot be read or is malformed.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let bad = |reason: String| RegistryError::DockerConfig { path: path.to_path_buf(), reason };
        let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let file: File = serde_json::from_slice(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let mut auths = HashMap::new();
        for (key, entry) in file.auths {
            let host = normalize_host(&key);
            let creds = if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
                Credentials::Token(token)
            } else if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| bad(format!("auths.{key:?}.auth is not base64: {e}")))?;
                let decoded =
                    String::from_utf8(decoded).map_err(|_| bad(format!("auths.{key:?}.auth is not UTF-8")))?;
                let (username, password) = decoded
                    .split_once(':')
                    .ok_or_else(|| bad(format!("auths.{key:?}.auth does not decode to user:password")))?;
                Credentials::Basic { username: username.to_owned(), password: password.to_owned() }
            } else if let (Some(username), Some(password)) = (entry.username, entry.password) {
                Credentials::Basic { username, password }
            } else {
                continue;
            };
            auths.insert(host, creds);
        }
        Ok(Self { auths })
    }

    /// The credentials for registry `host` (`host[:port]`; `docker.io` and `index.docker.io`
    /// are the same registry).
    pub fn get(&self, host: &str) -> Option<&Credentials> {
        self.auths.get(&normalize_host(host))
    }
}

/// Reduces a key of `auths` (`https://host/v1/`, `host`, ...) or a registry name to `host[:port]`.
pub(crate) fn normalize_host(key: &str) -> String {
    let rest = key.split_once("://").map_or(key, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "registry-1.docker.io" => "index.docker.io".to_owned(),
        _ => host,
    }
}

/// The `oci-client` form of `creds`. A token (builder `Token`, or `identitytoken`) is sent as a
/// bearer token.
pub(crate) fn to_registry_auth(creds: Option<&Credentials>) -> RegistryAuth {
    match creds {
        None => RegistryAuth::Anonymous,
        Some(Credentials::Basic { username, password }) => RegistryAuth::Basic(username.clone(), password.clone()),
        Some(Credentials::Token(token)) => RegistryAuth::Bearer(token.clone()),
    }
}
