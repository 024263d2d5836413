//! A build: the plan (distribution + platform → steps, pure), the steps' one list, the runner
//! that dispatches each to its stage, the stage cache that decides what is reused, and the
//! folders a build works in.

pub mod cache;
pub mod cross;
pub mod fetch;
pub mod layout;
pub mod plan;
pub mod portable;
pub mod record;
pub mod runner;
pub mod step;
