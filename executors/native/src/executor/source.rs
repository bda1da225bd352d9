//! Where base images come from: [`ImageSource`] puts an image's config and layer blobs in the
//! engine's [`BlobStore`]. [`OciLayoutSource`] reads `oci:PATH[:TAG]` layouts;
//! [`RegistrySource`] pulls from registries through [`RegistryClient`] and pushes results.
//!
//! **Registry credentials.** A build's [`Credentials`] (from the builder) are used for every
//! registry that build talks to (base pulls and the push); without them, the docker
//! `config.json` named by the [`RegistryConfig`] (or the default one) is read, then anonymous.
//!
//! **Pulled once.** A base keyed by manifest digest is served from the store when its manifest,
//! config and layers are all there, with no request; otherwise it is pulled by digest
//! (`registry/repo@sha256:…`), so a tag that moved after the keys were computed cannot change
//! what is built.

use std::io::Read;

use std::str::FromStr;
use std::sync::Arc;

use nullspace_engine::cas::{BlobStore, Digest as CasDigest};
use nullspace_plan::builder::Credentials;
use oci_spec::image::{Descriptor, ImageConfiguration};

use crate::layout::{ImageBlobs, LayoutError, OciDir, OciRef};
use crate::registry::{PulledImage, PushOptions, PushReport, RegistryClient, RegistryConfig, RegistryError};

/// Why an image could not be resolved or fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The reference is not one this source serves.
    #[error("{reference}: not served by this image source")]
    NotHandled {
        /// The reference.
        reference: String,
    },
    /// Reading the layout failed.
    #[error("{reference}: {source}")]
    Layout {
        /// The reference.
        reference: String,
        /// The error.
        source: LayoutError,
    },
    /// Storing a blob failed.
    #[error("{reference}: storing blob {digest}: {message}")]
    Store {
        /// The reference.
        reference: String,
        /// The blob.
        digest: String,
        /// What went wrong.
        message: String,
    },
    /// A registry request failed (the error names the reference).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Anything else, with its message.
    #[error("{reference}: {message}")]
    Other {
        /// The reference.
        reference: String,
        /// What went wrong.
        message: String,
    },
}

/// An image whose config and layer blobs are in the [`BlobStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceImage {
    /// The manifest digest (`sha256:…`).
    pub manifest_digest: String,
    /// The configuration.
    pub config: ImageConfiguration,
    /// Layer descriptors, bottom first (their blobs are in the store).
    pub layers: Vec<Descriptor>,
}

/// Something that resolves image references and fetches images into the blob store.
#[async_trait::async_trait]
pub trait ImageSource: Send + Sync {
    /// The manifest digest `reference` names now.
    async fn resolve(&self, reference: &str, credentials: Option<&Credentials>) -> Result<String, SourceError>;

    /// Puts the image's layer blobs in `store` (skipping those present) and returns it.
    async fn fetch(
        &self,
        reference: &str,
        credentials: Option<&Credentials>,
        store: &BlobStore,
    ) -> Result<SourceImage, SourceError>;

    /// Like [`ImageSource::fetch`], for a reference already resolved to `digest` (when the
    /// build's keys were computed): the image fetched must be that one. The default fetches
    /// `reference` and checks the digest.
    async fn fetch_resolved(
        &self,
        reference: &str,
        digest: &str,
        credentials: Option<&Credentials>,
        store: &BlobStore,
    ) -> Result<SourceImage, SourceError> {
        let image = self.fetch(reference, credentials, store).await?;
        if image.manifest_digest != digest {
            return Err(SourceError::Other {
                reference: reference.to_string(),
                message: format!("now resolves to {}, not {digest} as when the build was keyed", image.manifest_digest),
            });
        }
        Ok(image)
    }
}

/// Images in OCI image layouts on disk, named `oci:PATH[:TAG]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OciLayoutSource;

fn open(reference: &str) -> Result<(OciDir, OciRef), SourceError> {
    let layout_err = |source| SourceError::Layout { reference: reference.to_string(), source };
    let r: OciRef = reference.parse().map_err(layout_err)?;
    let dir = OciDir::open(&r.path).map_err(layout_err)?;
    Ok((dir, r))
}

