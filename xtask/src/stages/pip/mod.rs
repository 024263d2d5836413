//! pip: installs everything the distribution asks for into the environment in one resolve, or
//! (for `fetch`) gathers every wheel of it into a wheelhouse; and tells what it installed. Its
//! package sources are the distribution's alone (see [`settings`]).

pub mod cross;
pub mod leave_out;
pub mod requirements;
pub mod settings;
pub mod wheel;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

use crate::model::distribution::PipSources;
use crate::model::lock::{self, LockedPackage};
use crate::model::platform::Platform;
use crate::stages::describe::{Describe, Stage};
use crate::util::inputs::Inputs;
use crate::util::process::{self, path_arg, Command};
use crate::util::runner::Runner;
use crate::util::tools::Tools;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// What pip is asked for and where it looks: the same for the install and for `fetch`'s
/// wheelhouse.
#[derive(Debug, Clone)]
pub struct PipRequest {
    /// The platform the build runs on (and is for).
    pub platform: Platform,
    /// The prefix's python, run with `-s` so the user's own site-packages never leak in.
    pub python: PathBuf,
    /// The distribution's package sources. Offline, pip looks only in `offline_wheelhouse`,
    /// which `fetch` filled from these.
    pub sources: PipSources,
    pub offline_wheelhouse: Option<PathBuf>,
    /// The platform's own pip options.
    pub pip_args: Vec<String>,
    pub wanted: Wanted,
    /// A folder holding pip's wheel policy (`_manylinux.py` on Linux, `sitecustomize.py` on
    /// macOS), put on pip's `PYTHONPATH`.
    pub policy: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub enum Wanted {
    /// The distribution's packages and the repos' requirement files, in one resolve.
    Resolve {
        packages: Vec<String>,
        files: Vec<PathBuf>,
    },
    /// Exactly the lock's versions, by digest (a requirements file written before).
    Locked(PathBuf),
}

impl PipRequest {
    /// `python -s -m pip <verb> <verb_args>` then the sources, the platform's options and what is
    /// wanted, reading no configuration file (the machine's transport settings are added when it
    /// runs: [`PipRequest::isolated`]).
    fn command(&self, verb_args: &[String]) -> Command {
        let mut pip = Command::new(&self.python)
            .env("PIP_CONFIG_FILE", settings::no_config_file(self.platform))
            .args(["-s", "-m", "pip"])
            .args(verb_args.iter().cloned());
        pip.env_remove = vec!["PYTHONPATH".into(), "PYTHONHOME".into()];
        match &self.offline_wheelhouse {
            Some(wheelhouse) => {
                pip = pip
                    .args(["--no-index", "--find-links"])
                    .arg(path_arg(wheelhouse));
            }
            None => pip = pip.args(self.sources.args()),
        }
        // With --no-index, pip ignores any index these name.
        pip = pip.args(self.pip_args.iter().cloned());
        match &self.wanted {
            Wanted::Resolve { packages, files } => {
                pip = pip.args(packages.iter().cloned());
                for file in files {
                    pip = pip.arg("-r").arg(path_arg(file));
                }
            }
            Wanted::Locked(file) => {
                pip = pip
                    .args(["--require-hashes", "--no-deps", "-r"])
                    .arg(path_arg(file));
            }
        }
        if let Some(policy) = &self.policy {
            pip.env.push(("PYTHONPATH".into(), path_arg(policy)));
        }
        pip
    }

