//! One module per subcommand.

pub mod cache;
pub mod context;
pub mod dockerfile;
pub mod plan;
pub mod validate;
