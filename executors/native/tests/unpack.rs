//! Unpacking: hostile archives never write outside the root; whiteouts and opaque
//! directories; a round trip through our own writer.

#[path = "common/snapshot.rs"]
mod snapshot;
#[path = "common/walk.rs"]
mod walk;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nullspace_native::layer::{Change, Chown, CopyOptions, Layer, LayerOptions};
use nullspace_native::unpack::{UnpackError, UnpackOptions, unpack_layer};

/// One raw archive entry: name bytes, type, link name, data. Built with the `tar` crate's
/// low-level header so names can hold `..` and absolute paths.
struct Raw<'a>(&'a str, tar::EntryType, &'a str, &'a [u8]);

fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for Raw(name, kind, link, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        if *kind == tar::EntryType::Char {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A sandbox: `base/root` is the unpack target, `base/host` stands for the host outside it.
struct Sandbox {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    host: PathBuf,
}

fn sandbox() -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let root = base.join("root");
    let host = base.join("host");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("hostfile"), "host").unwrap();
    Sandbox { _dir: dir, base, root, host }
}

impl Sandbox {
    fn unpack(&self, tar: &[u8]) -> Result<nullspace_native::unpack::UnpackStats, UnpackError> {
        unpack_layer(tar, &self.root, &UnpackOptions::default())
    }

    /// Asserts nothing outside `root` changed: `base` holds only `root` and `host`, and `host`
    /// holds only the untouched `hostfile` with one link.
    fn assert_outside_untouched(&self) {
        let mut names: Vec<_> =
            std::fs::read_dir(&self.base).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["host", "root"]);
        let host: Vec<_> = std::fs::read_dir(&self.host).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(host, ["hostfile"]);
        assert_eq!(std::fs::read(self.host.join("hostfile")).unwrap(), b"host");
        assert_eq!(self.host.join("hostfile").metadata().unwrap().nlink(), 1);
    }

    /// Where an absolute host path lands when resolved inside the root.
    fn inside(&self, abs: &Path) -> PathBuf {
        self.root.join(abs.strip_prefix("/").unwrap())
    }
}

use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as S};

#[test]
fn dotdot_names_are_refused() {
    for name in ["../escape.txt", "a/../../escape.txt", "./../host/hostfile"] {
        let sb = sandbox();
        let err = sb.unpack(&raw_tar(&[Raw(name, F, "", b"evil")])).unwrap_err();
        assert!(matches!(err, UnpackError::UnsafePath { .. }), "{name}: {err}");
        sb.assert_outside_untouched();
    }
}

#[test]
fn absolute_names_land_inside_the_root() {
    let sb = sandbox();
    let abs_host_file = sb.host.join("hostfile");
    let tar = raw_tar(&[Raw("/abs.txt", F, "", b"a"), Raw(abs_host_file.to_str().unwrap(), F, "", b"evil")]);
    sb.unpack(&tar).unwrap();
    assert_eq!(std::fs::read(sb.root.join("abs.txt")).unwrap(), b"a");
    assert_eq!(std::fs::read(sb.inside(&abs_host_file)).unwrap(), b"evil");
    sb.assert_outside_untouched();
}

#[test]
fn symlinked_parents_are_resolved_inside_the_root() {
    let sb = sandbox();
    let host = sb.host.to_str().unwrap().to_owned();
    let tar = raw_tar(&[
        Raw("abs", S, &host, b""),
        Raw("abs/pwned.txt", F, "", b"1"),
        Raw("rel", S, "../../../../../../..", b""),
        Raw("rel/pwned2.txt", F, "", b"2"),
        Raw("rel/host/hostfile", F, "", b"3"),
        Raw("dir", D, "", b""),
        Raw("dir/up", S, "../..", b""),
        Raw("dir/up/host/hostfile", F, "", b"4"),
        Raw("chain", S, "abs", b""),
        Raw("chain/hostfile", F, "", b"5"),
    ]);
    sb.unpack(&tar).unwrap();
    sb.assert_outside_untouched();
    assert_eq!(std::fs::read(sb.inside(&sb.host).join("pwned.txt")).unwrap(), b"1");
    assert_eq!(std::fs::read(sb.root.join("pwned2.txt")).unwrap(), b"2");
    // rel -> root, so rel/host/hostfile and dir/up/host/hostfile are root/host/hostfile.
    assert_eq!(std::fs::read(sb.root.join("host/hostfile")).unwrap(), b"4");
    assert_eq!(std::fs::read(sb.inside(&sb.host).join("hostfile")).unwrap(), b"5");
}

