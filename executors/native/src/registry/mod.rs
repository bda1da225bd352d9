//! Registry pull and push for the native executor, through `oci-client`.
//!
//! - [`RegistryClient::resolve`] turns a tag into the digest of the image manifest for the
//!   configured [`Platform`] (following an OCI index or Docker manifest list); that digest is
//!   what cache keys record.
//! - [`RegistryClient::pull`] stores the manifest, config and layers in the engine's
//!   [`BlobStore`] (each verified against its digest, each fetched only when missing) and
//!   returns a [`PulledImage`], which [`PulledImage::load`] rebuilds later without the network.
//! - [`RegistryClient::push`] sends an image whose blobs are in a [`BlobSource`] (the
//!   [`BlobStore`] or an [`OciDir`]): blobs the registry has are skipped (`HEAD`), blobs of an
//!   image in another repository of the same registry are mounted, the rest are streamed from
//!   disk (one monolithic `PUT`, or `PATCH` chunks), and the manifest goes last.
//!
//! Registries on loopback (`localhost`, `127.0.0.0/8`, `::1`) and those listed in
//! [`RegistryConfig::insecure`] are spoken to over plain HTTP, every other one over HTTPS.
//! Credentials come from [`RegistryClient::with_credentials`] first, then from the docker
//! `config.json` ([`DockerConfig`]); a registry asking for a bearer token gets one from its token
//! server with those credentials (oci-client's token flow).
//!
//! Failures are [`RegistryError`]s naming the reference; 5xx, 429 and timeouts are retried with
//! bounded exponential backoff ([`RetryPolicy`]).

mod auth;
mod error;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use nullspace_engine::cas::{BlobStore, CasError, Digest};
use nullspace_plan::builder::Credentials;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use tokio::io::AsyncReadExt;

pub use auth::DockerConfig;
pub use error::RegistryError;

use crate::layout::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OciDir};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Manifest media types asked for when pulling.
const ACCEPTED_MANIFESTS: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST];
/// Deepest chain of indexes followed.
const MAX_INDEX_DEPTH: usize = 4;
/// Largest manifest or config read into memory.
const MAX_JSON_SIZE: u64 = 8 << 20;
/// Read size for monolithic uploads (the request body is streamed in pieces this big).
const STREAM_READ_SIZE: usize = 1 << 20;
/// Largest chunk oci-client sends in one `PATCH`.
const MAX_CHUNK: usize = 4 << 20;

/// An OS, architecture and optional variant, written `os/arch[/variant]`.
///
/// ```
/// use nullspace_native::registry::Platform;
/// let p: Platform = "linux/arm/v7".parse()?;
/// assert_eq!((p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()), ("linux", "arm", Some("v7")));
/// assert_eq!(Platform::default().to_string(), "linux/amd64");
/// assert!("linux".parse::<Platform>().is_err());
/// # Ok::<(), nullspace_native::registry::RegistryError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// Architecture in Go spelling (`amd64`, `arm64`).
    pub architecture: String,
    /// Variant (`v7`, `v8`), if one is wanted.
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Self { os: "linux".to_owned(), architecture: "amd64".to_owned(), variant: None }
    }
}

impl FromStr for Platform {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => {
                Ok(Self { os: (*os).to_owned(), architecture: (*arch).to_owned(), variant: None })
            }
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => Ok(Self {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: Some((*variant).to_owned()),
            }),
            _ => Err(RegistryError::InvalidReference {
                reference: s.to_owned(),
                reason: "a platform is os/arch[/variant]".to_owned(),
            }),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Whether an index entry for `os/arch/variant` runs here. Without a wanted variant any
    /// variant matches; `arm64` without a variant is `arm64/v8`, as containerd normalises it.
    fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if os != self.os || arch != self.architecture {
            return false;
        }
        let norm = |v: Option<&str>| match (arch, v) {
            ("arm64", None) => Some("v8".to_owned()),
            (_, v) => v.map(str::to_owned),
        };
        match &self.variant {
            None => true,
            Some(want) => norm(Some(want)) == norm(variant),
        }
    }
}

/// How failed requests are retried: `attempts` in all, waiting `initial_backoff`, then twice as
/// long each time, never more than `max_backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least one is always made).
    pub attempts: u32,
    /// Wait before the second attempt.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 4, initial_backoff: Duration::from_millis(200), max_backoff: Duration::from_secs(5) }
    }
}

