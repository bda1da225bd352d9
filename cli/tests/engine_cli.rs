//! The `nullspace build`, `builds` and `templates` commands end to end: the real binary, a
//! state dir in a temp dir, the native executor with runc, the busybox fixture. Several
//! processes share one state dir, as users' terminals would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

fn run_tool(cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(out.status.success(), "{shown}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The busybox fixture layout (fixtures/busybox/build.sh, cached in the target dir).
fn busybox() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("busybox-oci");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/busybox/build.sh");
        run_tool(Command::new("flock").arg(dir.with_extension("lock")).arg("bash").arg(script).arg(&dir));
        dir
    })
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A copy of fixtures/templates/busybox-hello with the busybox layout linked beside it.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/templates/busybox-hello");
        let tpl = dir.path().join("tpl");
        std::fs::create_dir_all(tpl.join("app")).unwrap();
        for f in ["template.toml", ".dockerignore", "app/greeting.txt"] {
            std::fs::copy(src.join(f), tpl.join(f)).unwrap();
        }
        std::os::unix::fs::symlink(busybox(), tpl.join("busybox-oci")).unwrap();
        Self { dir }
    }

    fn template(&self) -> PathBuf {
        self.dir.path().join("tpl/template.toml")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nullspace"));
        c.args(args).arg("--state-dir").arg(self.state()).env_remove("NULLSPACE_STATE_DIR").stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and parses stdout as JSON, asserting success.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}\n{}", String::from_utf8_lossy(&out.stderr), text(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out)))
    }

    /// A template file in the temp dir with these extra steps after the busybox base.
    fn write_template(&self, file: &str, run: &str) -> PathBuf {
        let path = self.dir.path().join("tpl").join(file);
        let body = format!(
            "from = {{ kind = \"image\", reference = \"oci:busybox-oci:busybox\" }}\n\n[[steps]]\nstep = \"run_cmd\"\ncmd = \"{run}\"\n"
        );
        std::fs::write(&path, body).unwrap();
        path
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// Waits for the newest build of `name` to print `line` in its log; returns the build id.
    fn wait_for_line(&self, name: &str, line: &str) -> String {
        let start = Instant::now();
        loop {
            let out = self.run(&["builds", "list", name, "--json"]);
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                if let Some(id) = v["items"][0]["id"].as_str() {
                    let logs = self.run(&["builds", "logs", id]);
                    if text(&logs).lines().any(|l| l.ends_with(line)) {
                        return id.to_owned();
                    }
                }
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{line} never appeared");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn build_then_manage_through_the_cli() {
    let env = Env::new();
    let template = env.template();
    let t = template.to_str().unwrap();
    let out = env.run(&["build", t, "--name", "demo/hello", "--tag", "stable", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first["status"], "ready", "{first:#}");
    assert_eq!(first["tags"], serde_json::json!(["stable"]));
    assert_eq!(first["promotability"]["promotable"], "yes");
    assert_eq!(first["cache_summary"]["steps_cached"], 0);
    let location = first["artifact"]["location"].as_str().unwrap();
    let id = first["id"].as_str().unwrap();
    let layout = env.state().join("images/demo/hello").join(id);
    assert_eq!(location, format!("oci:{}:latest", layout.display()));
    // umoci reads what was written, and the file came from the template's context.
    let bundle = env.dir.path().join("bundle");
    run_tool(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image", &format!("{}:latest", layout.display())])
            .arg(&bundle),
    );
    assert_eq!(std::fs::read_to_string(bundle.join("rootfs/app/greeting.txt")).unwrap(), "hello from busybox-hello\n");

    // Plain lines (stdout is not a terminal here): step starts and ends, command output.
    let out = env.run(&["build", t, "--name", "demo/hello"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("step started: RUN"), "{stderr}");
    assert!(stderr.contains("step done: cached"), "{stderr}");
    assert!(!stderr.lines().any(|l| l.ends_with(": hello-from-template")), "a cached RUN ran again: {stderr}");
    assert!(text(&out).contains("4/4 steps cached"), "{}", text(&out));

    let list = env.json(&["builds", "list", "demo/hello", "--json"]);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["id"], id);
    let second = items[0]["id"].as_str().unwrap().to_owned();
    let shown = env.json(&["builds", "show", id, "--json"]);
    assert_eq!(shown["artifact_availability"], "available");
    let logs = text(&env.run(&["builds", "logs", id]));
    assert!(logs.contains("hello-from-template"), "{logs}");

    // Tags and names.
    let got = env.json(&["templates", "get", "demo/hello:stable", "--json"]);
    assert_eq!(got["build"]["id"], id);
    let moved = env.json(&["builds", "promote", &second, "stable", "--json"]);
    assert_eq!(moved["previous"], id);
    assert_eq!(env.json(&["templates", "get", "demo/hello:stable", "--json"])["build"]["id"], second.as_str());
    env.json(&["templates", "tag", id, "old", "--json"]);
    env.json(&["templates", "untag", "demo/hello", "old", "--json"]);
    assert!(!env.run(&["templates", "get", "demo/hello:old"]).status.success());
    let renamed = env.json(&["templates", "rename", "demo/hello", "demo/greeter", "--json"]);
    assert_eq!(renamed["name"], "demo/greeter");
    let aliases = env.json(&["templates", "alias", "list", "demo/greeter", "--json"]);
    assert_eq!(aliases[0]["name"], "demo/hello");
    assert_eq!(env.json(&["templates", "visibility", "demo/greeter", "public", "--json"])["visibility"], "public");
    let listed = env.json(&["templates", "list", "--details", "--json"]);
    assert_eq!(listed["items"][0]["name"], "demo/greeter");
    // Another tenant sees the public template but cannot change it.
    assert!(env.run(&["templates", "get", "demo/greeter", "--tenant", "other"]).status.success());
    assert!(!env.run(&["templates", "visibility", "demo/greeter", "private", "--tenant", "other"]).status.success());
    // Delete is refused while tagged, then forced.
    assert!(!env.run(&["templates", "delete", "demo/greeter"]).status.success());
    env.json(&["templates", "delete", "demo/greeter", "--force", "--json"]);
    assert!(!env.run(&["templates", "get", "demo/greeter"]).status.success());
    assert!(!layout.exists(), "a deleted template's layout is still there");

    // --output and --secret.
    let out_dir = env.dir.path().join("out");
    let out = env
        .cmd(&["build", t, "--name", "demo/out", "--output", &format!("oci:{}:v1", out_dir.display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    run_tool(Command::new("skopeo").args(["inspect", &format!("oci:{}:v1", out_dir.display())]));
    let secret_tpl = env.write_template("secret.toml", "busybox wc -c /run/secrets/tok");
    let secret_tpl_text = std::fs::read_to_string(&secret_tpl).unwrap();
    std::fs::write(
        &secret_tpl,
        format!("secrets = [{{ id = \"tok\", env = \"NS_CLI_UNSET_SECRET\" }}]\n{secret_tpl_text}"),
    )
    .unwrap();
    let s = secret_tpl.to_str().unwrap();
    let failed = env.run(&["build", s, "--name", "demo/secret", "--json"]);
    assert!(!failed.status.success());
    let v: Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert!(v["reason"]["message"].as_str().unwrap().contains("NS_CLI_UNSET_SECRET"), "{v:#}");
    let ok = env
        .cmd(&["build", s, "--name", "demo/secret", "--secret", "tok=MY_VALUE_VAR"])
        .env("MY_VALUE_VAR", "12345")
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stderr).contains("5 /run/secrets/tok"));
    // Retry without the secret is refused; with it, it builds.
    let ready_id = env.json(&["builds", "list", "demo/secret", "--status", "ready", "--json"])["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = env.run(&["builds", "retry", &ready_id]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("never persisted"));
    let retried = env
        .cmd(&["builds", "retry", &ready_id, "--secret", "tok=MY_VALUE_VAR", "--json"])
        .env("MY_VALUE_VAR", "1")
        .output()
        .unwrap();
    assert!(retried.status.success(), "{}", String::from_utf8_lossy(&retried.stderr));
    let v: Value = serde_json::from_slice(&retried.stdout).unwrap();
    assert_eq!(v["retry_of"], ready_id.as_str());
}

#[test]
fn follow_and_cancel_from_other_processes() {
    let env = Env::new();
    let slow = env.write_template("slow.toml", "echo slow-start && sleep 2 && echo slow-end");
    let mut builder = env.spawn(&["build", slow.to_str().unwrap(), "--name", "demo/slow"]);
    let id = env.wait_for_line("demo/slow", "slow-start");
    // Another process follows the log to the end.
    let followed = env.run(&["builds", "logs", &id, "--follow"]);
    assert!(followed.status.success());
    let lines = text(&followed);
    assert!(lines.contains("slow-end"), "{lines}");
    assert!(lines.lines().last().unwrap().contains("ready"), "{lines}");
    assert!(builder.wait().unwrap().success());

    let sleepy = env.write_template("sleepy.toml", "echo sleepy-start && sleep 120");
    let mut builder = env.spawn(&["build", sleepy.to_str().unwrap(), "--name", "demo/sleepy"]);
    let id = env.wait_for_line("demo/sleepy", "sleepy-start");
    let started = Instant::now();
    let cancelled = env.json(&["builds", "cancel", &id, "--reason", "from another terminal", "--json"]);
    assert_eq!(cancelled["status"], "cancelled");
    // The building process notices, stops its container and exits with a failure.
    let status = builder.wait().unwrap();
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(60), "the build was not stopped");
    let logs = text(&env.run(&["builds", "logs", &id]));
    assert!(logs.contains("cancelled: from another terminal"), "{logs}");
    assert_eq!(env.json(&["builds", "show", &id, "--json"])["status"], "cancelled");
}

#[test]
fn progress_display_on_a_terminal() {
    let env = Env::new();
    let t = env.template();
    let bin = env!("CARGO_BIN_EXE_nullspace");
    let line = format!("{bin} build {} --name demo/tty --state-dir {}", t.display(), env.state().display());
    // `script` gives the command a pseudo-terminal and copies what it shows to stdout.
    let out = Command::new("script").args(["-qec", &line, "/dev/null"]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    // Finished steps with built/cached, size and time; the running step redrawn in place.
    assert!(shown.contains("built"), "{shown}");
    assert!(shown.contains("[0/1]") && shown.contains("RUN /bin/sh -c echo hello-from-template"), "{shown}");
    assert!(shown.contains("\r\x1b[K"), "no live redraw: {shown:?}");
    assert!(shown.contains("done in "), "{shown}");
    assert!(!shown.contains("[info]"), "plain log lines on a terminal: {shown}");
    assert!(shown.contains("4/4 steps") || shown.contains("0/4 steps cached"), "{shown}");
}
