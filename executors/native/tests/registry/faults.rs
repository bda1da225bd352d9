//! Faults: the real registry produces 404, 401 and connection refused; a tiny local server
//! produces what it cannot (5xx, 403, hangs), in addition to those.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nullspace_engine::cas::Digest;
use nullspace_native::layout::OciDir;
use nullspace_native::registry::{PushOptions, RegistryConfig, RegistryError, RetryPolicy};

use super::http_support::{Request, Response, serve};
use super::registry_support::{Auth, TestRegistry};
use super::{client, client_with, fixture, new_store};

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy { attempts, initial_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(4) }
}

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

/// A fake registry: `/v2/` answers 200; manifest requests are counted and answered by `f`
/// with the request's index (0-based).
fn fake(
    f: impl Fn(usize, &Request) -> Option<Response> + Send + Sync + 'static,
) -> (super::http_support::Server, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    let server = serve(move |req| {
        if req.path == "/v2/" {
            return Some(Response::new(200, "{}"));
        }
        if req.path.contains("/manifests/") {
            let n = c.fetch_add(1, Ordering::SeqCst);
            return f(n, req);
        }
        Some(Response::new(404, ""))
    });
    (server, count)
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_tag_is_not_found() {
    let reg = TestRegistry::start();
    let oci = OciDir::open(fixture()).unwrap();
    let c = client();
    c.push_layout(&oci, Some("busybox"), &format!("{}/known/busybox:v1", reg.host()), &PushOptions::default())
        .await
        .unwrap();
    for reference in [format!("{}/known/busybox:nope", reg.host()), format!("{}/unknown/repo:v1", reg.host())] {
        let (_d, store) = new_store();
        match c.pull(&reference, &store).await {
            Err(RegistryError::NotFound { reference: r, .. }) => assert_eq!(r, reference),
            other => panic!("{reference}: expected NotFound, got {other:?}"),
        }
        assert!(store.list().unwrap().is_empty());
    }
    // 404s are not retried.
    assert_eq!(reg.count("GET", "/known/busybox/manifests/nope"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_registry_without_or_with_wrong_credentials_is_unauthorized() {
    let reg = TestRegistry::start_with(Auth::Htpasswd { user: "alice".into(), password: "s3cret".into() });
    let reference = format!("{}/private/busybox:v1", reg.host());
    let oci = OciDir::open(fixture()).unwrap();
    let anonymous = client();
    match anonymous.resolve(&reference).await {
        Err(RegistryError::Unauthorized { reference: r, .. }) => assert_eq!(r, reference),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    match anonymous.push_layout(&oci, Some("busybox"), &reference, &PushOptions::default()).await {
        Err(RegistryError::Unauthorized { reference: r, .. }) => assert_eq!(r, reference),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let wrong = client().with_credentials(
        &reg.host(),
        nullspace_plan::builder::Credentials::Basic { username: "alice".into(), password: "nope".into() },
    );
    match wrong.resolve(&reference).await {
        Err(RegistryError::Unauthorized { .. }) => {}
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert_eq!(reg.upload_requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_refused_names_the_reference_and_is_not_retried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let reference = format!("127.0.0.1:{port}/x/y:z");
    let c = client_with(RegistryConfig {
        retry: RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(2),
        },
        ..Default::default()
    });
    let started = Instant::now();
    match c.resolve(&reference).await {
        Err(RegistryError::ConnectionRefused { reference: r, registry }) => {
            assert_eq!(r, reference);
            assert_eq!(registry, format!("127.0.0.1:{port}"));
        }
        other => panic!("expected ConnectionRefused, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2), "a refused connection was retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let (server, count) = fake(|_, _| Some(Response::new(503, "down for maintenance")));
    let reference = format!("127.0.0.1:{}/x/y:z", server.port());
    let c = client_with(RegistryConfig { retry: fast_retry(3), ..Default::default() });
    match c.resolve(&reference).await {
        Err(RegistryError::Server { reference: r, status, attempts, detail }) => {
            assert_eq!(r, reference);
            assert_eq!((status, attempts), (503, 3));
            assert!(detail.contains("down for maintenance"), "{detail}");
        }
        other => panic!("expected Server, got {other:?}"),
    }
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_recovers_within_the_attempts_succeeds() {
    let digest = Digest::of(MANIFEST.as_bytes());
    let (server, count) = fake(move |n, _| {
        Some(if n < 2 {
            Response::new(502, "bad gateway")
        } else {
            Response::new(200, MANIFEST)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .header("Docker-Content-Digest", &digest.to_string())
        })
    });
    let reference = format!("127.0.0.1:{}/x/y:z", server.port());
    let c = client_with(RegistryConfig { retry: fast_retry(3), ..Default::default() });
    assert_eq!(c.resolve(&reference).await.unwrap(), digest);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_registry_times_out_after_the_attempts() {
    let (server, count) = fake(|_, _| None);
    let reference = format!("127.0.0.1:{}/x/y:z", server.port());
    let c = client_with(RegistryConfig {
        retry: fast_retry(2),
        read_timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let started = Instant::now();
    match c.resolve(&reference).await {
        Err(RegistryError::Timeout { reference: r, attempts, .. }) => {
            assert_eq!(r, reference);
            assert_eq!(attempts, 2);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_is_its_own_error() {
    let (server, _) = fake(|n, _| {
        Some(if n == 0 {
            Response::new(
                403,
                r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
            )
            .header("Content-Type", "application/json")
        } else {
            Response::new(403, "")
        })
    });
    let c = client_with(RegistryConfig { retry: fast_retry(3), ..Default::default() });
    for _ in 0..2 {
        let reference = format!("127.0.0.1:{}/x/y:z", server.port());
        match c.resolve(&reference).await {
            Err(RegistryError::Forbidden { reference: r, .. }) => assert_eq!(r, reference),
            other => panic!("expected Forbidden, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_whose_content_does_not_match_its_digest_is_refused() {
    // The manifest names a config whose served bytes hash to something else.
    let digest = Digest::of(MANIFEST.as_bytes());
    let server = serve(move |req| {
        Some(if req.path == "/v2/" {
            Response::new(200, "{}")
        } else if req.path.contains("/manifests/") {
            Response::new(200, MANIFEST)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .header("Docker-Content-Digest", &digest.to_string())
        } else {
            Response::new(200, "not {}")
        })
    });
    let reference = format!("127.0.0.1:{}/x/y:z", server.port());
    let (_d, store) = new_store();
    match client().pull(&reference, &store).await {
        Err(RegistryError::DigestMismatch { reference: r, expected, actual }) => {
            assert_eq!(r, reference);
            assert_eq!(expected, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
            assert_eq!(actual, Digest::of(b"not {}").to_string());
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    let config = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".parse().unwrap();
    assert!(!store.contains(&config).unwrap());
}
