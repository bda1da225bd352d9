//! `nullspace templates get|list|tag|untag|alias|rename|visibility|delete`: names, tags,
//! aliases and visibility, for the calling tenant.

use std::process::ExitCode;

use anyhow::Result;
use nullspace_engine::engine::BuildInfo;
use nullspace_engine::store::{Owner, Template, TemplateFields, TemplateQuery, TemplateRef};

use super::build::EngineArgs;
use crate::output;

#[derive(clap::Subcommand)]
pub enum Command {
    /// A template by `namespace/name`, `name:tag`, alias or build id.
    Get {
        /// The reference.
        reference: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Templates this tenant can see.
    List {
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only the tenant's own.
        #[arg(long)]
        mine: bool,
        /// Include tags and aliases.
        #[arg(long)]
        details: bool,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The cursor printed by the previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Point tags at a build (`name:tag` or build id).
    Tag {
        /// The build.
        target: String,
        /// The tags.
        #[arg(required = true)]
        tags: Vec<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Remove a tag.
    Untag {
        /// The template.
        reference: String,
        /// The tag.
        tag: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Aliases: list them, or remove one.
    Alias {
        #[command(subcommand)]
        command: AliasCommand,
    },
    /// Give a template a new name (the old one stays as an alias).
    Rename {
        /// The template.
        reference: String,
        /// The new `namespace/name`.
        new_name: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Make a template private or public.
    Visibility {
        /// The template.
        reference: String,
        /// `private` or `public`.
        visibility: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Delete a template (refused while tagged or building, unless --force).
    Delete {
        /// The template.
        reference: String,
        /// Delete even if in use.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        engine: EngineArgs,
    },
}

#[derive(clap::Subcommand)]
pub enum AliasCommand {
    /// A template's aliases.
    List {
        /// The template.
        reference: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Remove an alias.
    Rm {
        /// The alias.
        alias: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
}

fn describe(t: &Template) -> String {
    let mut s = format!("{}  {}  {}\n", t.name, t.visibility, t.id);
    for tag in t.tags.iter().flatten() {
        s.push_str(&format!("  :{}  -> {}\n", tag.tag, tag.build_id));
    }
    for a in t.aliases.iter().flatten() {
        s.push_str(&format!("  alias {}\n", a.name))
    }
    s
}

fn emit_template(t: &Template, json: bool) -> Result<()> {
    if json { output::emit_json(t) } else { Ok(output::emit(&describe(t))?) }
}

pub async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Get { reference, engine } => {
            let e = engine.engine().await?;
            let r = e.get(&engine.tenant()?, &reference.parse()?).await?;
            let build = r.build.map(BuildInfo::from);
            if engine.json {
                output::emit_json(&serde_json::json!({ "template": r.template, "build": build }))?;
            } else {
                let mut text = describe(&r.template);
                if let Some(b) = build {
                    text.push_str(&format!("build {} {}\n", b.id, b.status));
                }
                output::emit(&text)?;
            }
        }
        Command::List { namespace, mine, details, limit, cursor, engine } => {
            let e = engine.engine().await?;
            let query = TemplateQuery {
                namespace,
                visibility: None,
                owner: if mine { Owner::Mine } else { Owner::Any },
                fields: TemplateFields { aliases: details, tags: details },
                cursor,
                limit,
            };
            let page = e.list(&engine.tenant()?, &query).await?;
            output::emit_page(&page, engine.json, describe)?;
        }
        Command::Tag { target, tags, engine } => {
            let e = engine.engine().await?;
            let tags = tags.iter().map(|t| t.parse()).collect::<Result<Vec<_>, _>>()?;
            let moves = e.assign_tags(&engine.tenant()?, &target.parse()?, &tags).await?;
            let rows: Vec<_> = moves
                .iter()
                .map(|m| serde_json::json!({ "tag": m.tag, "build_id": m.build_id, "previous": m.previous }))
                .collect();
            if engine.json {
                output::emit_json(&rows)?;
            } else {
                let text: String = moves.iter().map(|m| format!("{} -> {}\n", m.tag, m.build_id)).collect();
                output::emit(&text)?;
            }
        }
        Command::Untag { reference, tag, engine } => {
            let e = engine.engine().await?;
            let build = e.remove_tag(&engine.tenant()?, &reference.parse()?, &tag.parse()?).await?;
            if engine.json {
                output::emit_json(&serde_json::json!({ "tag": tag, "build_id": build }))?;
            } else {
                output::emit(&format!("removed {tag} (was {build})\n"))?;
            }
        }
        Command::Alias { command: AliasCommand::List { reference, engine } } => {
            let e = engine.engine().await?;
            let aliases = e.list_aliases(&engine.tenant()?, &reference.parse()?).await?;
            if engine.json {
                output::emit_json(&aliases)?;
            } else {
                output::emit(&aliases.iter().map(|a| format!("{}\n", a.name)).collect::<String>())?;
            }
        }
        Command::Alias { command: AliasCommand::Rm { alias, engine } } => {
            let e = engine.engine().await?;
            e.remove_alias(&engine.tenant()?, &alias.parse()?).await?;
            if engine.json {
                output::emit_json(&serde_json::json!({ "removed": alias }))?;
            } else {
                output::emit(&format!("removed alias {alias}\n"))?;
            }
        }
        Command::Rename { reference, new_name, engine } => {
            let e = engine.engine().await?;
            let t = e.rename(&engine.tenant()?, &reference.parse()?, &engine.name(&new_name)?).await?;
            emit_template(&t, engine.json)?;
        }
        Command::Visibility { reference, visibility, engine } => {
            let e = engine.engine().await?;
            let t = e.set_visibility(&engine.tenant()?, &reference.parse()?, visibility.parse()?).await?;
            emit_template(&t, engine.json)?;
        }
        Command::Delete { reference, force, engine } => {
            let e = engine.engine().await?;
            let reference: TemplateRef = reference.parse()?;
            let d = e.delete(&engine.tenant()?, &reference, force).await?;
            if engine.json {
                output::emit_json(&serde_json::json!({
                    "id": d.id, "name": d.name, "tags": d.tags, "builds_deleted": d.builds_deleted,
                }))?;
            } else {
                output::emit(&format!("deleted {} ({} builds)\n", d.name, d.builds_deleted))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
