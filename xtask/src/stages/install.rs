//! Installs the Miniforge base into the prefix, then any conda packages with its own mamba.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::model::platform::Platform;
use crate::stages::describe::{Describe, Stage};
use crate::util::inputs::Inputs;
use crate::util::process::{self, path_arg, Command};
use crate::util::tools::Tools;

/// Runs Miniforge's installer in batch mode into `prefix`.
#[derive(Debug, Clone)]
pub struct InstallBase {
    pub platform: Platform,
    pub installer: PathBuf,
    pub prefix: PathBuf,
    /// `fetch`'s scratch base, which an interrupted fetch may have left: removed first.
    pub scratch: bool,
}

impl InstallBase {
    pub fn command(&self) -> Command {
        install_command(self.platform, &self.installer, &self.prefix)
    }

    pub fn run(&self, tools: &Tools) -> Result<()> {
        let (platform, prefix) = (self.platform, &self.prefix);
        if self.scratch && prefix.exists() {
            fs_err::remove_dir_all(prefix)?;
        }
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
        process::run(&tools.sh, &tools.reporter, &self.command())
            .context("the Miniforge installer failed")?;
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
}

impl Describe for InstallBase {
    fn title(&self) -> String {
        "Install the Miniforge base".into()
    }

    fn stage(&self) -> Stage {
        Stage::Env
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "install the base: {}", self.command())
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set("Miniforge base", self.command().to_string());
    }
}

/// Installs conda packages into the base with its own mamba, from the distribution's channel.
#[derive(Debug, Clone)]
pub struct CondaInstall {
    pub platform: Platform,
    pub prefix: PathBuf,
    pub packages: Vec<String>,
    /// The channel, as the distribution names it (conda-forge's URL by default).
    pub channel: String,
    /// conda's package cache, shared by builds: what `fetch` put there, `--offline` installs.
    pub pkgs_dir: PathBuf,
    pub offline: bool,
}

impl CondaInstall {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(self.prefix.join(self.platform.mamba_in_prefix()))
            .args(["install", "--yes", "--prefix"])
            .arg(path_arg(&self.prefix))
            .args(["--override-channels", "--channel"])
            .arg(self.channel.clone());
        if self.offline {
            cmd = cmd.arg("--offline");
        }
        cmd = cmd.args(self.packages.iter().cloned());
        // mamba 2 otherwise takes its root prefix from the user's home.
        cmd.env
            .push(("MAMBA_ROOT_PREFIX".into(), path_arg(&self.prefix)));
        cmd.env
            .push(("CONDA_PKGS_DIRS".into(), path_arg(&self.pkgs_dir)));
        cmd
    }

    pub fn run(&self, tools: &Tools) -> Result<()> {
        let command = self.command();
        if !command.program.is_file() {
            bail!(
                "{} is missing: the Miniforge base should provide mamba for conda_packages",
                command.program.display()
            );
        }
        process::run(&tools.sh, &tools.reporter, &command)
            .context("installing conda_packages failed")
    }
}

impl Describe for CondaInstall {
    fn title(&self) -> String {
        "Install conda packages".into()
    }

    fn stage(&self) -> Stage {
        Stage::Env
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "install conda packages: {}", self.command())
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set("conda packages", self.packages.join(" "));
        inputs.set("conda prefix", path_arg(&self.prefix));
    }
}

/// Miniforge's batch-mode command line for `platform`.
pub fn install_command(platform: Platform, installer: &Path, prefix: &Path) -> Command {
    if platform.is_windows() {
        // NSIS: `/D=` must come last and unquoted; it takes the rest of the line as the path.
        Command::new(installer).args([
            "/InstallationType=JustMe".to_string(),
            "/RegisterPython=0".to_string(),
            "/AddToPath=0".to_string(),
            "/NoRegistry=1".to_string(),
            "/NoShortcuts=1".to_string(),
            "/S".to_string(),
            format!("/D={}", path_arg(prefix)),
        ])
    } else {
        Command::new("bash")
            .arg(path_arg(installer))
            .args(["-b", "-p"])
            .arg(path_arg(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_installer_runs_silently_with_d_last() {
        let cmd = install_command(
            Platform::WindowsX86_64,
            Path::new("C:/b/cache/Miniforge3-26.3.2-3-Windows-x86_64.exe"),
            Path::new("C:/b/stage/windows-x86_64/anymatix/python"),
        );
        assert_eq!(
            cmd.args.last().unwrap(),
            "/D=C:/b/stage/windows-x86_64/anymatix/python"
        );
        assert!(cmd.args.contains(&"/S".to_string()));
        assert!(cmd.args.contains(&"/RegisterPython=0".to_string()));
    }

    #[test]
    fn unix_installer_is_batch_mode_into_the_prefix() {
        let cmd = install_command(Platform::MacosArm64, Path::new("/c/i.sh"), Path::new("/p"));
        assert_eq!(cmd.to_string(), "bash /c/i.sh -b -p /p");
    }
}
