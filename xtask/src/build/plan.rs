//! Distribution + platform → the steps a build takes. Pure: no I/O, so `--dry-run` can print the
//! plan of any platform on any host, and tests can check Windows command lines on Linux. Each
//! step is a struct of the stage module that runs it and tells about itself through
//! [`Describe`]; [`Step`] is the one list of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::build::cross::Route;
use crate::build::cross::{cross_pip_steps, runner_for};
use crate::build::layout::{Artifacts, Layout};
use crate::build::step::Step;
use crate::model::distribution::{Distribution, Release};
use crate::model::lock::Lock;
use crate::model::platform::{Os, Platform};
use crate::stages::archive::{Archive, Compression};
use crate::stages::bytecode::CompileImported;
use crate::stages::conda::solve::{self, CondaSolve};
use crate::stages::conda::LinkBase;
use crate::stages::install::{CondaInstall, InstallBase};
use crate::stages::manifest::WriteManifest;
use crate::stages::miniforge::{DownloadInstaller, Tag};
use crate::stages::packages::{Folder, PackageTools};
use crate::stages::pip::leave_out::LeaveOutPackages;
use crate::stages::pip::{self, PipInstall, PipRequest, Wanted, Wheelhouse, WriteFile};
use crate::stages::prune::{LinkTree, Policy, Prune};
use crate::stages::publish::Publish;
use crate::stages::relocate::Relocate;
use crate::stages::repos::{self, CloneRepo, Mirror};
use crate::stages::verify::signatures::CheckSignatures;
use crate::stages::verify::{SmokeInstalled, Verify};

#[derive(Debug, Clone)]
pub struct Plan {
    pub platform: Platform,
    pub route: Route,
    pub version: String,
    pub layout: Layout,
    pub artifacts: Artifacts,
    pub steps: Vec<Step>,
}

/// What a plan is made from besides the distribution.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The Miniforge release, once `latest` is resolved (a dry run leaves it unresolved).
    pub tag: Tag,
    /// Build exactly this lock.
    pub locked: Option<&'a Lock>,
    /// Use only what `fetch` put in the cache: the installer, git mirrors, wheelhouse, conda
    /// packages.
    pub offline: bool,
    /// Zips larger than this are written as volumes of at most this size; 0 never splits.
    pub split_size: u64,
    pub compression: Compression,
    /// `None`: [`Route::for_target`].
    pub route: Option<Route>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            tag: Tag::Latest,
            locked: None,
            offline: false,
            split_size: 0,
            compression: Compression::Default,
            route: None,
        }
    }
}

/// The prune policy a plan prunes by, and where it was read from.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    pub policy: Arc<Policy>,
    pub path: PathBuf,
}