/// How blobs are uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// One `PUT` whose body is streamed from disk.
    Monolithic,
    /// `PATCH` requests of `chunk_size` bytes (at most 4 MiB, oci-client's limit), read from
    /// disk one chunk at a time, then a closing `PUT`.
    Chunked {
        /// Bytes per `PATCH`.
        chunk_size: usize,
    },
}

/// Settings of a [`RegistryClient`].
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Registries (`host` or `host:port`) spoken to over plain HTTP, besides loopback ones.
    pub insecure: Vec<String>,
    /// The platform picked from image indexes.
    pub platform: Platform,
    /// Retries of 5xx, 429 and timeouts.
    pub retry: RetryPolicy,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed between two reads of a response.
    pub read_timeout: Duration,
    /// How blobs are uploaded.
    pub upload: UploadMode,
    /// The docker `config.json` read for credentials; `None`: [`DockerConfig::default_path`].
    pub docker_config: Option<PathBuf>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            platform: Platform::default(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            upload: UploadMode::Monolithic,
            docker_config: None,
        }
    }
}

/// An image pulled into a [`BlobStore`]: everything the executor needs, without the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The reference it was pulled by.
    pub reference: String,
    /// The index (or manifest list) the manifest was chosen from, if the reference named one.
    pub index_digest: Option<Digest>,
    /// The image manifest's digest, for cache keys.
    pub manifest_digest: Digest,
    /// The manifest's media type (OCI or Docker schema 2).
    pub manifest_media_type: String,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The configuration's digest.
    pub config_digest: Digest,
    /// The configuration.
    pub config: ImageConfiguration,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
}

impl PulledImage {
    /// Rebuilds the description of an image whose manifest `manifest_digest` and config are in
    /// `store` (as [`RegistryClient::pull`] leaves them), reading nothing from the network.
    ///
    /// # Errors
    /// [`RegistryError::Store`] if a blob is missing or corrupt, [`RegistryError::Protocol`] if
    /// the JSON does not parse.
    pub fn load(store: &BlobStore, manifest_digest: &Digest, reference: &str) -> Result<Self, RegistryError> {
        let bytes = read_small(store, manifest_digest, reference)?;
        let media_type = media_type_of(&bytes, reference)?;
        Self::from_manifest(store, reference, None, *manifest_digest, &bytes, media_type)
    }

    fn from_manifest(
        store: &BlobStore,
        reference: &str,
        index_digest: Option<Digest>,
        manifest_digest: Digest,
        bytes: &[u8],
        media_type: String,
    ) -> Result<Self, RegistryError> {
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(RegistryError::UnsupportedMediaType { reference: reference.to_owned(), media_type });
        }
        let manifest = ImageManifest::from_reader(bytes).map_err(|e| protocol(reference, e))?;
        let config_digest = to_digest(reference, manifest.config())?;
        let config_bytes = read_small(store, &config_digest, reference)?;
        let config = ImageConfiguration::from_reader(config_bytes.as_slice()).map_err(|e| protocol(reference, e))?;
        Ok(Self {
            reference: reference.to_owned(),
            index_digest,
            manifest_digest,
            manifest_media_type: media_type,
            layers: manifest.layers().clone(),
            manifest,
            config_digest,
            config,
        })
    }
}

/// Where [`RegistryClient::push`] reads blobs from.
pub trait BlobSource: Send + Sync {
    /// Opens the blob named `digest`.
    ///
    /// # Errors
    /// `NotFound` when the source does not hold it.
    fn open_blob(&self, digest: &Digest) -> io::Result<File>;
}

impl BlobSource for BlobStore {
    fn open_blob(&self, digest: &Digest) -> io::Result<File> {
        self.open(digest).map_err(|e| match e {
            CasError::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
            CasError::Io { source, .. } => source,
            other => io::Error::other(other),
        })
    }
}

impl BlobSource for OciDir {
    fn open_blob(&self, digest: &Digest) -> io::Result<File> {
        let d = oci_spec::image::Digest::from_str(&digest.to_string()).map_err(io::Error::other)?;
        self.open_blob(&d).map_err(|e| match e {
            crate::layout::LayoutError::Io { source, .. } => source,
            other => io::Error::other(other),
        })
    }
}

/// Settings of one push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Images (references) whose blobs may already be in another repository of the target
    /// registry, such as the base image: blobs are mounted from them (`?mount=&from=`) rather
    /// than uploaded. Sources on other registries are ignored.
    pub mount_from: Vec<String>,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The pushed manifest's digest.
    pub manifest_digest: Digest,
    /// Blobs sent.
    pub uploaded: Vec<Digest>,
    /// Blobs mounted from another repository.
    pub mounted: Vec<Digest>,
    /// Blobs the registry already had.
    pub skipped: Vec<Digest>,
}

