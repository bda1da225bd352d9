//! Test harness: a real `docker-registry` (Debian's distribution 2.8 binary) on 127.0.0.1.
//!
//! Each [`TestRegistry`] gets a free port, its own `config.yml` and storage in a temp dir, and
//! is killed when dropped. Its access log (stdout, combined log format) is kept so tests can
//! count requests. Include with `#[path = "support/registry.rs"] mod registry_support;`.
//!
//! Variants: anonymous, htpasswd basic auth ([`Auth::Htpasswd`], bcrypt line made with the
//! `bcrypt` crate), and token auth ([`Auth::Token`], for a token server the test runs).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How the registry authenticates clients.
pub enum Auth {
    /// Anyone may pull and push.
    None,
    /// HTTP basic auth against one htpasswd user.
    Htpasswd { user: String, password: String },
    /// Bearer tokens from `realm`, signed by the key of the certificate `cert` (PEM).
    Token { realm: String, service: String, issuer: String, cert: PathBuf },
}

/// A running registry; killed on drop.
pub struct TestRegistry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

/// Installs the Debian tools the tests use if any is missing (once per test binary).
pub fn ensure_tools() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let missing = ["docker-registry", "skopeo", "openssl"].iter().any(|t| {
            Command::new("sh").arg("-c").arg(format!("command -v {t}")).output().map_or(true, |o| !o.status.success())
        });
        if missing {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ensure-tools.sh");
            let status = Command::new("bash").arg(script).status().expect("run ensure-tools.sh");
            assert!(status.success(), "ensure-tools.sh failed");
        }
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}

impl TestRegistry {
    /// An anonymous registry.
    pub fn start() -> Self {
        Self::start_with(Auth::None)
    }

    /// A registry with `auth`.
    pub fn start_with(auth: Auth) -> Self {
        ensure_tools();
        // The port is free when picked but may be taken before the registry binds it: retry.
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(&auth) {
                Ok(reg) => return reg,
                Err(e) => last = e,
            }
        }
        panic!("docker-registry did not start: {last}");
    }

    fn try_start(auth: &Auth) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Htpasswd { user, password } => {
                let hash = bcrypt::hash_with_result(password, 4)
                    .map_err(|e| e.to_string())?
                    .format_for_version(bcrypt::Version::TwoY);
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, format!("{user}:{hash}\n")).map_err(|e| e.to_string())?;
                format!("auth:\n  htpasswd:\n    realm: nullspace-test\n    path: {}\n", path.display())
            }
            Auth::Token { realm, service, issuer, cert } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                cert.display()
            ),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: nullspace-test\n{auth_yaml}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let stdout = std::fs::File::create(dir.path().join("access.log")).map_err(|e| e.to_string())?;
        let stderr = std::fs::File::create(dir.path().join("registry.log")).map_err(|e| e.to_string())?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn docker-registry: {e}"))?;
        let mut reg = Self { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = reg.child.try_wait() {
                return Err(format!("exited with {status}: {}", reg.server_log()));
            }
            if http_status(port, "/v2/").is_some() {
                return Ok(reg);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("/v2/ did not answer within 15 s: {}", reg.server_log()))
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The access log so far: one line per request.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The registry's own log.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Requests in the access log whose request line starts with `method` and whose path
    /// contains `path_part`.
    pub fn count(&self, method: &str, path_part: &str) -> usize {
        let prefix = format!("\"{method} ");
        self.access_log()
            .lines()
            .filter_map(|l| l.split_once(&prefix).map(|(_, rest)| rest))
            .filter(|rest| rest.split(' ').next().is_some_and(|path| path.contains(path_part)))
            .count()
    }

    /// Requests that send blob data: starting an upload, `PATCH`ing a chunk, or the `PUT` that
    /// closes an upload (mounts are `POST`s with `mount=` and are not counted).
    pub fn upload_requests(&self) -> usize {
        let log = self.access_log();
        log.lines()
            .filter(|l| {
                let Some((_, rest)) = l.split_once('"') else { return false };
                let mut parts = rest.split(' ');
                let (Some(method), Some(path)) = (parts.next(), parts.next()) else { return false };
                path.contains("/blobs/uploads/")
                    && (method == "PATCH" || method == "PUT" || (method == "POST" && !path.contains("mount=")))
            })
            .count()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The HTTP status of `GET path` on 127.0.0.1:`port`, if anything answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
