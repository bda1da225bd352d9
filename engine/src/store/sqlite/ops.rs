//! The store's operations as synchronous functions on a connection inside a transaction.
//!
//! The async layer (`super`) decides which connection and transaction each runs in; everything
//! here assumes it already holds the right one, so several operations compose into one commit.

use std::fmt::Display;
use std::ops::Range;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::error::SqlContext;
use crate::store::types::page_size;
use crate::store::*;

/// Page size of `read_logs` when the caller passes 0.
const DEFAULT_LOG_PAGE: u32 = 1000;
/// Largest log page.
const MAX_LOG_PAGE: u32 = 10_000;
/// The reason recorded on builds found in flight when the store is opened.
pub(crate) const INTERRUPTED: &str = "interrupted";

/// Whether a call only reads or also changes what it resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    Read,
    Write,
}

fn corrupt(table: &'static str, column: &'static str, value: impl Display) -> StoreError {
    StoreError::Corrupt { table, column, value: value.to_string() }
}

fn parse<T: FromStr>(table: &'static str, column: &'static str, s: String) -> Result<T> {
    s.parse().map_err(|_| corrupt(table, column, s))
}

fn parse_opt<T: FromStr>(table: &'static str, column: &'static str, s: Option<String>) -> Result<Option<T>> {
    s.map(|s| parse(table, column, s)).transpose()
}

fn to_u64(table: &'static str, column: &'static str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(table, column, v))
}

fn to_i64(field: &'static str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid { field, input: v.to_string(), reason: "too large".into() })
}

/// A template's own columns and current name.
#[derive(Debug, Clone)]
pub(super) struct TemplateRow {
    pub(super) seq: i64,
    id: TemplateId,
    tenant: TenantId,
    visibility: Visibility,
    created_at: Timestamp,
    updated_at: Timestamp,
    name: TemplateName,
}

impl TemplateRow {
    fn into_template(self) -> Template {
        Template {
            id: self.id,
            tenant: self.tenant,
            name: self.name,
            visibility: self.visibility,
            created_at: self.created_at,
            updated_at: self.updated_at,
            aliases: None,
            tags: None,
        }
    }

    /// Enforces tenancy: others' private templates do not exist, others' public ones are
    /// read-only.
    fn check(&self, tenant: &TenantId, access: Access, kind: ObjectKind, key: &dyn Display) -> Result<()> {
        if &self.tenant == tenant {
            return Ok(());
        }
        match (self.visibility, access) {
            (Visibility::Public, Access::Read) => Ok(()),
            (Visibility::Public, Access::Write) => Err(StoreError::denied(kind, key)),
            (Visibility::Private, _) => Err(StoreError::not_found(kind, key)),
        }
    }
}

const TEMPLATE_COLS: &str = "t.seq, t.id, t.tenant, t.visibility, t.created_at, t.updated_at, n.name";
const TEMPLATE_FROM: &str = "templates t JOIN names n ON n.template_seq = t.seq AND n.is_primary = 1";

fn template_from_row(row: &Row<'_>) -> Result<TemplateRow> {
    let get = |i| -> Result<String> { row.get(i).ctx("reading a template") };
    Ok(TemplateRow {
        seq: row.get(0).ctx("reading a template")?,
        id: parse("templates", "id", get(1)?)?,
        tenant: parse("templates", "tenant", get(2)?)?,
        visibility: parse("templates", "visibility", get(3)?)?,
        created_at: Timestamp(row.get(4).ctx("reading a template")?),
        updated_at: Timestamp(row.get(5).ctx("reading a template")?),
        name: parse("names", "name", get(6)?)?,
    })
}