/// A registry client for pulling base images and pushing results.
///
/// ```
/// use std::time::Duration;
/// use nullspace_engine::cas::BlobStore;
/// use nullspace_native::registry::{RegistryClient, RegistryConfig, RegistryError, RetryPolicy};
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let store = BlobStore::new(tempfile::tempdir()?.path())?;
/// let config = RegistryConfig {
///     retry: RetryPolicy { attempts: 2, initial_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(1) },
///     ..RegistryConfig::default()
/// };
/// let client = RegistryClient::new(config)?;
/// // Nothing listens on port 1: the error says so and names the reference.
/// match client.pull("127.0.0.1:1/busybox:latest", &store).await {
///     Err(RegistryError::ConnectionRefused { reference, .. }) => assert_eq!(reference, "127.0.0.1:1/busybox:latest"),
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RegistryClient {
    config: RegistryConfig,
    credentials: HashMap<String, Credentials>,
    docker_config: DockerConfig,
    clients: Mutex<HashMap<String, Client>>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hosts: Vec<&String> = self.credentials.keys().collect();
        hosts.sort();
        f.debug_struct("RegistryClient")
            .field("config", &self.config)
            .field("credentials_for", &hosts)
            .field("docker_config", &self.docker_config)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client with `config`, reading the docker `config.json` it names (or the default one).
    ///
    /// # Errors
    /// [`RegistryError::DockerConfig`] if that file exists but is malformed.
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        let docker_config = match &config.docker_config {
            Some(path) => DockerConfig::load(path)?,
            None => DockerConfig::load_default()?,
        };
        Ok(Self { config, credentials: HashMap::new(), docker_config, clients: Mutex::new(HashMap::new()) })
    }

    /// Uses `creds` for `registry` (`host[:port]`), before any from the docker config.
    #[must_use]
    pub fn with_credentials(mut self, registry: &str, creds: Credentials) -> Self {
        self.credentials.insert(auth::normalize_host(registry), creds);
        self
    }

    /// The client's settings.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The digest of the image manifest `reference` names for the configured platform (an
    /// index is followed to its entry). The same digest [`RegistryClient::pull`] reports.
    ///
    /// # Errors
    /// See [`RegistryError`].
    pub async fn resolve(&self, reference: &str) -> Result<Digest, RegistryError> {
        let (image, client) = self.prepare(reference).await?;
        let (_, digest, _, _) = self.fetch_image_manifest(&client, &image, reference).await?;
        Ok(digest)
    }

    /// Pulls `reference` for the configured platform into `store`: manifest, config and
    /// layers, each verified against its digest and skipped when already stored.
    ///
    /// # Errors
    /// See [`RegistryError`].
    pub async fn pull(&self, reference: &str, store: &BlobStore) -> Result<PulledImage, RegistryError> {
        let (image, client) = self.prepare(reference).await?;
        let (bytes, digest, media_type, index) = self.fetch_image_manifest(&client, &image, reference).await?;
        if !store.contains(&digest).map_err(|e| store_err(reference, e))? {
            let mut w = store.writer_expecting(digest).map_err(|e| store_err(reference, e))?;
            w.write_all(&bytes).map_err(|e| io_err(reference, store.root(), e))?;
            w.commit().map_err(|e| store_err(reference, e))?;
        }
        let manifest = ImageManifest::from_reader(bytes.as_ref()).map_err(|e| protocol(reference, e))?;
        let blobs = std::iter::once(manifest.config()).chain(manifest.layers().iter());
        for desc in blobs {
            let blob = to_digest(reference, desc)?;
            if store.contains(&blob).map_err(|e| store_err(reference, e))? {
                tracing::debug!(%reference, %blob, "blob already stored");
                continue;
            }
            self.retry(reference, || self.fetch_blob(&client, &image, reference, blob, store)).await?;
        }
        PulledImage::from_manifest(store, reference, index, digest, &bytes, media_type)
    }

    /// Pushes the image whose manifest is the blob `manifest` of `source` to `target`
    /// (`registry/repository:tag` or `@digest`), and returns what was done. The manifest is
    /// pushed last, once every blob it names is in the registry.
    ///
    /// # Errors
    /// See [`RegistryError`]; [`RegistryError::Io`] if `source` lacks a blob.
    pub async fn push(
        &self,
        source: &dyn BlobSource,
        manifest: &Digest,
        target: &str,
        opts: &PushOptions,
    ) -> Result<PushReport, RegistryError> {
        let (image, client) = self.prepare(target).await?;
        let bytes = read_source_small(source, manifest, target)?;
        let media_type = media_type_of(&bytes, target)?;
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(RegistryError::UnsupportedMediaType { reference: target.to_owned(), media_type });
        }
        let parsed = ImageManifest::from_reader(bytes.as_slice()).map_err(|e| protocol(target, e))?;
        let mounts: Vec<Reference> = opts
            .mount_from
            .iter()
            .filter_map(|r| Reference::from_str(r).ok())
            .filter(|r| r.resolve_registry() == image.resolve_registry() && r.repository() != image.repository())
            .collect();
        let mut report = PushReport { manifest_digest: *manifest, uploaded: vec![], mounted: vec![], skipped: vec![] };
        for desc in std::iter::once(parsed.config()).chain(parsed.layers().iter()) {
            let blob = to_digest(target, desc)?;
            let blob_str = blob.to_string();
            let exists = self
                .retry(target, || async {
                    client.blob_exists(&image, &blob_str).await.map_err(|e| self.oci_err(target, &image, e))
                })
                .await?;
            if exists {
                report.skipped.push(blob);
                continue;
            }
            let mut mounted = false;
            for from in &mounts {
                match client.mount_blob(&image, from, &blob_str).await {
                    Ok(()) => {
                        mounted = true;
                        break;
                    }
                    Err(e) => tracing::debug!(%target, from = %from, %blob, error = %e, "mount refused; uploading"),
                }
            }
            if mounted {
                report.mounted.push(blob);
                continue;
            }
            self.retry(target, || self.upload_blob(&client, &image, target, source, blob)).await?;
            report.uploaded.push(blob);
        }
        let content_type = reqwest::header::HeaderValue::from_str(&media_type).map_err(|e| protocol(target, e))?;
        self.retry(target, || async {
            client
                .push_manifest_raw(&image, bytes.clone(), content_type.clone())
                .await
                .map_err(|e| self.oci_err(target, &image, e))
        })
        .await?;
        tracing::info!(%target, manifest = %manifest, uploaded = report.uploaded.len(), mounted = report.mounted.len(), skipped = report.skipped.len(), "pushed");
        Ok(report)
    }

    /// Pushes the image tagged `tag` in `layout` (the only image when `None`) to `target`.
    ///
    /// # Errors
    /// [`RegistryError::Layout`] if the tag does not resolve; otherwise as [`RegistryClient::push`].
    pub async fn push_layout(
        &self,
        layout: &OciDir,
        tag: Option<&str>,
        target: &str,
        opts: &PushOptions,
    ) -> Result<PushReport, RegistryError> {
        let desc =
            layout.resolve(tag).map_err(|source| RegistryError::Layout { reference: target.to_owned(), source })?;
        let manifest = to_digest(target, &desc)?;
        self.push(layout, &manifest, target, opts).await
    }

    /// Parses `reference` and readies the client and credentials for its registry.
    async fn prepare(&self, reference: &str) -> Result<(Reference, Client), RegistryError> {
        let image = Reference::from_str(reference)
            .map_err(|e| RegistryError::InvalidReference { reference: reference.to_owned(), reason: e.to_string() })?;
        let registry = image.resolve_registry().to_owned();
        let client = self.client_for(&registry, reference)?;
        let creds =
            self.credentials.get(&auth::normalize_host(&registry)).or_else(|| self.docker_config.get(&registry));
        client.store_auth_if_needed(&registry, &auth::to_registry_auth(creds)).await;
        Ok((image, client))
    }

    fn client_for(&self, registry: &str, reference: &str) -> Result<Client, RegistryError> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(registry) {
            return Ok(client.clone());
        }
        let protocol = if self.is_insecure(registry) {
            ClientProtocol::HttpsExcept(vec![registry.to_owned()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            use_monolithic_push: self.config.upload == UploadMode::Monolithic,
            read_timeout: Some(self.config.read_timeout),
            connect_timeout: Some(self.config.connect_timeout),
            platform_resolver: None,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| RegistryError::from_oci(reference, registry, e))?;
        clients.insert(registry.to_owned(), client.clone());
        Ok(client)
    }

    /// Whether `registry` is spoken to over plain HTTP.
    fn is_insecure(&self, registry: &str) -> bool {
        let host = match registry.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
        };
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        loopback || self.config.insecure.iter().any(|i| i == registry || i == host)
    }

    fn oci_err(&self, reference: &str, image: &Reference, e: OciDistributionError) -> RegistryError {
        RegistryError::from_oci(reference, image.resolve_registry(), e)
    }

    /// Runs `op` until it succeeds, fails for good, or the attempts are spent.
    async fn retry<T, F, Fut>(&self, reference: &str, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let policy = self.config.retry;
        let mut delay = policy.initial_backoff;
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && attempt < policy.attempts.max(1) => {
                    tracing::warn!(%reference, attempt, error = %e, ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(policy.max_backoff);
                    attempt += 1;
                }
                Err(e) => return Err(e.with_attempts(attempt)),
            }
        }
    }

    /// Fetches a manifest, following indexes to the configured platform: the manifest's bytes,
    /// digest and media type, and the digest of the index it came from.
    async fn fetch_image_manifest(
        &self,
        client: &Client,
        image: &Reference,
        reference: &str,
    ) -> Result<(Bytes, Digest, String, Option<Digest>), RegistryError> {
        let mut current = image.clone();
        let mut index_digest = None;
        for _ in 0..MAX_INDEX_DEPTH {
            let (bytes, digest) = self
                .retry(reference, || async {
                    client
                        .pull_manifest_raw(&current, &RegistryAuth::Anonymous, ACCEPTED_MANIFESTS)
                        .await
                        .map_err(|e| self.oci_err(reference, image, e))
                })
                .await?;
            let digest = parse_digest(reference, &digest)?;
            let media_type = media_type_of(&bytes, reference)?;
            if media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST {
                return Ok((bytes, digest, media_type, index_digest));
            }
            if media_type != OCI_INDEX && media_type != DOCKER_MANIFEST_LIST {
                return Err(RegistryError::UnsupportedMediaType { reference: reference.to_owned(), media_type });
            }
            index_digest.get_or_insert(digest);
            let index = ImageIndex::from_reader(bytes.as_ref()).map_err(|e| protocol(reference, e))?;
            let platform = &self.config.platform;
            let entry = index
                .manifests()
                .iter()
                .find(|d| {
                    d.platform().as_ref().is_some_and(|p| {
                        platform.matches(&p.os().to_string(), &p.architecture().to_string(), p.variant().as_deref())
                    })
                })
                .ok_or_else(|| RegistryError::NoPlatform {
                    reference: reference.to_owned(),
                    index: digest.to_string(),
                    platform: platform.to_string(),
                })?;
            tracing::debug!(%reference, index = %digest, entry = %entry.digest(), "index entry chosen");
            current = image.clone_with_digest(entry.digest().to_string());
        }
        Err(RegistryError::Protocol {
            reference: reference.to_owned(),
            detail: format!("image indexes nested deeper than {MAX_INDEX_DEPTH}"),
        })
    }

    /// Streams one blob into `store`, which checks it against `blob`.
    async fn fetch_blob(
        &self,
        client: &Client,
        image: &Reference,
        reference: &str,
        blob: Digest,
        store: &BlobStore,
    ) -> Result<(), RegistryError> {
        let digest = blob.to_string();
        let mut stream =
            client.pull_blob_stream(image, digest.as_str()).await.map_err(|e| self.oci_err(reference, image, e))?;
        let mut writer = store.writer_expecting(blob).map_err(|e| store_err(reference, e))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RegistryError::from_stream_io(reference, image.resolve_registry(), e))?;
            writer.write_all(&chunk).map_err(|e| io_err(reference, store.root(), e))?;
        }
        let size = writer.written();
        writer.commit().map_err(|e| match e {
            CasError::DigestMismatch { expected, actual } => RegistryError::DigestMismatch {
                reference: reference.to_owned(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            },
            other => store_err(reference, other),
        })?;
        tracing::debug!(%reference, %blob, size, "blob pulled");
        Ok(())
    }

    /// Streams one blob of `source` to the registry.
    async fn upload_blob(
        &self,
        client: &Client,
        image: &Reference,
        target: &str,
        source: &dyn BlobSource,
        blob: Digest,
    ) -> Result<(), RegistryError> {
        let file = source.open_blob(&blob).map_err(|e| io_err(target, &PathBuf::from(blob.to_string()), e))?;
        let size = file.metadata().map_err(|e| io_err(target, &PathBuf::from(blob.to_string()), e))?.len();
        let read_size = match self.config.upload {
            UploadMode::Monolithic => STREAM_READ_SIZE,
            UploadMode::Chunked { chunk_size } => chunk_size.clamp(1, MAX_CHUNK),
        };
        let stream = file_stream(file, read_size);
        client
            .push_blob_stream(image, stream, &blob.to_string(), Some(size))
            .await
            .map_err(|e| self.oci_err(target, image, e))?;
        tracing::debug!(%target, %blob, size, "blob uploaded");
        Ok(())
    }
}

