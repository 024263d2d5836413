//! The ground floor: what every layer above uses and which knows nothing of builds.

pub mod atomic;
pub mod codesign;
pub mod digest;
pub mod host_python;
pub mod http;
pub mod inputs;
pub mod process;
pub mod progress;
pub mod runner;
pub mod tools;
pub mod tree;
pub mod units;
pub mod wine;
