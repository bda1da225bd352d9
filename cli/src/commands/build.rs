//! `nullspace build PATH --name N`: builds a template through the engine, with a live progress
//! display on a terminal and plain log lines otherwise. Also the engine wiring the `builds` and
//! `templates` commands share (state dir, tenant, native executor).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nullspace_engine::engine::{BuildInfo, LogCallback, format_entry};
use nullspace_engine::executor::{OutputSpec, Secrets};
use nullspace_engine::store::{BuildStatus, LogEntry, LogLevel, TemplateName, TenantId};
use nullspace_engine::{BuildOptions, Engine};
use nullspace_native::executor::{NativeExecutor, NativeOptions};

use crate::{input, output};

/// Where state lives and who is asking: shared by every engine command.
#[derive(clap::Args, Clone)]
pub struct EngineArgs {
    /// The state directory (default: `$NULLSPACE_STATE_DIR`, else `~/.local/share/nullspace`).
    #[arg(long = "state-dir", global = true)]
    pub state_dir: Option<PathBuf>,
    /// The tenant the calls are made for.
    #[arg(long, default_value = "local", global = true)]
    pub tenant: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl EngineArgs {
    fn state_dir(&self) -> Result<PathBuf> {
        if let Some(d) = &self.state_dir {
            return Ok(d.clone());
        }
        if let Some(d) = std::env::var_os("NULLSPACE_STATE_DIR").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(d));
        }
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context("HOME is not set; pass --state-dir")?;
        Ok(PathBuf::from(home).join(".local/share/nullspace"))
    }

    /// The tenant.
    pub fn tenant(&self) -> Result<TenantId> {
        Ok(self.tenant.parse()?)
    }

    /// The engine that builds: the store's primary, with the native executor. One process at
    /// a time builds on a state dir.
    pub async fn building_engine(&self) -> Result<Engine> {
        let state = self.state_dir()?;
        let native = NativeExecutor::new(&state.join("native"), NativeOptions::default())?;
        Ok(Engine::builder().state_dir(&state).executor(Arc::new(native)).build().await?)
    }

    /// An engine beside the one building (if any): reads, follows, cancels, changes templates.
    pub async fn engine(&self) -> Result<Engine> {
        Ok(Engine::builder().state_dir(self.state_dir()?).shared().build().await?)
    }

    /// A template name: `namespace/name`, or a bare `name` in the tenant's namespace.
    pub fn name(&self, name: &str) -> Result<TemplateName> {
        let full = if name.contains('/') { name.to_owned() } else { format!("{}/{name}", self.tenant) };
        Ok(full.parse()?)
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// A template file (`.toml`/`.json`) or a Dockerfile.
    path: PathBuf,
    /// The template's name (`namespace/name`, or `name` in the tenant's namespace).
    #[arg(long)]
    name: String,
    /// Tags to point at the build when it is ready (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// The executor: `native` or `buildkit`.
    #[arg(long)]
    backend: Option<String>,
    /// A build secret: `ID=ENV` takes the value of secret ID from the variable ENV.
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// Build arguments (`KEY=VALUE`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Where the image goes: `oci:DIR` (default: `STATE/images/<name>/<build id>`).
    #[arg(long)]
    output: Option<String>,
    /// Take no step from the cache.
    #[arg(long = "no-cache")]
    no_cache: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

/// `ID=ENV` pairs to secret values read from the environment now.
pub fn secrets_from_env(specs: &[String]) -> Result<Secrets> {
    let mut secrets = Secrets::default();
    for spec in specs {
        let Some((id, env)) = spec.split_once('=') else { bail!("--secret {spec:?}: expected ID=ENV") };
        let value = std::env::var_os(env).with_context(|| format!("--secret {spec}: ${env} is not set"))?;
        secrets.insert(id, std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str()).to_vec());
    }
    Ok(secrets)
}

fn parse_output(spec: &str) -> Result<OutputSpec> {
    let Some(rest) = spec.strip_prefix("oci:") else { bail!("--output {spec:?}: expected oci:DIR[:TAG]") };
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (dir, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_owned())),
        None => (rest, None),
    };
    if dir.is_empty() {
        bail!("--output {spec:?}: no directory");
    }
    let dir = std::path::absolute(dir).with_context(|| format!("--output {spec}"))?;
    Ok(OutputSpec { oci_layout: Some(dir), registry: None, tag: Some(tag.unwrap_or_else(|| "latest".into())) })
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let loaded = input::load(&args.path, &args.build_args)?;
    let engine_args = &args.engine;
    let engine = engine_args.building_engine().await?;
    let mut options = BuildOptions {
        tags: args.tags.iter().map(|t| t.parse()).collect::<Result<_, _>>()?,
        backend: args.backend.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?,
        build_secrets: secrets_from_env(&args.secrets)?,
        no_cache: args.no_cache,
        base_dir: Some(std::path::absolute(&loaded.options.base_dir)?),
        build_args: loaded.options.build_args.clone(),
        output: args.output.as_deref().map(parse_output).transpose()?,
        on_log: None,
    };
    let progress = Progress::start(!engine_args.json);
    options.on_log = progress.as_ref().map(Progress::callback);
    let handle = engine
        .build_in_background(&engine_args.tenant()?, &loaded.template, &engine_args.name(&args.name)?, options)
        .await?;
    if let Some(p) = &progress {
        p.line(&format!("build {}", handle.id()));
    }
    let info = handle.wait_until_terminal(None, None).await?;
    if let Some(p) = progress {
        p.finish();
    }
    report(&info, engine_args.json)
}

