//! Distribution + platform → the list of steps a build takes. Pure: no I/O, so `--dry-run` can print
//! the plan of any platform on any host, and tests can check Windows command lines on Linux.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::distribution::{Distribution, Release, Smoke};
use crate::lock::Lock;
use crate::platform::Platform;
use crate::process::Command;
use crate::system::Ceiling;

/// Where everything of one build lives, under `--out`.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Downloads, kept across builds and trusted only with a matching sidecar digest; also the
    /// git mirrors, wheelhouse and conda packages `fetch` gathers for `--offline`.
    pub cache: PathBuf,
    /// The installed environment: what the installer, conda, git and pip made. Never pruned, so
    /// a change to the prune policy reuses it.
    pub env: PathBuf,
    /// The environment's `anymatix/`, where it is installed.
    pub env_tree: PathBuf,
    /// The Miniforge prefix, `anymatix/python/` in the environment.
    pub prefix: PathBuf,
    /// The tree that becomes the zip's root folder `anymatix/`: a hard-linked copy of the
    /// environment, then pruned.
    pub tree: PathBuf,
    /// The finished zip, moved here only after it passed verify.
    pub zip: PathBuf,
    /// Where the zip is written and verified before it is published as `zip`; its name says it
    /// is unverified, so a build that fails at verify leaves nothing with the final name.
    pub staged_zip: PathBuf,
    /// pip's `--report` of what it installed, for the lock.
    pub pip_report: PathBuf,
    /// The lock's requirements, pinned and hashed, for `--locked`.
    pub locked_requirements: PathBuf,
    /// The HTML prune report, published beside the zip.
    pub report: PathBuf,
    pub staged_report: PathBuf,
    /// Where verify unpacks the zip: a path with a space and non-ASCII characters on purpose,
    /// since users unpack anywhere.
    pub unpack: PathBuf,
    /// What the environment and the published zip were made from (see `fingerprint`).
    pub env_record: PathBuf,
    pub dist_record: PathBuf,
    /// The tag `latest` meant when last resolved online, for `--offline`.
    pub latest_tag: PathBuf,
    /// `fetch`'s wheels for this platform: `--offline` installs from here alone.
    pub wheelhouse: PathBuf,
    /// conda's package cache, shared by builds (and filled by `fetch`) for `--offline`.
    pub conda_pkgs: PathBuf,
    /// The Miniforge base `fetch` installs to run pip for this platform; removed afterwards.
    pub fetch_prefix: PathBuf,
}

impl Layout {
    pub fn new(out: &Path, platform: Platform, version: &str) -> Layout {
        // Short names: the Windows installer checks the prefix's length.
        let stage = out.join("stage").join(platform.name());
        let env = stage.join("env");
        let env_tree = env.join("anymatix");
        let dist = stage.join("dist");
        let cache = out.join("cache");
        Layout {
            prefix: env_tree.join("python"),
            env_tree,
            tree: dist.join("anymatix"),
            zip: out.join(zip_name(version, platform)),
            staged_zip: dist.join(format!("anymatix-{version}-{platform}.unverified.zip")),
            pip_report: env.join("pip-report.json"),
            locked_requirements: env.join("locked-requirements.txt"),
            report: out.join(report_name(version, platform)),
            staged_report: dist.join(report_name(version, platform)),
            unpack: out
                .join("verify")
                .join(platform.name())
                .join("unpacked copy ü"),
            env_record: stage.join("env.done.json"),
            dist_record: stage.join("dist.done.json"),
            latest_tag: cache.join(format!("miniforge-latest-{platform}.txt")),
            wheelhouse: cache.join("wheels").join(platform.name()),
            conda_pkgs: cache.join("conda-pkgs").join(platform.name()),
            fetch_prefix: stage.join("fetch").join("python"),
            cache,
            env,
        }
    }

    /// The folder the published zip is made in (the pruned tree, the staged zip and report).
    pub fn dist(&self) -> &Path {
        self.tree.parent().expect("tree has a parent")
    }

    /// `fetch`'s bare mirror of a repo, which `--offline` clones from.
    pub fn git_mirror(&self, repo: &str) -> PathBuf {
        self.cache.join("git").join(format!("{repo}.git"))
    }
}

pub fn zip_name(version: &str, platform: Platform) -> String {
    format!("anymatix-{version}-{platform}.zip")
}

pub fn report_name(version: &str, platform: Platform) -> String {
    format!("anymatix-{version}-{platform}.prune.html")
}

