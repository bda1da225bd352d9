//! Template builders: what a user writes, in Rust or in a template file.
//!
//! A [`Template`] is the *sanitised build definition*: it serialises with serde and round-trips
//! exactly, and it never holds a secret value. Registry credentials are held for the build only
//! (`#[serde(skip)]`), and build secrets are recorded as an id plus the *name* of the environment
//! variable that supplies the value at build time.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Which executor builds a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The pure-Rust OCI layering executor (declarative input only).
    Native,
    /// BuildKit (the only backend for Dockerfile input).
    Buildkit,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Native => "native",
            Backend::Buildkit => "buildkit",
        })
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" => Ok(Backend::Native),
            "buildkit" => Ok(Backend::Buildkit),
            other => Err(format!("unknown backend `{other}` (expected `native` or `buildkit`)")),
        }
    }
}

/// What a template starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Base {
    /// `docker.io/library/python:{version}[-{variant}]`.
    Python {
        /// Python version, e.g. `3.12`.
        version: String,
        /// Image variant, e.g. `slim` or `bookworm`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        variant: Option<String>,
    },
    /// Any image: a registry reference or `oci:PATH[:TAG]`.
    Image {
        /// The reference as written.
        reference: String,
    },
    /// A Dockerfile on disk (relative paths are relative to the context directory).
    Dockerfile {
        /// The Dockerfile's path.
        path: PathBuf,
    },
    /// A Dockerfile given as text.
    DockerfileContent {
        /// The Dockerfile's text.
        content: String,
    },
}

/// Registry credentials for a private base image. Never serialised, never in a plan.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Username and password.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// A bearer or identity token.
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => {
                write!(f, "Basic {{ username: {username:?}, password: <redacted> }}")
            }
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// A BuildKit-style build secret: the value comes from the environment variable `env` of whoever
/// starts the build, and is mounted at `/run/secrets/{id}` during RUN steps that ask for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSecret {
    /// The secret's id, as `--mount=type=secret,id=…` names it.
    pub id: String,
    /// The name of the environment variable that holds the value at build time.
    pub env: String,
}

/// How `copy` sets ownership and permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyOptions {
    /// `--chown`: `user[:group]`, names or ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// `--chmod`: octal mode such as `0755`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Paths (patterns) to leave out, as `--exclude`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

impl CopyOptions {
    /// Sets the owner (`user[:group]`).
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Sets the mode (octal, e.g. `0755`).
    pub fn mode(mut self, mode: impl Into<String>) -> Self {
        self.mode = Some(mode.into());
        self
    }

    /// Adds an exclusion pattern.
    pub fn exclude(mut self, pattern: impl Into<String>) -> Self {
        self.exclude.push(pattern.into());
        self
    }
}

/// How to tell that a started sandbox is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReadyCheck {
    /// A TCP port accepts connections.
    Port {
        /// The port (1–65535).
        port: u32,
    },
    /// An HTTP(S) URL answers with the status (200 by default).
    Url {
        /// The URL.
        url: String,
        /// The expected status code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
    },
    /// A process with this name is running.
    Process {
        /// The process name.
        name: String,
    },
    /// A file exists.
    File {
        /// The absolute path.
        path: String,
    },
    /// Wait a fixed time (Go duration syntax: `500ms`, `10s`, `1m30s`).
    Timeout {
        /// The duration.
        duration: String,
    },
}

/// Ready when `port` accepts TCP connections.
pub fn wait_for_port(port: u16) -> ReadyCheck {
    ReadyCheck::Port { port: u32::from(port) }
}

/// Ready when `url` answers 200.
pub fn wait_for_url(url: impl Into<String>) -> ReadyCheck {
    ReadyCheck::Url { url: url.into(), status: None }
}

/// Ready when a process called `name` runs.
pub fn wait_for_process(name: impl Into<String>) -> ReadyCheck {
    ReadyCheck::Process { name: name.into() }
}

/// Ready when `path` exists.
pub fn wait_for_file(path: impl Into<String>) -> ReadyCheck {
    ReadyCheck::File { path: path.into() }
}

/// Ready after a fixed time.
pub fn wait_for_timeout(duration: Duration) -> ReadyCheck {
    ReadyCheck::Timeout { duration: format!("{}ms", duration.as_millis()) }
}