fn query_templates(conn: &Connection, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Vec<TemplateRow>> {
    let mut stmt = conn.prepare_cached(sql).ctx("preparing a template query")?;
    let mut rows = stmt.query(params).ctx("querying templates")?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ctx("reading templates")? {
        out.push(template_from_row(row)?);
    }
    Ok(out)
}

fn template_by_seq(conn: &Connection, seq: i64) -> Result<TemplateRow> {
    let sql = format!("SELECT {TEMPLATE_COLS} FROM {TEMPLATE_FROM} WHERE t.seq = ?1");
    query_templates(conn, &sql, &[&seq])?
        .pop()
        .ok_or_else(|| corrupt("names", "is_primary", format!("template {seq} has no name")))
}

/// The template a name or alias leads to, whoever owns it.
fn template_by_name(conn: &Connection, name: &TemplateName) -> Result<Option<TemplateRow>> {
    let sql = format!(
        "SELECT {TEMPLATE_COLS} FROM names a JOIN templates t ON t.seq = a.template_seq \
         JOIN names n ON n.template_seq = t.seq AND n.is_primary = 1 WHERE a.name = ?1"
    );
    Ok(query_templates(conn, &sql, &[&name.as_str()])?.pop())
}

/// Resolves a reference for `tenant`: the template and, for a tag or build id, the build's seq.
pub(super) fn resolve(
    conn: &Connection,
    tenant: &TenantId,
    reference: &TemplateRef,
    access: Access,
) -> Result<(TemplateRow, Option<i64>)> {
    match reference {
        TemplateRef::Name(name) => {
            let t = template_by_name(conn, name)?.ok_or_else(|| StoreError::not_found(ObjectKind::Template, name))?;
            t.check(tenant, access, ObjectKind::Template, name)?;
            Ok((t, None))
        }
        TemplateRef::Tagged(name, tag) => {
            let t = template_by_name(conn, name)?.ok_or_else(|| StoreError::not_found(ObjectKind::Template, name))?;
            t.check(tenant, access, ObjectKind::Template, name)?;
            let build: Option<i64> = conn
                .prepare_cached("SELECT build_seq FROM tags WHERE template_seq = ?1 AND tag = ?2")
                .and_then(|mut s| s.query_row(params![t.seq, tag.as_str()], |r| r.get(0)).optional())
                .ctx("looking up a tag")?;
            let build = build.ok_or_else(|| StoreError::not_found(ObjectKind::Tag, reference))?;
            Ok((t, Some(build)))
        }
        TemplateRef::Build(id) => {
            let (t, seq) = resolve_build(conn, tenant, id, access)?;
            Ok((t, Some(seq)))
        }
    }
}

/// A build's seq and template, checked for `tenant`.
pub(super) fn resolve_build(
    conn: &Connection,
    tenant: &TenantId,
    id: &BuildId,
    access: Access,
) -> Result<(TemplateRow, i64)> {
    let found: Option<(i64, i64)> = conn
        .prepare_cached("SELECT seq, template_seq FROM builds WHERE id = ?1")
        .and_then(|mut s| s.query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .ctx("looking up a build")?;
    let (seq, template_seq) = found.ok_or_else(|| StoreError::not_found(ObjectKind::Build, id))?;
    let t = template_by_seq(conn, template_seq)?;
    t.check(tenant, access, ObjectKind::Build, id)?;
    Ok((t, seq))
}

/// Claims `namespace` for `tenant` unless it already has it; another tenant's namespace is
/// denied before any name in it is looked at, so nothing about its names leaks.
fn claim_namespace(conn: &Connection, tenant: &TenantId, namespace: &str, now: Timestamp) -> Result<()> {
    let owner: Option<String> = conn
        .prepare_cached("SELECT tenant FROM namespaces WHERE namespace = ?1")
        .and_then(|mut s| s.query_row([namespace], |r| r.get(0)).optional())
        .ctx("looking up a namespace")?;
    match owner {
        Some(owner) if owner == tenant.as_str() => Ok(()),
        Some(_) => Err(StoreError::denied(ObjectKind::Namespace, namespace)),
        None => {
            conn.prepare_cached("INSERT INTO namespaces (namespace, tenant, created_at) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![namespace, tenant.as_str(), now.0]))
                .ctx("claiming a namespace")?;
            Ok(())
        }
    }
}

fn insert_template(
    conn: &Connection,
    tenant: &TenantId,
    name: &TemplateName,
    visibility: Visibility,
    now: Timestamp,
) -> Result<TemplateRow> {
    let id = TemplateId::generate();
    conn.prepare_cached(
        "INSERT INTO templates (id, tenant, visibility, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )
    .and_then(|mut s| s.execute(params![id.as_str(), tenant.as_str(), visibility.as_str(), now.0]))
    .ctx("inserting a template")?;
    let seq = conn.last_insert_rowid();
    insert_name(conn, name, seq, true, now)?;
    Ok(TemplateRow {
        seq,
        id,
        tenant: tenant.clone(),
        visibility,
        created_at: now,
        updated_at: now,
        name: name.clone(),
    })
}

fn insert_name(conn: &Connection, name: &TemplateName, template_seq: i64, primary: bool, now: Timestamp) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO names (name, namespace, template_seq, is_primary, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![name.as_str(), name.namespace(), template_seq, primary, now.0]))
    .ctx("inserting a name")?;
    Ok(())
}

fn touch_template(conn: &Connection, seq: i64, now: Timestamp) -> Result<()> {
    conn.prepare_cached("UPDATE templates SET updated_at = ?2 WHERE seq = ?1")
        .and_then(|mut s| s.execute(params![seq, now.0]))
        .ctx("updating a template")?;
    Ok(())
}

fn aliases_of(conn: &Connection, template_seq: i64) -> Result<Vec<Alias>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT name, created_at FROM names WHERE template_seq = ?1 AND is_primary = 0 \
             ORDER BY name",
        )
        .ctx("preparing an alias query")?;
    let mut rows = stmt.query([template_seq]).ctx("listing aliases")?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ctx("reading aliases")? {
        out.push(Alias {
            name: parse("names", "name", row.get(0).ctx("reading aliases")?)?,
            created_at: Timestamp(row.get(1).ctx("reading aliases")?),
        });
    }
    Ok(out)
}

fn tags_of(conn: &Connection, template_seq: i64) -> Result<Vec<TagInfo>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT g.tag, b.id, g.updated_at FROM tags g JOIN builds b ON b.seq = g.build_seq \
             WHERE g.template_seq = ?1 ORDER BY g.tag",
        )
        .ctx("preparing a tag query")?;
    let mut rows = stmt.query([template_seq]).ctx("listing tags")?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ctx("reading tags")? {
        out.push(TagInfo {
            tag: parse("tags", "tag", row.get(0).ctx("reading tags")?)?,
            build_id: parse("builds", "id", row.get(1).ctx("reading tags")?)?,
            updated_at: Timestamp(row.get(2).ctx("reading tags")?),
        });
    }
    Ok(out)
}