/// Builds the plan of `portable`.
pub fn plan(
    distribution: &Distribution,
    platform: Platform,
    version: &str,
    layout: &Layout,
    policy: &PolicyFile,
    options: Options,
) -> Plan {
    let artifacts = layout.artifacts(version);
    let locked = options.locked;
    let route = options.route.unwrap_or(Route::for_target(platform));
    let runner = runner_for(route, platform, layout);
    let mut steps = base_steps(
        distribution,
        platform,
        layout,
        &layout.prefix,
        &options,
        false,
        route,
    );

    let mut requirement_files = Vec::new();
    for repo in &distribution.repos {
        let dest = layout.env_tree.join(&repo.path);
        let requirements = repo.requirements.as_ref().map(|r| dest.join(r));
        requirement_files.extend(requirements.clone());
        steps.push(Step::Clone(CloneRepo {
            name: repo.name.clone(),
            url: repo.url.clone(),
            from: if options.offline {
                repos::file_url(&layout.git_mirror(&repo.name))
            } else {
                repo.url.clone()
            },
            rev: repo.rev.clone(),
            // Locked, each repo is checked out at the commit its rev meant then.
            locked_commit: locked
                .and_then(|l| l.commit_of(&repo.name))
                .map(str::to_string),
            dest,
            requirements,
            tree: layout.env_tree.clone(),
        }));
    }

    let python = layout.prefix.join(platform.python_in_prefix());
    if route == Route::Cross {
        steps.extend(cross_pip_steps(
            distribution,
            platform,
            layout,
            locked,
            options.offline,
            requirement_files,
        ));
    } else {
        let (written, request) = pip_request(
            distribution,
            platform,
            PipSetting {
                python: &python,
                policy_dir: &layout.pip_policy,
                locked_file: &layout.locked_requirements,
                locked,
                requirement_files,
                offline_wheelhouse: options.offline.then(|| layout.wheelhouse.clone()),
            },
        );
        steps.extend(written.into_iter().map(Step::WriteFile));
        steps.push(Step::PipInstall(PipInstall {
            request,
            report: layout.pip_report.clone(),
        }));
    }
    // On the cross route the checks run once, in the recording run of the bytecode stage:
    // under Wine each import of torch costs half a minute, and verify judges the zip anyway.
    if route == Route::Native {
        steps.push(Step::SmokeInstalled(SmokeInstalled {
            runner: runner.clone(),
            python,
            smoke: distribution.smoke_for(platform),
            bytecode_cache: layout.bytecode_cache.clone(),
        }));
    }

    steps.push(Step::LinkTree(LinkTree {
        from: layout.env_tree.clone(),
        to: layout.tree.clone(),
    }));
    let leave_out = distribution.leave_out_for(platform);
    if !leave_out.is_empty() {
        steps.push(Step::LeaveOut(LeaveOutPackages {
            platform,
            runner: runner.clone(),
            tree: layout.tree.clone(),
            entries: leave_out,
        }));
    }
    steps.push(Step::Prune(Prune {
        platform,
        tree: layout.tree.clone(),
        policy: Arc::clone(&policy.policy),
        policy_path: policy.path.clone(),
        page: artifacts.staged_prune_page.clone(),
        zip_name: artifacts.zip_name.clone(),
        variant: layout.variant.name.clone(),
        requires_at_most: distribution.requires_at_most(platform),
    }));
    steps.push(Step::Relocate(Relocate {
        platform,
        tree: layout.tree.clone(),
        installed_at: layout.env_tree.clone(),
    }));
    // Before the bytecode is compiled: every python of the zip imports the start-up rules.
    steps.push(Step::PackageTools(PackageTools {
        version: version.to_string(),
        platform,
        runner: runner.clone(),
        tree: layout.tree.clone(),
        protected: distribution.protected_for(platform),
        smoke: distribution.smoke_for(platform),
        indexes: distribution.carried_indexes(platform),
        folder: Folder::new(
            platform,
            distribution.variant_info(&layout.variant).as_ref(),
            &distribution.requires_at_most(platform),
        ),
    }));
    steps.push(Step::CompileImported(CompileImported {
        platform,
        runner: runner.clone(),
        tree: layout.tree.clone(),
        smoke: distribution.smoke_for(platform),
        mode: policy.policy.bytecode,
        listing: layout.dist.join("imported-modules.txt"),
        bytecode_cache: layout.bytecode_cache.clone(),
        installed_at: layout.env_tree.clone(),
    }));
    steps.push(Step::WriteManifest(WriteManifest {
        version: version.to_string(),
        platform,
        variant: distribution.variant_info(&layout.variant),
        tree: layout.tree.clone(),
        path: layout.tree.join("manifest.json"),
    }));
    if platform.is_macos() {
        steps.push(Step::CheckSignatures(CheckSignatures {
            platform,
            tree: layout.tree.clone(),
        }));
    }
    steps.push(Step::Archive(Archive {
        tree: layout.tree.clone(),
        zip: artifacts.staged_zip.clone(),
        compression: options.compression,
        volume_limit: options.split_size,
        published: artifacts.zip_name.clone(),
    }));
    steps.push(Step::Verify(Verify {
        platform,
        runner,
        zip: artifacts.staged_zip.clone(),
        unpack: layout.unpack.clone(),
        env: layout.env.clone(),
        smoke: distribution.smoke_for(platform),
    }));
    steps.push(Step::Publish(Publish {
        zip: (artifacts.staged_zip.clone(), artifacts.zip.clone()),
        prune_page: (
            artifacts.staged_prune_page.clone(),
            artifacts.prune_page.clone(),
        ),
    }));
    Plan {
        platform,
        route,
        version: version.to_string(),
        layout: layout.clone(),
        artifacts,
        steps,
    }
}