/// One declarative step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Copy files from the context (sources relative to it; directories and globs allowed).
    Copy {
        /// Source paths or globs.
        src: Vec<String>,
        /// Destination in the image.
        dest: String,
        /// Owner, mode, exclusions.
        #[serde(default, flatten)]
        options: CopyOptions,
    },
    /// Run a shell command (`/bin/sh -c`).
    RunCmd {
        /// The command.
        cmd: String,
    },
    /// `pip install` packages.
    PipInstall {
        /// Requirement specifiers.
        packages: Vec<String>,
    },
    /// `apt-get install` packages.
    AptInstall {
        /// Debian package names.
        packages: Vec<String>,
    },
    /// `npm install` packages.
    NpmInstall {
        /// Package specifiers.
        packages: Vec<String>,
        /// Install globally (`-g`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        global: bool,
    },
    /// Set environment variables for later steps and the image.
    SetEnvs {
        /// Names and values.
        envs: BTreeMap<String, String>,
    },
    /// Set the working directory.
    SetWorkdir {
        /// An absolute path (or relative to the current one).
        path: String,
    },
    /// Set the user later steps and the sandbox run as.
    SetUser {
        /// `user[:group]`, names or ids.
        user: String,
    },
    /// The sandbox's start command and how to tell it is ready.
    SetStartCmd {
        /// The command (`/bin/sh -c`).
        cmd: String,
        /// The ready check.
        ready: ReadyCheck,
    },
    /// This step and every one after it are rebuilt, never taken from cache.
    SkipCache,
}

/// A template: a base, declarative steps, and build settings.
///
/// ```
/// use nullspace_plan::builder::{wait_for_port, CopyOptions, Template};
/// let template = Template::from_python_image("3.12")
///     .python_variant("slim")
///     .copy("app/", "/app")
///     .copy_with(["requirements.txt"], "/app/", CopyOptions::default().mode("0644"))
///     .pip_install(["flask==3.0.3"])
///     .set_envs([("PORT", "8000")])
///     .set_workdir("/app")
///     .set_user("app")
///     .set_start_cmd("python -m flask run --port 8000", wait_for_port(8000));
/// let json = serde_json::to_string(&template).unwrap();
/// let back: Template = serde_json::from_str(&json).unwrap();
/// assert_eq!(back, template);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// What the template starts from.
    pub from: Base,
    /// The build context directory (default: the current directory, or the Dockerfile's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<PathBuf>,
    /// The Dockerfile stage to build (default: the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The executor asked for (default: BuildKit for Dockerfiles, native otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
    /// Build secrets: ids and the names of the variables that hold them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<BuildSecret>,
    /// Declarative steps, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    #[serde(skip)]
    credentials: Option<Credentials>,
}

impl Template {
    fn new(from: Base) -> Self {
        Self {
            from,
            context: None,
            target: None,
            backend: None,
            secrets: Vec::new(),
            steps: Vec::new(),
            credentials: None,
        }
    }

    /// Starts from `docker.io/library/python:{version}`.
    ///
    /// ```
    /// use nullspace_plan::builder::{Base, Template};
    /// let t = Template::from_python_image("3.12");
    /// assert_eq!(t.from, Base::Python { version: "3.12".into(), variant: None });
    /// ```
    pub fn from_python_image(version: impl Into<String>) -> Self {
        Self::new(Base::Python { version: version.into(), variant: None })
    }

    /// Selects a variant of the Python image (`slim` gives `python:{version}-slim`). Applies only to
    /// templates made with [`Template::from_python_image`] and leaves other bases unchanged.
    ///
    /// ```
    /// use nullspace_plan::builder::{Base, Template};
    /// let t = Template::from_python_image("3.11").python_variant("slim");
    /// assert_eq!(t.from, Base::Python { version: "3.11".into(), variant: Some("slim".into()) });
    /// ```
    pub fn python_variant(mut self, name: impl Into<String>) -> Self {
        if let Base::Python { variant, .. } = &mut self.from {
            *variant = Some(name.into());
        }
        self
    }

    /// Starts from any image: a registry reference or `oci:PATH[:TAG]`.
    ///
    /// ```
    /// use nullspace_plan::builder::{Credentials, Template};
    /// let t = Template::from_image("registry.example.com/team/base:1")
    ///     .registry_credentials(Credentials::Token("t0ken".into()));
    /// assert!(t.credentials().is_some());
    /// assert!(!serde_json::to_string(&t).unwrap().contains("t0ken"));
    /// ```
    pub fn from_image(reference: impl Into<String>) -> Self {
        Self::new(Base::Image { reference: reference.into() })
    }