fn full_template(conn: &Connection, row: TemplateRow) -> Result<Template> {
    let seq = row.seq;
    let mut t = row.into_template();
    t.aliases = Some(aliases_of(conn, seq)?);
    t.tags = Some(tags_of(conn, seq)?);
    Ok(t)
}

pub(super) fn reserve_name(
    conn: &Connection,
    tenant: &TenantId,
    name: &TemplateName,
    visibility: Visibility,
) -> Result<Template> {
    let now = Timestamp::now();
    claim_namespace(conn, tenant, name.namespace(), now)?;
    if template_by_name(conn, name)?.is_some() {
        return Err(StoreError::exists(ObjectKind::Name, name));
    }
    let row = insert_template(conn, tenant, name, visibility, now)?;
    full_template(conn, row)
}

pub(super) fn get_template(conn: &Connection, tenant: &TenantId, reference: &TemplateRef) -> Result<Resolved> {
    let (row, build) = resolve(conn, tenant, reference, Access::Read)?;
    let build = build.map(|seq| load_build(conn, seq)).transpose()?;
    Ok(Resolved { template: full_template(conn, row)?, build })
}

pub(super) fn list_templates(conn: &Connection, tenant: &TenantId, query: &TemplateQuery) -> Result<Page<Template>> {
    let limit = page_size(query.limit);
    let mut sql = format!("SELECT {TEMPLATE_COLS} FROM {TEMPLATE_FROM} WHERE ");
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(tenant.as_str().to_owned())];
    sql.push_str(match query.owner {
        Owner::Any => "(t.tenant = ?1 OR t.visibility = 'public')",
        Owner::Mine => "t.tenant = ?1",
        Owner::Others => "t.tenant <> ?1 AND t.visibility = 'public'",
    });
    if let Some(ns) = &query.namespace {
        args.push(Box::new(ns.clone()));
        sql.push_str(&format!(" AND n.namespace = ?{}", args.len()));
    }
    if let Some(v) = query.visibility {
        args.push(Box::new(v.as_str()));
        sql.push_str(&format!(" AND t.visibility = ?{}", args.len()));
    }
    if let Some(cursor) = &query.cursor {
        args.push(Box::new(cursor.clone()));
        sql.push_str(&format!(" AND n.name > ?{}", args.len()));
    }
    args.push(Box::new(i64::from(limit) + 1));
    sql.push_str(&format!(" ORDER BY n.name LIMIT ?{}", args.len()));
    let params: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.as_ref()).collect();
    let mut rows = query_templates(conn, &sql, &params)?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.name.to_string())
    } else {
        None
    };
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let seq = row.seq;
        let mut t = row.into_template();
        if query.fields.aliases {
            t.aliases = Some(aliases_of(conn, seq)?);
        }
        if query.fields.tags {
            t.tags = Some(tags_of(conn, seq)?);
        }
        items.push(t);
    }
    Ok(Page { items, next_cursor })
}

pub(super) fn rename_template(
    conn: &Connection,
    tenant: &TenantId,
    reference: &TemplateRef,
    new_name: &TemplateName,
) -> Result<Template> {
    let now = Timestamp::now();
    let (row, _) = resolve(conn, tenant, reference, Access::Write)?;
    claim_namespace(conn, tenant, new_name.namespace(), now)?;
    if let Some(holder) = template_by_name(conn, new_name)? {
        if holder.seq != row.seq {
            return Err(StoreError::exists(ObjectKind::Name, new_name));
        }
        if holder.name == *new_name {
            return full_template(conn, row);
        }
        // The new name is one of the template's own aliases: it becomes the name again.
        conn.prepare_cached("DELETE FROM names WHERE name = ?1")
            .and_then(|mut s| s.execute([new_name.as_str()]))
            .ctx("removing an alias")?;
    }
    conn.prepare_cached("UPDATE names SET is_primary = 0, created_at = ?2 WHERE name = ?1")
        .and_then(|mut s| s.execute(params![row.name.as_str(), now.0]))
        .ctx("turning the old name into an alias")?;
    insert_name(conn, new_name, row.seq, true, now)?;
    touch_template(conn, row.seq, now)?;
    let row = template_by_seq(conn, row.seq)?;
    full_template(conn, row)
}

pub(super) fn list_aliases(conn: &Connection, tenant: &TenantId, reference: &TemplateRef) -> Result<Vec<Alias>> {
    let (row, _) = resolve(conn, tenant, reference, Access::Read)?;
    aliases_of(conn, row.seq)
}

pub(super) fn remove_alias(conn: &Connection, tenant: &TenantId, alias: &TemplateName) -> Result<()> {
    let row = template_by_name(conn, alias)?.ok_or_else(|| StoreError::not_found(ObjectKind::Name, alias))?;
    row.check(tenant, Access::Write, ObjectKind::Name, alias)?;
    if row.name == *alias {
        return Err(StoreError::Invalid {
            field: "alias",
            input: alias.to_string(),
            reason: "this is the template's current name, not an alias".into(),
        });
    }
    conn.prepare_cached("DELETE FROM names WHERE name = ?1 AND is_primary = 0")
        .and_then(|mut s| s.execute([alias.as_str()]))
        .ctx("removing an alias")?;
    touch_template(conn, row.seq, Timestamp::now())
}