#[derive(Debug, Clone)]
pub enum Step {
    FetchInstaller {
        release: Release,
        base_url: String,
        /// The versioned asset's URL; `None` until `latest` is resolved to a tag.
        url: Option<String>,
        dest: Option<PathBuf>,
        /// Only the cache may be used.
        offline: bool,
    },
    InstallBase {
        command: Command,
        /// Where it installs: the environment's prefix, or `fetch`'s scratch base.
        prefix: PathBuf,
    },
    CondaInstall(Command),
    Clone {
        name: String,
        url: String,
        /// Where it is cloned from: `url`, or the mirror `fetch` made of it when offline.
        from: String,
        rev: String,
        /// The locked commit, when building `--locked`.
        commit: Option<String>,
        dest: PathBuf,
        requirements: Option<PathBuf>,
    },
    /// A file a later step reads (the locked requirements, pip's wheel policy); `title` names it.
    WriteFile {
        title: String,
        path: PathBuf,
        contents: String,
    },
    PipInstall(Command),
    /// Runs the smoke imports and checks in the installed environment: a broken resolve fails
    /// here, in seconds, instead of after prune and zip.
    SmokeInstalled {
        python: PathBuf,
        smoke: Smoke,
    },
    /// Copies the installed environment by hard links into the tree that is pruned, so pruning
    /// never damages it.
    LinkTree {
        from: PathBuf,
        to: PathBuf,
    },
    Prune {
        tree: PathBuf,
        policy: PathBuf,
        /// The HTML size report, written in the stage and published with the zip.
        report: PathBuf,
        /// The newest system the kept binaries may ask for.
        requires_at_most: Ceiling,
    },
    /// Rewrites `#!` lines that hold the path the environment was installed at (`installed_at`);
    /// lists what else holds it.
    Relocate {
        tree: PathBuf,
        installed_at: PathBuf,
    },
    HelperScript {
        path: PathBuf,
    },
    WriteManifest {
        path: PathBuf,
    },
    Archive {
        tree: PathBuf,
        zip: PathBuf,
    },
    /// Unpacks the zip elsewhere and runs the smoke imports, checks and commands there, with the
    /// installed environment (`env`) moved aside so nothing can reach back into it.
    Verify {
        zip: PathBuf,
        unpack: PathBuf,
        env: PathBuf,
        smoke: Smoke,
    },
    /// Gives the verified zip its final name with its `.sha256`, writes parts where it is over
    /// `split_size`, and moves them and the prune report into the output folder.
    Publish {
        zip: (PathBuf, PathBuf),
        report: (PathBuf, PathBuf),
        split_size: u64,
    },
    /// `fetch`: a bare mirror of a repo in the cache, and its requirements file at `rev`.
    Mirror {
        name: String,
        url: String,
        rev: String,
        commit: Option<String>,
        mirror: PathBuf,
        /// The requirements file's path in the repo, and where to write it.
        requirements: Option<(String, PathBuf)>,
    },
    /// `fetch`: every wheel the build's pip install needs, into the wheelhouse.
    Wheelhouse(Command),
}

/// A build's two cached stages: each is redone only when its inputs changed (see `fingerprint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Fetch, install, clone, pip install: the installed environment.
    Env,
    /// Link, prune, relocate, zip, verify, publish: the zip, from the environment.
    Dist,
}

