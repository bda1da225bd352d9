//! The blob store on a real filesystem: round trips, typed failures, concurrent writers, gc, and a
//! writer process SIGKILLed mid-write.

use nullspace_engine::cas::{BlobStore, CasError, Digest};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set (to a store directory) in the child process of [`killed_writer_leaves_no_partial_blob`].
const CHILD_ENV: &str = "NULLSPACE_CAS_CRASH_CHILD";

fn sha256(data: &[u8]) -> String {
    let hex: String = Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn temp_files(store: &Path) -> Vec<String> {
    fs::read_dir(store.join("tmp")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn put_read_and_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::new(tmp.path()).unwrap();
    let data = b"some layer bytes";
    let digest = store.put(data).unwrap();
    assert_eq!(digest.to_string(), sha256(data));
    let hex = digest.hex();
    let expected_path = tmp.path().join("blobs/sha256").join(&hex[..2]).join(&hex);
    assert_eq!(store.blob_path(&digest), expected_path);
    assert_eq!(fs::read(&expected_path).unwrap(), data);
    assert!(store.contains(&digest).unwrap());
    assert_eq!(store.size(&digest).unwrap(), data.len() as u64);
    let mut opened = Vec::new();
    store.open(&digest).unwrap().read_to_end(&mut opened).unwrap();
    assert_eq!(opened, data);
    assert_eq!(store.read_verified(&digest).unwrap(), data);
    assert_eq!(store.list().unwrap(), vec![digest]);
    assert!(temp_files(tmp.path()).is_empty());

    // Writing the same content again is harmless.
    assert_eq!(store.put(data).unwrap(), digest);
    assert_eq!(store.list().unwrap(), vec![digest]);
}

#[test]
fn streaming_writer_hashes_what_it_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::new(tmp.path()).unwrap();
    let mut writer = store.writer().unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..5 {
        writer.write_all(&chunk).unwrap();
    }
    assert_eq!(writer.written(), 5 << 20);
    let digest = writer.commit().unwrap();
    assert_eq!(digest.to_string(), sha256(&chunk.repeat(5)));
    store.verify(&digest).unwrap();

    let mut reader: &[u8] = b"from a reader";
    assert_eq!(store.put_reader(&mut reader).unwrap().to_string(), sha256(b"from a reader"));
}

#[test]
fn expected_digest_mismatch_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::new(tmp.path()).unwrap();
    let wrong = Digest::of(b"something else");
    let mut writer = store.writer_expecting(wrong).unwrap();
    writer.write_all(b"actual").unwrap();
    match writer.commit() {
        Err(CasError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual.to_string(), sha256(b"actual"));
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(store.list().unwrap().is_empty());
    assert!(temp_files(tmp.path()).is_empty());

    let right = Digest::of(b"actual");
    let mut writer = store.writer_expecting(right).unwrap();
    writer.write_all(b"actual").unwrap();
    assert_eq!(writer.commit().unwrap(), right);
}

#[test]
fn dropped_writer_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::new(tmp.path()).unwrap();
    let mut writer = store.writer().unwrap();
    writer.write_all(b"half").unwrap();
    assert_eq!(temp_files(tmp.path()).len(), 1);
    drop(writer);
    assert!(temp_files(tmp.path()).is_empty());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn missing_and_corrupt_blobs_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::new(tmp.path()).unwrap();
    let absent = Digest::of(b"absent");
    assert!(!store.contains(&absent).unwrap());
    assert!(matches!(store.size(&absent), Err(CasError::NotFound { .. })));
    assert!(matches!(store.open(&absent), Err(CasError::NotFound { .. })));
    assert!(matches!(store.read_verified(&absent), Err(CasError::NotFound { .. })));

    let digest = store.put(b"original").unwrap();
    fs::write(store.blob_path(&digest), b"tampered").unwrap();
    match store.verify(&digest) {
        Err(CasError::Corrupt { digest: name, actual, .. }) => {
            assert_eq!(name, digest);
            assert_eq!(actual.to_string(), sha256(b"tampered"));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(matches!(store.read_verified(&digest), Err(CasError::Corrupt { .. })));
    // An emptied blob is corrupt too (the empty digest is not its name).
    fs::write(store.blob_path(&digest), b"").unwrap();
    assert!(matches!(store.verify(&digest), Err(CasError::Corrupt { .. })));
}

#[test]
fn digest_text_round_trips_and_rejects_garbage() {
    let digest = Digest::of(b"x");
    assert_eq!(digest.to_string().parse::<Digest>().unwrap(), digest);
    assert_eq!(serde_json::to_string(&digest).unwrap(), format!("\"{digest}\""));
    for bad in ["", "sha256:", "sha512:00", "sha256:XYZ", &format!("sha256:{}", "A".repeat(64))] {
        assert!(bad.parse::<Digest>().is_err(), "{bad:?}");
    }
}

#[test]
fn concurrent_writers_of_one_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::new(tmp.path()).unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let digests: Vec<Digest> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut w = store.writer().unwrap();
                    for chunk in data.chunks(4096) {
                        w.write_all(chunk).unwrap();
                    }
                    w.commit().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(digests.iter().all(|d| *d == digests[0]));
    assert_eq!(store.list().unwrap(), vec![digests[0]]);
    assert_eq!(store.read_verified(&digests[0]).unwrap(), data);
    assert!(temp_files(tmp.path()).is_empty());
}

#[test]
fn gc_keeps_what_is_asked_and_spares_live_writers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::new(tmp.path()).unwrap();
    let keep = store.put(b"keep me").unwrap();
    let drop1 = store.put(b"drop me").unwrap();
    let drop2 = store.put(b"drop me too").unwrap();
    fs::write(tmp.path().join("blobs/sha256/stray"), b"junk").unwrap();
    let mut live = store.writer().unwrap();
    live.write_all(b"in progress").unwrap();
    // A temp file nobody holds, as a killed writer leaves behind.
    fs::write(tmp.path().join("tmp/999-0-0.tmp"), b"abandoned").unwrap();

    let stats = store.gc(&HashSet::from([keep])).unwrap();
    assert_eq!(stats.blobs_removed, 3);
    assert_eq!(stats.bytes_removed, (b"drop me".len() + b"drop me too".len() + 4) as u64);
    assert_eq!(stats.temps_removed, 1);
    assert_eq!(store.list().unwrap(), vec![keep]);
    assert!(!store.contains(&drop1).unwrap() && !store.contains(&drop2).unwrap());
    assert_eq!(temp_files(tmp.path()).len(), 1, "the live writer's temp file stays");

    let finished = live.commit().unwrap();
    assert_eq!(store.read_verified(&finished).unwrap(), b"in progress");
}

