//! Manifest + platform → the list of steps a build takes. Pure: no I/O, so `--dry-run` can print
//! the plan of any platform on any host, and tests can check Windows command lines on Linux.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::lock::Lock;
use crate::manifest::{Manifest, Release};
use crate::platform::Platform;

/// Where everything of one build lives, under `--out`.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Downloads, kept across builds and trusted only with a matching sidecar digest.
    pub cache: PathBuf,
    /// The tree that becomes the zip's root folder `anymatix/`.
    pub tree: PathBuf,
    /// The Miniforge prefix, `anymatix/python/`.
    pub prefix: PathBuf,
    /// The finished zip, moved here only after it passed verify.
    pub zip: PathBuf,
    /// Where the zip is written and verified before it is published as `zip`.
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
}

impl Layout {
    pub fn new(out: &Path, platform: Platform, version: &str) -> Layout {
        // Short names: the Windows installer checks the prefix's length.
        let stage = out.join("stage").join(platform.name());
        let tree = stage.join("anymatix");
        Layout {
            cache: out.join("cache"),
            prefix: tree.join("python"),
            tree,
            zip: out.join(zip_name(version, platform)),
            staged_zip: stage.join(zip_name(version, platform)),
            pip_report: stage.join("pip-report.json"),
            locked_requirements: stage.join("locked-requirements.txt"),
            report: out.join(report_name(version, platform)),
            staged_report: stage.join(report_name(version, platform)),
            unpack: out
                .join("verify")
                .join(platform.name())
                .join("unpacked copy ü"),
        }
    }

    pub fn stage(&self) -> &Path {
        self.tree.parent().expect("tree has a parent")
    }
}

pub fn zip_name(version: &str, platform: Platform) -> String {
    format!("anymatix-{version}-{platform}.zip")
}

pub fn report_name(version: &str, platform: Platform) -> String {
    format!("anymatix-{version}-{platform}.prune.html")
}

