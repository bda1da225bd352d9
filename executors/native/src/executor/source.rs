//! Where base images come from: [`ImageSource`] puts an image's config and layer blobs in the
//! engine's [`BlobStore`]. [`OciLayoutSource`] reads `oci:PATH[:TAG]` layouts; the registry
//! module plugs in through the same trait.

use std::io::Read;

use nullspace_engine::cas::BlobStore;
use nullspace_plan::builder::Credentials;
use oci_spec::image::{Descriptor, ImageConfiguration};

use crate::layout::{LayoutError, OciDir, OciRef};

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
    /// Anything else (registry errors), with its message.
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
