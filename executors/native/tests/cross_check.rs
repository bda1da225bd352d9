//! Cross-checks against independent tools: an image built with our layer and layout code on top
//! of the umoci-made busybox fixture is inspected by skopeo, unpacked by umoci and run by runc;
//! our unpacker is compared with umoci's. Missing tools fail the tests, never skip them.

#[path = "common/snapshot.rs"]
mod snapshot;
#[path = "common/tools.rs"]
mod tools;
#[path = "common/walk.rs"]
mod walk;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use tools::{fixture_layout, run_tool as run};

/// The busybox fixture layout (tag `busybox`).
fn fixture() -> &'static Path {
    fixture_layout("busybox")
}

use nullspace_native::layer::{Chown, CopyOptions, Layer, LayerInfo, LayerOptions};
use nullspace_native::layout::{OciDir, append_layer, epoch_to_rfc3339};
use nullspace_native::unpack::{UnpackOptions, unpack_layer_file};
use oci_spec::image::{Descriptor, HistoryBuilder};

const TAG: &str = "test";

/// A copy of the fixture layout with our image tagged `test` on top, and its new layers.
struct Built {
    _dir: tempfile::TempDir,
    layout: PathBuf,
    copy_layer: LayerInfo,
}

fn build_image() -> Built {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("oci");
    run(Command::new("cp").arg("-a").arg(fixture()).arg(&layout));

    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    std::fs::write(ctx.join("file"), "hello from file\n").unwrap();
    std::fs::write(ctx.join("run.sh"), "#!/bin/sh\necho script ran as $(id -u)\n").unwrap();
    std::fs::set_permissions(ctx.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(ctx.join("secret"), "only app reads this\n").unwrap();
    std::fs::set_permissions(ctx.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("file", ctx.join("link")).unwrap();
    std::fs::hard_link(ctx.join("file"), ctx.join("hard")).unwrap();
    std::fs::write(ctx.join("sub/conf"), "k=v\n").unwrap();

    let oci = OciDir::open(&layout).unwrap();
    let base = oci.load_image(Some("busybox")).unwrap();
    let opts = LayerOptions { source_date_epoch: 1_700_000_000, ..LayerOptions::default() };

    let mut copy = Layer::new();
    let app = CopyOptions { dest: "/app".into(), chown: Some(Chown { uid: 1000, gid: 1000 }), chmod: None };
    copy.add_copy(&ctx, &walk::walk(&ctx), &app).unwrap();
    // A second source of the same step: the contents of ctx/sub, into /etc/app.
    let etc = CopyOptions { dest: "/etc/app".into(), chown: None, chmod: Some(0o640) };
    copy.add_copy(&ctx.join("sub"), &walk::walk(&ctx.join("sub")), &etc).unwrap();
    let copy_layer = oci.write_layer(&copy, &opts).unwrap();

    let mut config = base.config.clone();
    let mut exec = config.config().clone().unwrap_or_default();
    let mut env = exec.env().clone().unwrap_or_default();
    env.push("FOO=bar baz".to_owned());
    exec.set_env(Some(env));
    exec.set_user(Some("app".to_owned()));
    exec.set_working_dir(Some("/app".to_owned()));
    exec.set_cmd(Some(vec!["/app/run.sh".to_owned()]));
    exec.set_labels(Some(
        [("org.example.built-by".to_owned(), "nullspace".to_owned()), ("b".to_owned(), "2".to_owned())]
            .into_iter()
            .collect(),
    ));
    config.set_config(Some(exec));
    config.set_created(Some(epoch_to_rfc3339(1_700_000_000)));
    let history = HistoryBuilder::default()
        .created(epoch_to_rfc3339(1_700_000_000))
        .created_by("COPY --chown=1000:1000 . /app")
        .build()
        .unwrap();
    append_layer(&mut config, &copy_layer, history);
    let mut layers: Vec<Descriptor> = base.manifest.layers().clone();
    layers.push(copy_layer.descriptor());
    oci.write_image(&config, &layers, Some(TAG)).unwrap();
    Built { _dir: dir, layout, copy_layer }
}

#[test]
fn skopeo_reads_our_image_and_config() {
    let built = build_image();
    let reference = format!("oci:{}:{TAG}", built.layout.display());
    let inspect: serde_json::Value =
        serde_json::from_str(&run(Command::new("skopeo").args(["inspect", &reference]))).unwrap();
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Labels"]["org.example.built-by"], "nullspace");
    assert_eq!(inspect["Created"], "2023-11-14T22:13:20Z");
    let layers = inspect["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[1], built.copy_layer.digest.to_string());
    assert!(inspect["Env"].as_array().unwrap().contains(&"FOO=bar baz".into()));

    let config: serde_json::Value =
        serde_json::from_str(&run(Command::new("skopeo").args(["inspect", "--config", &reference]))).unwrap();
    assert_eq!(config["config"]["User"], "app");
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/app/run.sh"]));
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.last().unwrap(), &built.copy_layer.diff_id.to_string());
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["created_by"], "COPY --chown=1000:1000 . /app");

    // skopeo copies it (verifying every blob digest) into a fresh layout.
    let copy_dir = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:copied", copy_dir.path().join("o").display());
    run(Command::new("skopeo").args(["copy", &reference, &dest]));
}

fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) {
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci").args(["unpack", "--image", &image]).arg(bundle));
}