    /// `command` as it runs on this machine: without its `PIP_*` variables but the transport
    /// settings, and with those that only its configuration files hold (asked of pip itself).
    fn isolated(&self, tools: &Tools, command: Command) -> Result<Command> {
        // vars_os: a value that is not UTF-8 must not stop the build (vars() would panic).
        let machine: Vec<String> = std::env::vars_os()
            .filter_map(|(key, _)| key.into_string().ok())
            .filter(|key| key.starts_with("PIP_"))
            .collect();
        let mut list = Command::new(&self.python).args(["-s", "-m", "pip", "config", "list"]);
        list.env_remove = machine
            .iter()
            .filter(|key| *key != "PIP_CONFIG_FILE")
            .cloned()
            .chain(["PYTHONPATH".to_string(), "PYTHONHOME".to_string()])
            .collect();
        let out = process::output(&tools.sh, &tools.reporter, &list)?;
        if !out.status.success() {
            anyhow::bail!(
                "cannot read the machine's pip configuration ({list}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let isolation = settings::isolation(
            machine.iter().map(String::as_str),
            &String::from_utf8_lossy(&out.stdout),
        )?;
        if !isolation.remove.is_empty() {
            tools.reporter.note(format!(
                "pip ignores this machine's {} (the distribution names the package sources)",
                isolation.remove.join(", ")
            ));
        }
        let mut command = command;
        command.env_remove.extend(isolation.remove);
        // Set before the command's own, which win (PIP_CONFIG_FILE, PYTHONPATH).
        command.env.splice(0..0, isolation.set);
        Ok(command)
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set("pip: python", path_arg(&self.python));
        inputs.set("pip: sources", self.sources.args().join(" "));
        inputs.set("pip: options", self.pip_args.join(" "));
        match &self.wanted {
            Wanted::Resolve { packages, files } => {
                inputs.set("pip: packages", packages.join(" "));
                let files: Vec<String> = files.iter().map(|f| path_arg(f)).collect();
                inputs.set("pip: requirement files", files.join(" "));
            }
            Wanted::Locked(file) => inputs.set("pip: locked requirements", path_arg(file)),
        }
    }
}

/// What the install found out: Python's version, every package, and what the lock needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Installed {
    pub python: String,
    pub packages: Vec<Package>,
    pub locked_packages: Vec<LockedPackage>,
}

/// `pip install` of everything, in one resolve, with pip's `--report` for the lock.
#[derive(Debug, Clone)]
pub struct PipInstall {
    pub request: PipRequest,
    pub report: PathBuf,
}

impl PipInstall {
    pub fn command(&self) -> Command {
        self.request.command(&[
            "install".into(),
            "--disable-pip-version-check".into(),
            "--no-warn-script-location".into(),
            // A build as root (a container, a CI runner) is normal here: pip's warning about it
            // would be the only WARNING of every build log, and mean nothing.
            "--root-user-action=ignore".into(),
            // The bytecode-caches rule removes whatever pip compiles, and the zip's own bytecode
            // is compiled afterwards: compiling here is half of pip's time for nothing.
            "--no-compile".into(),
            // pip's account of what it installed: exact versions and wheel digests, for the lock.
            "--report".into(),
            path_arg(&self.report),
        ])
    }

    pub fn run(&self, tools: &Tools) -> Result<Installed> {
        let command = self.request.isolated(tools, self.command())?;
        process::run(&tools.sh, &tools.reporter, &command)?;
        let report = fs_err::read_to_string(&self.report)?;
        let python = &self.request.python;
        let installed = Installed {
            locked_packages: lock::packages_from_report(&report)?,
            python: python_version(&tools.sh, python)?,
            packages: installed_packages(&tools.sh, python)?,
        };
        tools.reporter.note(format!(
            "Python {}, {} packages",
            installed.python,
            installed.packages.len()
        ));
        Ok(installed)
    }
}

impl Describe for PipInstall {
    fn title(&self) -> String {
        "Install Python packages".into()
    }

    fn stage(&self) -> Stage {
        Stage::Env
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pip install (one resolve): {}", self.command())
    }

    fn inputs(&self, inputs: &mut Inputs) {
        self.request.inputs(inputs);
    }
}

/// `fetch`: every wheel the install needs, into the wheelhouse. `pip wheel` is `pip download`
/// that also builds any sdist into a wheel: the offline install then never needs a build backend
/// it cannot download.
#[derive(Debug, Clone)]
pub struct Wheelhouse {
    pub request: PipRequest,
    pub wheelhouse: PathBuf,
}

impl Wheelhouse {
    pub fn command(&self) -> Command {
        self.request.command(&[
            "wheel".into(),
            "--disable-pip-version-check".into(),
            "--wheel-dir".into(),
            path_arg(&self.wheelhouse),
        ])
    }

    pub fn run(&self, tools: &Tools) -> Result<()> {
        fs_err::create_dir_all(&self.wheelhouse)?;
        let command = self.request.isolated(tools, self.command())?;
        process::run(&tools.sh, &tools.reporter, &command)?;
        let wheels = fs_err::read_dir(&self.wheelhouse)?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".whl"))
            .count();
        tools
            .reporter
            .note(format!("{wheels} wheels in {}", self.wheelhouse.display()));
        Ok(())
    }
}

