//! Cache keys that explain themselves.
//!
//! Each step's key is the sha256 of its [`KeyInputs`]: the parent step's key, the step's canonical
//! form (without its source span, so moving a line does not bust the cache), the digest of exactly
//! the context files it copies, the base image's *manifest digest* (never a tag), the ARG/ENV in
//! scope and the platform. mtime and ownership are not inputs (the content hash leaves them out);
//! mode is. Secret values are never inputs: plans only carry secret ids.
//!
//! Because the inputs are kept beside the key, [`explain`] can name the first step whose key
//! differs between two builds and what changed: which file, which ARG, which base digest.

use nullspace_plan::plan::{BuildPlan, CopyFrom, Mount, Op, PlanStep};
use nullspace_plan::reference::BaseImage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Why keys could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum CacheKeyError {
    /// A stage's base image has no resolved manifest digest.
    #[error("stage {stage}: base image {base} has no resolved manifest digest")]
    UnresolvedBase {
        /// The stage index.
        stage: usize,
        /// The base as written in the plan.
        base: String,
    },
    /// An image used by `COPY --from` or a mount has no resolved manifest digest.
    #[error("stage {stage}, step {step}: image {reference} has no resolved manifest digest")]
    UnresolvedImage {
        /// The stage index.
        stage: usize,
        /// The step index.
        step: usize,
        /// The image reference.
        reference: String,
    },
    /// Selecting a step's sources from the context failed.
    #[error("stage {stage}, step {step}: {message}")]
    Sources {
        /// The stage index.
        stage: usize,
        /// The step index.
        step: usize,
        /// What went wrong (names the path at fault).
        message: String,
    },
}

/// The context files a COPY/ADD step selects, with their content digests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectedSources {
    /// One digest over the whole selection.
    pub digest: String,
    /// Each selected path (relative to the context) and its digest.
    pub files: BTreeMap<String, String>,
}

/// Answers, for a COPY/ADD from the context, which files it selects and their digests.
pub trait SourceSelector {
    /// Selects `sources` (paths or wildcards relative to the context) minus `exclude`.
    fn select(&self, sources: &[String], exclude: &[String], parents: bool) -> Result<SelectedSources, String>;
}

/// Manifest digests of the images a plan refers to, by the reference as written in the plan.
pub type ResolvedImages = BTreeMap<String, String>;

/// Everything a step's key is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInputs {
    /// The previous step's key (or the stage base's key for a first step).
    pub parent: String,
    /// The step's canonical JSON, without its span.
    pub op: String,
    /// The base image's manifest digest (first step of a stage on an image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_digest: Option<String>,
    /// Keys of stages and digests of images the step reads (`COPY --from`, mounts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, String>,
    /// The context files the step copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<SelectedSources>,
    /// ENV and ARG values in scope.
    pub scope: BTreeMap<String, String>,
    /// The target platform.
    pub platform: String,
    /// Never taken from cache: a per-build nonce makes the key unique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_cache_nonce: Option<String>,
}

impl KeyInputs {
    fn key(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        format!("sha256:{:x}", Sha256::digest(canonical))
    }
}

/// A step's key and what it was made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepKey {
    /// Stage index in the plan.
    pub stage: usize,
    /// Step index in the stage.
    pub step: usize,
    /// `sha256:…`.
    pub key: String,
    /// What the key hashes.
    pub inputs: KeyInputs,
}

/// The keys of every step of a plan, in build order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKeys {
    /// Every step's key.
    pub steps: Vec<StepKey>,
    /// The key of each stage's last step (or of its base, for a stage without steps).
    pub stage_keys: Vec<String>,
}

impl CacheKeys {
    /// The key of the target stage's result.
    pub fn final_key(&self) -> Option<&str> {
        self.stage_keys.last().map(String::as_str)
    }
}

/// Settings for [`compute`].
pub struct KeyContext<'a> {
    /// Manifest digests of base images and `--from` images.
    pub images: &'a ResolvedImages,
    /// Selects and digests context sources.
    pub sources: &'a dyn SourceSelector,
    /// A value unique to this build, mixed into the keys of `no_cache` steps.
    pub build_nonce: &'a str,
}

fn digest_str(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    format!("sha256:{:x}", hasher.finalize())
}

fn image_key(reference: &str, digest: &str) -> String {
    digest_str(&["image", reference, digest])
}

fn canonical_op(step: &PlanStep) -> String {
    serde_json::to_string(&step.op).unwrap_or_default()
}

