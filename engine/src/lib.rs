//! `nullspace-engine`: build context handling (walk, Docker-exact ignore rules, BuildKit-compatible
//! content hashing), the content-addressed store, cache keys, the executor plug-in and the durable
//! store of builds, logs and templates.

pub mod cache;
pub mod cas;
pub mod context;
pub mod executor;
pub mod store;