pub(super) fn set_visibility(
    conn: &Connection,
    tenant: &TenantId,
    reference: &TemplateRef,
    visibility: Visibility,
) -> Result<Template> {
    let (row, _) = resolve(conn, tenant, reference, Access::Write)?;
    conn.prepare_cached("UPDATE templates SET visibility = ?2, updated_at = ?3 WHERE seq = ?1")
        .and_then(|mut s| s.execute(params![row.seq, visibility.as_str(), Timestamp::now().0]))
        .ctx("setting visibility")?;
    let row = template_by_seq(conn, row.seq)?;
    full_template(conn, row)
}

pub(super) fn assign_tags(
    conn: &Connection,
    tenant: &TenantId,
    target: &TemplateRef,
    tags: &[Tag],
) -> Result<Vec<TagMove>> {
    let (row, build_seq) = resolve(conn, tenant, target, Access::Write)?;
    let Some(build_seq) = build_seq else {
        return Err(StoreError::Invalid {
            field: "target",
            input: target.to_string(),
            reason: "names a template, not a build: use `name:tag` or a build id".into(),
        });
    };
    let (build_id, status, availability): (String, String, String) = conn
        .prepare_cached("SELECT id, status, artifact_availability FROM builds WHERE seq = ?1")
        .and_then(|mut s| s.query_row([build_seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
        .ctx("reading a build")?;
    let build_id: BuildId = parse("builds", "id", build_id)?;
    let status: BuildStatus = parse("builds", "status", status)?;
    let availability: ArtifactAvailability = parse("builds", "artifact_availability", availability)?;
    if status != BuildStatus::Ready {
        return Err(StoreError::NotPromotable {
            build: build_id.to_string(),
            reason: format!("it is {status}, not ready"),
        });
    }
    if availability != ArtifactAvailability::Available {
        return Err(StoreError::NotPromotable {
            build: build_id.to_string(),
            reason: format!("its artifact is {availability}"),
        });
    }
    let now = Timestamp::now();
    let mut moves: Vec<TagMove> = Vec::with_capacity(tags.len());
    for tag in tags {
        if moves.iter().any(|m| m.tag == *tag) {
            continue;
        }
        let previous: Option<String> = conn
            .prepare_cached(
                "SELECT b.id FROM tags g JOIN builds b ON b.seq = g.build_seq \
                 WHERE g.template_seq = ?1 AND g.tag = ?2",
            )
            .and_then(|mut s| s.query_row(params![row.seq, tag.as_str()], |r| r.get(0)).optional())
            .ctx("reading a tag")?;
        conn.prepare_cached(
            "INSERT INTO tags (template_seq, tag, build_seq, updated_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (template_seq, tag) DO UPDATE SET build_seq = ?3, updated_at = ?4",
        )
        .and_then(|mut s| s.execute(params![row.seq, tag.as_str(), build_seq, now.0]))
        .ctx("writing a tag")?;
        moves.push(TagMove {
            tag: tag.clone(),
            previous: parse_opt("builds", "id", previous)?,
            build_id: build_id.clone(),
        });
    }
    touch_template(conn, row.seq, now)?;
    Ok(moves)
}

pub(super) fn remove_tag(conn: &Connection, tenant: &TenantId, reference: &TemplateRef, tag: &Tag) -> Result<BuildId> {
    let (row, _) = resolve(conn, tenant, reference, Access::Write)?;
    let build: Option<String> = conn
        .prepare_cached(
            "DELETE FROM tags WHERE template_seq = ?1 AND tag = ?2 \
             RETURNING (SELECT id FROM builds WHERE seq = build_seq)",
        )
        .and_then(|mut s| s.query_row(params![row.seq, tag.as_str()], |r| r.get(0)).optional())
        .ctx("removing a tag")?;
    let build = build.ok_or_else(|| StoreError::not_found(ObjectKind::Tag, format!("{}:{tag}", row.name)))?;
    touch_template(conn, row.seq, Timestamp::now())?;
    parse("builds", "id", build)
}

pub(super) fn delete_template(
    conn: &Connection,
    tenant: &TenantId,
    reference: &TemplateRef,
    force: bool,
) -> Result<DeletedTemplate> {
    let (row, _) = resolve(conn, tenant, reference, Access::Write)?;
    let tags: Vec<Tag> = tags_of(conn, row.seq)?.into_iter().map(|t| t.tag).collect();
    let in_flight: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM builds WHERE template_seq = ?1 \
             AND status IN ('queued', 'building')",
        )
        .and_then(|mut s| s.query_row([row.seq], |r| r.get(0)))
        .ctx("counting builds in flight")?;
    if !force && (!tags.is_empty() || in_flight > 0) {
        return Err(StoreError::InUse {
            template: row.name.to_string(),
            tags: tags.iter().map(Tag::to_string).collect(),
            builds_in_flight: to_u64("builds", "status", in_flight)?,
        });
    }
    let mut artifacts = Vec::new();
    {
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, artifact_digest, artifact_location FROM builds \
                 WHERE template_seq = ?1 AND artifact_availability IN ('available', 'expired') \
                 ORDER BY seq",
            )
            .ctx("preparing an artifact query")?;
        let mut rows = stmt.query([row.seq]).ctx("listing artifacts")?;
        while let Some(r) = rows.next().ctx("reading artifacts")? {
            let id: BuildId = parse("builds", "id", r.get(0).ctx("reading artifacts")?)?;
            let digest: Option<String> = r.get(1).ctx("reading artifacts")?;
            let location: Option<String> = r.get(2).ctx("reading artifacts")?;
            if let (Some(manifest_digest), Some(location)) = (digest, location) {
                artifacts.push((id, Artifact { manifest_digest, location }));
            }
        }
    }
    // Children first, so that no foreign key ever points at a removed row.
    let seq = row.seq;
    let steps: [(&str, &'static str); 6] = [
        ("DELETE FROM tags WHERE template_seq = ?1", "removing tags"),
        ("DELETE FROM logs WHERE build_seq IN (SELECT seq FROM builds WHERE template_seq = ?1)", "removing logs"),
        (
            "UPDATE builds SET retry_of = NULL WHERE retry_of IN \
             (SELECT seq FROM builds WHERE template_seq = ?1)",
            "unlinking retries",
        ),
        ("DELETE FROM builds WHERE template_seq = ?1", "removing builds"),
        ("DELETE FROM names WHERE template_seq = ?1", "removing names"),
        ("DELETE FROM templates WHERE seq = ?1", "removing the template"),
    ];
    let mut builds_deleted = 0;
    for (sql, what) in steps {
        let n = conn.execute(sql, [seq]).ctx(what)?;
        if what == "removing builds" {
            builds_deleted = n as u64;
        }
    }
    Ok(DeletedTemplate { id: row.id, name: row.name, tags, builds_deleted, artifacts })
}

const BUILD_SELECT: &str = "SELECT b.seq, b.id, b.tenant, t.id, n.name, b.status, b.reason, \
     b.backend, b.definition, b.plan_digest, b.cache_key, b.requested_tags, b.artifact_digest, \
     b.artifact_location, b.artifact_availability, b.retention_expires_at, b.steps_total, \
     b.steps_cached, b.bytes_reused, b.bytes_new, b.created_at, b.started_at, b.finished_at, \
     r.id \
     FROM builds b JOIN templates t ON t.seq = b.template_seq \
     JOIN names n ON n.template_seq = b.template_seq AND n.is_primary = 1 \
     LEFT JOIN builds r ON r.seq = b.retry_of";

fn build_from_row(conn: &Connection, row: &Row<'_>) -> Result<Build> {
    const C: &str = "reading a build";
    let seq: i64 = row.get(0).ctx(C)?;
    let reason: Option<String> = row.get(6).ctx(C)?;
    let reason = reason.map(|r| serde_json::from_str(&r).map_err(|_| corrupt("builds", "reason", r))).transpose()?;
    let requested: String = row.get(11).ctx(C)?;
    let requested_tags =
        serde_json::from_str(&requested).map_err(|_| corrupt("builds", "requested_tags", &requested))?;
    let digest: Option<String> = row.get(12).ctx(C)?;
    let location: Option<String> = row.get(13).ctx(C)?;
    let artifact = match (digest, location) {
        (Some(manifest_digest), Some(location)) => Some(Artifact { manifest_digest, location }),
        _ => None,
    };
    let summary: [Option<i64>; 4] =
        [row.get(16).ctx(C)?, row.get(17).ctx(C)?, row.get(18).ctx(C)?, row.get(19).ctx(C)?];
    let cache_summary = match summary {
        [Some(total), Some(cached), Some(reused), Some(new)] => Some(CacheSummary {
            steps_total: u32::try_from(total).map_err(|_| corrupt("builds", "steps_total", total))?,
            steps_cached: u32::try_from(cached).map_err(|_| corrupt("builds", "steps_cached", cached))?,
            bytes_reused: to_u64("builds", "bytes_reused", reused)?,
            bytes_new: to_u64("builds", "bytes_new", new)?,
        }),
        _ => None,
    };
    let mut tags_stmt =
        conn.prepare_cached("SELECT tag FROM tags WHERE build_seq = ?1 ORDER BY tag").ctx("preparing a tag query")?;
    let mut tag_rows = tags_stmt.query([seq]).ctx("listing a build's tags")?;
    let mut tags = Vec::new();
    while let Some(r) = tag_rows.next().ctx("reading a build's tags")? {
        tags.push(parse("tags", "tag", r.get(0).ctx("reading a build's tags")?)?);
    }
    Ok(Build {
        id: parse("builds", "id", row.get(1).ctx(C)?)?,
        tenant: parse("builds", "tenant", row.get(2).ctx(C)?)?,
        template_id: parse("templates", "id", row.get(3).ctx(C)?)?,
        template: parse("names", "name", row.get(4).ctx(C)?)?,
        status: parse("builds", "status", row.get(5).ctx(C)?)?,
        reason,
        backend: parse("builds", "backend", row.get(7).ctx(C)?)?,
        definition: row.get(8).ctx(C)?,
        plan_digest: row.get(9).ctx(C)?,
        cache_key: row.get(10).ctx(C)?,
        requested_tags,
        tags,
        artifact,
        artifact_availability: parse("builds", "artifact_availability", row.get(14).ctx(C)?)?,
        retention_expires_at: row.get::<_, Option<i64>>(15).ctx(C)?.map(Timestamp),
        cache_summary,
        created_at: Timestamp(row.get(20).ctx(C)?),
        started_at: row.get::<_, Option<i64>>(21).ctx(C)?.map(Timestamp),
        finished_at: row.get::<_, Option<i64>>(22).ctx(C)?.map(Timestamp),
        retry_of: parse_opt("builds", "id", row.get(23).ctx(C)?)?,
    })
}

fn query_builds(conn: &Connection, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Vec<(i64, Build)>> {
    let mut stmt = conn.prepare_cached(sql).ctx("preparing a build query")?;
    let mut rows = stmt.query(params).ctx("querying builds")?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ctx("reading builds")? {
        let seq: i64 = row.get(0).ctx("reading builds")?;
        out.push((seq, build_from_row(conn, row)?));
    }
    Ok(out)
}

pub(super) fn load_build(conn: &Connection, seq: i64) -> Result<Build> {
    let sql = format!("{BUILD_SELECT} WHERE b.seq = ?1");
    query_builds(conn, &sql, &[&seq])?.pop().map(|(_, b)| b).ok_or_else(|| corrupt("builds", "seq", seq))
}

pub(super) fn create_build(conn: &Connection, tenant: &TenantId, new: &NewBuild) -> Result<Build> {
    serde_json::from_str::<serde::de::IgnoredAny>(&new.definition).map_err(|e| StoreError::Invalid {
        field: "definition",
        input: new.definition.chars().take(80).collect(),
        reason: format!("not JSON: {e}"),
    })?;
    let now = Timestamp::now();
    claim_namespace(conn, tenant, new.template.namespace(), now)?;
    // The namespace is the tenant's, so any template found under the name is the tenant's too.
    let template = match template_by_name(conn, &new.template)? {
        Some(t) => t,
        None => insert_template(conn, tenant, &new.template, Visibility::Private, now)?,
    };
    let retry_of = match &new.retry_of {
        Some(id) => Some(resolve_build(conn, tenant, id, Access::Write)?.1),
        None => None,
    };
    let requested = serde_json::to_string(&new.requested_tags).map_err(|e| StoreError::Invalid {
        field: "requested_tags",
        input: format!("{:?}", new.requested_tags),
        reason: e.to_string(),
    })?;
    let id = BuildId::generate();
    conn.prepare_cached(
        "INSERT INTO builds (id, tenant, template_seq, status, backend, definition, plan_digest, \
         requested_tags, created_at, retry_of) \
         VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id.as_str(),
            tenant.as_str(),
            template.seq,
            new.backend.as_str(),
            new.definition,
            new.plan_digest,
            requested,
            now.0,
            retry_of
        ])
    })
    .ctx("inserting a build")?;
    load_build(conn, conn.last_insert_rowid())
}