/// Computes every step's key.
///
/// ```
/// use nullspace_engine::cache::{compute, KeyContext, SelectedSources, SourceSelector};
/// use nullspace_plan::{builder::Template, normalize::{plan, PlanOptions}};
///
/// struct NoFiles;
/// impl SourceSelector for NoFiles {
///     fn select(&self, _: &[String], _: &[String], _: bool) -> Result<SelectedSources, String> {
///         Ok(SelectedSources::default())
///     }
/// }
/// let p = plan(&Template::from_image("busybox:1.36").run_cmd("echo hi"), &PlanOptions::default()).plan.unwrap();
/// let images = [("docker.io/library/busybox:1.36".to_string(), format!("sha256:{}", "a".repeat(64)))].into();
/// let keys = compute(&p, &KeyContext { images: &images, sources: &NoFiles, build_nonce: "b1" }).unwrap();
/// assert_eq!(keys.steps.len(), 1);
/// assert!(keys.final_key().unwrap().starts_with("sha256:"));
/// ```
pub fn compute(plan: &BuildPlan, ctx: &KeyContext<'_>) -> Result<CacheKeys, CacheKeyError> {
    let mut keys = CacheKeys::default();
    for (stage_index, stage) in plan.stages.iter().enumerate() {
        let (mut parent, base_digest) = match &stage.base {
            BaseImage::Registry { reference } => {
                let digest = ctx
                    .images
                    .get(reference)
                    .ok_or_else(|| CacheKeyError::UnresolvedBase { stage: stage_index, base: reference.clone() })?;
                (image_key(reference, digest), Some(digest.clone()))
            }
            BaseImage::OciLayout { path, tag } => {
                let written = format!("oci:{path}{}", tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default());
                let digest = ctx
                    .images
                    .get(&written)
                    .ok_or_else(|| CacheKeyError::UnresolvedBase { stage: stage_index, base: written.clone() })?;
                (image_key(&written, digest), Some(digest.clone()))
            }
            BaseImage::Stage { index } => (keys.stage_keys.get(*index).cloned().unwrap_or_default(), None),
            BaseImage::Scratch => (digest_str(&["scratch"]), None),
        };
        let mut base_digest = base_digest;
        let mut scope: BTreeMap<String, String> = BTreeMap::new();
        for (step_index, step) in stage.steps.iter().enumerate() {
            let mut dependencies = BTreeMap::new();
            let mut sources = None;
            let image_dep = |reference: &str| {
                ctx.images.get(reference).cloned().ok_or_else(|| CacheKeyError::UnresolvedImage {
                    stage: stage_index,
                    step: step_index,
                    reference: reference.to_string(),
                })
            };
            match &step.op {
                Op::Copy { from, sources: paths, exclude, parents, .. } => match from {
                    CopyFrom::Context => {
                        let selected = ctx.sources.select(paths, exclude, *parents).map_err(|message| {
                            CacheKeyError::Sources { stage: stage_index, step: step_index, message }
                        })?;
                        sources = Some(selected);
                    }
                    CopyFrom::Stage { index } => {
                        dependencies
                            .insert(format!("stage:{index}"), keys.stage_keys.get(*index).cloned().unwrap_or_default());
                    }
                    CopyFrom::Image { reference } => {
                        dependencies.insert(format!("image:{reference}"), image_dep(reference)?);
                    }
                },
                Op::Run { mounts, build_args, .. } => {
                    for mount in mounts {
                        let from = match mount {
                            Mount::Bind { from: Some(f), .. } | Mount::Cache { from: Some(f), .. } => f,
                            _ => continue,
                        };
                        let stage_dep = plan.stages.iter().position(|s| s.name.as_deref() == Some(from.as_str()));
                        match stage_dep {
                            Some(i) => {
                                dependencies
                                    .insert(format!("stage:{i}"), keys.stage_keys.get(i).cloned().unwrap_or_default());
                            }
                            None => {
                                dependencies.insert(format!("image:{from}"), image_dep(from)?);
                            }
                        }
                    }
                    for (k, v) in build_args.iter() {
                        scope.insert(format!("ARG {k}"), v.clone());
                    }
                }
                _ => {}
            }
            let inputs = KeyInputs {
                parent: parent.clone(),
                op: canonical_op(step),
                base_digest: base_digest.take(),
                dependencies,
                sources,
                scope: scope.clone(),
                platform: plan.platform.clone(),
                no_cache_nonce: step.no_cache.then(|| ctx.build_nonce.to_string()),
            };
            let key = inputs.key();
            if let Op::Env { vars } = &step.op {
                for (k, v) in vars {
                    scope.insert(format!("ENV {k}"), v.clone());
                }
            }
            parent = key.clone();
            keys.steps.push(StepKey { stage: stage_index, step: step_index, key, inputs });
        }
        keys.stage_keys.push(parent);
    }
    Ok(keys)
}