/// Copies a layout blob into the store unless it is there.
fn import(dir: &OciDir, desc: &Descriptor, store: &BlobStore, reference: &str) -> Result<(), SourceError> {
    let digest = desc.digest().to_string();
    let store_err =
        |message: String| SourceError::Store { reference: reference.to_string(), digest: digest.clone(), message };
    let cas: nullspace_engine::cas::Digest = digest.parse().map_err(|e| store_err(format!("{e}")))?;
    if store.contains(&cas).map_err(|e| store_err(e.to_string()))? {
        return Ok(());
    }
    let mut file =
        dir.open_blob(desc.digest()).map_err(|source| SourceError::Layout { reference: reference.into(), source })?;
    let mut writer = store.writer_expecting(cas).map_err(|e| store_err(e.to_string()))?;
    std::io::copy(&mut (&mut file as &mut dyn Read), &mut writer).map_err(|e| store_err(e.to_string()))?;
    writer.commit().map_err(|e| store_err(e.to_string()))?;
    Ok(())
}

impl OciLayoutSource {
    /// Resolves synchronously.
    ///
    /// # Errors
    /// [`SourceError::Layout`].
    pub fn resolve_sync(&self, reference: &str) -> Result<String, SourceError> {
        let (dir, r) = open(reference)?;
        let desc = dir
            .resolve(r.tag.as_deref())
            .map_err(|source| SourceError::Layout { reference: reference.into(), source })?;
        Ok(desc.digest().to_string())
    }

    /// Fetches synchronously.
    ///
    /// # Errors
    /// [`SourceError::Layout`], [`SourceError::Store`].
    pub fn fetch_sync(&self, reference: &str, store: &BlobStore) -> Result<SourceImage, SourceError> {
        let (dir, r) = open(reference)?;
        let image = dir
            .load_image(r.tag.as_deref())
            .map_err(|source| SourceError::Layout { reference: reference.into(), source })?;
        for layer in image.manifest.layers() {
            import(&dir, layer, store, reference)?;
        }
        Ok(SourceImage {
            manifest_digest: image.descriptor.digest().to_string(),
            config: image.config,
            layers: image.manifest.layers().clone(),
        })
    }

    /// Whether `reference` is an `oci:` reference.
    pub fn handles(reference: &str) -> bool {
        reference.strip_prefix("oci:").is_some_and(|rest| !rest.is_empty())
    }
}

#[async_trait::async_trait]
impl ImageSource for OciLayoutSource {
    async fn resolve(&self, reference: &str, _: Option<&Credentials>) -> Result<String, SourceError> {
        self.resolve_sync(reference)
    }

    async fn fetch(
        &self,
        reference: &str,
        _: Option<&Credentials>,
        store: &BlobStore,
    ) -> Result<SourceImage, SourceError> {
        self.fetch_sync(reference, store)
    }
}

/// Registry images through a [`RegistryClient`]: pulls bases into the store and pushes results.
///
/// ```no_run
/// use nullspace_native::executor::{ImageSource, RegistrySource};
/// use nullspace_native::registry::RegistryConfig;
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let source = RegistrySource::new(RegistryConfig::default())?;
/// let digest = source.resolve("127.0.0.1:5000/busybox:1", None).await?;
/// assert!(digest.starts_with("sha256:"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RegistrySource {
    config: RegistryConfig,
    /// The client for builds without credentials of their own (docker config, else anonymous).
    shared: Arc<RegistryClient>,
}

fn other_err(reference: &str, message: impl std::fmt::Display) -> SourceError {
    SourceError::Other { reference: reference.to_string(), message: message.to_string() }
}

