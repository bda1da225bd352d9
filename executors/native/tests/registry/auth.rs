//! Authentication against real registries: htpasswd basic auth (credentials from the builder
//! and from a docker `config.json`), and token auth with a token server run by the test
//! (ES256 JWTs carrying the signing certificate in `x5c`, which the registry checks against
//! its `rootcertbundle`).

use std::process::Command;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use nullspace_native::layout::OciDir;
use nullspace_native::registry::{DockerConfig, PushOptions, RegistryConfig, RegistryError};
use nullspace_plan::builder::Credentials;

use super::http_support::{Request, Response, serve};
use super::registry_support::{Auth, TestRegistry};
use super::{client, fixture, fixture_manifest_digest, new_store, run};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret:with colon";

fn b64(s: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Pushes the fixture to `reference` with `client`, pulls it back and checks the digest.
async fn round_trip(client: &nullspace_native::registry::RegistryClient, reference: &str) {
    let oci = OciDir::open(fixture()).unwrap();
    let report = client.push_layout(&oci, Some("busybox"), reference, &PushOptions::default()).await.unwrap();
    assert_eq!(report.manifest_digest, fixture_manifest_digest());
    let (_d, store) = new_store();
    let pulled = client.pull(reference, &store).await.unwrap();
    assert_eq!(pulled.manifest_digest, report.manifest_digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_registry_with_builder_credentials() {
    let reg = TestRegistry::start_with(Auth::Htpasswd { user: USER.into(), password: PASSWORD.into() });
    let c =
        client().with_credentials(&reg.host(), Credentials::Basic { username: USER.into(), password: PASSWORD.into() });
    round_trip(&c, &format!("{}/private/busybox:v1", reg.host())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_registry_with_docker_config_credentials() {
    let reg = TestRegistry::start_with(Auth::Htpasswd { user: USER.into(), password: PASSWORD.into() });
    let dir = tempfile::tempdir().unwrap();
    let forms = [
        // `auth`, keyed by a URL as `docker login` writes it.
        format!(r#"{{"auths":{{"http://{}/v1/":{{"auth":"{}"}}}}}}"#, reg.host(), b64(format!("{USER}:{PASSWORD}"))),
        // username and password, keyed by host.
        format!(r#"{{"auths":{{"{}":{{"username":"{USER}","password":"{PASSWORD}"}}}}}}"#, reg.host()),
    ];
    for (i, text) in forms.iter().enumerate() {
        let path = dir.path().join(format!("config{i}.json"));
        std::fs::write(&path, text).unwrap();
        let c = nullspace_native::registry::RegistryClient::new(RegistryConfig {
            docker_config: Some(path.clone()),
            ..RegistryConfig::default()
        })
        .unwrap();
        round_trip(&c, &format!("{}/private/form{i}:v1", reg.host())).await;
    }
}

#[test]
fn malformed_docker_config_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    for text in ["{not json", r#"{"auths":{"h":{"auth":"%%%"}}}"#, r#"{"auths":{"h":{"auth":"bm9jb2xvbg=="}}}"#] {
        std::fs::write(&path, text).unwrap();
        match DockerConfig::load(&path) {
            Err(RegistryError::DockerConfig { path: p, .. }) => assert_eq!(p, path),
            other => panic!("{text}: expected DockerConfig error, got {other:?}"),
        }
    }
    std::fs::write(&path, r#"{"auths":{"https://index.docker.io/v1/":{"identitytoken":"tok","auth":"dTpw"}}}"#)
        .unwrap();
    let config = DockerConfig::load(&path).unwrap();
    assert_eq!(config.get("docker.io"), Some(&Credentials::Token("tok".into())));
}

/// A token server for `service`: signs ES256 JWTs granting what the scope asks to `USER`
/// with `PASSWORD`, nothing to anyone else.
struct TokenServer {
    server: super::http_support::Server,
    cert: std::path::PathBuf,
    key: Vec<u8>,
    x5c: String,
    _dir: tempfile::TempDir,
}

const SERVICE: &str = "nullspace-registry";
const ISSUER: &str = "nullspace-test-issuer";

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() && u8::from_str_radix(&s[i + 1..i + 3], 16).is_ok() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn sign(key: &[u8], x5c: &str, access: serde_json::Value) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": USER, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", rand_suffix()),
        "access": access,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.x5c = Some(vec![x5c.to_owned()]);
    let key = jsonwebtoken::EncodingKey::from_ec_pem(key).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn rand_suffix() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

impl TokenServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=nullspace-token",
            ])
            .arg("-keyout")
            .arg(&key_path)
            .arg("-out")
            .arg(&cert));
        let der = dir.path().join("cert.der");
        run(Command::new("openssl").args(["x509", "-outform", "DER"]).arg("-in").arg(&cert).arg("-out").arg(&der));
        let key = std::fs::read(&key_path).unwrap();
        let x5c = b64(std::fs::read(&der).unwrap());
        let (k, x) = (Arc::new(key.clone()), Arc::new(x5c.clone()));
        let expected = format!("Basic {}", b64(format!("{USER}:{PASSWORD}")));
        let server = serve(move |req: &Request| {
            if req.header("authorization") != Some(expected.as_str()) {
                return Some(Response::new(401, r#"{"details":"bad credentials"}"#));
            }
            let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
            let mut access = Vec::new();
            for pair in query.split('&') {
                if let Some(("scope", v)) = pair.split_once('=') {
                    let scope = percent_decode(v);
                    let mut parts = scope.splitn(3, ':');
                    if let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next()) {
                        let actions: Vec<&str> = actions.split(',').collect();
                        access.push(serde_json::json!({"type": kind, "name": name, "actions": actions}));
                    }
                }
            }
            let token = sign(&k, &x, serde_json::Value::Array(access));
            Some(
                Response::new(200, serde_json::json!({"token": token, "expires_in": 300}).to_string())
                    .header("Content-Type", "application/json"),
            )
        });
        Self { server, cert, key, x5c, _dir: dir }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.server.port())
    }
}

fn token_registry(tokens: &TokenServer) -> TestRegistry {
    TestRegistry::start_with(Auth::Token {
        realm: tokens.realm(),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        cert: tokens.cert.clone(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn token_registry_with_basic_credentials_gets_bearer_tokens() {
    let tokens = TokenServer::start();
    let reg = token_registry(&tokens);
    let reference = format!("{}/token/busybox:v1", reg.host());
    // Anonymous: the token server refuses, the registry answers 401.
    match client().resolve(&reference).await {
        Err(RegistryError::Unauthorized { reference: r, .. }) => assert_eq!(r, reference),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let c =
        client().with_credentials(&reg.host(), Credentials::Basic { username: USER.into(), password: PASSWORD.into() });
    round_trip(&c, &reference).await;
    // Every blob and manifest request carried a token: the registry logged no 401 for them.
    let unauthorized_after_token =
        reg.access_log().lines().filter(|l| l.contains("/token/busybox/") && l.contains("\" 401 ")).count();
    assert_eq!(unauthorized_after_token, 1, "only the anonymous attempt is refused:\n{}", reg.access_log());
}

#[tokio::test(flavor = "multi_thread")]
async fn token_registry_accepts_a_bearer_token_given_directly() {
    let tokens = TokenServer::start();
    let reg = token_registry(&tokens);
    let access = serde_json::json!([{"type": "repository", "name": "direct/busybox", "actions": ["pull", "push"]}]);
    let token = sign(&tokens.key, &tokens.x5c, access);
    let c = client().with_credentials(&reg.host(), Credentials::Token(token));
    round_trip(&c, &format!("{}/direct/busybox:v1", reg.host())).await;
    // The same token grants nothing on another repository.
    match c.resolve(&format!("{}/other/busybox:v1", reg.host())).await {
        Err(RegistryError::Unauthorized { .. }) => {}
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}
