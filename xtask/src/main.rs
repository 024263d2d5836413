//! `cargo xtask`: builds the anymatix portable Python environment for ComfyUI.
//! This file only dispatches; each subcommand has its own module.

mod archive;
mod atomic;
mod commands;
mod exec;
mod execute;
mod fetch;
mod fingerprint;
mod install;
mod lock;
mod manifest;
mod pip;
mod plan;
mod platform;
mod progress;
mod prune;
mod relocate;
mod report;
mod repos;
mod resolve;
mod scripts;
mod system;
mod tree;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc, not the system's malloc: compressing thousands of files on several threads made
/// glibc's malloc hold 1.7 GiB to zip a 316 MiB tree; mimalloc peaks near 120 MiB, and is faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    version,
    about = "Builds the anymatix portable Python environment for ComfyUI"
)]
#[command(
    long_about = "Builds the anymatix portable Python environment for ComfyUI: one zip per platform \
whose root folder anymatix/ holds a Miniforge Python with the packages of anymatix/distribution.yml, \
ComfyUI and its custom nodes, a helper script to install more packages, and manifest.json."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build anymatix-<version>-<platform>.zip: fetch Miniforge, install, clone the repos,
    /// pip install, prune, zip, then unpack it elsewhere and run the smoke checks.
    #[command(after_help = "Examples:
  cargo xtask portable                                      build for this host
  cargo xtask portable --platform windows-x86_64 --dry-run  show the Windows plan, anywhere
  cargo xtask portable --out /tmp/amx --version 0.2.0-rc1   another folder and version
  cargo xtask portable --verbose                            show every command line
  cargo xtask portable --update                             install the environment anew
  cargo xtask fetch && cargo xtask portable --offline       build with no network")]
    Portable(commands::portable::PortableArgs),
    /// Download everything a build needs into the cache (the Miniforge installer, conda
    /// packages, a mirror of each repo, a wheelhouse for this platform), so that
    /// `portable --offline` then builds with no network at all.
    Fetch(commands::fetch::FetchArgs),
    /// Prune a folder laid out like anymatix/ by the prune policy: what each rule removes, the
    /// largest kept folders, and a check that every native library still finds what it needs.
    Prune(commands::prune::PruneArgs),
    /// Pack a folder into a zip exactly as portable does: maximum deflate on every core, sorted,
    /// byte-for-byte reproducible, re-read before it is renamed into place.
    Archive(commands::archive::ArchiveArgs),
    /// Show that each platform's package set resolves, from this machine and without building:
    /// `uv pip compile` for every platform's wheels, markers, Python and system limits.
    Resolve(commands::resolve::ResolveArgs),
    /// Attach the built zips (or, over GitHub's 2 GiB limit, their parts) to a tag's release.
    Release(commands::release::ReleaseArgs),
    /// Run what CI checks: formatting, lints, the tests with snapshots checked, and the
    /// dry-run plan of every platform.
    Ci(commands::ci::CiArgs),
    /// Remove the build's working folders (stage/, verify/), and with --cache the downloads.
    Clean(commands::clean::CleanArgs),
    /// Check that this machine can build: tools, disk space, path length, and every source the
    /// manifest names.
    Doctor(commands::doctor::DoctorArgs),
}

/// The repository's root: defaults (manifest, policy, version.yml, target/) are found from here,
/// so `cargo xtask` works from any folder of the checkout.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
        .to_path_buf()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Portable(args) => commands::portable::run(args),
        Command::Fetch(args) => commands::fetch::run(args),
        Command::Prune(args) => commands::prune::run(args),
        Command::Archive(args) => commands::archive::run(args),
        Command::Release(args) => commands::release::run(args),
        Command::Resolve(args) => commands::resolve::run(args),
        Command::Ci(args) => commands::ci::run(args),
        Command::Clean(args) => commands::clean::run(args),
        Command::Doctor(args) => commands::doctor::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