pub(super) fn get_build(conn: &Connection, tenant: &TenantId, id: &BuildId) -> Result<Build> {
    let (_, seq) = resolve_build(conn, tenant, id, Access::Read)?;
    load_build(conn, seq)
}

pub(super) fn update_build(
    conn: &Connection,
    tenant: &TenantId,
    id: &BuildId,
    update: &BuildUpdate,
) -> Result<BuildUpdated> {
    let (_, seq) = resolve_build(conn, tenant, id, Access::Write)?;
    apply_update(conn, seq, id, update)
}

fn apply_update(conn: &Connection, seq: i64, id: &BuildId, update: &BuildUpdate) -> Result<BuildUpdated> {
    let (status, has_artifact): (String, bool) = conn
        .prepare_cached("SELECT status, artifact_digest IS NOT NULL FROM builds WHERE seq = ?1")
        .and_then(|mut s| s.query_row([seq], |r| Ok((r.get(0)?, r.get(1)?))))
        .ctx("reading a build's status")?;
    let current: BuildStatus = parse("builds", "status", status)?;
    let changes_outcome = update.status.is_some()
        || update.reason.is_some()
        || update.plan_digest.is_some()
        || update.cache_key.is_some()
        || update.artifact.is_some()
        || update.cache_summary.is_some();
    if current.is_terminal() && changes_outcome {
        return match update.status {
            Some(to) => Err(StoreError::InvalidTransition { build: id.to_string(), from: current, to }),
            None => Err(StoreError::Finished { build: id.to_string(), status: current }),
        };
    }
    let now = Timestamp::now();
    if let Some(to) = update.status {
        if !current.can_become(to) {
            return Err(StoreError::InvalidTransition { build: id.to_string(), from: current, to });
        }
        if to == BuildStatus::Ready && !has_artifact && update.artifact.is_none() {
            return Err(StoreError::Invalid {
                field: "artifact",
                input: id.to_string(),
                reason: "a build becomes ready only with an artifact".into(),
            });
        }
        conn.prepare_cached(
            "UPDATE builds SET status = ?2, \
             started_at = CASE WHEN ?2 = 'building' THEN ?3 ELSE started_at END, \
             finished_at = CASE WHEN ?4 THEN ?3 ELSE finished_at END WHERE seq = ?1",
        )
        .and_then(|mut s| s.execute(params![seq, to.as_str(), now.0, to.is_terminal()]))
        .ctx("changing a build's status")?;
    }
    if let Some(reason) = &update.reason {
        let json = serde_json::to_string(reason).map_err(|e| StoreError::Invalid {
            field: "reason",
            input: reason.message.clone(),
            reason: e.to_string(),
        })?;
        set_column(conn, "UPDATE builds SET reason = ?2 WHERE seq = ?1", seq, json)?;
    }
    if let Some(d) = &update.plan_digest {
        set_column(conn, "UPDATE builds SET plan_digest = ?2 WHERE seq = ?1", seq, d)?;
    }
    if let Some(k) = &update.cache_key {
        set_column(conn, "UPDATE builds SET cache_key = ?2 WHERE seq = ?1", seq, k)?;
    }
    if let Some(a) = &update.artifact {
        conn.prepare_cached(
            "UPDATE builds SET artifact_digest = ?2, artifact_location = ?3, \
             artifact_availability = 'available' WHERE seq = ?1",
        )
        .and_then(|mut s| s.execute(params![seq, a.manifest_digest, a.location]))
        .ctx("recording an artifact")?;
    }
    if let Some(c) = &update.cache_summary {
        let reused = to_i64("cache_summary.bytes_reused", c.bytes_reused)?;
        let new = to_i64("cache_summary.bytes_new", c.bytes_new)?;
        conn.prepare_cached(
            "UPDATE builds SET steps_total = ?2, steps_cached = ?3, bytes_reused = ?4, \
             bytes_new = ?5 WHERE seq = ?1",
        )
        .and_then(|mut s| s.execute(params![seq, c.steps_total, c.steps_cached, reused, new]))
        .ctx("recording a cache summary")?;
    }
    if let Some(t) = update.retention_expires_at {
        set_column(conn, "UPDATE builds SET retention_expires_at = ?2 WHERE seq = ?1", seq, t.0)?;
    }
    let log_offsets = append_at(conn, seq, &update.logs)?;
    Ok(BuildUpdated { build: load_build(conn, seq)?, log_offsets })
}