/// Builds the plan of `fetch`: everything `portable --offline` needs, into the cache. pip runs
/// in a scratch Miniforge base, so the wheels are those of the base's own Python.
pub fn fetch_plan(
    distribution: &Distribution,
    platform: Platform,
    layout: &Layout,
    options: Options,
) -> Vec<Step> {
    let options = Options {
        offline: false,
        ..options
    };
    let scratch = &layout.fetch_scratch;
    let prefix = layout.fetch_prefix();
    let mut steps = base_steps(
        distribution,
        platform,
        layout,
        &prefix,
        &options,
        true,
        Route::Native,
    );
    let mut requirement_files = Vec::new();
    for repo in &distribution.repos {
        let requirements = repo.requirements.as_ref().map(|r| {
            (
                r.clone(),
                scratch.join(format!("{}-requirements.txt", repo.name)),
            )
        });
        requirement_files.extend(requirements.iter().map(|(_, out)| out.clone()));
        steps.push(Step::Mirror(Mirror {
            name: repo.name.clone(),
            url: repo.url.clone(),
            rev: repo.rev.clone(),
            locked_commit: options
                .locked
                .and_then(|l| l.commit_of(&repo.name))
                .map(str::to_string),
            mirror: layout.git_mirror(&repo.name),
            requirements,
        }));
    }
    let (written, request) = pip_request(
        distribution,
        platform,
        PipSetting {
            python: &prefix.join(platform.python_in_prefix()),
            policy_dir: &scratch.join("pip-policy"),
            locked_file: &scratch.join("locked-requirements.txt"),
            locked: options.locked,
            requirement_files,
            offline_wheelhouse: None,
        },
    );
    steps.extend(written.into_iter().map(Step::WriteFile));
    steps.push(Step::Wheelhouse(Wheelhouse {
        request,
        wheelhouse: layout.wheelhouse.clone(),
    }));
    steps
}

/// Fetch the installer, install the base into `prefix`, then the conda packages.
fn base_steps(
    distribution: &Distribution,
    platform: Platform,
    layout: &Layout,
    prefix: &Path,
    options: &Options,
    scratch: bool,
    route: Route,
) -> Vec<Step> {
    let installer = &distribution.installer;
    let tag = match (options.locked, &options.tag, &installer.release) {
        (Some(lock), _, _) => Tag::Resolved(lock.miniforge.tag.clone()),
        (None, Tag::Resolved(tag), _) => Tag::Resolved(tag.clone()),
        (None, Tag::Latest, Release::Tag(tag)) => Tag::Resolved(tag.clone()),
        (None, Tag::Latest, Release::Latest) => Tag::Latest,
    };
    let fetch = DownloadInstaller {
        platform,
        base_url: installer.base_url.trim_end_matches('/').to_string(),
        release: installer.release.clone(),
        tag,
        cache: layout.cache.clone(),
        offline: options.offline,
        locked_sha256: options.locked.map(|l| l.miniforge.sha256.clone()),
    };
    let base = match route {
        Route::Native => Step::InstallBase(InstallBase {
            platform,
            installer: fetch.installer(),
            prefix: prefix.to_path_buf(),
            scratch,
        }),
        Route::Cross => Step::LinkBase(LinkBase {
            platform,
            installer: fetch.installer(),
            payload: layout.installer_payload.clone(),
            prefix: prefix.to_path_buf(),
        }),
    };
    let packages = distribution.conda_packages_for(platform);
    let conda = match route {
        _ if packages.is_empty() => None,
        Route::Native => Some(Step::CondaInstall(CondaInstall {
            platform,
            prefix: prefix.to_path_buf(),
            packages,
            channel: installer.channel.clone(),
            pkgs_dir: layout.conda_pkgs.clone(),
            offline: options.offline,
        })),
        Route::Cross => Some(Step::CondaSolve(CondaSolve {
            platform,
            prefix: prefix.to_path_buf(),
            packages,
            channel: installer.channel.clone(),
            // The cross route's host is Linux x86_64 (`builds_across`).
            solver: DownloadInstaller {
                platform: Platform::LinuxX86_64,
                locked_sha256: None,
                ..fetch.clone()
            },
            conda_dir: layout.env.join("solver"),
            payload: layout.installer_payload.clone(),
            pkgs_dir: layout.conda_pkgs.clone(),
            overrides: solve::virtual_package_overrides(
                platform,
                &distribution.requires_at_most(platform),
            ),
            offline: options.offline,
            answer: layout.env.join("conda-solve.json"),
        })),
    };
    let mut steps = vec![Step::DownloadInstaller(fetch), base];
    steps.extend(conda);
    steps
}

