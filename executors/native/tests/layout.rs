//! OCI image layout: references, tags, resolution, Docker schema-2 on read, canonical JSON.

use std::collections::HashMap;
use std::path::Path;

use nullspace_native::layer::{Layer, LayerOptions};
use nullspace_native::layout::{DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, LayoutError, OciDir, OciRef};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfiguration, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, Os, PlatformBuilder,
};

fn config(labels: usize) -> ImageConfiguration {
    let labels: HashMap<String, String> = (0..labels).map(|i| (format!("label.{i}"), format!("value {i}"))).collect();
    ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .created("1970-01-01T00:00:00Z")
        .config(ConfigBuilder::default().env(vec!["PATH=/bin".to_owned()]).labels(labels).build().unwrap())
        .build()
        .unwrap()
}

#[test]
fn references_parse_like_skopeo() {
    let r: OciRef = "oci:/a/b".parse().unwrap();
    assert_eq!((r.path.as_path(), r.tag), (Path::new("/a/b"), None));
    let r: OciRef = "oci:rel/dir:v1.2".parse().unwrap();
    assert_eq!((r.path.as_path(), r.tag.as_deref()), (Path::new("rel/dir"), Some("v1.2")));
    // The path ends at the first colon; the tag may hold more.
    let r: OciRef = "oci:/x:repo/name:tag".parse().unwrap();
    assert_eq!((r.path.as_path(), r.tag.as_deref()), (Path::new("/x"), Some("repo/name:tag")));
    for bad in ["docker://busybox", "oci:", "oci::tag", "oci:/x:", "oci:/x:a..b", "oci:/x:-a", "oci:/x:a b"] {
        assert!(bad.parse::<OciRef>().is_err(), "{bad}");
    }
}

#[test]
fn tags_resolve_move_and_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::create(dir.path()).unwrap();
    // The layout files exist and parse with the spec types.
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("oci-layout")).unwrap()).unwrap();
    assert_eq!(marker["imageLayoutVersion"], "1.0.0");
    assert!(matches!(oci.resolve(None), Err(LayoutError::TagNotFound { .. })));

    let layer = oci.write_layer(&Layer::new(), &LayerOptions::default()).unwrap();
    assert!(oci.blob_path(&layer.digest).unwrap().is_file());
    let a = oci.write_image(&config(0), &[layer.descriptor()], Some("a")).unwrap();
    let b = oci.write_image(&config(1), &[layer.descriptor()], Some("b")).unwrap();
    assert_ne!(a.digest(), b.digest());
    assert_eq!(oci.resolve(Some("a")).unwrap().digest(), a.digest());
    assert_eq!(oci.resolve(Some("b")).unwrap().digest(), b.digest());
    assert!(matches!(oci.resolve(None), Err(LayoutError::Ambiguous { count: 2, .. })));
    assert!(matches!(oci.resolve(Some("c")), Err(LayoutError::TagNotFound { .. })));

    // Moving tag `a` onto b's manifest leaves one entry per tag.
    oci.tag(&b, "a").unwrap();
    assert_eq!(oci.resolve(Some("a")).unwrap().digest(), b.digest());
    let index = OciDir::open(dir.path()).unwrap().index().unwrap();
    assert_eq!(index.manifests().len(), 2);
    assert!(oci.tag(&b, "bad tag").is_err());

    let image = oci.load_image(Some("b")).unwrap();
    assert_eq!(image.manifest.layers(), &vec![layer.descriptor()]);
    assert_eq!(image.config, config(1));
}

#[test]
fn config_json_is_canonical_whatever_the_map_order() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let o1 = OciDir::create(d1.path()).unwrap();
    let o2 = OciDir::create(d2.path()).unwrap();
    // Each HashMap has its own random order; the bytes must not depend on it.
    let m1 = o1.write_image(&config(40), &[], Some("t")).unwrap();
    let m2 = o2.write_image(&config(40), &[], Some("t")).unwrap();
    assert_eq!(m1.digest(), m2.digest());
    let c = o1.read_manifest(&m1).unwrap();
    let text = String::from_utf8(o1.read_blob(c.config().digest()).unwrap()).unwrap();
    let mut keys: Vec<String> = (0..40).map(|i| format!("label.{i}")).collect();
    keys.sort();
    let by_text: Vec<usize> = keys.iter().map(|k| text.find(&format!("\"{k}\"")).unwrap()).collect();
    let mut sorted = by_text.clone();
    sorted.sort();
    assert_eq!(by_text, sorted, "labels appear in sorted key order");
}

#[test]
fn corrupt_blobs_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::create(dir.path()).unwrap();
    let m = oci.write_image(&config(0), &[], Some("t")).unwrap();
    std::fs::write(oci.blob_path(m.digest()).unwrap(), b"{}").unwrap();
    assert!(matches!(oci.load_image(Some("t")), Err(LayoutError::DigestMismatch { .. })));
}

#[test]
fn docker_schema2_manifests_and_lists_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::create(dir.path()).unwrap();
    let cfg_bytes = serde_json::to_vec(&config(2)).unwrap();
    let cfg = oci.write_blob(MediaType::Other(DOCKER_CONFIG.to_owned()), &cfg_bytes).unwrap();
    let layer = Descriptor::new(
        MediaType::Other("application/vnd.docker.image.rootfs.diff.tar.gzip".to_owned()),
        3,
        cfg.digest().clone(),
    );
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::Other(DOCKER_MANIFEST.to_owned()))
        .config(cfg)
        .layers(vec![layer])
        .build()
        .unwrap();
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    assert!(String::from_utf8_lossy(&mbytes).contains(DOCKER_MANIFEST));
    let mdesc = oci.write_blob(MediaType::Other(DOCKER_MANIFEST.to_owned()), &mbytes).unwrap();
    oci.tag(&mdesc, "docker").unwrap();
    let image = oci.load_image(Some("docker")).unwrap();
    assert_eq!(image.config, config(2));

    // A manifest list: the entry for this host's platform is chosen.
    let mut arm = mdesc.clone();
    arm.set_platform(Some(PlatformBuilder::default().os(Os::Linux).architecture(Arch::ARM64).build().unwrap()));
    let mut amd = mdesc.clone();
    amd.set_platform(Some(PlatformBuilder::default().os(Os::Linux).architecture(Arch::Amd64).build().unwrap()));
    let list = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::Other(DOCKER_MANIFEST_LIST.to_owned()))
        .manifests(vec![arm.clone(), amd.clone()])
        .build()
        .unwrap();
    let ldesc =
        oci.write_blob(MediaType::Other(DOCKER_MANIFEST_LIST.to_owned()), &serde_json::to_vec(&list).unwrap()).unwrap();
    oci.tag(&ldesc, "list").unwrap();
    assert_eq!(std::env::consts::ARCH, "x86_64", "platform expectations below assume amd64");
    assert_eq!(oci.resolve(Some("list")).unwrap(), amd);

    let only_arm = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![arm])
        .build()
        .unwrap();
    let adesc = oci.write_blob(MediaType::ImageIndex, &serde_json::to_vec(&only_arm).unwrap()).unwrap();
    oci.tag(&adesc, "arm").unwrap();
    assert!(matches!(oci.resolve(Some("arm")), Err(LayoutError::NoPlatform { .. })));
}