impl Step {
    pub fn stage(&self) -> Stage {
        match self {
            Step::FetchInstaller { .. }
            | Step::InstallBase { .. }
            | Step::CondaInstall(_)
            | Step::Clone { .. }
            | Step::WriteFile { .. }
            | Step::PipInstall(_)
            | Step::SmokeInstalled { .. }
            | Step::Mirror { .. }
            | Step::Wheelhouse(_) => Stage::Env,
            Step::LinkTree { .. }
            | Step::Prune { .. }
            | Step::Relocate { .. }
            | Step::HelperScript { .. }
            | Step::WriteManifest { .. }
            | Step::Archive { .. }
            | Step::Verify { .. }
            | Step::Publish { .. } => Stage::Dist,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::FetchInstaller {
                release,
                base_url,
                url,
                dest,
                offline,
            } => {
                match (url, offline) {
                    (Some(url), false) => {
                        write!(f, "fetch {url}\n      verify with {url}.sha256")?
                    }
                    (Some(url), true) => write!(f, "use the cached download of {url} (offline)")?,
                    (None, false) => write!(
                        f,
                        "fetch Miniforge {release}: resolve the tag from {base_url}/latest, then download its versioned asset and .sha256"
                    )?,
                    (None, true) => write!(
                        f,
                        "use the cached Miniforge {release}: the tag it meant when last resolved online (offline)"
                    )?,
                }
                if let Some(dest) = dest {
                    write!(f, "\n      into {}", dest.display())?;
                }
                Ok(())
            }
            Step::InstallBase { command, .. } => write!(f, "install the base: {command}"),
            Step::CondaInstall(cmd) => write!(f, "install conda packages: {cmd}"),
            Step::Clone {
                name,
                url,
                from,
                rev,
                commit,
                dest,
                requirements,
            } => {
                write!(f, "clone {name}: {url} at {rev}")?;
                if let Some(commit) = commit {
                    write!(f, " (locked: {commit})")?;
                }
                if from != url {
                    write!(f, "\n      from {from}")?;
                }
                write!(f, "\n      into {}", dest.display())?;
                if let Some(req) = requirements {
                    write!(f, "\n      requirements: {}", req.display())?;
                }
                Ok(())
            }
            Step::WriteFile { path, contents, .. } => write!(
                f,
                "write {} ({} lines)",
                path.display(),
                contents.lines().count()
            ),
            Step::PipInstall(cmd) => write!(f, "pip install (one resolve): {cmd}"),
            Step::SmokeInstalled { python, smoke } => write!(
                f,
                "check the installed environment with {}: {}",
                python.display(),
                smoke_summary(smoke, false)
            ),
            Step::LinkTree { from, to } => write!(
                f,
                "copy {} to {} by hard links (pruning the copy leaves the environment whole)",
                from.display(),
                to.display()
            ),
            Step::Prune {
                tree,
                policy,
                report,
                requires_at_most,
            } => {
                write!(
                    f,
                    "prune {} by the rules in {}, check every native library, report in {}",
                    tree.display(),
                    policy.display(),
                    report.display()
                )?;
                let limits: Vec<String> = requires_at_most
                    .limits()
                    .map(|(kind, version)| format!("{kind} {version}"))
                    .collect();
                if !limits.is_empty() {
                    write!(
                        f,
                        "\n      no binary may need more than {}",
                        limits.join(", ")
                    )?;
                }
                Ok(())
            }
            Step::Relocate { tree, installed_at } => write!(
                f,
                "relocate: rewrite the #! lines in {} that name {}, list what else does",
                tree.display(),
                installed_at.display()
            ),
            Step::HelperScript { path } => write!(f, "write helper script {}", path.display()),
            Step::WriteManifest { path } => write!(f, "write {}", path.display()),
            Step::Archive { tree, zip } => {
                write!(f, "zip {} into {}", tree.display(), zip.display())
            }
            Step::Verify {
                zip,
                unpack,
                env,
                smoke,
            } => write!(
                f,
                "verify: unpack {} into {}, move {} aside, then {}",
                zip.display(),
                unpack.display(),
                env.display(),
                smoke_summary(smoke, true)
            ),
            Step::Publish {
                zip,
                report,
                split_size,
            } => {
                write!(f, "publish")?;
                for (from, to) in [zip, report] {
                    write!(f, "\n      {} as {}", from.display(), to.display())?;
                }
                write!(
                    f,
                    "\n      with parts of at most {split_size} bytes where the zip is larger"
                )
            }
            Step::Mirror {
                name,
                url,
                rev,
                commit,
                mirror,
                requirements,
            } => {
                write!(f, "mirror {name}: {url} into {}", mirror.display())?;
                match commit {
                    Some(commit) => write!(f, "\n      at {rev} (locked: {commit})")?,
                    None => write!(f, "\n      at {rev}")?,
                }
                if let Some((path, out)) = requirements {
                    write!(f, "\n      its {path} into {}", out.display())?;
                }
                Ok(())
            }
            Step::Wheelhouse(cmd) => write!(f, "gather wheels: {cmd}"),
        }
    }
}

/// What a smoke run does, in one line: the imports, the checks and (unpacked) the commands.
fn smoke_summary(smoke: &Smoke, unpacked: bool) -> String {
    let mut parts = Vec::new();
    if !smoke.imports.is_empty() {
        parts.push(format!("import {}", smoke.imports.join(", ")));
    }
    for check in &smoke.checks {
        parts.push(format!("check that {}", check.name));
    }
    if unpacked {
        for command in &smoke.commands {
            parts.push(format!(
                "run `{}` ({})",
                command.run.join(" "),
                command.name
            ));
        }
    }
    if parts.is_empty() {
        "nothing to run".to_string()
    } else {
        parts.join("; ")
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub platform: Platform,
    pub version: String,
    pub layout: Layout,
    pub steps: Vec<Step>,
}

/// What a plan is made from besides the manifest.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    /// The resolved Miniforge tag when known (pinned, or `latest` resolved).
    pub tag: Option<&'a str>,
    /// Build exactly this lock.
    pub locked: Option<&'a Lock>,
    /// Use only what `fetch` put in the cache: the installer, git mirrors, wheelhouse, conda
    /// packages.
    pub offline: bool,
    /// Zips larger than this are also published as parts; 0 never splits.
    pub split_size: u64,
}