fn set_column(conn: &Connection, sql: &str, seq: i64, value: impl rusqlite::ToSql) -> Result<()> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute(params![seq, value])).ctx("updating a build")?;
    Ok(())
}

pub(super) fn list_builds(
    conn: &Connection,
    tenant: &TenantId,
    reference: &TemplateRef,
    query: &BuildQuery,
) -> Result<Page<Build>> {
    let (row, _) = resolve(conn, tenant, reference, Access::Read)?;
    let limit = page_size(query.limit);
    let mut sql = format!("{BUILD_SELECT} WHERE b.template_seq = ?1");
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(row.seq)];
    if let Some(cursor) = &query.cursor {
        let before: i64 = cursor.parse().map_err(|_| StoreError::Invalid {
            field: "cursor",
            input: cursor.clone(),
            reason: "not a cursor returned by list_builds".into(),
        })?;
        args.push(Box::new(before));
        sql.push_str(&format!(" AND b.seq < ?{}", args.len()));
    }
    if !query.status.is_empty() {
        let mut list = Vec::new();
        for s in &query.status {
            args.push(Box::new(s.as_str()));
            list.push(format!("?{}", args.len()));
        }
        sql.push_str(&format!(" AND b.status IN ({})", list.join(", ")));
    }
    if let Some(backend) = query.backend {
        args.push(Box::new(backend.as_str()));
        sql.push_str(&format!(" AND b.backend = ?{}", args.len()));
    }
    args.push(Box::new(i64::from(limit) + 1));
    sql.push_str(&format!(" ORDER BY b.seq DESC LIMIT ?{}", args.len()));
    let params: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.as_ref()).collect();
    let mut rows = query_builds(conn, &sql, &params)?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|(seq, _)| seq.to_string())
    } else {
        None
    };
    Ok(Page { items: rows.into_iter().map(|(_, b)| b).collect(), next_cursor })
}

