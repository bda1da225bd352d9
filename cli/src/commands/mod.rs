//! One module per subcommand.

pub mod dockerfile;
pub mod plan;
pub mod validate;