/// Builds the plan of `portable`.
pub fn plan(
    manifest: &Distribution,
    platform: Platform,
    version: &str,
    layout: &Layout,
    prune_policy: &Path,
    options: Options,
) -> Plan {
    let locked = options.locked;
    let mut steps = base_steps(manifest, platform, layout, &layout.prefix, options);

    let mut requirement_files = Vec::new();
    for repo in &manifest.repos {
        let dest = layout.env_tree.join(&repo.path);
        let requirements = repo.requirements.as_ref().map(|r| dest.join(r));
        requirement_files.extend(requirements.clone());
        steps.push(Step::Clone {
            name: repo.name.clone(),
            url: repo.url.clone(),
            from: if options.offline {
                file_url(&layout.git_mirror(&repo.name))
            } else {
                repo.url.clone()
            },
            rev: repo.rev.clone(),
            // Locked, each repo is checked out at the commit its rev meant then.
            commit: locked
                .and_then(|l| l.commit_of(&repo.name))
                .map(str::to_string),
            dest,
            requirements,
        });
    }

    let pip = python(platform, &layout.prefix)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-warn-script-location",
        ])
        // pip's account of what it installed: exact versions and wheel digests, for the lock.
        .arg("--report")
        .arg(path_arg(&layout.pip_report));
    let pip = pip_sources(pip, manifest, platform, layout, options.offline);
    let pip = wheel_policy(pip, manifest, platform, &layout.env, &mut steps);
    steps.extend(requirements(
        pip,
        manifest,
        platform,
        layout,
        locked,
        &requirement_files,
        Step::PipInstall,
    ));
    steps.push(Step::SmokeInstalled {
        python: layout.prefix.join(platform.python_in_prefix()),
        smoke: manifest.smoke.clone(),
    });

    steps.push(Step::LinkTree {
        from: layout.env_tree.clone(),
        to: layout.tree.clone(),
    });
    steps.push(Step::Prune {
        tree: layout.tree.clone(),
        policy: prune_policy.to_path_buf(),
        report: layout.staged_report.clone(),
        requires_at_most: manifest.requires_at_most(platform),
    });
    steps.push(Step::Relocate {
        tree: layout.tree.clone(),
        installed_at: layout.env_tree.clone(),
    });
    steps.push(Step::HelperScript {
        path: layout.tree.join(platform.helper_script_name()),
    });
    steps.push(Step::WriteManifest {
        path: layout.tree.join("manifest.json"),
    });
    steps.push(Step::Archive {
        tree: layout.tree.clone(),
        zip: layout.staged_zip.clone(),
    });
    steps.push(Step::Verify {
        zip: layout.staged_zip.clone(),
        unpack: layout.unpack.clone(),
        env: layout.env.clone(),
        smoke: manifest.smoke.clone(),
    });
    steps.push(Step::Publish {
        zip: (layout.staged_zip.clone(), layout.zip.clone()),
        report: (layout.staged_report.clone(), layout.report.clone()),
        split_size: options.split_size,
    });
    Plan {
        platform,
        version: version.to_string(),
        layout: layout.clone(),
        steps,
    }
}

/// Builds the plan of `fetch`: everything `portable --offline` needs, into the cache. pip runs
/// in a scratch Miniforge base, so the wheels are those of the base's own Python.
pub fn fetch_plan(
    manifest: &Distribution,
    platform: Platform,
    layout: &Layout,
    options: Options,
) -> Vec<Step> {
    let options = Options {
        offline: false,
        ..options
    };
    let prefix = &layout.fetch_prefix;
    let mut steps = base_steps(manifest, platform, layout, prefix, options);
    let scratch = prefix.parent().expect("the prefix is in a folder");
    let mut requirement_files = Vec::new();
    for repo in &manifest.repos {
        let requirements = repo.requirements.as_ref().map(|r| {
            (
                r.clone(),
                scratch.join(format!("{}-requirements.txt", repo.name)),
            )
        });
        requirement_files.extend(requirements.iter().map(|(_, out)| out.clone()));
        steps.push(Step::Mirror {
            name: repo.name.clone(),
            url: repo.url.clone(),
            rev: repo.rev.clone(),
            commit: options
                .locked
                .and_then(|l| l.commit_of(&repo.name))
                .map(str::to_string),
            mirror: layout.git_mirror(&repo.name),
            requirements,
        });
    }
    // `pip wheel` is `pip download` that also builds any sdist into a wheel: the offline
    // install then never needs a build backend it cannot download.
    let pip = python(platform, prefix)
        .args(["-m", "pip", "wheel", "--disable-pip-version-check"])
        .arg("--wheel-dir")
        .arg(path_arg(&layout.wheelhouse));
    let pip = pip_sources(pip, manifest, platform, layout, false);
    let pip = wheel_policy(pip, manifest, platform, scratch, &mut steps);
    let locked_requirements = scratch.join("locked-requirements.txt");
    let layout = Layout {
        locked_requirements,
        ..layout.clone()
    };
    steps.extend(requirements(
        pip,
        manifest,
        platform,
        &layout,
        options.locked,
        &requirement_files,
        Step::Wheelhouse,
    ));
    steps
}

