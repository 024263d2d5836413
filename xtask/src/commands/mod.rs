//! One module per subcommand: each parses its flags and drives the stages below it.
// The commands print their own results; everything else reports through progress.rs.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod archive;
pub mod ci;
pub mod clean;
pub mod context;
pub mod cross_tools;
pub mod doctor;
pub mod fetch;
pub mod matrix;
pub mod portable;
pub mod prune;
pub mod release;
pub mod resolve;
pub mod verify;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Build anymatix-<version>-<platform>[-<variant>].zip: fetch Miniforge, install, clone the
    /// repos, pip install, prune, zip, then unpack it elsewhere and run the smoke checks.
    #[command(after_help = "Examples:
  cargo xtask portable                                      build for this host
  cargo xtask portable --platform windows-x86_64 --dry-run  show the Windows plan, anywhere
  cargo xtask portable --platform macos-arm64               the Mac zip, on Linux x86_64
  cargo xtask portable --route cross                        this host's zip as for another
  cargo xtask portable --variant cpu                        this host's CPU-only zip
  cargo xtask portable --dry-run --variant all              the plan of each of its variants
  cargo xtask portable --out /tmp/amx --version 0.2.0-rc1   another folder and version
  cargo xtask portable --verbose                            show every command line
  cargo xtask portable --update                             install the environment anew
  cargo xtask fetch && cargo xtask portable --offline       build with no network")]
    Portable(portable::PortableArgs),
    /// Download everything a build needs into the cache (the Miniforge installer, conda
    /// packages, a mirror of each repo, a wheelhouse for this platform), so that
    /// `portable --offline` then builds with no network at all.
    Fetch(fetch::FetchArgs),
    /// Prune a folder laid out like anymatix/ by the prune policy: what each rule removes, the
    /// largest kept folders, and a check that every native library still finds what it needs.
    Prune(prune::PruneArgs),
    /// Pack a folder into a zip exactly as portable does: maximum deflate on every core, sorted,
    /// byte-for-byte reproducible, re-read before it is renamed into place.
    Archive(archive::ArchiveArgs),
    /// Show that each platform's package set resolves, from this machine and without building:
    /// `uv pip compile` for every platform's wheels, markers, Python and system limits.
    Resolve(resolve::ResolveArgs),
    /// Attach the built zips (or, over GitHub's 2 GiB limit, their parts) to a tag's release.
    Release(release::ReleaseArgs),
    /// Run what CI checks: formatting, lints, the tests with snapshots checked, and the
    /// dry-run plan of every platform and variant.
    Ci(ci::CiArgs),
    /// Print the release workflow's matrices (JSON): one build job per platform and variant of
    /// the distribution, with its route and runner, and a verify job on the platform's own
    /// runner for each zip built elsewhere.
    Matrix(matrix::MatrixArgs),
    /// Remove the build's working folders (stage/, verify/), and with --cache the downloads.
    Clean(clean::CleanArgs),
    /// Check that this machine can build: tools, disk space, path length, and every source the
    /// manifest names.
    Doctor(doctor::DoctorArgs),
    /// Prove a zip works: unpack it (every volume) into a folder with a space and an "é", then
    /// run the smoke checks and the distribution's commands (ComfyUI's start) with its own
    /// python; a Windows zip runs under Wine on Linux.
    #[command(after_help = "Examples:
  cargo xtask verify target/portable/anymatix-0.2.0-linux-x86_64.zip
  cargo xtask verify anymatix-0.2.0-windows-x86_64-cpu.zip      under Wine, on Linux
  cargo xtask verify anymatix-0.2.0-linux-x86_64.part1.zip      every volume
  cargo xtask verify target/downloaded/                          every zip in a folder")]
    Verify(verify::VerifyArgs),
}

impl Command {
    /// Runs the command: each is a method of its flags.
    pub fn run(self) -> Result<()> {
        match self {
            Command::Portable(args) => args.run(),
            Command::Fetch(args) => args.run(),
            Command::Prune(args) => args.run(),
            Command::Archive(args) => args.run(),
            Command::Resolve(args) => args.run(),
            Command::Release(args) => args.run(),
            Command::Ci(args) => args.run(),
            Command::Matrix(args) => args.run(),
            Command::Clean(args) => args.run(),
            Command::Doctor(args) => args.run(),
            Command::Verify(args) => args.run(),
        }
    }
}