/// What changed in the first step whose key differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// The base image resolved to another manifest.
    BaseDigest {
        /// Before.
        old: Option<String>,
        /// After.
        new: Option<String>,
    },
    /// The step itself was written differently.
    Definition {
        /// Before (canonical JSON).
        old: String,
        /// After.
        new: String,
    },
    /// A copied file was added, removed or changed (content or mode).
    File {
        /// Path relative to the context.
        path: String,
        /// Digest before (absent: added).
        old: Option<String>,
        /// Digest after (absent: removed).
        new: Option<String>,
    },
    /// An ENV or ARG in scope changed (`ENV NAME` or `ARG NAME`).
    Variable {
        /// `ENV NAME` or `ARG NAME`.
        name: String,
        /// Before.
        old: Option<String>,
        /// After.
        new: Option<String>,
    },
    /// A stage or image the step reads changed.
    Dependency {
        /// `stage:N` or `image:REF`.
        name: String,
        /// Before.
        old: Option<String>,
        /// After.
        new: Option<String>,
    },
    /// The platform changed.
    Platform {
        /// Before.
        old: String,
        /// After.
        new: String,
    },
    /// The step is marked never to be cached.
    NoCache,
    /// The plans have different steps from here on.
    StepAddedOrRemoved,
}

/// The first step whose key differs, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// Stage index.
    pub stage: usize,
    /// Step index within the stage.
    pub step: usize,
    /// Every input that differs.
    pub changes: Vec<Change>,
}

fn map_diff<F: Fn(String, Option<String>, Option<String>) -> Change>(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    make: F,
    out: &mut Vec<Change>,
) {
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for name in names {
        let (a, b) = (old.get(name), new.get(name));
        if a != b {
            out.push(make(name.clone(), a.cloned(), b.cloned()));
        }
    }
}

