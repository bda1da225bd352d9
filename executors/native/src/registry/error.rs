//! Registry errors, and how `oci-client`'s errors map onto them.

use std::error::Error as _;
use std::io;
use std::path::PathBuf;

use nullspace_engine::cas::CasError;
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};

use crate::layout::LayoutError;

/// What went wrong talking to a registry. Every variant names the image reference at fault.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry wants credentials, or refused the ones given (HTTP 401).
    #[error("{reference}: unauthorized (401): {detail}")]
    Unauthorized {
        /// The image reference.
        reference: String,
        /// What the registry or token server said.
        detail: String,
    },
    /// The credentials do not grant this access (HTTP 403).
    #[error("{reference}: access denied (403): {detail}")]
    Forbidden {
        /// The image reference.
        reference: String,
        /// What the registry said.
        detail: String,
    },
    /// The repository, tag, manifest or blob does not exist (HTTP 404).
    #[error("{reference}: not found (404): {detail}")]
    NotFound {
        /// The image reference.
        reference: String,
        /// What the registry said.
        detail: String,
    },
    /// The registry failed (HTTP 5xx, or 429) on every attempt.
    #[error("{reference}: registry error {status} after {attempts} attempt(s): {detail}")]
    Server {
        /// The image reference.
        reference: String,
        /// The last HTTP status.
        status: u16,
        /// How many attempts were made.
        attempts: u32,
        /// What the registry said.
        detail: String,
    },
    /// The registry answered another unexpected HTTP status.
    #[error("{reference}: unexpected HTTP status {status}: {detail}")]
    Status {
        /// The image reference.
        reference: String,
        /// The HTTP status.
        status: u16,
        /// What the registry said.
        detail: String,
    },
    /// Connecting or reading timed out on every attempt.
    #[error("{reference}: timed out after {attempts} attempt(s): {detail}")]
    Timeout {
        /// The image reference.
        reference: String,
        /// How many attempts were made.
        attempts: u32,
        /// The transport error.
        detail: String,
    },
    /// Nothing listens at the registry's address.
    #[error("{reference}: connection refused by {registry}")]
    ConnectionRefused {
        /// The image reference.
        reference: String,
        /// The registry host.
        registry: String,
    },
    /// Another transport failure (DNS, TLS, reset connection...).
    #[error("{reference}: network error: {detail}")]
    Network {
        /// The image reference.
        reference: String,
        /// The transport error.
        detail: String,
    },
    /// The registry's answer breaks the distribution spec or does not parse.
    #[error("{reference}: invalid registry response: {detail}")]
    Protocol {
        /// The image reference.
        reference: String,
        /// What was wrong.
        detail: String,
    },
    /// Content did not match its digest.
    #[error("{reference}: content of {expected} hashes to {actual}")]
    DigestMismatch {
        /// The image reference.
        reference: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// An image index has no manifest for the wanted platform.
    #[error("{reference}: index {index} has no manifest for {platform}")]
    NoPlatform {
        /// The image reference.
        reference: String,
        /// The index's digest.
        index: String,
        /// The platform asked for.
        platform: String,
    },
    /// A manifest or config uses a media type this client does not handle.
    #[error("{reference}: unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// The image reference.
        reference: String,
        /// The media type.
        media_type: String,
    },
    /// The local blob store failed.
    #[error("{reference}: blob store: {source}")]
    Store {
        /// The image reference.
        reference: String,
        /// The store error.
        source: CasError,
    },
    /// The local OCI layout failed.
    #[error("{reference}: OCI layout: {source}")]
    Layout {
        /// The image reference.
        reference: String,
        /// The layout error.
        source: LayoutError,
    },
    /// A local file could not be read.
    #[error("{reference}: {path}: {source}")]
    Io {
        /// The image reference.
        reference: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The docker `config.json` is malformed.
    #[error("{path}: {reason}")]
    DockerConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl RegistryError {
    /// Whether another attempt may succeed (5xx, 429 and timeouts).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Timeout { .. })
    }

    /// Records how many attempts were made, for errors that count them.
    pub(crate) fn with_attempts(mut self, n: u32) -> Self {
        if let Self::Server { attempts, .. } | Self::Timeout { attempts, .. } = &mut self {
            *attempts = n;
        }
        self
    }

    /// Maps an `oci-client` error for an operation on `reference` at `registry`.
    pub(crate) fn from_oci(reference: &str, registry: &str, error: OciDistributionError) -> Self {
        let reference = reference.to_owned();
        match error {
            OciDistributionError::UnauthorizedError { url } => {
                Self::Unauthorized { reference, detail: format!("{url} requires authentication") }
            }
            OciDistributionError::AuthenticationFailure(detail) => Self::Unauthorized { reference, detail },
            OciDistributionError::RegistryError { envelope, url } => {
                let detail = format!("{url}: {envelope}");
                let code = envelope.errors.first().map(|e| &e.code);
                match code {
                    Some(OciErrorCode::Unauthorized) => Self::Unauthorized { reference, detail },
                    Some(OciErrorCode::Denied) => Self::Forbidden { reference, detail },
                    Some(
                        OciErrorCode::ManifestUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound,
                    ) => Self::NotFound { reference, detail },
                    Some(OciErrorCode::Toomanyrequests) => Self::Server { reference, status: 429, attempts: 1, detail },
                    _ => Self::Protocol { reference, detail },
                }
            }
            OciDistributionError::ServerError { code, url, message } => {
                from_status(reference, code, format!("{url}: {}", message.trim()))
            }
            OciDistributionError::ImageManifestNotFoundError(detail) => Self::NotFound { reference, detail },
            OciDistributionError::RequestError(e) => from_reqwest(reference, registry, &e),
            OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }) => {
                Self::DigestMismatch { reference, expected, actual }
            }
            OciDistributionError::DigestError(e) => Self::Protocol { reference, detail: e.to_string() },
            OciDistributionError::IoError(e) => Self::Network { reference, detail: e.to_string() },
            other => Self::Protocol { reference, detail: other.to_string() },
        }
    }
}

/// Maps an HTTP status onto the error for it.
pub(crate) fn from_status(reference: String, status: u16, detail: String) -> RegistryError {
    match status {
        401 => RegistryError::Unauthorized { reference, detail },
        403 => RegistryError::Forbidden { reference, detail },
        404 => RegistryError::NotFound { reference, detail },
        429 | 500..=599 => RegistryError::Server { reference, status, attempts: 1, detail },
        _ => RegistryError::Status { reference, status, detail },
    }
}

fn from_reqwest(reference: String, registry: &str, e: &reqwest::Error) -> RegistryError {
    let detail = error_chain(e);
    if let Some(status) = e.status() {
        return from_status(reference, status.as_u16(), detail);
    }
    if e.is_timeout() || has_io_kind(e, io::ErrorKind::TimedOut) {
        return RegistryError::Timeout { reference, attempts: 1, detail };
    }
    if has_io_kind(e, io::ErrorKind::ConnectionRefused) {
        return RegistryError::ConnectionRefused { reference, registry: registry.to_owned() };
    }
    RegistryError::Network { reference, detail }
}

/// Whether an `io::Error` of `kind` is somewhere in the source chain of `e`.
fn has_io_kind(e: &(dyn std::error::Error + 'static), kind: io::ErrorKind) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // Bounded: source chains are short, but never trust them to end.
    for _ in 0..32 {
        let Some(err) = cur else { return false };
        if err.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == kind) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// `e` and its sources joined by `: `, as reqwest's own message hides the cause.
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    for _ in 0..32 {
        let Some(err) = cur else { break };
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}
