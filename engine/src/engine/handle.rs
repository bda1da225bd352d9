//! [`BuildHandle`]: one build, read from the store.

use std::time::{Duration, Instant};

use futures_util::Stream;

use super::types::{BuildInfo, EngineError, LogCallback, RetryOptions, StatusReport};
use super::{Engine, JobRequest};
use crate::store::{
    BuildId, BuildReason, BuildStatus, BuildUpdate, LogEntry, LogLevel, NewLogEntry, StoreError, Tag, TagMove,
    TemplateRef, TenantId,
};

/// How often a handle polls the store while following or waiting.
const POLL: Duration = Duration::from_millis(100);

/// Log entries read per store call.
const PAGE: u32 = 1000;

/// A build, by id. Everything it reports comes from the store, so a handle from
/// [`Engine::connect`] in another process sees the same thing.
#[derive(Clone, Debug)]
pub struct BuildHandle {
    engine: Engine,
    tenant: TenantId,
    id: BuildId,
}

impl BuildHandle {
    pub(crate) fn new(engine: Engine, tenant: TenantId, id: BuildId) -> Self {
        Self { engine, tenant, id }
    }

    /// The build's id.
    pub fn id(&self) -> &BuildId {
        &self.id
    }

    /// The tenant the handle acts for.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The build as stored now.
    ///
    /// # Errors
    /// Store errors.
    pub async fn info(&self) -> Result<BuildInfo, EngineError> {
        Ok(self.engine.inner.store.get_build(&self.tenant, &self.id).await?.into())
    }

    /// The build and up to 1,000 log entries from `offset`, in one snapshot.
    ///
    /// # Errors
    /// Store errors.
    pub async fn get_status(&self, offset: u64) -> Result<StatusReport, EngineError> {
        let v = self.engine.inner.store.get_status(&self.tenant, &self.id, offset, PAGE).await?;
        Ok(StatusReport { info: v.build.into(), logs: v.logs })
    }

    /// The log from `offset`: durable entries, then (with `follow`) new ones as they are stored
    /// until the build is terminal and its log read to the end.
    pub fn logs(
        &self,
        offset: u64,
        follow: bool,
    ) -> impl Stream<Item = Result<LogEntry, EngineError>> + Send + 'static {
        let this = self.clone();
        futures_util::stream::unfold(
            (this, offset, std::collections::VecDeque::new(), false),
            move |(this, mut offset, mut buf, mut done)| async move {
                loop {
                    if let Some(e) = buf.pop_front() {
                        return Some((Ok(e), (this, offset, buf, done)));
                    }
                    if done {
                        return None;
                    }
                    let status = match this.engine.inner.store.get_status(&this.tenant, &this.id, offset, PAGE).await {
                        Ok(s) => s,
                        Err(e) => return Some((Err(e.into()), (this, offset, buf, true))),
                    };
                    let got = status.logs.entries.len();
                    offset = status.logs.next_offset;
                    buf.extend(status.logs.entries);
                    if got == 0 {
                        if !follow || status.build.status.is_terminal() {
                            done = true;
                        } else {
                            tokio::time::sleep(POLL).await;
                        }
                    }
                }
            },
        )
    }

    /// Cancels the build if it is queued or building: records `cancelled` with the reason and a
    /// durable log entry, and stops the executor (here, or in the process running it).
    ///
    /// # Errors
    /// [`crate::store::StoreError::Finished`] when the build already ended.
    pub async fn cancel(&self, reason: &str) -> Result<BuildInfo, EngineError> {
        let message = if reason.is_empty() { "cancelled".to_owned() } else { format!("cancelled: {reason}") };
        let updated = self
            .engine
            .inner
            .store
            .update_build(
                &self.tenant,
                &self.id,
                BuildUpdate {
                    status: Some(BuildStatus::Cancelled),
                    reason: Some(BuildReason::message(message.clone())),
                    logs: vec![NewLogEntry::new(LogLevel::Warn, message)],
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| match e {
                // Said plainly: the build ended before the cancel arrived.
                StoreError::InvalidTransition { build, from, .. } if from.is_terminal() => {
                    StoreError::Finished { build, status: from }
                }
                e => e,
            })?;
        let token = self.engine.inner.running.lock().unwrap_or_else(|p| p.into_inner()).get(&self.id).cloned();
        if let Some(t) = token {
            t.cancel();
        }
        Ok(updated.build.into())
    }

    /// A new attempt from the persisted definition. Secrets are never persisted: a template that
    /// needs them gets them from `options.build_secrets` or its variables, else the retry is
    /// refused before anything is recorded.
    ///
    /// # Errors
    /// [`EngineError::MissingSecrets`]; [`EngineError::Definition`]; store errors.
    pub async fn retry(&self, options: RetryOptions) -> Result<BuildHandle, EngineError> {
        let build = self.engine.inner.store.get_build(&self.tenant, &self.id).await?;
        let definition: super::BuildDefinition = serde_json::from_str(&build.definition)
            .map_err(|e| EngineError::Definition { build: self.id.to_string(), message: e.to_string() })?;
        // A definition that no longer plans fails as a build, with its diagnostics.
        if let Some(plan) = super::run::plan_definition(&definition).plan {
            super::run::resolve_secrets(super::run::plan_secrets(&plan), &options.build_secrets)?;
        }
        self.engine
            .submit(JobRequest {
                tenant: self.tenant.clone(),
                name: build.template,
                definition,
                tags: options.tags.unwrap_or(build.requested_tags),
                secrets: options.build_secrets,
                credentials: options.credentials,
                on_log: options.on_log,
                retry_of: Some(self.id.clone()),
            })
            .await
    }

    /// Moves `tag` of the template to this build (ready, artifact available).
    ///
    /// # Errors
    /// [`crate::store::StoreError::NotPromotable`]; store errors.
    pub async fn promote(&self, tag: &Tag) -> Result<TagMove, EngineError> {
        let moves = self
            .engine
            .inner
            .store
            .assign_tags(&self.tenant, &TemplateRef::Build(self.id.clone()), std::slice::from_ref(tag))
            .await?;
        moves.into_iter().next().ok_or_else(|| EngineError::Config("the store moved no tag".into()))
    }

    /// Waits until the build is terminal (at most `timeout`), giving each new log entry to
    /// `on_log`.
    ///
    /// # Errors
    /// [`EngineError::Timeout`]; store errors.
    pub async fn wait_until_terminal(
        &self,
        timeout: Option<Duration>,
        on_log: Option<LogCallback>,
    ) -> Result<BuildInfo, EngineError> {
        let start = Instant::now();
        let mut offset = match on_log {
            Some(_) => 0,
            None => u64::MAX,
        };
        loop {
            let status =
                self.engine.inner.store.get_status(&self.tenant, &self.id, offset.min(i64::MAX as u64), PAGE).await?;
            if let Some(cb) = &on_log {
                for e in &status.logs.entries {
                    cb(e);
                }
                offset = status.logs.next_offset;
            }
            let more = on_log.is_some() && !status.logs.entries.is_empty();
            if status.build.status.is_terminal() && !more {
                return Ok(status.build.into());
            }
            if !more {
                if timeout.is_some_and(|t| start.elapsed() >= t) {
                    return Err(EngineError::Timeout {
                        build: self.id.to_string(),
                        seconds: start.elapsed().as_secs_f64(),
                    });
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
}
