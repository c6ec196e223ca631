//! irr: incident response as code for AWS.
//!
//! The pipeline, one module per stage: [`load`] (YAML with positions) -> [`validate`]
//! (a checked [`model::Playbook`]) -> [`plan`] (ordered steps, rendered parameters, IAM
//! actions) -> execute. Every action is declared once, in its own module under [`actions`]
//! (typed parameters, outputs, IAM needs, implementation); the catalog ([`catalog`]) is derived
//! from those declarations and read by every stage.
#![deny(missing_docs)]

pub mod actions;
pub mod aws;
pub mod catalog;
pub mod cli;
pub mod compile;
pub mod diagnostic;
pub mod emulator;
pub mod events;
pub mod evidence;
pub mod execution;
pub mod executor;
pub mod exit_codes;
pub mod fanout;
pub mod finding;
pub mod gameday;
pub mod history;
pub mod journal;
pub mod load;
pub mod model;
pub mod plan;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod report;
pub mod reporter;
pub mod run;
pub mod schema;
pub mod secrets;
pub mod signing;
pub mod targets;
pub mod template;
pub mod types;
pub mod validate;
