//! One module per subcommand: each parses its flags and drives the stages below it.

pub mod archive;
pub mod ci;
pub mod clean;
pub mod doctor;
pub mod fetch;
pub mod portable;
pub mod prune;
pub mod release;
pub mod resolve;