/// Names the first step whose key differs between `old` and `new`, and what changed; `None`
/// when every key is equal.
///
/// ```
/// use nullspace_engine::cache::{explain, CacheKeys};
/// assert_eq!(explain(&CacheKeys::default(), &CacheKeys::default()), None);
/// ```
pub fn explain(old: &CacheKeys, new: &CacheKeys) -> Option<Explanation> {
    let count = old.steps.len().max(new.steps.len());
    for i in 0..count {
        let (a, b) = match (old.steps.get(i), new.steps.get(i)) {
            (Some(a), Some(b)) if a.key == b.key => continue,
            (Some(a), Some(b)) => (a, b),
            (a, b) => {
                let at = a.or(b)?;
                return Some(Explanation { stage: at.stage, step: at.step, changes: vec![Change::StepAddedOrRemoved] });
            }
        };
        let (x, y) = (&a.inputs, &b.inputs);
        let mut changes = Vec::new();
        if x.base_digest != y.base_digest {
            changes.push(Change::BaseDigest { old: x.base_digest.clone(), new: y.base_digest.clone() });
        }
        if x.op != y.op {
            changes.push(Change::Definition { old: x.op.clone(), new: y.op.clone() });
        }
        let empty = BTreeMap::new();
        let files = |s: &Option<SelectedSources>| s.as_ref().map(|s| s.files.clone()).unwrap_or_else(|| empty.clone());
        map_diff(
            &files(&x.sources),
            &files(&y.sources),
            |path, old, new| Change::File { path, old, new },
            &mut changes,
        );
        map_diff(&x.scope, &y.scope, |name, old, new| Change::Variable { name, old, new }, &mut changes);
        map_diff(
            &x.dependencies,
            &y.dependencies,
            |name, old, new| Change::Dependency { name, old, new },
            &mut changes,
        );
        if x.platform != y.platform {
            changes.push(Change::Platform { old: x.platform.clone(), new: y.platform.clone() });
        }
        if y.no_cache_nonce.is_some() {
            changes.push(Change::NoCache);
        }
        if changes.is_empty() && x.parent != y.parent {
            // The parent differs only when a stage base (another stage) changed.
            changes.push(Change::Dependency {
                name: "parent".into(),
                old: Some(x.parent.clone()),
                new: Some(y.parent.clone()),
            });
        }
        return Some(Explanation { stage: b.stage, step: b.step, changes });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use nullspace_plan::builder::Template;
    use nullspace_plan::normalize::{PlanOptions, plan};

    /// Selects from a fixed table of context files: enough to test how keys combine inputs.
    struct Files(BTreeMap<String, String>);

    impl SourceSelector for Files {
        fn select(&self, sources: &[String], _: &[String], _: bool) -> Result<SelectedSources, String> {
            let files: BTreeMap<String, String> = self
                .0
                .iter()
                .filter(|(p, _)| sources.iter().any(|s| p.starts_with(s.as_str())))
                .map(|(p, d)| (p.clone(), d.clone()))
                .collect();
            let joined: Vec<&str> = files.iter().flat_map(|(p, d)| [p.as_str(), d.as_str()]).collect();
            Ok(SelectedSources { digest: digest_str(&joined), files })
        }
    }

    fn files(entries: &[(&str, &str)]) -> Files {
        Files(entries.iter().map(|(p, d)| (p.to_string(), d.to_string())).collect())
    }

    fn template() -> Template {
        Template::from_image("busybox:1.36")
            .copy("requirements.txt", "/app/")
            .run_cmd("echo deps")
            .copy("src", "/app/src")
            .set_envs([("MODE", "prod")])
            .run_cmd("echo build")
    }

    fn keys(t: &Template, base: &str, f: &Files, nonce: &str) -> CacheKeys {
        let p = plan(t, &PlanOptions::default()).plan.unwrap();
        let images: ResolvedImages = [("docker.io/library/busybox:1.36".to_string(), base.to_string())].into();
        compute(&p, &KeyContext { images: &images, sources: f, build_nonce: nonce }).unwrap()
    }

    const BASE_A: &str = "sha256:aaaa";
    const BASE_B: &str = "sha256:bbbb";

    #[test]
    fn same_inputs_same_keys_across_builds() {
        let f = files(&[("requirements.txt", "d1"), ("src/a.py", "d2")]);
        assert_eq!(keys(&template(), BASE_A, &f, "n1"), keys(&template(), BASE_A, &f, "n2"));
        assert_eq!(explain(&keys(&template(), BASE_A, &f, "n1"), &keys(&template(), BASE_A, &f, "n2")), None);
    }

    #[test]
    fn a_changed_file_rebuilds_from_its_copy_and_is_named() {
        let before = keys(&template(), BASE_A, &files(&[("requirements.txt", "d1"), ("src/a.py", "d2")]), "n");
        let after = keys(&template(), BASE_A, &files(&[("requirements.txt", "d1"), ("src/a.py", "d3")]), "n");
        let same: Vec<bool> = before.steps.iter().zip(&after.steps).map(|(a, b)| a.key == b.key).collect();
        assert_eq!(same, [true, true, false, false, false]);
        let e = explain(&before, &after).unwrap();
        assert_eq!((e.stage, e.step), (0, 2));
        assert_eq!(
            e.changes,
            [Change::File { path: "src/a.py".into(), old: Some("d2".into()), new: Some("d3".into()) }]
        );
    }

    #[test]
    fn base_digest_not_tag_is_the_input() {
        let f = files(&[("requirements.txt", "d1")]);
        let (a, b) = (keys(&template(), BASE_A, &f, "n"), keys(&template(), BASE_B, &f, "n"));
        assert!(a.steps.iter().zip(&b.steps).all(|(x, y)| x.key != y.key));
        let e = explain(&a, &b).unwrap();
        assert_eq!(e.changes, [Change::BaseDigest { old: Some(BASE_A.into()), new: Some(BASE_B.into()) }]);
    }

    #[test]
    fn env_changes_are_named() {
        let f = files(&[]);
        let a = keys(&template(), BASE_A, &f, "n");
        let t = Template::from_image("busybox:1.36")
            .copy("requirements.txt", "/app/")
            .run_cmd("echo deps")
            .copy("src", "/app/src")
            .set_envs([("MODE", "dev")])
            .run_cmd("echo build");
        let b = keys(&t, BASE_A, &f, "n");
        let e = explain(&a, &b).unwrap();
        assert_eq!(e.step, 3);
        assert!(matches!(&e.changes[0], Change::Definition { .. }));
        let after_env = explain(
            &CacheKeys { steps: a.steps[4..].to_vec(), stage_keys: vec![] },
            &CacheKeys { steps: b.steps[4..].to_vec(), stage_keys: vec![] },
        )
        .unwrap();
        assert!(after_env.changes.contains(&Change::Variable {
            name: "ENV MODE".into(),
            old: Some("prod".into()),
            new: Some("dev".into())
        }));
    }

    #[test]
    fn skip_cache_steps_get_build_unique_keys() {
        let t = Template::from_image("busybox:1.36").run_cmd("a").skip_cache().run_cmd("b");
        let f = files(&[]);
        let (a, b) = (keys(&t, BASE_A, &f, "build-1"), keys(&t, BASE_A, &f, "build-2"));
        assert_eq!(a.steps[0].key, b.steps[0].key);
        assert_ne!(a.steps[1].key, b.steps[1].key);
        assert_eq!(explain(&a, &b).unwrap().changes, [Change::NoCache]);
    }

    #[test]
    fn unresolved_base_is_an_error() {
        let p = plan(&template(), &PlanOptions::default()).plan.unwrap();
        let err = compute(&p, &KeyContext { images: &ResolvedImages::new(), sources: &files(&[]), build_nonce: "n" });
        assert!(matches!(err, Err(CacheKeyError::UnresolvedBase { stage: 0, .. })));
    }
}