/// Not a test on its own: when [`CHILD_ENV`] names a store, writes blobs into it until killed,
/// pausing in the middle of each blob so that a kill usually lands mid-write.
#[test]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = BlobStore::new(dir).unwrap();
    for i in 0u64.. {
        let mut w = store.writer().unwrap();
        let chunk: Vec<u8> = (0..64 * 1024).map(|j| (i as usize * 31 + j) as u8).collect();
        for part in 0..16 {
            w.write_all(&chunk).unwrap();
            if part == 8 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        w.write_all(&i.to_le_bytes()).unwrap();
        w.commit().unwrap();
    }
}

#[test]
fn killed_writer_leaves_no_partial_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it has committed a few blobs and is in the middle of another, then SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "child wrote nothing");
        let committed = BlobStore::new(&dir).map(|s| s.list().unwrap().len()).unwrap_or(0);
        let writing = fs::read_dir(dir.join("tmp"))
            .map(|rd| rd.filter_map(Result::ok).any(|e| e.metadata().is_ok_and(|m| m.len() > 0)))
            .unwrap_or(false);
        if committed >= 5 && writing {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let store = BlobStore::new(&dir).unwrap();
    let blobs = store.list().unwrap();
    assert!(blobs.len() >= 5);
    for digest in &blobs {
        let content = fs::read(store.blob_path(digest)).unwrap();
        assert_eq!(sha256(&content), digest.to_string(), "blob under a real name is whole");
        assert_eq!(content.len(), 16 * 64 * 1024 + 8);
    }
    let leftovers = temp_files(&dir);
    assert!(!leftovers.is_empty(), "the kill should have interrupted a write");

    let stats = store.gc(&blobs.iter().copied().collect()).unwrap();
    assert_eq!(stats.temps_removed as usize, leftovers.len());
    assert_eq!(stats.blobs_removed, 0);
    assert!(temp_files(&dir).is_empty());
    assert_eq!(store.list().unwrap(), blobs);
}
