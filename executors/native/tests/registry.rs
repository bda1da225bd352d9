//! Registry round trips against a real `docker-registry` on loopback, checked with skopeo:
//! push the busybox fixture, pull it back by tag and by digest, pull Docker schema-2 manifests
//! and multi-platform indexes, skip blobs already there, mount across repositories; and the
//! native executor building on a registry base and pushing its result (`registry/executor.rs`).

#[path = "support/http.rs"]
mod http_support;
#[path = "support/registry.rs"]
mod registry_support;
#[path = "common/tools.rs"]
mod tools;

#[path = "registry/auth.rs"]
mod auth;
#[path = "registry/engine_retry.rs"]
mod engine_retry;
#[path = "registry/executor.rs"]
mod executor;
#[path = "registry/faults.rs"]
mod faults;

use std::path::{Path, PathBuf};
use std::process::Command;

use std::str::FromStr;
use tools::{fixture_layout, run_tool as run};

/// The busybox fixture layout (tag `busybox`).
fn fixture() -> &'static Path {
    fixture_layout("busybox")
}

use nullspace_engine::cas::{BlobStore, Digest};
use nullspace_native::layer::{Layer, LayerOptions};
use nullspace_native::layout::{DOCKER_MANIFEST, OciDir, append_layer};
use nullspace_native::registry::{Platform, PushOptions, RegistryClient, RegistryConfig, RegistryError, UploadMode};
use oci_spec::image::{
    Arch, ImageConfigurationBuilder, ImageIndexBuilder, MediaType, Os, PlatformBuilder, SCHEMA_VERSION,
};
use registry_support::TestRegistry;

fn client() -> RegistryClient {
    client_with(RegistryConfig::default())
}

fn client_with(config: RegistryConfig) -> RegistryClient {
    // An empty docker config, so the machine's own never leaks into the tests.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.json");
    std::fs::write(&path, "{}").expect("write config.json");
    RegistryClient::new(RegistryConfig { docker_config: Some(path), ..config }).expect("client")
}

/// `skopeo inspect` of a reference on the loopback registry, as JSON.
fn skopeo_inspect(reference: &str, raw: bool) -> serde_json::Value {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if raw {
        cmd.arg("--raw");
    }
    cmd.arg(format!("docker://{reference}"));
    serde_json::from_str(&run(&mut cmd)).expect("skopeo prints JSON")
}

fn fixture_manifest_digest() -> Digest {
    let oci = OciDir::open(fixture()).expect("open fixture");
    Digest::from_str(oci.resolve(Some("busybox")).expect("tag busybox").digest().as_ref()).expect("sha256")
}

fn new_store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::new(dir.path()).expect("store");
    (dir, store)
}