impl Describe for Wheelhouse {
    fn title(&self) -> String {
        "Gather wheels".into()
    }

    fn stage(&self) -> Stage {
        Stage::Env
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gather wheels: {}", self.command())
    }

    fn inputs(&self, inputs: &mut Inputs) {
        self.request.inputs(inputs);
    }
}

/// A file pip reads: the locked requirements, or pip's wheel policy.
#[derive(Debug, Clone)]
pub struct WriteFile {
    pub title: String,
    pub path: PathBuf,
    pub contents: String,
}

impl WriteFile {
    pub fn run(&self) -> Result<()> {
        if let Some(parent) = self.path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        fs_err::write(&self.path, &self.contents)?;
        Ok(())
    }
}

impl Describe for WriteFile {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn stage(&self) -> Stage {
        Stage::Env
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "write {} ({} lines)",
            self.path.display(),
            self.contents.lines().count()
        )
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.digest(
            format!("{}: contents", self.title),
            self.contents.as_bytes(),
        );
    }
}

/// PEP 600 lets an installation limit the manylinux wheels pip takes with an importable
/// `_manylinux` module, which pip asks about every tag: this is its text for `glibc`.
pub fn manylinux_policy(glibc: &crate::model::system::Version) -> String {
    let (major, minor) = glibc.major_minor();
    format!(
        "# Written by cargo xtask: pip takes only wheels for glibc {glibc} or older, the\n\
         # requires_at_most of distribution.yml (PEP 600).\n\
         def manylinux_compatible(tag_major, tag_minor, tag_arch):\n    \
         return (tag_major, tag_minor) <= ({major}, {minor})\n"
    )
}

/// `sitecustomize.py` for pip's `PYTHONPATH` on macOS: pip's view of the running macOS capped at
/// `macos`, so a newer build machine's wheels (`macosx_15_0_*`) are not taken over those the
/// ceiling allows. The code is `macos_ceiling.py`, a real Python file.
pub fn macos_policy(macos: &crate::model::system::Version) -> String {
    let (major, minor) = macos.major_minor();
    let code = include_str!("macos_ceiling.py");
    let placeholder = "CEILING = (0, 0)";
    debug_assert!(code.contains(placeholder));
    code.replacen(placeholder, &format!("CEILING = ({major}, {minor})"), 1)
}

pub fn python_version(sh: &Shell, python: &Path) -> Result<String> {
    let code = "import sys; print('%d.%d.%d' % sys.version_info[:3])";
    let out = cmd!(sh, "{python} -s -c {code}")
        .quiet()
        .read()
        .with_context(|| format!("cannot run {}", python.display()))?;
    Ok(out.trim().to_string())
}

/// Runs `code` (with `arg` as its argv[1]) with a tree's or an environment's own python, away
/// from this machine's Python settings and the user site, writing no bytecode; returns what it
/// printed. How the stages ask a python what is installed (`leave_out`, the protected core).
pub fn ask_python(
    sh: &Shell,
    runner: &Runner,
    python: &Path,
    code: &str,
    arg: &str,
) -> Result<String> {
    let mut ask = runner.python(python, &["-s"]).args(["-c", code, arg]);
    ask.env_remove = vec!["PYTHONPATH".into(), "PYTHONHOME".into()];
    ask.env.extend([
        ("PYTHONNOUSERSITE".to_string(), "1".to_string()),
        ("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()),
    ]);
    process::read(sh, &ask)
        .with_context(|| format!("cannot ask {} what is installed", python.display()))
}

/// Every installed distribution, sorted by name: read before pruning, from pip's own view.
pub fn installed_packages(sh: &Shell, python: &Path) -> Result<Vec<Package>> {
    let out = cmd!(
        sh,
        "{python} -s -m pip list --format=json --disable-pip-version-check"
    )
    .quiet()
    .read()
    .with_context(|| format!("cannot list the packages of {}", python.display()))?;
    let mut packages: Vec<Package> =
        serde_json::from_str(&out).context("pip list printed something that is not JSON")?;
    packages.sort_by_key(|p| p.name.to_lowercase());
    Ok(packages)
}