#[test]
fn umoci_unpacks_our_image_and_runc_runs_it() {
    let built = build_image();
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle");
    umoci_unpack(&built.layout, TAG, &bundle);
    let rootfs = bundle.join("rootfs");

    let meta = |p: &str| rootfs.join(p).symlink_metadata().unwrap();
    assert_eq!(std::fs::read(rootfs.join("app/file")).unwrap(), b"hello from file\n");
    assert_eq!(meta("app/file").mode() & 0o7777, 0o644);
    assert_eq!((meta("app/file").uid(), meta("app/file").gid()), (1000, 1000));
    assert_eq!(meta("app/run.sh").mode() & 0o7777, 0o755);
    assert_eq!(meta("app/secret").mode() & 0o7777, 0o600);
    assert!(meta("app/link").file_type().is_symlink());
    assert_eq!(std::fs::read_link(rootfs.join("app/link")).unwrap(), Path::new("file"));
    assert_eq!(meta("app/hard").ino(), meta("app/file").ino());
    assert_eq!(meta("app").uid(), 1000);
    assert_eq!(meta("etc/app/conf").mode() & 0o7777, 0o640);
    assert_eq!(meta("etc/app/conf").uid(), 0);
    assert!(meta("bin/busybox").is_file(), "base layer is still there");

    // Run it: the process as umoci configured it from our image config (user app, cwd /app,
    // env), with only the arguments and terminal replaced.
    let config_path = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    assert_eq!(spec["process"]["cwd"], "/app");
    assert_eq!(spec["process"]["user"]["uid"], 1000);
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!([
        "sh",
        "-c",
        "id -u; pwd; echo $FOO; cat /app/file; cat /app/secret; ./run.sh; ls -l /app/link"
    ]);
    std::fs::write(&config_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let id = format!("nullspace-native-test-{}", std::process::id());
    let out = run(Command::new("timeout").args(["120", "runc", "run", "--bundle"]).arg(&bundle).arg(&id));
    let _ = Command::new("runc").args(["delete", "--force", &id]).output();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..6],
        ["1000", "/app", "bar baz", "hello from file", "only app reads this", "script ran as 1000"],
        "{out}"
    );
    assert!(lines[6].ends_with("/app/link -> file"), "{out}");
}

#[test]
fn our_unpacker_matches_umoci() {
    let built = build_image();
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle");
    umoci_unpack(&built.layout, TAG, &bundle);

    let oci = OciDir::open(&built.layout).unwrap();
    let image = oci.load_image(Some(TAG)).unwrap();
    let ours = work.path().join("ours");
    std::fs::create_dir(&ours).unwrap();
    for layer in image.manifest.layers() {
        unpack_layer_file(&oci.blob_path(layer.digest()).unwrap(), &ours, &UnpackOptions::default()).unwrap();
    }
    let theirs = snapshot::snapshot(&bundle.join("rootfs"));
    let mine = snapshot::snapshot(&ours);
    assert!(theirs.len() > 40, "busybox rootfs looks too small: {}", theirs.len());
    assert_eq!(mine, theirs);
}