/// A program and its arguments, run without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Command {
    fn new(program: impl Into<PathBuf>) -> Command {
        Command {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    fn arg(mut self, arg: impl Into<String>) -> Command {
        self.args.push(arg.into());
        self
    }

    fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Command {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.env {
            write!(f, "{key}={} ", quote(value))?;
        }
        write!(f, "{}", quote(&self.program.to_string_lossy()))?;
        for arg in &self.args {
            write!(f, " {}", quote(arg))?;
        }
        Ok(())
    }
}

fn quote(s: &str) -> String {
    if !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || "'\"$`\\;&|<>()*?".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[derive(Debug, Clone)]
pub enum Step {
    FetchInstaller {
        release: Release,
        base_url: String,
        /// The versioned asset's URL; `None` until `latest` is resolved to a tag.
        url: Option<String>,
        dest: Option<PathBuf>,
    },
    InstallBase(Command),
    CondaInstall(Command),
    Clone {
        name: String,
        url: String,
        rev: String,
        /// The locked commit, when building `--locked`.
        commit: Option<String>,
        dest: PathBuf,
        requirements: Option<PathBuf>,
    },
    /// A file the next step reads (the locked requirements).
    WriteFile {
        path: PathBuf,
        contents: String,
    },
    PipInstall(Command),
    Prune {
        tree: PathBuf,
        policy: PathBuf,
        /// The HTML size report, written in the stage and published with the zip.
        report: PathBuf,
    },
    /// Rewrites `#!` lines that hold the build path; lists what else holds it.
    Relocate {
        tree: PathBuf,
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
    Verify {
        zip: PathBuf,
        unpack: PathBuf,
        imports: Vec<String>,
    },
    /// Moves each finished file to its final name: the zip, its .sha256 and the prune report.
    Publish {
        files: Vec<(PathBuf, PathBuf)>,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::FetchInstaller {
                release,
                base_url,
                url,
                dest,
            } => {
                match url {
                    Some(url) => write!(f, "fetch {url}\n      verify with {url}.sha256")?,
                    None => write!(
                        f,
                        "fetch Miniforge {release}: resolve the tag from {base_url}/latest, then download its versioned asset and .sha256"
                    )?,
                }
                if let Some(dest) = dest {
                    write!(f, "\n      into {}", dest.display())?;
                }
                Ok(())
            }
            Step::InstallBase(cmd) => write!(f, "install the base: {cmd}"),
            Step::CondaInstall(cmd) => write!(f, "install conda packages: {cmd}"),
            Step::Clone {
                name,
                url,
                rev,
                commit,
                dest,
                requirements,
            } => {
                write!(f, "clone {name}: {url} at {rev}")?;
                if let Some(commit) = commit {
                    write!(f, " (locked: {commit})")?;
                }
                write!(f, " into {}", dest.display())?;
                if let Some(req) = requirements {
                    write!(f, "\n      requirements: {}", req.display())?;
                }
                Ok(())
            }
            Step::WriteFile { path, contents } => write!(
                f,
                "write {} ({} lines)",
                path.display(),
                contents.lines().count()
            ),
            Step::PipInstall(cmd) => write!(f, "pip install (one resolve): {cmd}"),
            Step::Prune {
                tree,
                policy,
                report,
            } => {
                write!(
                    f,
                    "prune {} by the rules in {}, check every native library, report in {}",
                    tree.display(),
                    policy.display(),
                    report.display()
                )
            }
            Step::Relocate { tree } => write!(
                f,
                "relocate: rewrite the #! lines in {} that name the build path, list what else does",
                tree.display()
            ),
            Step::HelperScript { path } => write!(f, "write helper script {}", path.display()),
            Step::WriteManifest { path } => write!(f, "write {}", path.display()),
            Step::Archive { tree, zip } => {
                write!(f, "zip {} into {}", tree.display(), zip.display())
            }
            Step::Verify {
                zip,
                unpack,
                imports,
            } => write!(
                f,
                "verify: unpack {} into {} and import {}",
                zip.display(),
                unpack.display(),
                if imports.is_empty() {
                    "nothing".to_string()
                } else {
                    imports.join(", ")
                }
            ),
            Step::Publish { files } => {
                write!(f, "publish")?;
                for (from, to) in files {
                    write!(f, "\n      {} as {}", from.display(), to.display())?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub platform: Platform,
    pub version: String,
    pub layout: Layout,
    pub steps: Vec<Step>,
}

/// Builds the plan. `tag` is the resolved Miniforge tag when known (pinned, or `latest` resolved).
pub fn plan(
    manifest: &Manifest,
    platform: Platform,
    version: &str,
    layout: &Layout,
    tag: Option<&str>,
    prune_policy: &Path,
    locked: Option<&Lock>,
) -> Plan {
    let mut steps = Vec::new();
    let base_url = manifest
        .installer
        .base_url
        .trim_end_matches('/')
        .to_string();
    let tag =
        locked
            .map(|l| l.miniforge.tag.as_str())
            .or(tag)
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
    });
    let installer =
        installer.unwrap_or_else(|| layout.cache.join(platform.miniforge_asset("<latest>")));
    steps.push(Step::InstallBase(install_command(
        platform,
        &installer,
        &layout.prefix,
    )));

    let conda = manifest.conda_packages_for(platform);
    if !conda.is_empty() {
        let mut cmd = Command::new(layout.prefix.join(platform.mamba_in_prefix()))
            .args(["install", "--yes", "--prefix"])
            .arg(path_arg(&layout.prefix))
            .args(["--override-channels", "--channel", "conda-forge"])
            .args(conda);
        // mamba 2 otherwise takes its root prefix from the user's home.
        cmd.env
            .push(("MAMBA_ROOT_PREFIX".into(), path_arg(&layout.prefix)));
        steps.push(Step::CondaInstall(cmd));
    }

    let mut requirement_files = Vec::new();
    for repo in &manifest.repos {
        let dest = layout.tree.join(&repo.path);
        let requirements = repo.requirements.as_ref().map(|r| dest.join(r));
        requirement_files.extend(requirements.clone());
        steps.push(Step::Clone {
            name: repo.name.clone(),
            url: repo.url.clone(),
            rev: repo.rev.clone(),
            // Locked, each repo is checked out at the commit its rev meant then.
            commit: locked
                .and_then(|l| l.commit_of(&repo.name))
                .map(str::to_string),
            dest,
            requirements,
        });
    }

    let mut pip = python(platform, &layout.prefix).args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-warn-script-location",
    ]);
    // pip's account of what it installed: exact versions and wheel digests, for the lock.
    pip = pip.arg("--report").arg(path_arg(&layout.pip_report));
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
    pip = pip.args(manifest.pip_args_for(platform));
    match locked {
        Some(lock) => {
            // Exactly the locked versions, each wheel checked against its digest.
            steps.push(Step::WriteFile {
                path: layout.locked_requirements.clone(),
                contents: lock.requirements(),
            });
            pip = pip
                .args(["--require-hashes", "--no-deps", "-r"])
                .arg(path_arg(&layout.locked_requirements));
        }
        None => {
            pip = pip.args(manifest.python_packages_for(platform));
            for file in &requirement_files {
                pip = pip.arg("-r").arg(path_arg(file));
            }
        }
    }
    steps.push(Step::PipInstall(pip));

    steps.push(Step::Prune {
        tree: layout.tree.clone(),
        policy: prune_policy.to_path_buf(),
        report: layout.staged_report.clone(),
    });
    steps.push(Step::Relocate {
        tree: layout.tree.clone(),
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
        imports: manifest.smoke.imports.clone(),
    });
    let sidecar = |p: &Path| {
        let mut name = p.file_name().unwrap_or_default().to_os_string();
        name.push(".sha256");
        p.with_file_name(name)
    };
    steps.push(Step::Publish {
        files: vec![
            (layout.staged_zip.clone(), layout.zip.clone()),
            (sidecar(&layout.staged_zip), sidecar(&layout.zip)),
            (layout.staged_report.clone(), layout.report.clone()),
        ],
    });
    Plan {
        platform,
        version: version.to_string(),
        layout: layout.clone(),
        steps,
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

    fn manifest(text: &str) -> Manifest {
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
            "/o/stage/linux-x86_64/anymatix/python/bin/python3 -s -m pip install --disable-pip-version-check \
             --no-warn-script-location --report /o/stage/linux-x86_64/pip-report.json \
             --index-url http://127.0.0.1:1/simple --find-links /w --no-index \
             --extra-index-url https://download.pytorch.org/whl/cu128 pillow torch \
             -r /o/stage/linux-x86_64/anymatix/ComfyUI/requirements.txt"
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
            ["MAMBA_ROOT_PREFIX=/o/stage/macos-x86_64/anymatix/python /o/stage/macos-x86_64/anymatix/python/bin/mamba install --yes --prefix /o/stage/macos-x86_64/anymatix/python --override-channels --channel conda-forge python=3.12"]
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
            None,
            Path::new("/p.yml"),
            Some(&lock),
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
            text.iter()
                .any(|t| t
                    .starts_with("write /o/stage/linux-x86_64/locked-requirements.txt (1 lines)")),
            "{text:?}"
        );
        let pip = text.iter().find(|t| t.starts_with("pip install")).unwrap();
        assert!(
            pip.ends_with(
                "--require-hashes --no-deps -r /o/stage/linux-x86_64/locked-requirements.txt"
            ),
            "{pip}"
        );
        assert!(!pip.contains(" pillow"), "{pip}");
    }

    fn plan_for(m: &Manifest, platform: Platform, tag: Option<&str>) -> Plan {
        let layout = Layout::new(Path::new("/o"), platform, "0.1.0");
        plan(
            m,
            platform,
            "0.1.0",
            &layout,
            tag,
            Path::new("/p.yml"),
            None,
        )
    }
}
