//! `nullspace-native`: builds OCI images without a daemon.
//!
//! - [`layer`]: reproducible layer tarballs (COPY-like and diff layers) with their digests;
//! - [`unpack`]: applying layers to a root filesystem without ever writing outside it;
//! - [`layout`]: OCI image layout directories (blobs, manifests, configs, tags);
//! - [`registry`]: pulling base images into the blob store and pushing results to registries.
//! - [`run`]: RUN steps through runc on overlayfs (or a copied root filesystem);
//! - [`executor`]: [`executor::NativeExecutor`], the engine's executor for declarative plans.

pub mod executor;
pub mod layer;
pub mod layout;
pub mod registry;
pub mod run;
mod tarfmt;
pub mod unpack;
