//! One module per subcommand.

pub mod build;
pub mod builds;
pub mod cache;
pub mod context;
pub mod dockerfile;
pub mod plan;
pub mod templates;
pub mod validate;
