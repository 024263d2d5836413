//! `cargo xtask`: builds the anymatix portable Python environment for ComfyUI. This file only
//! parses the command line and runs the command; everything else is the `xtask` library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc, not the system's malloc: compressing thousands of files on several threads made
/// glibc's malloc hold 1.7 GiB to zip a 316 MiB tree; mimalloc peaks near 120 MiB, and is faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = xtask::commands::Cli::parse();
    match cli.command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            #[allow(clippy::print_stderr)] // the one line that reports a failed command
            {
                eprintln!("error: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}
