//! `conda_packages` for another platform: conda solves, the tool links. The target's conda cannot
//! run here, so this machine's conda-standalone (taken out of Miniforge's installer for this
//! machine, of the same release) answers `install --dry-run --json` for the target's subdir
//! (`CONDA_SUBDIR`) against the linked base, with the target's virtual packages set from its
//! `requires_at_most` (`CONDA_OVERRIDE_*`: conda detects them for this machine otherwise). Its
//! answer is the transaction `mamba install` would carry out on the target; the tool carries it
//! out ([`transaction`]): what it unlinks removed by its record's files, what it links taken from
//! the installer's payload or downloaded (sha256 checked) and linked as the base's packages were.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::model::platform::{Os, Platform};
use crate::model::system::Ceiling;
use crate::stages::conda::constructor::conda_subdir;
use crate::stages::conda::{shar, transaction};
use crate::stages::describe::{Describe, Stage};
use crate::stages::miniforge::DownloadInstaller;
use crate::util::inputs::Inputs;
use crate::util::process::{self, path_arg, Command};
use crate::util::tools::Tools;

/// Solves `packages` for the target with this machine's conda, then links the answer.
#[derive(Debug, Clone)]
pub struct CondaSolve {
    pub platform: Platform,
    pub prefix: PathBuf,
    pub packages: Vec<String>,
    pub channel: String,
    /// Miniforge's `.sh` installer for this machine (same release, same cache), whose
    /// conda-standalone solves; downloaded by this step, as it is no part of the zip.
    pub solver: DownloadInstaller,
    /// Where that conda-standalone is taken out to.
    pub conda_dir: PathBuf,
    /// The target installer's files, taken out by the base's link (its `pkgs/`).
    pub payload: PathBuf,
    /// Downloaded packages, shared by builds (conda's own repodata cache in `.solve/` within).
    pub pkgs_dir: PathBuf,
    /// The target's virtual packages, as conda's `CONDA_OVERRIDE_*` variables.
    pub overrides: Vec<(String, String)>,
    pub offline: bool,
    /// conda's answer, kept beside the environment for whoever wants to read it.
    pub answer: PathBuf,
}

impl CondaSolve {
    /// conda's command line; `conda` is the program taken out of the host's installer.
    pub fn command(&self, conda: PathBuf) -> Command {
        let mut cmd = Command::new(conda)
            .args(["install", "--dry-run", "--json", "--yes", "--prefix"])
            .arg(path_arg(&self.prefix))
            .args(["--override-channels", "--channel"])
            .arg(self.channel.clone());
        if self.offline {
            cmd = cmd.arg("--offline");
        }
        cmd = cmd
            .args(self.packages.iter().cloned())
            .env("CONDA_SUBDIR", conda_subdir(self.platform))
            .env("CONDA_PKGS_DIRS", path_arg(&self.pkgs_dir.join(".solve")));
        for (key, value) in &self.overrides {
            cmd = cmd.env(key.clone(), value.clone());
        }
        cmd
    }

    pub fn run(&self, tools: &Tools) -> Result<()> {
        if self.conda_dir.exists() {
            fs_err::remove_dir_all(&self.conda_dir)?;
        }
        self.solver.run(tools)?;
        let installer = self.solver.installer();
        let conda = shar::take_conda_exe(&installer, &self.conda_dir).with_context(|| {
            format!(
                "cannot take conda-standalone out of {}",
                installer.display()
            )
        })?;
        let command = self.command(conda);
        let out = process::output(&tools.sh, &tools.reporter, &command)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let answer = transaction::parse(&stdout).with_context(|| {
            format!(
                "conda's solve for {} failed ({command}; exit {}): {}",
                self.platform,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        fs_err::write(&self.answer, stdout.as_bytes())?;
        let applied = transaction::apply(
            tools,
            &answer,
            &transaction::Sources {
                platform: self.platform,
                prefix: &self.prefix,
                payload_pkgs: &self.payload.join("pkgs"),
                pkgs_dir: &self.pkgs_dir,
                offline: self.offline,
            },
        )?;
        tools.reporter.note(format!(
            "conda's solve for {} ({}): {} unlinked, {} linked ({} from the installer, {} \
             downloaded or cached), {} console scripts",
            self.platform,
            conda_subdir(self.platform),
            applied.unlinked,
            applied.linked,
            applied.from_installer,
            applied.linked - applied.from_installer,
            applied.scripts
        ));
        Ok(())
    }
}

/// conda's virtual packages for `platform` within `ceiling`: the system it may ask for at most
/// (Miniforge's own minimum where the distribution names none), no CUDA (a build machine's GPU
/// says nothing of the user's), and the target's CPU.
pub fn virtual_package_overrides(platform: Platform, ceiling: &Ceiling) -> Vec<(String, String)> {
    let mut out = vec![("CONDA_OVERRIDE_CUDA".to_string(), String::new())];
    match platform.os() {
        Os::Macos => out.push((
            "CONDA_OVERRIDE_OSX".into(),
            ceiling
                .macos
                .as_ref()
                .map_or("11.0".into(), |v| v.to_string()),
        )),
        Os::Linux => out.push((
            "CONDA_OVERRIDE_GLIBC".into(),
            ceiling
                .glibc
                .as_ref()
                .map_or("2.17".into(), |v| v.to_string()),
        )),
        Os::Windows => {}
    }
    let cpu = match platform {
        Platform::MacosArm64 => "arm64",
        Platform::LinuxAarch64 => "aarch64",
        _ => "x86_64",
    };
    out.push(("CONDA_OVERRIDE_ARCHSPEC".into(), cpu.into()));
    out
}

impl Describe for CondaSolve {
    fn title(&self) -> String {
        "Solve and link conda packages".into()
    }

    fn stage(&self) -> Stage {
        Stage::Env
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "solve {} for {} with this machine's conda-standalone (taken out of {}): {}; then \
             unlink and link what it answers (packages from the installer's payload or \
             downloaded into {})",
            self.packages.join(" "),
            self.platform,
            self.solver.installer().display(),
            self.command(self.conda_dir.join("_conda")),
            self.pkgs_dir.display()
        )
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set("conda packages", self.packages.join(" "));
        inputs.set("conda channel", self.channel.clone());
        inputs.set("conda solver", self.solver.installer().to_string_lossy());
    }
}
