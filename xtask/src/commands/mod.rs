//! One module per subcommand: each parses its flags and drives the stages below it.

pub mod archive;
pub mod portable;
pub mod prune;