/// Where pip runs and what it is given, for a build or for `fetch`.
struct PipSetting<'a> {
    python: &'a Path,
    /// Where pip's wheel policy is written, when the platform limits its system.
    policy_dir: &'a Path,
    /// Where the lock's requirements are written, when building a lock.
    locked_file: &'a Path,
    locked: Option<&'a Lock>,
    requirement_files: Vec<PathBuf>,
    offline_wheelhouse: Option<PathBuf>,
}

/// What pip is asked for: the distribution's packages and the repos' requirements, or exactly
/// the lock's versions with their digests; and the files written before pip runs (the lock's
/// requirements, and pip's wheel policy where a glibc or macOS limit applies).
fn pip_request(
    distribution: &Distribution,
    platform: Platform,
    setting: PipSetting,
) -> (Vec<WriteFile>, PipRequest) {
    let mut written = Vec::new();
    let ceiling = distribution.requires_at_most(platform);
    let policy_file = match platform.os() {
        Os::Linux => ceiling
            .glibc
            .map(|glibc| ("_manylinux.py", pip::manylinux_policy(&glibc))),
        Os::Macos => ceiling
            .macos
            .map(|macos| ("sitecustomize.py", pip::macos_policy(&macos))),
        Os::Windows => None,
    };
    let policy = policy_file.map(|(name, contents)| {
        written.push(WriteFile {
            title: "Write pip's wheel policy".into(),
            path: setting.policy_dir.join(name),
            contents,
        });
        setting.policy_dir.to_path_buf()
    });
    let wanted = match setting.locked {
        Some(lock) => {
            written.push(WriteFile {
                title: "Write the locked requirements".into(),
                path: setting.locked_file.to_path_buf(),
                contents: lock.requirements(),
            });
            Wanted::Locked(setting.locked_file.to_path_buf())
        }
        None => Wanted::Resolve {
            packages: distribution.python_packages_for(platform),
            files: setting.requirement_files,
        },
    };
    let request = PipRequest {
        platform,
        python: setting.python.to_path_buf(),
        sources: distribution.pip.clone(),
        offline_wheelhouse: setting.offline_wheelhouse,
        pip_args: distribution.pip_args_for(platform),
        wanted,
        policy,
    };
    (written, request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::distribution::Variant;

    fn manifest(text: &str) -> Distribution {
        serde_yaml_ng::from_str(text).unwrap()
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
        let Step::PipInstall(pip) = pips[0] else {
            unreachable!()
        };
        assert_eq!(
            pip.command().to_string(),
            "PIP_CONFIG_FILE=/dev/null /o/stage/linux-x86_64/env/anymatix/python/bin/python3 -s -m pip install \
             --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
             --no-compile --report /o/stage/linux-x86_64/env/pip-report.json \
             --index-url http://127.0.0.1:1/simple --find-links /w --no-index \
             --extra-index-url https://download.pytorch.org/whl/cu128 pillow torch \
             -r /o/stage/linux-x86_64/env/anymatix/ComfyUI/requirements.txt"
        );
    }

    #[test]
    fn pinned_tag_gives_the_versioned_url() {
        let m = manifest("installer: {release: 26.3.2-3, base_url: 'http://127.0.0.1:9/r/'}\n");
        let plan = plan_for(&m, Platform::MacosX86_64, None);
        let Step::DownloadInstaller(fetch) = &plan.steps[0] else {
            panic!()
        };
        assert_eq!(
            fetch.download().map(|(url, _)| url).as_deref(),
            Some("http://127.0.0.1:9/r/download/26.3.2-3/Miniforge3-26.3.2-3-MacOSX-x86_64.sh")
        );
    }

    #[test]
    fn conda_packages_use_the_bases_own_mamba_natively_and_this_machines_conda_across() {
        let m = manifest("platforms: {macos-x86_64: {conda_packages: [python=3.12]}}\n");
        let native = Options {
            tag: Tag::Resolved("t".into()),
            route: Some(Route::Native),
            ..Options::default()
        };
        let layout = Layout::new(Path::new("/o"), &Variant::plain(Platform::MacosX86_64));
        let plan_native = plan(
            &m,
            Platform::MacosX86_64,
            "0.1.0",
            &layout,
            &policy(),
            native,
        );
        let conda: Vec<String> = plan_native
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::CondaInstall(c) => Some(c.command().to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(
            conda,
            ["MAMBA_ROOT_PREFIX=/o/stage/macos-x86_64/env/anymatix/python CONDA_PKGS_DIRS=/o/cache/conda-pkgs/macos-x86_64 \
              /o/stage/macos-x86_64/env/anymatix/python/bin/mamba install --yes --prefix /o/stage/macos-x86_64/env/anymatix/python \
              --override-channels --channel https://conda.anaconda.org/conda-forge python=3.12"]
        );
        // Across, the solve is this machine's: its installer of the same release, the target's
        // subdir and virtual packages.
        let cross = Options {
            tag: Tag::Resolved("t".into()),
            route: Some(Route::Cross),
            ..Options::default()
        };
        let plan_cross = plan(
            &m,
            Platform::MacosX86_64,
            "0.1.0",
            &layout,
            &policy(),
            cross,
        );
        let solve = plan_cross
            .steps
            .iter()
            .find_map(|s| match s {
                Step::CondaSolve(c) => Some(c),
                _ => None,
            })
            .expect("a solve step");
        assert_eq!(
            solve.solver.download().unwrap().1,
            Path::new("/o/cache/Miniforge3-t-Linux-x86_64.sh")
        );
        let command = solve.command("/c/_conda".into()).to_string();
        for part in [
            "CONDA_SUBDIR=osx-64",
            // No `requires_at_most` here: Miniforge's own minimum.
            "CONDA_OVERRIDE_OSX=11.0",
            "/c/_conda install --dry-run --json",
            "--channel https://conda.anaconda.org/conda-forge python=3.12",
        ] {
            assert!(command.contains(part), "{part}: {command}");
        }
        assert!(!plan_cross
            .steps
            .iter()
            .any(|s| matches!(s, Step::CondaInstall(_))));
        let plan = plan_for(&m, Platform::LinuxX86_64, Some("t"));
        assert!(!plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::CondaInstall(_) | Step::CondaSolve(_))));
    }

    #[test]
    fn locked_plans_pin_tag_commits_and_hashed_packages() {
        use crate::model::lock::{LockedInstaller, LockedPackage, LockedRepo};
        let m = manifest(
            "python_packages: [pillow]\n\
             repos: [{name: ComfyUI, url: 'file:///r', rev: main, path: ComfyUI, requirements: requirements.txt}]\n",
        );
        let lock = Lock {
            platform: Platform::LinuxX86_64,
            variant: None,
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
            left_out: vec![],
        };
        let layout = Layout::new(Path::new("/o"), &Variant::plain(Platform::LinuxX86_64));
        let plan = plan(
            &m,
            Platform::LinuxX86_64,
            "0.1.0",
            &layout,
            &policy(),
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
        let layout = Layout::new(Path::new("/o"), &Variant::plain(Platform::MacosX86_64));
        let offline = plan(
            &m,
            Platform::MacosX86_64,
            "0.1.0",
            &layout,
            &policy(),
            Options {
                tag: Tag::Resolved("t".into()),
                offline: true,
                // The native route's pip: a Mac builds its own zip so.
                route: Some(Route::Native),
                ..Options::default()
            },
        );
        // The zip's pip configuration names the indexes for its users; the build reaches none.
        let text: Vec<String> = offline
            .steps
            .iter()
            .filter(|s| !matches!(s, Step::PackageTools(_)))
            .map(|s| s.to_string())
            .collect();
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
                tag: Tag::Resolved("t".into()),
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
            "gather wheels: PIP_CONFIG_FILE=/dev/null /o/stage/macos-x86_64/fetch/python/bin/python3 -s -m pip wheel \
             --disable-pip-version-check \
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
        let Some(Step::WriteFile(WriteFile { contents, .. })) = plan
            .steps
            .iter()
            .find(|s| matches!(s, Step::WriteFile(w) if w.path.ends_with("_manylinux.py")))
        else {
            panic!("no wheel policy in the plan")
        };
        let pip = plan
            .steps
            .iter()
            .find_map(|s| match s {
                Step::PipInstall(p) => Some(p.command()),
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
        let layout = Layout::new(Path::new("/o"), &Variant::plain(platform));
        plan(
            m,
            platform,
            "0.1.0",
            &layout,
            &policy(),
            Options {
                tag: tag.map_or(Tag::Latest, |t| Tag::Resolved(t.into())),
                ..Options::default()
            },
        )
    }

    fn policy() -> PolicyFile {
        let text = include_str!("../../../anymatix/prune.yml");
        PolicyFile {
            policy: Arc::new(Policy::parse(text).unwrap()),
            path: PathBuf::from("/p.yml"),
        }
    }
}