/// Fetch the installer, install the base into `prefix`, then the conda packages.
fn base_steps(
    manifest: &Distribution,
    platform: Platform,
    layout: &Layout,
    prefix: &Path,
    options: Options,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let base_url = manifest
        .installer
        .base_url
        .trim_end_matches('/')
        .to_string();
    let tag = options
        .locked
        .map(|l| l.miniforge.tag.as_str())
        .or(options.tag)
        .or(match &manifest.installer.release {
            Release::Tag(t) => Some(t.as_str()),
            Release::Latest => None,
        });
    let installer = tag.map(|t| layout.cache.join(platform.miniforge_asset(t)));
    steps.push(Step::FetchInstaller {
        release: manifest.installer.release.clone(),
        base_url: base_url.clone(),
        url: tag.map(|t| installer_url(&base_url, t, platform)),
        dest: installer.clone(),
        offline: options.offline,
    });
    let installer =
        installer.unwrap_or_else(|| layout.cache.join(platform.miniforge_asset("<latest>")));
    steps.push(Step::InstallBase {
        command: install_command(platform, &installer, prefix),
        prefix: prefix.to_path_buf(),
    });

    let conda = manifest.conda_packages_for(platform);
    if !conda.is_empty() {
        let mut cmd = Command::new(prefix.join(platform.mamba_in_prefix()))
            .args(["install", "--yes", "--prefix"])
            .arg(path_arg(prefix))
            .args(["--override-channels", "--channel", "conda-forge"]);
        if options.offline {
            cmd = cmd.arg("--offline");
        }
        cmd = cmd.args(conda);
        // mamba 2 otherwise takes its root prefix from the user's home.
        cmd.env.push(("MAMBA_ROOT_PREFIX".into(), path_arg(prefix)));
        // One package cache for every build: what `fetch` put there, `--offline` installs.
        cmd.env
            .push(("CONDA_PKGS_DIRS".into(), path_arg(&layout.conda_pkgs)));
        steps.push(Step::CondaInstall(cmd));
    }
    steps
}

/// The package indexes of the manifest, or offline only the wheelhouse.
fn pip_sources(
    mut pip: Command,
    manifest: &Distribution,
    platform: Platform,
    layout: &Layout,
    offline: bool,
) -> Command {
    if offline {
        pip = pip
            .args(["--no-index", "--find-links"])
            .arg(path_arg(&layout.wheelhouse));
    } else {
        if let Some(index) = &manifest.pip.index_url {
            pip = pip.args(["--index-url", index]);
        }
        for url in &manifest.pip.extra_index_urls {
            pip = pip.args(["--extra-index-url", url]);
        }
        for link in &manifest.pip.find_links {
            pip = pip.args(["--find-links", link]);
        }
        if manifest.pip.no_index {
            pip = pip.arg("--no-index");
        }
    }
    // With --no-index, pip ignores any index these name.
    pip.args(manifest.pip_args_for(platform))
}

/// With a glibc ceiling on Linux, pip may only pick wheels whose manylinux tag is within it:
/// PEP 600 lets an installation say so with an importable `_manylinux` module, which pip asks
/// about every tag. It is written beside the environment (not into it, so the zip does not keep
/// the build's limit) and put on `PYTHONPATH` for pip alone.
fn wheel_policy(
    mut pip: Command,
    manifest: &Distribution,
    platform: Platform,
    folder: &Path,
    steps: &mut Vec<Step>,
) -> Command {
    let Some(glibc) = manifest.requires_at_most(platform).glibc else {
        return pip;
    };
    let dir = folder.join("pip-policy");
    let (major, minor) = glibc.major_minor();
    steps.push(Step::WriteFile {
        title: "Write pip's wheel policy".into(),
        path: dir.join("_manylinux.py"),
        contents: format!(
            "# Written by cargo xtask: pip takes only wheels for glibc {glibc} or older, the\n\
             # requires_at_most of distribution.yml (PEP 600).\n\
             def manylinux_compatible(tag_major, tag_minor, tag_arch):\n    \
             return (tag_major, tag_minor) <= ({major}, {minor})\n"
        ),
    });
    pip.env.push(("PYTHONPATH".into(), path_arg(&dir)));
    pip
}