impl RegistrySource {
    /// A source with `config` (platform, retries, insecure registries, docker config path).
    ///
    /// # Errors
    /// [`RegistryError::DockerConfig`] if the docker `config.json` is malformed.
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        let shared = Arc::new(RegistryClient::new(config.clone())?);
        Ok(Self { config, shared })
    }

    /// The client for `reference` with `credentials` (given for its registry), or the shared one.
    fn client(&self, reference: &str, credentials: Option<&Credentials>) -> Result<Arc<RegistryClient>, RegistryError> {
        let Some(creds) = credentials else { return Ok(Arc::clone(&self.shared)) };
        let parsed = oci_client::Reference::from_str(reference)
            .map_err(|e| RegistryError::InvalidReference { reference: reference.to_string(), reason: e.to_string() })?;
        let client =
            RegistryClient::new(self.config.clone())?.with_credentials(parsed.resolve_registry(), creds.clone());
        Ok(Arc::new(client))
    }

    /// The image `reference` pinned to `digest` (`registry/repo@digest`).
    fn pinned(reference: &str, digest: &str) -> Result<String, SourceError> {
        let parsed = oci_client::Reference::from_str(reference).map_err(|e| other_err(reference, e))?;
        Ok(format!("{}/{}@{digest}", parsed.resolve_registry(), parsed.repository()))
    }

    /// Pushes the image made of `config` and `layers` (whose blobs are in `store`) to `target`,
    /// mounting blobs from `mount_from` images of the same registry: the config and manifest
    /// are put in `store` first, serialised as [`ImageBlobs`] (so the digest equals that of
    /// the same image in an OCI layout).
    ///
    /// # Errors
    /// [`SourceError::Store`] if the blobs cannot be stored, [`SourceError::Registry`] if the
    /// push fails.
    pub async fn push(
        &self,
        store: &BlobStore,
        config: &ImageConfiguration,
        layers: &[Descriptor],
        target: &str,
        mount_from: Vec<String>,
        credentials: Option<&Credentials>,
    ) -> Result<PushReport, SourceError> {
        let blobs = ImageBlobs::new(config, layers)
            .map_err(|source| SourceError::Layout { reference: target.into(), source })?;
        let mut manifest = None;
        for bytes in [&blobs.config, &blobs.manifest] {
            let digest = store.put(bytes).map_err(|e| SourceError::Store {
                reference: target.to_string(),
                digest: CasDigest::of(bytes).to_string(),
                message: e.to_string(),
            })?;
            manifest = Some(digest);
        }
        let manifest = manifest.ok_or_else(|| other_err(target, "no manifest"))?;
        let client = self.client(target, credentials)?;
        Ok(client.push(store, &manifest, target, &PushOptions { mount_from }).await?)
    }
}

impl From<PulledImage> for SourceImage {
    fn from(p: PulledImage) -> Self {
        Self { manifest_digest: p.manifest_digest.to_string(), config: p.config, layers: p.layers }
    }
}

#[async_trait::async_trait]
impl ImageSource for RegistrySource {
    async fn resolve(&self, reference: &str, credentials: Option<&Credentials>) -> Result<String, SourceError> {
        let client = self.client(reference, credentials)?;
        Ok(client.resolve(reference).await?.to_string())
    }

    async fn fetch(
        &self,
        reference: &str,
        credentials: Option<&Credentials>,
        store: &BlobStore,
    ) -> Result<SourceImage, SourceError> {
        let client = self.client(reference, credentials)?;
        Ok(client.pull(reference, store).await?.into())
    }

    async fn fetch_resolved(
        &self,
        reference: &str,
        digest: &str,
        credentials: Option<&Credentials>,
        store: &BlobStore,
    ) -> Result<SourceImage, SourceError> {
        let cas: CasDigest = digest.parse().map_err(|e| other_err(reference, e))?;
        if store.contains(&cas).unwrap_or(false) {
            if let Ok(image) = PulledImage::load(store, &cas, reference) {
                let all_there = image.layers.iter().all(|l| {
                    l.digest().as_ref().parse::<CasDigest>().is_ok_and(|d| store.contains(&d).unwrap_or(false))
                });
                if all_there {
                    tracing::debug!(%reference, %digest, "base served from the store");
                    return Ok(image.into());
                }
            }
        }
        let pinned = Self::pinned(reference, digest)?;
        let client = self.client(reference, credentials)?;
        let mut image: SourceImage = client.pull(&pinned, store).await?.into();
        if image.manifest_digest != digest {
            return Err(other_err(reference, format!("pulled {} when {digest} was asked for", image.manifest_digest)));
        }
        image.manifest_digest = digest.to_string();
        Ok(image)
    }
}