/// Appends entries to a build's log at the next offsets.
fn append_at(conn: &Connection, build_seq: i64, entries: &[NewLogEntry]) -> Result<Range<u64>> {
    let next: i64 = conn
        .prepare_cached("SELECT coalesce(max(log_offset) + 1, 0) FROM logs WHERE build_seq = ?1")
        .and_then(|mut s| s.query_row([build_seq], |r| r.get(0)))
        .ctx("finding the end of a log")?;
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO logs (build_seq, log_offset, ts, level, step, message) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .ctx("preparing a log insert")?;
    let mut offset = next;
    for e in entries {
        stmt.execute(params![
            build_seq,
            offset,
            e.timestamp.0,
            e.level.to_db(),
            e.step,
            strip_ansi(&e.message).as_ref()
        ])
        .ctx("appending a log entry")?;
        offset += 1;
    }
    Ok(to_u64("logs", "log_offset", next)?..to_u64("logs", "log_offset", offset)?)
}

pub(super) fn append_logs(
    conn: &Connection,
    tenant: &TenantId,
    id: &BuildId,
    entries: &[NewLogEntry],
) -> Result<Range<u64>> {
    let (_, seq) = resolve_build(conn, tenant, id, Access::Write)?;
    append_at(conn, seq, entries)
}

fn read_at(conn: &Connection, build_seq: i64, offset: u64, limit: u32) -> Result<LogPage> {
    let limit = match limit {
        0 => DEFAULT_LOG_PAGE,
        n => n.min(MAX_LOG_PAGE),
    };
    let from = i64::try_from(offset).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(
            "SELECT log_offset, ts, level, step, message FROM logs \
             WHERE build_seq = ?1 AND log_offset >= ?2 ORDER BY log_offset LIMIT ?3",
        )
        .ctx("preparing a log query")?;
    let mut rows = stmt.query(params![build_seq, from, limit]).ctx("reading a log")?;
    let mut entries = Vec::new();
    while let Some(r) = rows.next().ctx("reading a log")? {
        const C: &str = "reading a log entry";
        let level: i64 = r.get(2).ctx(C)?;
        entries.push(LogEntry {
            offset: to_u64("logs", "log_offset", r.get(0).ctx(C)?)?,
            timestamp: Timestamp(r.get(1).ctx(C)?),
            level: LogLevel::from_db(level).ok_or_else(|| corrupt("logs", "level", level))?,
            step: r.get(3).ctx(C)?,
            message: r.get(4).ctx(C)?,
        });
    }
    let next_offset = entries.last().map_or(offset, |e| e.offset + 1);
    Ok(LogPage { entries, next_offset })
}