    /// Builds from a Dockerfile on disk (built by BuildKit).
    ///
    /// ```
    /// use nullspace_plan::builder::Template;
    /// let t = Template::from_dockerfile("docker/Dockerfile").context_dir(".").target("runtime");
    /// assert_eq!(t.target.as_deref(), Some("runtime"));
    /// ```
    pub fn from_dockerfile(path: impl Into<PathBuf>) -> Self {
        Self::new(Base::Dockerfile { path: path.into() })
    }

    /// Builds from Dockerfile text (built by BuildKit).
    ///
    /// ```
    /// use nullspace_plan::builder::Template;
    /// let t = Template::from_dockerfile_content("FROM python:3.12-slim\nRUN pip install pytest")
    ///     .add_build_secret_env("npm_token", "NPM_TOKEN");
    /// assert_eq!(t.secrets[0].env, "NPM_TOKEN");
    /// ```
    pub fn from_dockerfile_content(content: impl Into<String>) -> Self {
        Self::new(Base::DockerfileContent { content: content.into() })
    }

    /// Credentials for pulling a private base image; held for the build, never serialised.
    pub fn registry_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The registry credentials, if any.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// Sets the build context directory.
    pub fn context_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.context = Some(dir.into());
        self
    }

    /// Sets the Dockerfile stage to build.
    pub fn target(mut self, stage: impl Into<String>) -> Self {
        self.target = Some(stage.into());
        self
    }

    /// Asks for a backend; validation refuses `native` for Dockerfile input.
    ///
    /// ```
    /// use nullspace_plan::builder::{Backend, Template};
    /// let t = Template::from_image("busybox").backend(Backend::Buildkit);
    /// assert_eq!(t.backend, Some(Backend::Buildkit));
    /// ```
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Declares a build secret `id` whose value is read from the environment variable `env` when
    /// the build starts. Only the id and the variable's name are recorded.
    pub fn add_build_secret_env(mut self, id: impl Into<String>, env: impl Into<String>) -> Self {
        self.secrets.push(BuildSecret { id: id.into(), env: env.into() });
        self
    }

    fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Copies `src` (a file, directory or glob, relative to the context) to `dest`.
    ///
    /// ```
    /// use nullspace_plan::builder::{Step, Template};
    /// let t = Template::from_image("busybox").copy("src/*.py", "/app/");
    /// assert!(matches!(&t.steps[0], Step::Copy { src, .. } if src == &["src/*.py"]));
    /// ```
    pub fn copy(self, src: impl Into<String>, dest: impl Into<String>) -> Self {
        self.copy_with([src], dest, CopyOptions::default())
    }

    /// Copies several sources with owner, mode and exclusions.
    ///
    /// ```
    /// use nullspace_plan::builder::{CopyOptions, Template};
    /// let t = Template::from_image("busybox")
    ///     .copy_with(["bin/", "lib/"], "/opt/tool/", CopyOptions::default().owner("1000:1000").mode("0755"));
    /// assert_eq!(t.steps.len(), 1);
    /// ```
    pub fn copy_with<S: Into<String>>(
        self,
        src: impl IntoIterator<Item = S>,
        dest: impl Into<String>,
        options: CopyOptions,
    ) -> Self {
        let src = src.into_iter().map(Into::into).collect();
        self.step(Step::Copy { src, dest: dest.into(), options })
    }

    /// Runs a shell command.
    ///
    /// ```
    /// use nullspace_plan::builder::Template;
    /// let t = Template::from_image("busybox").run_cmd("echo hello > /greeting");
    /// assert_eq!(t.steps.len(), 1);
    /// ```
    pub fn run_cmd(self, cmd: impl Into<String>) -> Self {
        self.step(Step::RunCmd { cmd: cmd.into() })
    }

    /// Installs Python packages with pip.
    ///
    /// ```
    /// use nullspace_plan::builder::Template;
    /// let t = Template::from_python_image("3.12").pip_install(["requests", "numpy>=2"]);
    /// assert_eq!(t.steps.len(), 1);
    /// ```
    pub fn pip_install<S: Into<String>>(self, packages: impl IntoIterator<Item = S>) -> Self {
        self.step(Step::PipInstall { packages: packages.into_iter().map(Into::into).collect() })
    }

    /// Installs Debian packages with apt-get.
    ///
    /// ```
    /// use nullspace_plan::builder::Template;
    /// let t = Template::from_python_image("3.12").apt_install(["curl"]);
    /// assert_eq!(t.steps.len(), 1);
    /// ```
    pub fn apt_install<S: Into<String>>(self, packages: impl IntoIterator<Item = S>) -> Self {
        self.step(Step::AptInstall { packages: packages.into_iter().map(Into::into).collect() })
    }

    /// Installs npm packages in the working directory (`global` for `-g`).
    ///
    /// ```
    /// use nullspace_plan::builder::Template;
    /// let t = Template::from_image("node:20").npm_install(["typescript"], true);
    /// assert_eq!(t.steps.len(), 1);
    /// ```
    pub fn npm_install<S: Into<String>>(self, packages: impl IntoIterator<Item = S>, global: bool) -> Self {
        self.step(Step::NpmInstall { packages: packages.into_iter().map(Into::into).collect(), global })
    }

    /// Sets environment variables.
    ///
    /// ```
    /// use nullspace_plan::builder::Template;
    /// let t = Template::from_image("busybox").set_envs([("A", "1"), ("B", "2")]);
    /// assert_eq!(t.steps.len(), 1);
    /// ```
    pub fn set_envs<K: Into<String>, V: Into<String>>(self, envs: impl IntoIterator<Item = (K, V)>) -> Self {
        self.step(Step::SetEnvs { envs: envs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() })
    }

    /// Sets the working directory.
    ///
    /// ```
    /// use nullspace_plan::builder::Template;
    /// let t = Template::from_image("busybox").set_workdir("/app");
    /// assert_eq!(t.steps.len(), 1);
    /// ```
    pub fn set_workdir(self, path: impl Into<String>) -> Self {
        self.step(Step::SetWorkdir { path: path.into() })
    }

    /// Sets the user.
    ///
    /// ```
    /// use nullspace_plan::builder::Template;
    /// let t = Template::from_image("busybox").set_user("1000:1000");
    /// assert_eq!(t.steps.len(), 1);
    /// ```
    pub fn set_user(self, user: impl Into<String>) -> Self {
        self.step(Step::SetUser { user: user.into() })
    }

    /// Sets the start command and its ready check.
    ///
    /// ```
    /// use nullspace_plan::builder::{wait_for_url, Template};
    /// let t = Template::from_image("busybox").set_start_cmd("httpd -f -p 8080", wait_for_url("http://localhost:8080/"));
    /// assert_eq!(t.steps.len(), 1);
    /// ```
    pub fn set_start_cmd(self, cmd: impl Into<String>, ready: ReadyCheck) -> Self {
        self.step(Step::SetStartCmd { cmd: cmd.into(), ready })
    }

    /// Rebuilds this point and every step after it, never from cache.
    ///
    /// ```
    /// use nullspace_plan::builder::{Step, Template};
    /// let t = Template::from_image("busybox").skip_cache().run_cmd("date > /built-at");
    /// assert_eq!(t.steps[0], Step::SkipCache);
    /// ```
    pub fn skip_cache(self) -> Self {
        self.step(Step::SkipCache)
    }

    /// Whether the template is built from a Dockerfile.
    pub fn is_dockerfile(&self) -> bool {
        matches!(self.from, Base::Dockerfile { .. } | Base::DockerfileContent { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Template {
        Template::from_python_image("3.12")
            .python_variant("slim")
            .context_dir("ctx")
            .backend(Backend::Native)
            .add_build_secret_env("pip_token", "PIP_TOKEN")
            .copy_with(["a", "b/*.txt"], "/app/", CopyOptions::default().owner("app").mode("0600").exclude("*.tmp"))
            .run_cmd("echo hi")
            .pip_install(["flask"])
            .apt_install(["curl", "git"])
            .npm_install(["left-pad"], false)
            .set_envs([("K", "V")])
            .set_workdir("/app")
            .set_user("app")
            .skip_cache()
            .set_start_cmd("python app.py", wait_for_timeout(Duration::from_millis(1500)))
            .registry_credentials(Credentials::Basic { username: "u".into(), password: "hunter2".into() })
    }

    #[test]
    fn round_trips_through_json_and_toml_without_credentials() {
        let t = full();
        let json = serde_json::to_string(&t).unwrap();
        assert!(!json.contains("hunter2"));
        let back: Template = serde_json::from_str(&json).unwrap();
        assert_eq!(back.credentials(), None);
        assert_eq!(back, Template { credentials: None, ..t.clone() });
        let text = toml::to_string(&t).unwrap();
        assert!(!text.contains("hunter2"));
        let back: Template = toml::from_str(&text).unwrap();
        assert_eq!(back.steps, t.steps);
        assert!(!format!("{:?}", t.credentials()).contains("hunter2"));
    }

    #[test]
    fn variant_applies_to_python_only() {
        let t = Template::from_image("busybox").python_variant("slim");
        assert_eq!(t.from, Base::Image { reference: "busybox".into() });
    }
}
