//! The retention collector: ready, untagged builds past `retention_expires_at` lose their
//! artifact. Each is first marked expired (so it can no longer be tagged), then its image layout
//! is removed and it is marked deleted. Only layouts the engine made (under `STATE/images/`) are
//! removed; an artifact written elsewhere (`--output`) stays expired, its files left alone.

use std::path::PathBuf;
use std::time::Duration;

use super::Engine;
use super::types::EngineError;
use crate::store::{Artifact, ArtifactAvailability, Timestamp};

/// What one collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CollectStats {
    /// Builds whose artifact was marked expired.
    pub expired: usize,
    /// Builds whose artifact files were removed (marked deleted).
    pub deleted: usize,
}

/// Builds handled per store call.
const BATCH: u32 = 500;

impl Engine {
    /// The layout directory of an artifact the engine wrote under its state directory.
    fn owned_layout(&self, artifact: &Artifact) -> Option<PathBuf> {
        let rest = artifact.location.strip_prefix("oci:")?;
        let (path, _tag) = rest.rsplit_once(':')?;
        let path = PathBuf::from(path);
        let images = self.inner.state_dir.join("images");
        (path.starts_with(&images) && path != images).then_some(path)
    }

    /// Removes an artifact's layout if the engine owns it; `true` if nothing of it remains.
    pub(crate) async fn remove_artifact_files(&self, artifact: &Artifact) -> bool {
        let Some(dir) = self.owned_layout(artifact) else { return false };
        let d = dir.clone();
        match tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&d)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => true,
            Ok(Err(e)) => {
                tracing::warn!(path = %dir.display(), error = %e, "cannot remove an expired artifact");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "artifact removal task failed");
                false
            }
        }
    }

    /// Collects artifacts whose retention ended by `now`.
    ///
    /// # Errors
    /// Store errors.
    pub async fn collect_expired(&self, now: Timestamp) -> Result<CollectStats, EngineError> {
        let store = &self.inner.store;
        let mut stats = CollectStats::default();
        loop {
            let batch = store.list_expired_artifacts(now, BATCH).await?;
            if batch.is_empty() {
                return Ok(stats);
            }
            let ids: Vec<_> = batch
                .iter()
                .filter(|e| e.availability == ArtifactAvailability::Available)
                .map(|e| e.build_id.clone())
                .collect();
            let expired = store.mark_artifacts(&ids, ArtifactAvailability::Expired).await?;
            stats.expired += expired.len();
            let mut removed = Vec::new();
            for e in &batch {
                let now_expired = e.availability == ArtifactAvailability::Expired || expired.contains(&e.build_id);
                if now_expired && self.remove_artifact_files(&e.artifact).await {
                    removed.push(e.build_id.clone());
                }
            }
            stats.deleted += store.mark_artifacts(&removed, ArtifactAvailability::Deleted).await?.len();
            if removed.is_empty() && expired.is_empty() {
                // What is left cannot be removed by this engine (not its files): stop here.
                return Ok(stats);
            }
        }
    }

    /// Runs [`Self::collect_expired`] every `every` until the engine is dropped.
    pub(crate) fn spawn_collector(&self, every: Duration) {
        let weak = std::sync::Arc::downgrade(&self.inner);
        let stop = self.inner.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = stop.cancelled() => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                let engine = Engine { inner };
                if let Err(e) = engine.collect_expired(Timestamp::now()).await {
                    tracing::warn!(error = %e, "retention collection failed");
                }
            }
        });
    }
}