pub(super) fn read_logs(
    conn: &Connection,
    tenant: &TenantId,
    id: &BuildId,
    offset: u64,
    limit: u32,
) -> Result<LogPage> {
    let (_, seq) = resolve_build(conn, tenant, id, Access::Read)?;
    read_at(conn, seq, offset, limit)
}

pub(super) fn get_status(
    conn: &Connection,
    tenant: &TenantId,
    id: &BuildId,
    offset: u64,
    limit: u32,
) -> Result<BuildStatusView> {
    let (_, seq) = resolve_build(conn, tenant, id, Access::Read)?;
    Ok(BuildStatusView { build: load_build(conn, seq)?, logs: read_at(conn, seq, offset, limit)? })
}

pub(super) fn recover_interrupted(conn: &Connection) -> Result<Vec<BuildId>> {
    let mut found: Vec<(i64, BuildId, BuildStatus)> = Vec::new();
    {
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, id, status FROM builds WHERE status IN ('queued', 'building') \
                 ORDER BY seq",
            )
            .ctx("preparing the recovery query")?;
        let mut rows = stmt.query([]).ctx("finding interrupted builds")?;
        while let Some(r) = rows.next().ctx("reading interrupted builds")? {
            found.push((
                r.get(0).ctx("reading interrupted builds")?,
                parse("builds", "id", r.get(1).ctx("reading interrupted builds")?)?,
                parse("builds", "status", r.get(2).ctx("reading interrupted builds")?)?,
            ));
        }
    }
    for (seq, id, was) in &found {
        let update = BuildUpdate {
            status: Some(BuildStatus::Failed),
            reason: Some(BuildReason::message(INTERRUPTED)),
            logs: vec![NewLogEntry::new(
                LogLevel::Error,
                format!("build interrupted: the engine stopped while it was {was}; marked failed"),
            )],
            ..BuildUpdate::default()
        };
        apply_update(conn, *seq, id, &update)?;
        tracing::warn!(build = %id, was = %was, "marked interrupted build failed");
    }
    Ok(found.into_iter().map(|(_, id, _)| id).collect())
}

pub(super) fn list_expired_artifacts(conn: &Connection, now: Timestamp, limit: u32) -> Result<Vec<ExpiredArtifact>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, tenant, artifact_digest, artifact_location, artifact_availability, \
             retention_expires_at FROM builds b \
             WHERE status = 'ready' AND artifact_availability IN ('available', 'expired') \
             AND retention_expires_at <= ?1 \
             AND NOT EXISTS (SELECT 1 FROM tags g WHERE g.build_seq = b.seq) \
             ORDER BY retention_expires_at, seq LIMIT ?2",
        )
        .ctx("preparing the retention query")?;
    let mut rows = stmt.query(params![now.0, page_size(limit)]).ctx("finding expired artifacts")?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().ctx("reading expired artifacts")? {
        const C: &str = "reading expired artifacts";
        let digest: Option<String> = r.get(2).ctx(C)?;
        let location: Option<String> = r.get(3).ctx(C)?;
        let (Some(manifest_digest), Some(location)) = (digest, location) else {
            return Err(corrupt("builds", "artifact_digest", "missing on a ready build"));
        };
        out.push(ExpiredArtifact {
            build_id: parse("builds", "id", r.get(0).ctx(C)?)?,
            tenant: parse("builds", "tenant", r.get(1).ctx(C)?)?,
            artifact: Artifact { manifest_digest, location },
            availability: parse("builds", "artifact_availability", r.get(4).ctx(C)?)?,
            retention_expires_at: Timestamp(r.get(5).ctx(C)?),
        });
    }
    Ok(out)
}

pub(super) fn mark_artifacts(
    conn: &Connection,
    ids: &[BuildId],
    availability: ArtifactAvailability,
) -> Result<Vec<BuildId>> {
    let from = match availability {
        ArtifactAvailability::Expired => "('available')",
        ArtifactAvailability::Deleted => "('available', 'expired')",
        other => {
            return Err(StoreError::Invalid {
                field: "availability",
                input: other.to_string(),
                reason: "artifacts can only be marked expired or deleted".into(),
            });
        }
    };
    let sql = format!(
        "UPDATE builds SET artifact_availability = ?2 WHERE id = ?1 AND status = 'ready' \
         AND artifact_availability IN {from} \
         AND NOT EXISTS (SELECT 1 FROM tags g WHERE g.build_seq = builds.seq)"
    );
    let mut stmt = conn.prepare_cached(&sql).ctx("preparing an artifact update")?;
    let mut changed = Vec::new();
    for id in ids {
        if stmt.execute(params![id.as_str(), availability.as_str()]).ctx("marking an artifact")? == 1 {
            changed.push(id.clone());
        }
    }
    Ok(changed)
}