#[test]
fn a_symlink_final_component_is_replaced_not_followed() {
    let sb = sandbox();
    let target = sb.host.join("hostfile");
    let tar = raw_tar(&[
        Raw("f", S, target.to_str().unwrap(), b""),
        Raw("f", F, "", b"evil"),
        Raw("d", S, sb.host.to_str().unwrap(), b""),
        Raw("d", D, "", b""),
    ]);
    sb.unpack(&tar).unwrap();
    sb.assert_outside_untouched();
    let meta = sb.root.join("f").symlink_metadata().unwrap();
    assert!(meta.is_file());
    assert_eq!(std::fs::read(sb.root.join("f")).unwrap(), b"evil");
    assert!(sb.root.join("d").symlink_metadata().unwrap().is_dir());
}

#[test]
fn hardlinks_cannot_reach_outside() {
    let sb = sandbox();
    let err = sb.unpack(&raw_tar(&[Raw("hl", H, "../host/hostfile", b"")])).unwrap_err();
    assert!(matches!(err, UnpackError::UnsafePath { .. }), "{err}");
    sb.assert_outside_untouched();

    let abs = sb.host.join("hostfile");
    let err = sb.unpack(&raw_tar(&[Raw("hl", H, abs.to_str().unwrap(), b"")])).unwrap_err();
    assert!(matches!(err, UnpackError::Apply { .. }), "{err}");
    sb.assert_outside_untouched();

    let tar = raw_tar(&[Raw("sl", S, sb.host.to_str().unwrap(), b""), Raw("hl", H, "sl/hostfile", b"")]);
    let err = sb.unpack(&tar).unwrap_err();
    assert!(matches!(err, UnpackError::Apply { .. }), "{err}");
    sb.assert_outside_untouched();
    assert!(!sb.root.join("hl").exists());

    // A hardlink to a symlink links the symlink itself, never its (outside) target.
    let tar = raw_tar(&[Raw("ln", S, abs.to_str().unwrap(), b""), Raw("hl2", H, "ln", b"")]);
    sb.unpack(&tar).unwrap();
    assert!(sb.root.join("hl2").symlink_metadata().unwrap().is_symlink());
    sb.assert_outside_untouched();
}

#[test]
fn whiteouts_through_symlinks_stay_inside() {
    let sb = sandbox();
    let tar = raw_tar(&[
        Raw("sl", S, sb.host.to_str().unwrap(), b""),
        Raw("sl/.wh.hostfile", F, "", b""),
        Raw("rel", S, "../host", b""),
        Raw("rel/.wh..wh..opq", F, "", b""),
    ]);
    sb.unpack(&tar).unwrap();
    sb.assert_outside_untouched();
}

#[test]
fn symlink_loops_fail_without_hanging() {
    let sb = sandbox();
    let tar = raw_tar(&[Raw("loop", S, "loop", b""), Raw("loop/x", F, "", b"")]);
    let err = sb.unpack(&tar).unwrap_err();
    assert!(err.to_string().contains("resolve parent"), "{err}");
    sb.assert_outside_untouched();
}

