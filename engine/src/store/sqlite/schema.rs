//! The schema, versioned with `PRAGMA user_version`: migration `i` brings version `i` to `i + 1`.

use std::path::Path;

use rusqlite::Connection;

use crate::store::StoreError;
use crate::store::error::SqlContext;

/// Every migration, oldest first. Append only; never edit one that has shipped.
const MIGRATIONS: &[&str] = &[r#"
-- A namespace belongs to the tenant that first created a name in it.
CREATE TABLE namespaces (
    namespace   TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE templates (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    tenant      TEXT NOT NULL,
    visibility  TEXT NOT NULL CHECK (visibility IN ('private', 'public')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX templates_tenant ON templates (tenant);

-- Current names and aliases share one key space, so a lookup is one probe.
CREATE TABLE names (
    name          TEXT PRIMARY KEY,
    namespace     TEXT NOT NULL REFERENCES namespaces (namespace),
    template_seq  INTEGER NOT NULL REFERENCES templates (seq),
    is_primary    INTEGER NOT NULL CHECK (is_primary IN (0, 1)),
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX names_primary ON names (template_seq) WHERE is_primary = 1;
CREATE INDEX names_template ON names (template_seq, name);

CREATE TABLE builds (
    seq                   INTEGER PRIMARY KEY,
    id                    TEXT NOT NULL UNIQUE,
    tenant                TEXT NOT NULL,
    template_seq          INTEGER NOT NULL REFERENCES templates (seq),
    status                TEXT NOT NULL
        CHECK (status IN ('queued', 'building', 'ready', 'failed', 'cancelled')),
    reason                TEXT,
    backend               TEXT NOT NULL CHECK (backend IN ('native', 'buildkit')),
    definition            TEXT NOT NULL,
    plan_digest           TEXT,
    cache_key             TEXT,
    requested_tags        TEXT NOT NULL,
    artifact_digest       TEXT,
    artifact_location     TEXT,
    artifact_availability TEXT NOT NULL DEFAULT 'none'
        CHECK (artifact_availability IN ('available', 'expired', 'deleted', 'none')),
    retention_expires_at  INTEGER,
    steps_total           INTEGER,
    steps_cached          INTEGER,
    bytes_reused          INTEGER,
    bytes_new             INTEGER,
    created_at            INTEGER NOT NULL,
    started_at            INTEGER,
    finished_at           INTEGER,
    retry_of              INTEGER REFERENCES builds (seq) ON DELETE SET NULL
);
CREATE INDEX builds_template ON builds (template_seq, seq);
CREATE INDEX builds_in_flight ON builds (status) WHERE status IN ('queued', 'building');
CREATE INDEX builds_retention ON builds (retention_expires_at)
    WHERE status = 'ready' AND artifact_availability IN ('available', 'expired');
CREATE INDEX builds_retry_of ON builds (retry_of) WHERE retry_of IS NOT NULL;

CREATE TABLE tags (
    template_seq  INTEGER NOT NULL REFERENCES templates (seq),
    tag           TEXT NOT NULL,
    build_seq     INTEGER NOT NULL REFERENCES builds (seq),
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (template_seq, tag)
) WITHOUT ROWID;
CREATE INDEX tags_build ON tags (build_seq);

-- Clustered on (build, offset): reading a page is one range scan, appending is at the end.
CREATE TABLE logs (
    build_seq  INTEGER NOT NULL REFERENCES builds (seq),
    log_offset INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    level      INTEGER NOT NULL CHECK (level BETWEEN 0 AND 3),
    step       TEXT,
    message    TEXT NOT NULL,
    PRIMARY KEY (build_seq, log_offset)
) WITHOUT ROWID;
"#];

/// Brings the database to the newest schema, one transaction per migration.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    loop {
        let tx =
            conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).ctx("starting a migration")?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).ctx("reading the schema version")?;
        if version < 0 {
            return Err(StoreError::Corrupt { table: "pragma", column: "user_version", value: version.to_string() });
        }
        if version > supported {
            return Err(StoreError::SchemaTooNew { path: path.to_owned(), found: version, supported });
        }
        let Some(sql) = usize::try_from(version).ok().and_then(|v| MIGRATIONS.get(v)) else {
            return Ok(());
        };
        tracing::info!(path = %path.display(), from = version, "migrating store schema");
        tx.execute_batch(sql).ctx("applying a migration")?;
        tx.pragma_update(None, "user_version", version + 1).ctx("writing the schema version")?;
        tx.commit().ctx("committing a migration")?;
    }
}
