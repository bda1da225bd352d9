//! The Dockerfile frontend, in BuildKit's three layers: [`parser`] (text to a thin node tree),
//! [`instructions`] (nodes to typed instructions with parsed flags) and [`shell`] (BuildKit's
//! word expansion, used when a plan is normalized).

pub mod instructions;
pub mod parser;
pub mod shell;
