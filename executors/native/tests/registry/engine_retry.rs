//! Registry credentials are never persisted: a retry of a build on a private base fails without
//! them and succeeds when they are given again (the engine facade over this executor, against a
//! real htpasswd-protected registry).

use std::sync::Arc;

use nullspace_engine::engine::RetryOptions;
use nullspace_engine::store::BuildStatus;
use nullspace_engine::{BuildOptions, Engine};
use nullspace_native::executor::{NativeExecutor, NativeOptions};
use nullspace_native::layout::OciDir;
use nullspace_native::registry::{PushOptions, RegistryConfig};
use nullspace_native::run::RunnerOptions;
use nullspace_plan::builder::{Credentials, Template};

use super::{client, fixture};
use crate::registry_support::{Auth, TestRegistry};

const USER: &str = "builder";
const PASSWORD: &str = "retry-pass-7e1d";

fn credentials() -> Credentials {
    Credentials::Basic { username: USER.into(), password: PASSWORD.into() }
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_needs_registry_credentials_again() {
    let reg = TestRegistry::start_with(Auth::Htpasswd { user: USER.into(), password: PASSWORD.into() });
    let base = format!("{}/private/busybox:v1", reg.host());
    let pusher = client().with_credentials(&reg.host(), credentials());
    pusher
        .push_layout(&OciDir::open(fixture()).unwrap(), Some("busybox"), &base, &PushOptions::default())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    // No docker config: the only credentials are the ones a request carries.
    let docker_config = dir.path().join("config.json");
    std::fs::write(&docker_config, r#"{"auths":{}}"#).unwrap();
    let options = NativeOptions {
        runner: RunnerOptions { runc_root: Some(dir.path().join("runc")), ..RunnerOptions::default() },
        registry: RegistryConfig { docker_config: Some(docker_config), ..RegistryConfig::default() },
        ..NativeOptions::default()
    };
    let executor = NativeExecutor::new(&dir.path().join("state/native"), options).unwrap();
    let engine =
        Engine::builder().state_dir(dir.path().join("state")).executor(Arc::new(executor)).build().await.unwrap();
    let tenant = "acme".parse().unwrap();
    let name = "acme/private".parse().unwrap();

    let template = Template::from_image(&base).registry_credentials(credentials()).run_cmd("echo ok > /ok");
    let first = engine.build(&tenant, &template, &name, BuildOptions::default()).await.unwrap();
    assert_eq!(first.build.status, BuildStatus::Ready, "{:?}", first.build.reason);
    assert!(!first.build.definition.contains(PASSWORD), "credentials must not be persisted");

    let handle = engine.connect(&tenant, &first.build.id).await.unwrap();
    let without = handle.retry(RetryOptions::default()).await.unwrap().wait_until_terminal(None, None).await.unwrap();
    assert_eq!(without.build.status, BuildStatus::Failed);
    let message = without.build.reason.map(|r| r.message).unwrap_or_default();
    assert!(message.contains(&reg.host()), "the failure names the registry: {message}");

    let retry = RetryOptions { credentials: Some(credentials()), ..RetryOptions::default() };
    let with = handle.retry(retry).await.unwrap().wait_until_terminal(None, None).await.unwrap();
    assert_eq!(with.build.status, BuildStatus::Ready, "{:?}", with.build.reason);
}
