//! The cross route's pip install: the same set a native build's pip would install, for a target
//! this machine is not. uv resolves it for the target (markers and wheel tags evaluated for it;
//! pip evaluates markers for the host), or the lock gives it; this machine's pip downloads
//! exactly those wheels for the target's tags, each checked by its digest; and each wheel is
//! installed into the target's prefix by [`wheel`], as pip would there.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::model::lock::LockedPackage;
use crate::model::platform::Platform;
use crate::model::system::Ceiling;
use crate::stages::describe::{Describe, Stage};
use crate::stages::pip::wheel::{self, Scheme};
use crate::stages::pip::{settings, Installed, Package};
use crate::util::digest;
use crate::util::inputs::Inputs;
use crate::util::process::{self, path_arg, Command};
use crate::util::tools::Tools;

/// What the target's set is.
#[derive(Debug, Clone)]
pub enum CrossWanted {
    /// `uv pip compile` for the target (its `--python-version` set to the base's Python when it
    /// runs), writing `resolved`; `packages` are written to `packages_file` first.
    Resolve {
        compile: Command,
        packages: Vec<String>,
        packages_file: PathBuf,
    },
    /// The lock's requirements, pinned with digests (written before).
    Locked(PathBuf),
}

#[derive(Debug, Clone)]
pub struct CrossPipInstall {
    pub platform: Platform,
    pub prefix: PathBuf,
    pub wanted: CrossWanted,
    /// The pinned, hashed requirements pip downloads.
    pub resolved: PathBuf,
    /// The distribution's sources and the platform's options, as the native pip is given them.
    pub sources: Vec<String>,
    /// Kept across builds: the downloads are looked for here first, and added here.
    pub wheelhouse: PathBuf,
    /// Where this build's wheels are downloaded (exactly the set, nothing else).
    pub downloads: PathBuf,
    /// The platform tags of the wheels pip may take ([`wheel_tags`]).
    pub wheel_tags: Vec<String>,
}

impl CrossPipInstall {
    /// `python3 -m pip download` of exactly the resolved wheels for the target's tags, from the
    /// wheelhouse alone (`cached`) or from it and the sources.
    pub fn download_command(&self, python: &str, cached: bool) -> Command {
        let abi = format!("cp{}", python.replace('.', ""));
        let mut cmd = Command::new("python3")
            .env(
                "PIP_CONFIG_FILE",
                settings::no_config_file(Platform::host().unwrap_or(Platform::LinuxX86_64)),
            )
            .args(["-s", "-m", "pip", "download", "--disable-pip-version-check"])
            .args(["--only-binary=:all:", "--no-deps", "--require-hashes"])
            .args(self.wheel_tags.iter().flat_map(|t| ["--platform", t]))
            .args(["--python-version", python])
            .args([
                "--implementation",
                "cp",
                "--abi",
                &abi,
                "--abi",
                "abi3",
                "--abi",
                "none",
            ])
            .arg("--dest")
            .arg(path_arg(&self.downloads))
            .arg("--find-links")
            .arg(path_arg(&self.wheelhouse))
            .args(if cached {
                vec!["--no-index".to_string()]
            } else {
                self.sources.clone()
            })
            .arg("-r")
            .arg(path_arg(&self.resolved));
        cmd.env_remove = vec!["PYTHONPATH".into(), "PYTHONHOME".into()];
        cmd
    }