#[test]
fn whiteouts_and_opaque_dirs_apply_to_lower_layers_only() {
    let sb = sandbox();
    let lower = raw_tar(&[
        Raw("etc/", D, "", b""),
        Raw("etc/a", F, "", b"a"),
        Raw("etc/b", F, "", b"b"),
        Raw("etc/sub/", D, "", b""),
        Raw("etc/sub/deep", F, "", b"d"),
        Raw("var/cache/y/z", F, "", b"z"),
        Raw("var/cache/x", F, "", b"x"),
        Raw("keep/k", F, "", b"k"),
    ]);
    sb.unpack(&lower).unwrap();
    // Upper layer made by our writer from a changed root.
    let changed = tempfile::tempdir().unwrap();
    let c = changed.path();
    std::fs::create_dir_all(c.join("var/cache")).unwrap();
    std::fs::create_dir_all(c.join("etc")).unwrap();
    std::fs::write(c.join("var/cache/new"), "n").unwrap();
    let mut upper = Layer::new();
    upper
        .add_changes(
            c,
            &[
                Change::Delete("etc/b".into()),
                Change::Delete("etc/sub".into()),
                Change::Opaque("var/cache".into()),
                Change::Write("var/cache/new".into()),
            ],
        )
        .unwrap();
    let mut blob = Vec::new();
    upper.write(&mut blob, &LayerOptions::default()).unwrap();
    let stats = sb.unpack(&blob).unwrap();
    assert_eq!(stats.whiteouts, 3);
    let snap = snapshot::snapshot(&sb.root);
    let paths: Vec<_> = snap.keys().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(paths, ["etc", "etc/a", "keep", "keep/k", "var", "var/cache", "var/cache/new"]);
    sb.assert_outside_untouched();
}

#[test]
fn device_nodes_only_when_allowed() {
    let sb = sandbox();
    let tar = raw_tar(&[Raw("dev/null2", tar::EntryType::Char, "", b"")]);
    let no_dev = UnpackOptions { same_owner: false, devices: false };
    let stats = unpack_layer(tar.as_slice(), &sb.root, &no_dev).unwrap();
    assert_eq!(stats.skipped, 1);
    assert!(!sb.root.join("dev/null2").exists());
    assert!(rustix::process::geteuid().is_root(), "this test must run as root to check device creation");
    sb.unpack(&tar).unwrap();
    let meta = sb.root.join("dev/null2").symlink_metadata().unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), rustix::fs::makedev(1, 3));
}

#[test]
fn our_layers_round_trip() {
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    std::fs::create_dir_all(c.join("d/e")).unwrap();
    std::fs::write(c.join("d/e/f"), "f").unwrap();
    std::fs::write(c.join("x"), "xx").unwrap();
    std::fs::set_permissions(c.join("x"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::hard_link(c.join("x"), c.join("y")).unwrap();
    std::os::unix::fs::symlink("/nowhere", c.join("s")).unwrap();
    let mut layer = Layer::new();
    let copy = CopyOptions { dest: "/opt".into(), chown: Some(Chown { uid: 5, gid: 6 }), chmod: None };
    layer.add_copy(c, &walk::walk(c), &copy).unwrap();
    let mut blob = Vec::new();
    layer.write(&mut blob, &LayerOptions { source_date_epoch: 86_400, ..Default::default() }).unwrap();
    let sb = sandbox();
    sb.unpack(&blob).unwrap();
    let got = snapshot::snapshot(&sb.root.join("opt"));
    let mut want = snapshot::snapshot(c);
    for node in want.values_mut() {
        node.uid = 5;
        node.gid = 6;
    }
    assert_eq!(got, want);
    let x = sb.root.join("opt/x").metadata().unwrap();
    assert_eq!(x.ino(), sb.root.join("opt/y").metadata().unwrap().ino());
    assert_eq!(x.mode() & 0o7777, 0o4755, "setuid kept after chown");
    assert_eq!(x.mtime(), 86_400);
    assert_eq!(sb.root.join("opt/d").metadata().unwrap().mtime(), 86_400);
}
