//! The stages of a build, each a module that runs its own steps (a struct per step, carrying
//! every input it needs), and `describe`, what every step tells of itself.

pub mod archive;
pub mod bytecode;
pub mod conda;
pub mod describe;
pub mod install;
pub mod manifest;
pub mod miniforge;
pub mod packages;
pub mod pip;
pub mod prune;
pub mod publish;
pub mod relocate;
pub mod repos;
pub mod resolve;
pub mod verify;