    pub fn run(&self, tools: &Tools) -> Result<Installed> {
        let python = base_python(&self.prefix)?;
        let python_xy = python.split('.').take(2).collect::<Vec<_>>().join(".");
        match &self.wanted {
            CrossWanted::Resolve {
                compile,
                packages,
                packages_file,
            } => {
                process::require_tool(
                    "uv",
                    "the cross route resolves for the target with uv: `python3 -m pip install uv`",
                )?;
                fs_err::write(packages_file, packages.join("\n") + "\n")?;
                let compile = with_python_version(compile, &python_xy);
                process::run(&tools.sh, &tools.reporter, &compile)
                    .context("uv could not resolve the set for the target")?;
            }
            CrossWanted::Locked(file) => {
                fs_err::copy(file, &self.resolved)?;
            }
        }
        if self.downloads.exists() {
            fs_err::remove_dir_all(&self.downloads)?;
        }
        fs_err::create_dir_all(&self.downloads)?;
        fs_err::create_dir_all(&self.wheelhouse)?;
        // From the wheelhouse alone first (warm caches: no network at all), else from the
        // sources, which pip asks only for what the wheelhouse lacks.
        let from_cache = without_pip_variables(self.download_command(&python_xy, true));
        let cached = process::output(&tools.sh, &tools.reporter, &from_cache)?;
        if cached.status.success() {
            tools
                .reporter
                .note(format!("every wheel from {}", self.wheelhouse.display()));
        } else {
            let download = without_pip_variables(self.download_command(&python_xy, false));
            process::run(&tools.sh, &tools.reporter, &download)
                .context("pip could not download the target's wheels")?;
        }

        let scheme = match self.platform {
            Platform::WindowsX86_64 => Scheme::windows(&self.prefix)?,
            unix => Scheme::unix(unix, &self.prefix, &python_xy),
        };
        let wheels: Vec<PathBuf> = fs_err::read_dir(&self.downloads)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        if let Some(odd) = wheels
            .iter()
            .find(|w| w.extension().is_none_or(|e| e != "whl"))
        {
            bail!(
                "pip downloaded {}, which is not a wheel: the cross route installs wheels only",
                odd.display()
            );
        }
        let mut locked = install_all(&wheels, &scheme)?;
        for wheel in &wheels {
            let kept = self.wheelhouse.join(wheel.file_name().unwrap_or_default());
            if !kept.exists() {
                fs_err::copy(wheel, &kept)?;
            }
        }
        locked.sort();
        let packages = installed_packages(&self.prefix.join(&scheme.site_packages))?;
        tools.reporter.note(format!(
            "Python {python} ({}), {} wheels installed for {}, {} packages",
            self.platform,
            locked.len(),
            self.platform,
            packages.len()
        ));
        Ok(Installed {
            python,
            packages,
            locked_packages: locked,
        })
    }
}

impl Describe for CrossPipInstall {
    fn title(&self) -> String {
        "Install Python packages".into()
    }

    fn stage(&self) -> Stage {
        Stage::Env
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.wanted {
            CrossWanted::Resolve { compile, .. } => {
                writeln!(f, "resolve for {} (one resolve): {compile}", self.platform)?
            }
            CrossWanted::Locked(file) => writeln!(
                f,
                "the set for {}: the lock's {}",
                self.platform,
                file.display()
            )?,
        }
        writeln!(
            f,
            "      download its wheels (from the wheelhouse alone when it has them all): {}",
            self.download_command("X.Y", false)
        )?;
        write!(
            f,
            "      install each into {} as pip would on {} (RECORD, INSTALLER, launchers)",
            self.prefix.display(),
            self.platform
        )
    }

    fn inputs(&self, inputs: &mut Inputs) {
        match &self.wanted {
            CrossWanted::Resolve {
                compile, packages, ..
            } => {
                inputs.set("pip: packages", packages.join(" "));
                inputs.set("pip: resolve", compile.to_string());
            }
            CrossWanted::Locked(file) => inputs.set("pip: locked requirements", path_arg(file)),
        }
        inputs.set("pip: sources", self.sources.join(" "));
        inputs.set("pip: wheel tags", self.wheel_tags.join(" "));
        inputs.set(
            "pip: route",
            "cross (uv resolve, wheels installed by the tool)",
        );
    }
}

/// Installs every wheel on every core (the largest first, so torch does not start last) and
/// returns each as the lock names it, with its wheel's sha256.
fn install_all(wheels: &[PathBuf], scheme: &Scheme) -> Result<Vec<LockedPackage>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut order: Vec<&PathBuf> = wheels.iter().collect();
    order.sort_by_key(|w| std::cmp::Reverse(fs_err::metadata(w).map_or(0, |m| m.len())));
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        let running: Vec<_> = (0..workers.min(order.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while let Some(wheel) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let installed = wheel::install(wheel, scheme)?;
                        done.push(LockedPackage {
                            name: installed.name.to_lowercase(),
                            version: installed.version,
                            sha256: digest::sha256_file(wheel)?,
                        });
                    }
                    Ok::<_, anyhow::Error>(done)
                })
            })
            .collect();
        let mut all = Vec::new();
        for worker in running {
            all.extend(worker.join().expect("a wheel-installing worker panicked")?);
        }
        Ok(all)
    })
}