/// Prints the outcome; exit code 0 only for ready.
pub fn report(info: &BuildInfo, json: bool) -> Result<ExitCode> {
    if json {
        output::emit_json(info)?;
    } else {
        let mut text = format!("{} {}", info.id, info.status);
        if let Some(a) = &info.artifact {
            text.push_str(&format!("\n  image    {} ({})", a.location, a.manifest_digest));
        }
        if let Some(c) = &info.cache_summary {
            text.push_str(&format!(
                "\n  cache    {}/{} steps cached, {} reused, {} new",
                c.steps_cached,
                c.steps_total,
                human_bytes(c.bytes_reused),
                human_bytes(c.bytes_new)
            ));
        }
        if !info.tags.is_empty() {
            let tags: Vec<_> = info.tags.iter().map(|t| t.as_str()).collect();
            text.push_str(&format!("\n  tags     {}", tags.join(", ")));
        }
        if let Some(r) = &info.reason
            && info.status != BuildStatus::Ready
        {
            text.push_str(&format!("\n  reason   {}", r.message));
            if let Some(step) = &r.step {
                text.push_str(&format!("\n  step     {step}"));
            }
        }
        text.push('\n');
        output::emit(&text)?;
    }
    Ok(if info.status == BuildStatus::Ready { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `1.2 MB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Live build progress on standard error: on a terminal, the running step is redrawn with
/// its elapsed time and each finished step shows cached or built, bytes and time; otherwise
/// every log entry is one plain line.
pub struct Progress {
    state: Arc<Mutex<ProgressState>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

struct ProgressState {
    tty: bool,
    /// The running step: id, name, since.
    current: Option<(String, String, Instant)>,
    started: Instant,
}

impl ProgressState {
    fn clear(&self, out: &mut impl Write) {
        if self.tty && self.current.is_some() {
            let _ = write!(out, "\r\x1b[K");
        }
    }

    fn draw(&self, out: &mut impl Write) {
        if let (true, Some((id, name, since))) = (self.tty, &self.current) {
            let _ = write!(out, "\r\x1b[K  [{id}] {name}  {:.1}s", since.elapsed().as_secs_f64());
            let _ = out.flush();
        }
    }

    fn entry(&mut self, e: &LogEntry) {
        let mut out = std::io::stderr().lock();
        if !self.tty {
            let _ = writeln!(out, "{}", format_entry(e));
            return;
        }
        self.clear(&mut out);
        match (e.step.as_deref(), e.message.strip_prefix("step started: "), e.message.strip_prefix("step done: ")) {
            (Some(step), Some(name), _) => self.current = Some((step.to_owned(), name.to_owned(), Instant::now())),
            (Some(step), _, Some(done)) => {
                let (name, since) = match self.current.take() {
                    Some((_, name, since)) => (name, since),
                    None => (String::new(), Instant::now()),
                };
                let cached = done.starts_with("cached");
                let bytes = done
                    .split(", ")
                    .find_map(|p| p.strip_suffix(" bytes new"))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                let mark = if cached { "\x1b[36mcached\x1b[0m" } else { "\x1b[32mbuilt\x1b[0m " };
                let _ = writeln!(
                    out,
                    "  [{step}] {mark} {name}  {}  {:.1}s",
                    human_bytes(bytes),
                    since.elapsed().as_secs_f64()
                );
            }
            (Some(_), _, _) => {
                let _ = writeln!(out, "    \x1b[2m{}\x1b[0m", e.message);
            }
            (None, _, _) => {
                let _ = match e.level {
                    LogLevel::Warn | LogLevel::Error => writeln!(out, "{}", format_entry(e)),
                    LogLevel::Debug | LogLevel::Info => writeln!(out, "{}", e.message),
                };
            }
        }
        self.draw(&mut out);
    }
}

impl Progress {
    /// A display when `enabled`; a terminal on stdout chooses the live form.
    pub fn start(enabled: bool) -> Option<Self> {
        if !enabled {
            return None;
        }
        let tty = std::io::stdout().is_terminal();
        let state = Arc::new(Mutex::new(ProgressState { tty, current: None, started: Instant::now() }));
        let ticker = tty.then(|| {
            let s = state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let st = s.lock().unwrap_or_else(|p| p.into_inner());
                    st.draw(&mut std::io::stderr().lock());
                }
            })
        });
        Some(Self { state, ticker })
    }

    /// The log callback feeding the display.
    pub fn callback(&self) -> LogCallback {
        let s = self.state.clone();
        Arc::new(move |e: &LogEntry| s.lock().unwrap_or_else(|p| p.into_inner()).entry(e))
    }

    /// Prints a line of its own.
    pub fn line(&self, text: &str) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::io::stderr().lock();
        st.clear(&mut out);
        let _ = writeln!(out, "{text}");
        st.draw(&mut out);
    }

    /// Stops redrawing and prints the total time.
    pub fn finish(self) {
        if let Some(t) = &self.ticker {
            t.abort();
        }
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::io::stderr().lock();
        st.clear(&mut out);
        if st.tty {
            let _ = writeln!(out, "done in {:.1}s", st.started.elapsed().as_secs_f64());
        }
    }
}