impl RegistryError {
    /// Maps an error from a blob body stream.
    fn from_stream_io(reference: &str, registry: &str, e: io::Error) -> Self {
        if let Some(DigestError::VerificationError { expected, actual }) =
            e.get_ref().and_then(|inner| inner.downcast_ref::<DigestError>())
        {
            return Self::DigestMismatch {
                reference: reference.to_owned(),
                expected: expected.clone(),
                actual: actual.clone(),
            };
        }
        if e.get_ref().is_some_and(|inner| inner.is::<reqwest::Error>()) {
            if let Some(Ok(inner)) = e.into_inner().map(|i| i.downcast::<reqwest::Error>()) {
                return Self::from_oci(reference, registry, OciDistributionError::RequestError(*inner));
            }
            return Self::Network { reference: reference.to_owned(), detail: "blob stream failed".to_owned() };
        }
        if e.kind() == io::ErrorKind::TimedOut {
            return Self::Timeout { reference: reference.to_owned(), attempts: 1, detail: e.to_string() };
        }
        Self::Network { reference: reference.to_owned(), detail: e.to_string() }
    }
}

/// Reads `file` as a stream of pieces of `size` bytes (the last may be shorter); only one piece
/// is in memory at a time.
fn file_stream(file: File, size: usize) -> impl Stream<Item = Result<Bytes, OciDistributionError>> + Send + 'static {
    let file = tokio::fs::File::from_std(file);
    futures_util::stream::try_unfold(file, move |mut file| async move {
        let mut buf = BytesMut::with_capacity(size);
        while buf.len() < size {
            let mut limited = (&mut file).take((size - buf.len()) as u64);
            if limited.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        if buf.is_empty() { Ok(None) } else { Ok(Some((buf.freeze(), file))) }
    })
}