/// What pip is asked for: the manifest's packages and the repos' requirements, or exactly the
/// lock's versions with their digests (written to a file first).
fn requirements(
    mut pip: Command,
    manifest: &Distribution,
    platform: Platform,
    layout: &Layout,
    locked: Option<&Lock>,
    requirement_files: &[PathBuf],
    step: fn(Command) -> Step,
) -> Vec<Step> {
    let mut steps = Vec::new();
    match locked {
        Some(lock) => {
            steps.push(Step::WriteFile {
                title: "Write the locked requirements".into(),
                path: layout.locked_requirements.clone(),
                contents: lock.requirements(),
            });
            pip = pip
                .args(["--require-hashes", "--no-deps", "-r"])
                .arg(path_arg(&layout.locked_requirements));
        }
        None => {
            pip = pip.args(manifest.python_packages_for(platform));
            for file in requirement_files {
                pip = pip.arg("-r").arg(path_arg(file));
            }
        }
    }
    steps.push(step(pip));
    steps
}

/// `file://` URL of a local path, which git clones like a remote (shallow clones work).
pub fn file_url(path: &Path) -> String {
    let path = path.to_string_lossy().replace('\\', "/");
    if path.starts_with('/') {
        format!("file://{path}")
    } else {
        format!("file:///{path}")
    }
}

