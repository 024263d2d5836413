//! Installs the Miniforge base into the prefix, then any conda packages with its own mamba.

use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::platform::Platform;
use crate::process;
use crate::process::Command;
use crate::progress::Reporter;

pub fn install_base(
    sh: &Shell,
    reporter: &Reporter,
    platform: Platform,
    command: &Command,
    prefix: &Path,
) -> Result<()> {
    if !platform.is_windows() && prefix.to_string_lossy().contains(' ') {
        bail!(
            "the prefix {} contains a space, which Miniforge's installer refuses: pass --out a path without spaces",
            prefix.display()
        );
    }
    if prefix.exists() {
        bail!(
            "the prefix {} already exists and the installer would refuse it: run `cargo xtask clean` (with the same --out) and build again",
            prefix.display()
        );
    }
    process::run(sh, reporter, command).context("the Miniforge installer failed")?;
    let python = prefix.join(platform.python_in_prefix());
    if !python.is_file() {
        if platform.is_windows() {
            // The Windows installer is silent, even when it refuses the prefix.
            bail!(
                "the Miniforge installer finished but {} is missing. The Windows installer fails silently, \
                 most often because the prefix path ({} characters) is too long: pass a short --out such as C:\\amx",
                python.display(),
                prefix.as_os_str().len()
            );
        }
        bail!(
            "the Miniforge installer finished but {} is missing",
            python.display()
        );
    }
    Ok(())
}

pub fn install_conda_packages(sh: &Shell, reporter: &Reporter, command: &Command) -> Result<()> {
    if !command.program.is_file() {
        bail!(
            "{} is missing: the Miniforge base should provide mamba for conda_packages",
            command.program.display()
        );
    }
    process::run(sh, reporter, command).context("installing conda_packages failed")
}