/// The media type of a manifest or index: its `mediaType`, else guessed from its fields.
fn media_type_of(bytes: &[u8], reference: &str) -> Result<String, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| protocol(reference, e))?;
    Ok(match probe.media_type {
        Some(mt) => mt,
        None if probe.manifests.is_some() => OCI_INDEX.to_owned(),
        None => OCI_MANIFEST.to_owned(),
    })
}

fn to_digest(reference: &str, desc: &Descriptor) -> Result<Digest, RegistryError> {
    parse_digest(reference, desc.digest().as_ref())
}

fn parse_digest(reference: &str, digest: &str) -> Result<Digest, RegistryError> {
    Digest::from_str(digest).map_err(|e| RegistryError::Protocol {
        reference: reference.to_owned(),
        detail: format!("{e} (only sha256 digests are supported)"),
    })
}

fn read_small(store: &BlobStore, digest: &Digest, reference: &str) -> Result<Vec<u8>, RegistryError> {
    let size = store.size(digest).map_err(|e| store_err(reference, e))?;
    if size > MAX_JSON_SIZE {
        return Err(RegistryError::Protocol {
            reference: reference.to_owned(),
            detail: format!("{digest} is {size} bytes, more than a manifest or config may be"),
        });
    }
    store.read_verified(digest).map_err(|e| store_err(reference, e))
}

fn read_source_small(source: &dyn BlobSource, digest: &Digest, reference: &str) -> Result<Vec<u8>, RegistryError> {
    let path = PathBuf::from(digest.to_string());
    let file = source.open_blob(digest).map_err(|e| io_err(reference, &path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_JSON_SIZE + 1).read_to_end(&mut bytes).map_err(|e| io_err(reference, &path, e))?;
    let actual = Digest::of(&bytes);
    if actual != *digest {
        return Err(RegistryError::DigestMismatch {
            reference: reference.to_owned(),
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(bytes)
}

fn protocol(reference: &str, e: impl fmt::Display) -> RegistryError {
    RegistryError::Protocol { reference: reference.to_owned(), detail: e.to_string() }
}

fn store_err(reference: &str, source: CasError) -> RegistryError {
    RegistryError::Store { reference: reference.to_owned(), source }
}

fn io_err(reference: &str, path: &std::path::Path, source: io::Error) -> RegistryError {
    RegistryError::Io { reference: reference.to_owned(), path: path.to_path_buf(), source }
}
