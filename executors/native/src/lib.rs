//! `nullspace-native`: builds OCI images without a daemon.
//!
//! - [`layer`]: reproducible layer tarballs (COPY-like and diff layers) with their digests;
//! - [`unpack`]: applying layers to a root filesystem without ever writing outside it;
//! - [`layout`]: OCI image layout directories (blobs, manifests, configs, tags);
//! - [`registry`]: pulling base images into the blob store and pushing results to registries.

pub mod layer;
pub mod layout;
pub mod registry;
mod tarfmt;
pub mod unpack;
