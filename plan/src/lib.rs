//! `nullspace-plan`: turns what a user wrote (a declarative template or a Dockerfile) into a
//! normalized [`plan::BuildPlan`], or reports everything that is wrong with it.
//!
//! Pure and synchronous: no I/O except reading a Dockerfile the caller points at.

pub mod dockerfile;