/// pip's platform tags of the target's wheels, within the system ceiling: every manylinux
/// tag from the glibc ceiling down to 2.17 (pip 23 expands no `manylinux_2_X` tag by itself: a
/// wheel tagged `manylinux_2_17_aarch64` is not taken for `manylinux_2_28_aarch64`), macOS's
/// ceiling (which pip expands to the older releases), Windows' one tag.
pub fn wheel_tags(platform: Platform, ceiling: &Ceiling) -> Vec<String> {
    let linux = |arch: &str| {
        let (_, top) = ceiling.glibc.as_ref().map_or((2, 28), |v| v.major_minor());
        let mut tags: Vec<String> = (17..=top.max(17))
            .rev()
            .map(|minor| format!("manylinux_2_{minor}_{arch}"))
            .collect();
        tags.push(format!("manylinux2014_{arch}"));
        if arch == "x86_64" {
            tags.extend(["manylinux2010_x86_64".into(), "manylinux1_x86_64".into()]);
        }
        tags
    };
    let macos = |arch: &str, default: (u32, u32)| {
        let (major, minor) = ceiling.macos.as_ref().map_or(default, |v| v.major_minor());
        vec![format!("macosx_{major}_{minor}_{arch}")]
    };
    match platform {
        Platform::WindowsX86_64 => vec!["win_amd64".into()],
        Platform::LinuxX86_64 => linux("x86_64"),
        Platform::LinuxAarch64 => linux("aarch64"),
        Platform::MacosArm64 => macos("arm64", (14, 0)),
        Platform::MacosX86_64 => macos("x86_64", (10, 15)),
    }
}

/// `compile` with its `--python-version` value set to `python`.
fn with_python_version(compile: &Command, python: &str) -> Command {
    let mut compile = compile.clone();
    if let Some(at) = compile.args.iter().position(|a| a == "--python-version") {
        if let Some(value) = compile.args.get_mut(at + 1) {
            *value = python.to_string();
        }
    }
    compile
}

/// The command without the machine's `PIP_*` variables: the distribution names the sources.
fn without_pip_variables(mut command: Command) -> Command {
    command.env_remove.extend(
        std::env::vars_os()
            .filter_map(|(key, _)| key.into_string().ok())
            .filter(|key| key.starts_with("PIP_") && key != "PIP_CONFIG_FILE"),
    );
    command
}

/// The linked base's Python version, from its conda record.
fn base_python(prefix: &Path) -> Result<String> {
    let meta = prefix.join("conda-meta");
    for entry in fs_err::read_dir(&meta)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("python-") {
            if let Some(version) = rest.split('-').next() {
                if version.starts_with(|c: char| c.is_ascii_digit()) {
                    return Ok(version.to_string());
                }
            }
        }
    }
    bail!(
        "the base in {} has no python package in conda-meta",
        prefix.display()
    )
}

/// Every distribution in `site` (name and version from each `.dist-info`'s METADATA), sorted by
/// name, as `pip list` gives them.
pub fn installed_packages(site: &Path) -> Result<Vec<Package>> {
    let mut packages = Vec::new();
    for entry in fs_err::read_dir(site)? {
        let path = entry?.path();
        if !path.to_string_lossy().ends_with(".dist-info") {
            continue;
        }
        let metadata = fs_err::read_to_string(path.join("METADATA"))?;
        let field = |key: &str| {
            metadata
                .lines()
                .take_while(|l| !l.is_empty())
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        };
        let (Some(name), Some(version)) = (field("Name:"), field("Version:")) else {
            bail!("{} has no Name or Version", path.join("METADATA").display());
        };
        packages.push(Package { name, version });
    }
    packages.sort_by_key(|p| p.name.to_lowercase());
    Ok(packages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::system::Version;

    #[test]
    fn linux_wheels_are_taken_from_the_glibc_ceiling_down_to_manylinux2014() {
        let ceiling = Ceiling {
            glibc: Some(Version::new(&[2, 28])),
            macos: Some(Version::new(&[14, 0])),
            ..Ceiling::default()
        };
        let tags = wheel_tags(Platform::LinuxAarch64, &ceiling);
        assert_eq!(tags.len(), 13, "{tags:?}");
        assert_eq!(tags[0], "manylinux_2_28_aarch64");
        assert_eq!(tags[11], "manylinux_2_17_aarch64");
        assert_eq!(tags[12], "manylinux2014_aarch64");
        let x86 = wheel_tags(Platform::LinuxX86_64, &ceiling);
        assert!(x86.ends_with(&["manylinux2010_x86_64".into(), "manylinux1_x86_64".into()]));
        assert_eq!(
            wheel_tags(Platform::MacosX86_64, &ceiling),
            ["macosx_14_0_x86_64"]
        );
        assert_eq!(
            wheel_tags(Platform::WindowsX86_64, &Ceiling::default()),
            ["win_amd64"]
        );
    }
}
