//! `nullspace builds list|show|logs|cancel|retry|promote`: build history and handles.

use std::process::ExitCode;

use anyhow::Result;
use futures_util::StreamExt;
use nullspace_engine::engine::{BuildInfo, RetryOptions, format_entry};
use nullspace_engine::store::{BuildId, BuildQuery, TemplateRef};

use super::build::{EngineArgs, Progress, report, secrets_from_env};
use crate::output;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Builds of a template, newest first (failed and untagged ones included).
    List {
        /// `namespace/name`, `name:tag`, an alias or a build id.
        reference: String,
        /// Only these statuses (repeatable): queued, building, ready, failed, cancelled.
        #[arg(long)]
        status: Vec<String>,
        /// Only this backend (`native` or `buildkit`).
        #[arg(long)]
        backend: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The cursor printed by the previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// One build.
    Show {
        /// The build id.
        id: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// A build's log.
    Logs {
        /// The build id.
        id: String,
        /// The first entry to print.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Keep printing new entries until the build ends.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Cancel a queued or running build.
    Cancel {
        /// The build id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Build again from the persisted definition (secrets must be given again).
    Retry {
        /// The build id.
        id: String,
        /// Tags for the new attempt (default: those of the original request).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// A build secret: `ID=ENV` takes the value of secret ID from the variable ENV.
        #[arg(long = "secret")]
        secrets: Vec<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Move a tag to this (ready, retained) build.
    Promote {
        /// The build id.
        id: String,
        /// The tag.
        tag: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
}

fn row(b: &BuildInfo) -> String {
    let tags: Vec<_> = b.tags.iter().map(|t| t.as_str()).collect();
    let cache = b.cache_summary.map(|c| format!("{}/{} cached", c.steps_cached, c.steps_total)).unwrap_or_default();
    format!(
        "{}  {:<9} {:<8} {:<9} {:<14} {}\n",
        b.id,
        b.status,
        b.backend,
        b.artifact_availability,
        cache,
        tags.join(",")
    )
}

fn show(b: &BuildInfo, json: bool) -> Result<()> {
    if json {
        return output::emit_json(b);
    }
    let mut t = format!(
        "id           {}\ntemplate     {}\nstatus       {}\nbackend      {}\n",
        b.id, b.template, b.status, b.backend
    );
    if let Some(r) = &b.reason {
        t.push_str(&format!("reason       {}\n", r.message));
        if let Some(s) = &r.step {
            t.push_str(&format!("step         {s}\n"));
        }
        if let Some(s) = &r.span {
            t.push_str(&format!("span         {s}\n"));
        }
    }
    if let Some(a) = &b.artifact {
        t.push_str(&format!("artifact     {} ({})\n", a.location, a.manifest_digest));
    }
    t.push_str(&format!("availability {}\n", b.artifact_availability));
    t.push_str(&format!(
        "promotable   {}\n",
        match &b.promotability {
            nullspace_engine::engine::Promotability::Yes => "yes".to_owned(),
            nullspace_engine::engine::Promotability::No { reason } => format!("no: {reason}"),
        }
    ));
    if let Some(c) = &b.cache_summary {
        t.push_str(&format!(
            "cache        {}/{} steps cached, {} B reused, {} B new\n",
            c.steps_cached, c.steps_total, c.bytes_reused, c.bytes_new
        ));
    }
    if let Some(r) = b.retention_expires_at {
        t.push_str(&format!("retention    until {} (ms since epoch)\n", r.0));
    }
    let tags: Vec<_> = b.tags.iter().map(|t| t.as_str()).collect();
    t.push_str(&format!("tags         {}\n", tags.join(", ")));
    if let Some(r) = &b.retry_of {
        t.push_str(&format!("retry of     {r}\n"));
    }
    output::emit(&t)?;
    Ok(())
}

pub async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::List { reference, status, backend, limit, cursor, engine } => {
            let e = engine.engine().await?;
            let query = BuildQuery {
                status: status.iter().map(|s| s.parse()).collect::<Result<_, _>>()?,
                backend: backend.as_deref().map(str::parse).transpose()?,
                cursor,
                limit,
            };
            let reference: TemplateRef = reference.parse()?;
            let page = e.list_builds(&engine.tenant()?, &reference, &query).await?;
            output::emit_page(&page, engine.json, row)?;
        }
        Command::Show { id, engine } => {
            let e = engine.engine().await?;
            let info = e.connect(&engine.tenant()?, &id.parse::<BuildId>()?).await?.info().await?;
            show(&info, engine.json)?;
        }
        Command::Logs { id, offset, follow, engine } => {
            let e = engine.engine().await?;
            let handle = e.connect(&engine.tenant()?, &id.parse::<BuildId>()?).await?;
            let mut stream = std::pin::pin!(handle.logs(offset, follow));
            while let Some(entry) = stream.next().await {
                let entry = entry?;
                if engine.json {
                    output::emit(&format!("{}\n", serde_json::to_string(&entry)?))?;
                } else {
                    output::emit(&format!("{}\n", format_entry(&entry)))?;
                }
            }
        }
        Command::Cancel { id, reason, engine } => {
            let e = engine.engine().await?;
            let info = e.connect(&engine.tenant()?, &id.parse::<BuildId>()?).await?.cancel(&reason).await?;
            show(&info, engine.json)?;
        }
        Command::Retry { id, tags, secrets, engine } => {
            let e = engine.building_engine().await?;
            let handle = e.connect(&engine.tenant()?, &id.parse::<BuildId>()?).await?;
            let progress = Progress::start(!engine.json);
            let options = RetryOptions {
                tags: (!tags.is_empty())
                    .then(|| tags.iter().map(|t| t.parse()).collect::<Result<_, _>>())
                    .transpose()?,
                build_secrets: secrets_from_env(&secrets)?,
                credentials: None,
                on_log: progress.as_ref().map(Progress::callback),
            };
            let retried = handle.retry(options).await?;
            if let Some(p) = &progress {
                p.line(&format!("build {} (retry of {id})", retried.id()));
            }
            // The attempt runs in this process: wait for it.
            let info = retried.wait_until_terminal(None, None).await?;
            if let Some(p) = progress {
                p.finish();
            }
            return report(&info, engine.json);
        }
        Command::Promote { id, tag, engine } => {
            let e = engine.engine().await?;
            let handle = e.connect(&engine.tenant()?, &id.parse::<BuildId>()?).await?;
            let moved = handle.promote(&tag.parse()?).await?;
            if engine.json {
                output::emit_json(&serde_json::json!({
                    "tag": moved.tag, "build_id": moved.build_id, "previous": moved.previous,
                }))?;
            } else {
                let from = moved.previous.map(|p| format!(" (was {p})")).unwrap_or_default();
                output::emit(&format!("{} -> {}{from}\n", moved.tag, moved.build_id))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
