//! `inspect_build_context` on real contexts: counts, largest files, each warning, and a payload
//! free of secret values.

use std::path::Path;

use nullspace_engine::context::inspect::{InspectOptions, Warning, inspect_build_context};
use nullspace_plan::builder::{Credentials, Template};
use nullspace_plan::normalize::PlanOptions;

fn write(root: &Path, path: &str, content: &[u8]) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, content).unwrap();
}

fn dockerfile_template(root: &Path, dockerfile: &str) -> Template {
    write(root, "Dockerfile", dockerfile.as_bytes());
    Template::from_dockerfile(root.join("Dockerfile"))
}

fn inspect(t: &Template, options: &InspectOptions) -> nullspace_engine::context::inspect::ContextInspection {
    inspect_build_context(t, &PlanOptions::default(), options).unwrap()
}

#[test]
fn counts_largest_and_unused_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "app/main.py", &[b'x'; 300]);
    write(root, "app/big.bin", &[b'x'; 5000]);
    write(root, "docs/guide.md", &[b'x'; 1000]);
    write(root, "node_modules/a/index.js", &[b'x'; 700]);
    write(root, ".dockerignore", b"node_modules\n");
    let t = dockerfile_template(root, "FROM busybox:1.36\nCOPY app /app\n");
    let r = inspect(&t, &InspectOptions::default());
    // Included: .dockerignore, Dockerfile, app, app/big.bin, app/main.py, docs, docs/guide.md.
    assert_eq!(r.included.entries, 7);
    let df_len = std::fs::metadata(root.join("Dockerfile")).unwrap().len();
    assert_eq!(r.included.bytes, 300 + 5000 + 1000 + 13 + df_len);
    assert_eq!(r.excluded.entries, 1, "node_modules is not entered");
    assert_eq!(r.largest[0].path, "app/big.bin");
    assert_eq!(r.largest[1].path, "docs/guide.md");
    // The Dockerfile and ignore file are not reported as unused.
    assert_eq!(
        r.warnings,
        [Warning::UnusedFiles {
            count: 1,
            bytes: 1000,
            examples: vec![nullspace_engine::context::inspect::SizedPath { path: "docs/guide.md".into(), size: 1000 }]
        }]
    );
    let listed: Vec<&str> = r.payload.context.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(listed, [".dockerignore", "Dockerfile", "app", "app/big.bin", "app/main.py", "docs", "docs/guide.md"]);
    assert!(r.payload.context.digest.starts_with("sha256:"));
}

#[test]
fn size_and_count_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        write(dir.path(), &format!("f{i}"), &[0; 100]);
    }
    let t = Template::from_image("busybox:1.36").context_dir(dir.path()).copy(".", "/app");
    let options = InspectOptions { large_context_bytes: 1999, many_files: 19, ..Default::default() };
    let r = inspect(&t, &options);
    assert_eq!(
        r.warnings,
        [Warning::LargeContext { bytes: 2000, threshold: 1999 }, Warning::ManyFiles { entries: 20, threshold: 19 }]
    );
    let r = inspect(&t, &InspectOptions { large_context_bytes: 2000, many_files: 20, ..Default::default() });
    assert_eq!(r.warnings, []);
}

#[test]
fn symlinks_out_of_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "a/b/file", b"x");
    for (link, target) in
        [("abs", "/etc/passwd"), ("a/up", "../../outside"), ("a/b/ok", "../../a/b/file"), ("in", "a/b")]
    {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
    let t = Template::from_image("busybox:1.36").context_dir(root).copy(".", "/app");
    let r = inspect(&t, &InspectOptions::default());
    let outside: Vec<(&str, &str)> = r
        .warnings
        .iter()
        .filter_map(|w| match w {
            Warning::SymlinkOutside { path, target } => Some((path.as_str(), target.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(outside, [("a/up", "../../outside"), ("abs", "/etc/passwd")]);
}

#[test]
fn dockerfile_and_ignore_file_excluded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "app.py", b"x");
    write(root, ".dockerignore", b"Dockerfile\n.dockerignore\n");
    let t = dockerfile_template(root, "FROM busybox:1.36\nCOPY app.py /\n");
    let r = inspect(&t, &InspectOptions::default());
    assert_eq!(
        r.warnings,
        [
            Warning::DockerfileExcluded { path: "Dockerfile".into() },
            Warning::IgnoreFileExcluded { path: ".dockerignore".into() }
        ]
    );
    // Not excluded: no warning.
    write(root, ".dockerignore", b"*.log\n");
    assert_eq!(inspect(&t, &InspectOptions::default()).warnings, []);
}

#[test]
fn unsupported_entries_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "app.py", b"x");
    let fifo = std::ffi::CString::new(root.join("pipe").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let t = Template::from_image("busybox:1.36").context_dir(root).copy("app.py", "/");
    let r = inspect(&t, &InspectOptions::default());
    assert_eq!(r.warnings, [Warning::Unsupported { path: "pipe".into(), file_type: "fifo".into() }]);
    assert_eq!(r.included.entries, 1);
}

#[test]
fn copy_sources_that_cannot_be_selected() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "app.py", b"x");
    let t = Template::from_image("busybox:1.36").context_dir(dir.path()).copy("app.py", "/").copy("missing.txt", "/");
    let r = inspect(&t, &InspectOptions::default());
    assert!(
        matches!(&r.warnings[..], [Warning::SourceError { stage: 0, step: 1, message }] if message.contains("missing.txt")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn payload_has_no_secret_values() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "app.py", b"x");
    let secret = "s3cr3t-value-0f-the-npm-token";
    let password = "registry-password-xyz-123";
    // SAFETY: this test binary sets this variable only here, before reading it.
    unsafe { std::env::set_var("NS_INSPECT_TEST_NPM_TOKEN", secret) };
    let t = Template::from_image("busybox:1.36")
        .context_dir(dir.path())
        .registry_credentials(Credentials::Basic { username: "me".into(), password: password.into() })
        .add_build_secret_env("npm", "NS_INSPECT_TEST_NPM_TOKEN")
        .copy("app.py", "/")
        .run_cmd("cat /run/secrets/npm >/dev/null");
    let r = inspect(&t, &InspectOptions::default());
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains("NS_INSPECT_TEST_NPM_TOKEN"), "the secret's variable name is kept");
    assert!(!json.contains(secret));
    assert!(!json.contains(password));
    assert_eq!(r.payload.plan.secrets[0].id, "npm");
}
