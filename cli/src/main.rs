//! The `nullspace` command line.

fn main() {}
