//! `nullspace-engine`: build context handling (walk, Docker-exact ignore rules, BuildKit-compatible
//! content hashing), the content-addressed store, cache keys, the executor plug-in, the durable
//! store of builds, logs and templates, and the [`Engine`] facade over all of them.

pub mod cache;
pub mod cas;
pub mod context;
pub mod engine;
pub mod executor;
pub mod store;

pub use engine::{BuildHandle, BuildOptions, Engine, EngineError, default_build_logger};