pub fn installer_url(base_url: &str, tag: &str, platform: Platform) -> String {
    format!(
        "{}/download/{tag}/{}",
        base_url.trim_end_matches('/'),
        platform.miniforge_asset(tag)
    )
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

/// The prefix's python, run with `-s` so the user's own site-packages never leak in.
pub fn python(platform: Platform, prefix: &Path) -> Command {
    Command::new(prefix.join(platform.python_in_prefix())).arg("-s")
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Distribution {
        serde_yaml_ng::from_str(text).unwrap()
    }

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

    #[test]
    fn pip_resolves_everything_at_once() {
        let m = manifest(
            "pip: {index_url: 'http://127.0.0.1:1/simple', find_links: [/w], no_index: true}\n\
             python_packages: [pillow]\n\
             platforms: {linux-x86_64: {python_packages: [torch], pip_args: [--extra-index-url, 'https://download.pytorch.org/whl/cu128']}}\n\
             repos: [{name: ComfyUI, url: 'file:///r', rev: v1, path: ComfyUI, requirements: requirements.txt}]\n",
        );
        let plan = plan_for(&m, Platform::LinuxX86_64, Some("26.3.2-3"));
        let pips: Vec<_> = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::PipInstall(_)))
            .collect();
        assert_eq!(pips.len(), 1, "one resolve");
        let Step::PipInstall(cmd) = pips[0] else {
            unreachable!()
        };
        assert_eq!(
            cmd.to_string(),
            "/o/stage/linux-x86_64/env/anymatix/python/bin/python3 -s -m pip install --disable-pip-version-check \
             --no-warn-script-location --report /o/stage/linux-x86_64/env/pip-report.json \
             --index-url http://127.0.0.1:1/simple --find-links /w --no-index \
             --extra-index-url https://download.pytorch.org/whl/cu128 pillow torch \
             -r /o/stage/linux-x86_64/env/anymatix/ComfyUI/requirements.txt"
        );
    }

    #[test]
    fn pinned_tag_gives_the_versioned_url() {
        let m = manifest("installer: {release: 26.3.2-3, base_url: 'http://127.0.0.1:9/r/'}\n");
        let plan = plan_for(&m, Platform::MacosX86_64, None);
        let Step::FetchInstaller { url, .. } = &plan.steps[0] else {
            panic!()
        };
        assert_eq!(
            url.as_deref(),
            Some("http://127.0.0.1:9/r/download/26.3.2-3/Miniforge3-26.3.2-3-MacOSX-x86_64.sh")
        );
    }

    #[test]
    fn conda_packages_use_the_bases_own_mamba() {
        let m = manifest("platforms: {macos-x86_64: {conda_packages: [python=3.12]}}\n");
        let plan = plan_for(&m, Platform::MacosX86_64, Some("t"));
        let conda: Vec<String> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::CondaInstall(c) => Some(c.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(
            conda,
            ["MAMBA_ROOT_PREFIX=/o/stage/macos-x86_64/env/anymatix/python CONDA_PKGS_DIRS=/o/cache/conda-pkgs/macos-x86_64 \
              /o/stage/macos-x86_64/env/anymatix/python/bin/mamba install --yes --prefix /o/stage/macos-x86_64/env/anymatix/python \
              --override-channels --channel conda-forge python=3.12"]
        );
        let plan = plan_for(&m, Platform::LinuxX86_64, Some("t"));
        assert!(!plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::CondaInstall(_))));
    }

    #[test]
    fn locked_plans_pin_tag_commits_and_hashed_packages() {
        use crate::lock::{LockedInstaller, LockedPackage, LockedRepo};
        let m = manifest(
            "python_packages: [pillow]\n\
             repos: [{name: ComfyUI, url: 'file:///r', rev: main, path: ComfyUI, requirements: requirements.txt}]\n",
        );
        let lock = Lock {
            platform: "linux-x86_64".into(),
            miniforge: LockedInstaller {
                tag: "26.3.2-3".into(),
                sha256: "ab".into(),
            },
            repos: vec![LockedRepo {
                name: "ComfyUI".into(),
                url: "file:///r".into(),
                commit: "c0ffee".into(),
            }],
            python_packages: vec![LockedPackage {
                name: "pillow".into(),
                version: "11.0.0".into(),
                sha256: "cd".into(),
            }],
        };
        let layout = Layout::new(Path::new("/o"), Platform::LinuxX86_64, "0.1.0");
        let plan = plan(
            &m,
            Platform::LinuxX86_64,
            "0.1.0",
            &layout,
            Path::new("/p.yml"),
            Options {
                locked: Some(&lock),
                ..Options::default()
            },
        );
        let text: Vec<String> = plan.steps.iter().map(|s| s.to_string()).collect();
        assert!(
            text[0].contains("/download/26.3.2-3/Miniforge3-26.3.2-3-Linux-x86_64.sh"),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("clone ComfyUI: file:///r at main (locked: c0ffee)")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t
                .starts_with("write /o/stage/linux-x86_64/env/locked-requirements.txt (1 lines)")),
            "{text:?}"
        );
        let pip = text.iter().find(|t| t.starts_with("pip install")).unwrap();
        assert!(
            pip.ends_with(
                "--require-hashes --no-deps -r /o/stage/linux-x86_64/env/locked-requirements.txt"
            ),
            "{pip}"
        );
        assert!(!pip.contains(" pillow"), "{pip}");
    }

    #[test]
    fn offline_plans_use_only_the_cache_and_fetch_fills_it() {
        let m = manifest(
            "pip: {index_url: 'https://pypi.example/simple', find_links: ['https://wheels.example/']}\n\
             python_packages: [pillow]\n\
             platforms: {macos-x86_64: {conda_packages: [python=3.12]}}\n\
             repos: [{name: ComfyUI, url: 'https://git.example/ComfyUI.git', rev: v1, path: ComfyUI, requirements: requirements.txt}]\n",
        );
        let layout = Layout::new(Path::new("/o"), Platform::MacosX86_64, "0.1.0");
        let offline = plan(
            &m,
            Platform::MacosX86_64,
            "0.1.0",
            &layout,
            Path::new("/p.yml"),
            Options {
                tag: Some("t"),
                offline: true,
                ..Options::default()
            },
        );
        let text: Vec<String> = offline.steps.iter().map(|s| s.to_string()).collect();
        let all = text.join("\n");
        assert!(!all.contains("https://pypi.example") && !all.contains("https://wheels.example"));
        assert!(all.contains("use the cached download of"), "{all}");
        assert!(
            all.contains("from file:///o/cache/git/ComfyUI.git"),
            "{all}"
        );
        assert!(
            all.contains("--no-index --find-links /o/cache/wheels/macos-x86_64 pillow"),
            "{all}"
        );
        assert!(
            all.contains("CONDA_PKGS_DIRS=/o/cache/conda-pkgs/macos-x86_64")
                && all.contains("--offline python=3.12"),
            "{all}"
        );

        let fetch = fetch_plan(
            &m,
            Platform::MacosX86_64,
            &layout,
            Options {
                tag: Some("t"),
                ..Options::default()
            },
        );
        let text: Vec<String> = fetch.iter().map(|s| s.to_string()).collect();
        assert!(text[0].starts_with("fetch https://"), "{text:?}");
        assert!(
            text[1].ends_with("-b -p /o/stage/macos-x86_64/fetch/python"),
            "{text:?}"
        );
        assert!(text[2].contains("CONDA_PKGS_DIRS=/o/cache/conda-pkgs/macos-x86_64"));
        assert!(!text[2].contains("--offline"));
        assert_eq!(
            text[3],
            "mirror ComfyUI: https://git.example/ComfyUI.git into /o/cache/git/ComfyUI.git\n      at v1\n      \
             its requirements.txt into /o/stage/macos-x86_64/fetch/ComfyUI-requirements.txt"
        );
        assert_eq!(
            text[4],
            "gather wheels: /o/stage/macos-x86_64/fetch/python/bin/python3 -s -m pip wheel --disable-pip-version-check \
             --wheel-dir /o/cache/wheels/macos-x86_64 --index-url https://pypi.example/simple \
             --find-links https://wheels.example/ pillow -r /o/stage/macos-x86_64/fetch/ComfyUI-requirements.txt"
        );
    }

    /// The `_manylinux` module the plan writes, tried with the host's real pip: of two builds of
    /// one package, only the one within the limit is taken.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn pip_takes_only_wheels_within_the_glibc_limit() {
        use std::io::Write;
        let m = manifest("platforms: {linux-x86_64: {requires_at_most: {glibc: '2.28'}}}\n");
        let plan = plan_for(&m, Platform::LinuxX86_64, Some("t"));
        let Some(Step::WriteFile { contents, .. }) = plan
            .steps
            .iter()
            .find(|s| matches!(s, Step::WriteFile { path, .. } if path.ends_with("_manylinux.py")))
        else {
            panic!("no wheel policy in the plan")
        };
        let pip = plan
            .steps
            .iter()
            .find_map(|s| match s {
                Step::PipInstall(c) => Some(c),
                _ => None,
            })
            .unwrap();
        assert!(pip
            .env
            .iter()
            .any(|(k, v)| k == "PYTHONPATH" && v.ends_with("pip-policy")));

        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("pip-policy");
        fs_err::create_dir_all(&policy).unwrap();
        fs_err::write(policy.join("_manylinux.py"), contents).unwrap();
        let wheels = dir.path().join("wheels");
        fs_err::create_dir_all(&wheels).unwrap();
        for (version, tag) in [
            ("1.0", "manylinux_2_17_x86_64"),
            ("2.0", "manylinux_2_29_x86_64"),
        ] {
            let file =
                fs_err::File::create(wheels.join(format!("capped-{version}-py3-none-{tag}.whl")))
                    .unwrap();
            let mut zip = zip::ZipWriter::new(file);
            let info = format!("capped-{version}.dist-info");
            for (name, text) in [
                (
                    "METADATA",
                    format!("Metadata-Version: 2.1\nName: capped\nVersion: {version}\n"),
                ),
                (
                    "WHEEL",
                    format!("Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: py3-none-{tag}\n"),
                ),
                ("RECORD", String::new()),
            ] {
                zip.start_file(
                    format!("{info}/{name}"),
                    zip::write::SimpleFileOptions::default(),
                )
                .unwrap();
                zip.write_all(text.as_bytes()).unwrap();
            }
            zip.finish().unwrap();
        }
        let download = |with_policy: bool| {
            let out = tempfile::tempdir().unwrap();
            let mut cmd = std::process::Command::new("python3");
            cmd.args([
                "-m",
                "pip",
                "download",
                "--no-index",
                "--disable-pip-version-check",
                "--find-links",
            ])
            .arg(&wheels)
            .arg("--dest")
            .arg(out.path())
            .arg("capped")
            .env("PIP_CONFIG_FILE", "/dev/null")
            .env_remove("PYTHONPATH");
            if with_policy {
                cmd.env("PYTHONPATH", &policy);
            }
            let done = cmd.output().unwrap();
            assert!(
                done.status.success(),
                "{}",
                String::from_utf8_lossy(&done.stderr)
            );
            let names: Vec<String> = fs_err::read_dir(out.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names
        };
        // Any host of glibc 2.29 or newer takes 2.0 by itself; limited to 2.28, pip takes 1.0.
        assert_eq!(
            download(false),
            ["capped-2.0-py3-none-manylinux_2_29_x86_64.whl"]
        );
        assert_eq!(
            download(true),
            ["capped-1.0-py3-none-manylinux_2_17_x86_64.whl"]
        );
    }

    fn plan_for(m: &Distribution, platform: Platform, tag: Option<&str>) -> Plan {
        let layout = Layout::new(Path::new("/o"), platform, "0.1.0");
        plan(
            m,
            platform,
            "0.1.0",
            &layout,
            Path::new("/p.yml"),
            Options {
                tag,
                ..Options::default()
            },
        )
    }
}
