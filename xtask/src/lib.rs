//! The anymatix portable builder as a library: `main.rs` parses the command line and hands over.
//!
//! Its folders are its layers, each importing only from its own and the ones below it (a tidy
//! test checks the folders, and that no two modules import each other round a circle):
//! - `commands/`: one module per subcommand, its flags and what it prints;
//! - `build/`: the plan (every step and its inputs, pure), the steps' one list, the runner that
//!   dispatches each step to its stage, the stage cache, the build's folders;
//! - `stages/`: each a module that runs its own steps (miniforge, install, repos, pip, prune,
//!   relocate, bytecode, packages, manifest, archive, verify, publish, resolve) and `describe`,
//!   what every step tells of itself;
//! - `model/`: what the tool reasons about: platforms, the distribution (distribution.yml), its
//!   smoke checks, the lock, what binaries need of the system;
//! - `util/`: the ground floor: files written atomically, digests, HTTP, processes, the reporter
//!   (all output while work is under way), trees, units, the tools lent to every step.

pub mod build;
pub mod commands;
pub mod model;
pub mod stages;
pub mod util;

use std::path::{Path, PathBuf};

/// The repository's root: defaults (manifest, policy, version.yml, target/) are found from here,
/// so `cargo xtask` works from any folder of the checkout.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
        .to_path_buf()
}
