//! `nullspace-engine`: build context handling (walk, Docker-exact ignore rules, BuildKit-compatible
//! content hashing), the content-addressed store, and (later) cache keys, builds and the store.

pub mod cas;
pub mod context;
pub mod store;
