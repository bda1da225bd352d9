//! Helpers shared by the store's integration tests: a real store in a temp dir and builds in
//! known states.

use nullspace_engine::store::*;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: SqliteStore,
    pub a: TenantId,
    pub b: TenantId,
}

pub async fn open() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("store.db")).await.expect("open store");
    Fixture { dir, store, a: "tenant-a".parse().expect("tenant"), b: "tenant-b".parse().expect("tenant") }
}

pub fn name(s: &str) -> TemplateName {
    s.parse().expect("template name")
}

pub fn r(s: &str) -> TemplateRef {
    s.parse().expect("template ref")
}

pub fn tag(s: &str) -> Tag {
    s.parse().expect("tag")
}

pub fn new_build(template: &str, backend: Backend) -> NewBuild {
    NewBuild {
        template: name(template),
        backend,
        definition: r#"{"steps":["RUN true"]}"#.into(),
        plan_digest: Some("sha256:plan".into()),
        requested_tags: vec![tag("latest")],
        retry_of: None,
    }
}

pub fn artifact(n: usize) -> Artifact {
    Artifact { manifest_digest: format!("sha256:{n:064x}"), location: format!("oci-layout:/blobs#{n}") }
}

/// A build taken through building to ready, with an artifact and a retention time.
pub async fn ready_build(
    store: &SqliteStore,
    tenant: &TenantId,
    template: &str,
    retention: Option<Timestamp>,
) -> Build {
    let b = store.create_build(tenant, new_build(template, Backend::Native)).await.expect("create build");
    store
        .update_build(tenant, &b.id, BuildUpdate { status: Some(BuildStatus::Building), ..Default::default() })
        .await
        .expect("building");
    store
        .update_build(
            tenant,
            &b.id,
            BuildUpdate {
                status: Some(BuildStatus::Ready),
                artifact: Some(artifact(b.created_at.0 as usize)),
                retention_expires_at: retention,
                ..Default::default()
            },
        )
        .await
        .expect("ready")
        .build
}

pub fn is_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::NotFound { .. }))
}

pub fn is_denied<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::PermissionDenied { .. }))
}
