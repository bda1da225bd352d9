//! `nullspace-plan`: turns what a user wrote (a declarative template or a Dockerfile) into a
//! normalized [`plan::BuildPlan`], or reports everything that is wrong with it.
//!
//! Pure and synchronous: no I/O except reading a Dockerfile the caller points at.
//!
//! ```
//! use nullspace_plan::{builder::{wait_for_port, Template}, normalize::{plan, PlanOptions}};
//! let template = Template::from_python_image("3.12")
//!     .pip_install(["flask"])
//!     .set_start_cmd("flask run --port 5000", wait_for_port(5000));
//! let outcome = plan(&template, &PlanOptions::default());
//! let plan = outcome.plan.expect("valid");
//! assert!(plan.plan_digest().starts_with("sha256:"));
//! assert_eq!(plan.stages[0].steps.len(), 2);
//! ```

pub mod builder;
pub mod diagnostic;
pub mod dockerfile;
pub mod duration;
pub mod normalize;
pub mod plan;
pub mod reference;
pub mod template_file;
