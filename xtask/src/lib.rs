//! The anymatix portable builder as a library: `main.rs` parses the command line and hands over.
//!
//! Layers, each importing only from the ones below it (the README draws them):
//! - the command line and its commands: `commands/` (one module per subcommand);
//! - the plan (`plan.rs`, pure: every step and its inputs) and the `runner` that carries it out;
//! - the stages, each a module that runs its own steps: `fetch`, `install`, `repos`, `pip`,
//!   `prune/`, `relocate`, `packages/` (what the zip carries to manage its packages), `report/`, `archive`, `verify`, `publish`, `resolve`;
//! - the ground floor: `platform`, `distribution` (distribution.yml), `system`, `layout`, `lock`,
//!   `step` (what a step tells), `tools`, `http`, `process`, `progress` (the reporter),
//!   `digest`, `units`, `tree`, `atomic`, `fingerprint`.

pub mod archive;
pub mod atomic;
pub mod bytecode;
pub mod commands;
pub mod digest;
pub mod distribution;
pub mod fetch;
pub mod fingerprint;
pub mod http;
pub mod install;
pub mod layout;
pub mod lock;
pub mod packages;
pub mod pip;
pub mod plan;
pub mod platform;
pub mod process;
pub mod progress;
pub mod prune;
pub mod publish;
pub mod relocate;
pub mod report;
pub mod repos;
pub mod resolve;
pub mod runner;
pub mod step;
pub mod system;
pub mod tools;
pub mod tree;
pub mod units;
pub mod verify;

use std::path::{Path, PathBuf};

/// The repository's root: defaults (manifest, policy, version.yml, target/) are found from here,
/// so `cargo xtask` works from any folder of the checkout.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
        .to_path_buf()
}
