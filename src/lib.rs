//! roster: a declarative GitOps reconciler for API users and their access.
//!
//! Pipeline: `load` (YAML with spans, schema and semantic checks) -> `Desired`;
//! a `store` gives the `Actual` snapshot; `plan` (pure) diffs the two; `apply`
//! executes a plan, generating secrets through `secret`. The CLI in `cli` is a
//! thin layer over these; nothing here imports it.

pub mod apply;
pub mod cli;
pub mod escape;
pub mod export;
pub mod init;
pub mod load;
pub mod model;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod report;
pub mod secret;
pub mod signal;
pub mod store;
pub mod target;