#[tokio::test(flavor = "multi_thread")]
async fn push_then_skopeo_sees_it_and_pull_back_by_tag_and_digest() {
    let reg = TestRegistry::start();
    let client = client();
    let oci = OciDir::open(fixture()).unwrap();
    let target = format!("{}/nullspace/busybox:v1", reg.host());
    let report = client.push_layout(&oci, Some("busybox"), &target, &PushOptions::default()).await.unwrap();
    let expected = fixture_manifest_digest();
    assert_eq!(report.manifest_digest, expected);

    // An independent client sees the image under the digest of the fixture's manifest bytes.
    let inspect = skopeo_inspect(&target, false);
    assert_eq!(inspect["Digest"], expected.to_string());
    assert_eq!(inspect["Architecture"], "amd64");
    let fixture_image = oci.load_image(Some("busybox")).unwrap();
    let layer_digests: Vec<String> = fixture_image.manifest.layers().iter().map(|l| l.digest().to_string()).collect();
    let skopeo_layers: Vec<String> =
        inspect["Layers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    assert_eq!(skopeo_layers, layer_digests);

    assert_eq!(client.resolve(&target).await.unwrap(), expected);

    let (_d1, by_tag) = new_store();
    let pulled = client.pull(&target, &by_tag).await.unwrap();
    assert_eq!(pulled.manifest_digest, expected);
    assert_eq!(pulled.index_digest, None);
    assert_eq!(pulled.config, fixture_image.config);
    assert_eq!(pulled.layers, *fixture_image.manifest.layers());
    let config_digest = Digest::from_str(fixture_image.manifest.config().digest().as_ref()).unwrap();
    assert_eq!(pulled.config_digest, config_digest);
    for d in std::iter::once(expected)
        .chain(std::iter::once(config_digest))
        .chain(layer_digests.iter().map(|d| d.parse().unwrap()))
    {
        by_tag.verify(&d).unwrap_or_else(|e| panic!("{d} not stored intact: {e}"));
    }

    let by_digest_ref = format!("{}/nullspace/busybox@{expected}", reg.host());
    let (_d2, by_digest) = new_store();
    let pulled2 = client.pull(&by_digest_ref, &by_digest).await.unwrap();
    assert_eq!(pulled2.manifest_digest, expected);
    assert_eq!(pulled2.layers, pulled.layers);
    assert_eq!(by_digest.list().unwrap(), by_tag.list().unwrap());

    // The description is rebuilt from the store alone.
    drop(reg);
    let loaded = nullspace_native::registry::PulledImage::load(&by_tag, &expected, &target).unwrap();
    assert_eq!(loaded.config, pulled.config);
    assert_eq!(loaded.layers, pulled.layers);
    assert_eq!(loaded.manifest, pulled.manifest);
}

#[tokio::test(flavor = "multi_thread")]
async fn pushing_an_unchanged_image_twice_uploads_nothing_and_pulls_skip_stored_blobs() {
    let reg = TestRegistry::start();
    let client = client();
    let oci = OciDir::open(fixture()).unwrap();
    let target = format!("{}/twice/busybox:v1", reg.host());
    let first = client.push_layout(&oci, Some("busybox"), &target, &PushOptions::default()).await.unwrap();
    let blobs = 1 + oci.load_image(Some("busybox")).unwrap().manifest.layers().len();
    assert_eq!(first.uploaded.len(), blobs);
    let after_first = reg.upload_requests();
    // Monolithic: one POST and one PUT per blob.
    assert_eq!(after_first, 2 * blobs, "access log:\n{}", reg.access_log());

    let second = client.push_layout(&oci, Some("busybox"), &target, &PushOptions::default()).await.unwrap();
    assert_eq!(second.manifest_digest, first.manifest_digest);
    assert!(second.uploaded.is_empty());
    assert_eq!(second.skipped.len(), blobs);
    assert_eq!(reg.upload_requests(), after_first, "second push uploaded:\n{}", reg.access_log());

    let (_d, store) = new_store();
    client.pull(&target, &store).await.unwrap();
    let blob_gets = reg.count("GET", "/blobs/sha256:");
    assert_eq!(blob_gets, blobs);
    client.pull(&target, &store).await.unwrap();
    assert_eq!(reg.count("GET", "/blobs/sha256:"), blob_gets, "stored blobs were fetched again");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_uploads_send_many_patches_and_the_registry_accepts_them() {
    let reg = TestRegistry::start();
    let chunk = 64 * 1024;
    let client =
        client_with(RegistryConfig { upload: UploadMode::Chunked { chunk_size: chunk }, ..Default::default() });
    let oci = OciDir::open(fixture()).unwrap();
    let image = oci.load_image(Some("busybox")).unwrap();
    let target = format!("{}/chunked/busybox:v1", reg.host());
    let report = client.push_layout(&oci, Some("busybox"), &target, &PushOptions::default()).await.unwrap();
    let expected_patches: u64 = std::iter::once(image.manifest.config())
        .chain(image.manifest.layers().iter())
        .map(|d| d.size().div_ceil(chunk as u64))
        .sum();
    assert!(expected_patches > 2, "the fixture's layer should span several chunks");
    assert_eq!(reg.count("PATCH", "/blobs/uploads/") as u64, expected_patches, "{}", reg.access_log());
    assert_eq!(skopeo_inspect(&target, false)["Digest"], report.manifest_digest.to_string());
    let (_d, store) = new_store();
    assert_eq!(client.pull(&target, &store).await.unwrap().manifest_digest, report.manifest_digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_are_mounted_across_repositories_of_the_same_registry() {
    let reg = TestRegistry::start();
    let client = client();
    let oci = OciDir::open(fixture()).unwrap();
    let base = format!("{}/library/base:v1", reg.host());
    client.push_layout(&oci, Some("busybox"), &base, &PushOptions::default()).await.unwrap();
    let uploads = reg.upload_requests();

    let app = format!("{}/team/app:v1", reg.host());
    // A source on another registry is ignored; the one on this registry is used.
    let opts = PushOptions { mount_from: vec!["other.example/library/base:v1".to_owned(), base.clone()] };
    let report = client.push_layout(&oci, Some("busybox"), &app, &opts).await.unwrap();
    let blobs = 1 + oci.load_image(Some("busybox")).unwrap().manifest.layers().len();
    assert_eq!(report.mounted.len(), blobs);
    assert!(report.uploaded.is_empty());
    assert_eq!(reg.upload_requests(), uploads, "{}", reg.access_log());
    let mounts = reg
        .access_log()
        .lines()
        .filter(|l| {
            l.contains("\"POST /v2/team/app/blobs/uploads/?")
                && l.contains("from=library%2Fbase")
                && l.contains("\" 201 ")
        })
        .count();
    assert_eq!(mounts, blobs, "{}", reg.access_log());
    assert_eq!(skopeo_inspect(&app, false)["Digest"], report.manifest_digest.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_a_docker_schema2_manifest() {
    let reg = TestRegistry::start();
    let target = format!("{}/docker/busybox:v2s2", reg.host());
    run(Command::new("skopeo").args([
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!("oci:{}:busybox", fixture().display()),
        &format!("docker://{target}"),
    ]));
    let raw = skopeo_inspect(&target, true);
    assert_eq!(raw["mediaType"], DOCKER_MANIFEST);
    let digest = skopeo_inspect(&target, false)["Digest"].as_str().unwrap().to_owned();

    let client = client();
    let (_d, store) = new_store();
    let pulled = client.pull(&target, &store).await.unwrap();
    assert_eq!(pulled.manifest_media_type, DOCKER_MANIFEST);
    assert_eq!(pulled.manifest_digest.to_string(), digest);
    assert_eq!(pulled.config.architecture().to_string(), "amd64");
    assert_eq!(pulled.layers.len(), raw["layers"].as_array().unwrap().len());
    for l in &pulled.layers {
        assert_eq!(l.media_type().to_string(), "application/vnd.docker.image.rootfs.diff.tar.gzip");
        store.verify(&l.digest().as_ref().parse().unwrap()).unwrap();
    }
    // What was pulled can be pushed elsewhere from the store, unchanged.
    let copy = format!("{}/docker/copy:v2s2", reg.host());
    let report = client.push(&store, &pulled.manifest_digest, &copy, &PushOptions::default()).await.unwrap();
    assert_eq!(skopeo_inspect(&copy, false)["Digest"].as_str().unwrap(), report.manifest_digest.to_string());
    assert_eq!(report.manifest_digest.to_string(), digest);
}

/// Writes an index tagged `multi` in a copy of the fixture: busybox as linux/amd64 and a tiny
/// image as linux/arm64/v8. Returns (layout dir, amd64 digest, arm64 digest).
fn multi_platform_layout(dir: &Path) -> (PathBuf, Digest, Digest) {
    let layout = dir.join("multi");
    run(Command::new("cp").arg("-a").arg(fixture()).arg(&layout));
    let oci = OciDir::open(&layout).unwrap();
    let amd = oci.resolve(Some("busybox")).unwrap();
    let layer = oci.write_layer(&Layer::new(), &LayerOptions::default()).unwrap();
    let mut config =
        ImageConfigurationBuilder::default().architecture(Arch::ARM64).os(Os::Linux).variant("v8").build().unwrap();
    append_layer(&mut config, &layer, Default::default());
    let arm = oci.write_image(&config, &[layer.descriptor()], Some("arm")).unwrap();
    let mut amd_entry = amd.clone();
    amd_entry.set_annotations(None);
    amd_entry.set_platform(Some(PlatformBuilder::default().os(Os::Linux).architecture(Arch::Amd64).build().unwrap()));
    let mut arm_entry = arm.clone();
    arm_entry.set_annotations(None);
    arm_entry.set_platform(Some(
        PlatformBuilder::default().os(Os::Linux).architecture(Arch::ARM64).variant("v8").build().unwrap(),
    ));
    let index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![arm_entry, amd_entry])
        .build()
        .unwrap();
    let desc = oci.write_blob(MediaType::ImageIndex, &serde_json::to_vec(&index).unwrap()).unwrap();
    oci.tag(&desc, "multi").unwrap();
    let d = |x: &oci_spec::image::Descriptor| Digest::from_str(x.digest().as_ref()).unwrap();
    (layout, d(&amd), d(&arm))
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_the_wanted_platform_from_a_multi_platform_index() {
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, amd, arm) = multi_platform_layout(tmp.path());
    let target = format!("{}/multi/img:latest", reg.host());
    run(Command::new("skopeo").args([
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{target}"),
    ]));
    let raw = skopeo_inspect(&target, true);
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2);

    // Default platform: linux/amd64.
    let client = client();
    let (_d, store) = new_store();
    let pulled = client.pull(&target, &store).await.unwrap();
    assert_eq!(pulled.manifest_digest, amd);
    assert!(pulled.index_digest.is_some());
    assert_eq!(client.resolve(&target).await.unwrap(), amd);

    for wanted in ["linux/arm64", "linux/arm64/v8"] {
        let arm_client = client_with(RegistryConfig { platform: wanted.parse().unwrap(), ..Default::default() });
        let (_d, store) = new_store();
        let pulled = arm_client.pull(&target, &store).await.unwrap();
        assert_eq!(pulled.manifest_digest, arm, "{wanted}");
        assert_eq!(pulled.config.architecture().to_string(), "arm64");
    }

    let wanted: Platform = "linux/arm64/v9".parse().unwrap();
    let none = client_with(RegistryConfig { platform: wanted, ..Default::default() });
    match none.resolve(&target).await {
        Err(RegistryError::NoPlatform { reference, platform, .. }) => {
            assert_eq!(reference, target);
            assert_eq!(platform, "linux/arm64/v9");
        }
        other => panic!("expected NoPlatform, got {other:?}"),
    }
}
