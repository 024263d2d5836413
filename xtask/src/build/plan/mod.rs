//! Distribution + platform → the steps a build takes. Pure: no I/O, so `--dry-run` can print the
//! plan of any platform on any host, and tests can check Windows command lines on Linux. Each
//! step is a struct of the stage module that runs it and tells about itself through
//! [`Describe`]; [`Step`] is the one list of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::build::cross::Route;
use crate::build::cross::{cross_pip_steps, host_compiler, runner_for};
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
use crate::stages::pip::{
    self, requirements, PipInstall, PipRequest, Wanted, Wheelhouse, WriteFile,
};
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
        requirement_files.extend(requirements.clone().map(|r| (repo.name.clone(), r)));
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
    let (skip, requirement_files) = requirements::skipping(
        platform,
        distribution.skip_requirements_for(platform),
        requirement_files,
        &layout.env.join("requirements"),
    );
    steps.extend(skip.map(Step::SkipRequirements));

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
        host_compiler: host_compiler(route, platform),
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
        requirement_files.extend(
            requirements
                .iter()
                .map(|(_, out)| (repo.name.clone(), out.clone())),
        );
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
    let (skip, requirement_files) = requirements::skipping(
        platform,
        distribution.skip_requirements_for(platform),
        requirement_files,
        &scratch.join("skipped"),
    );
    steps.extend(skip.map(Step::SkipRequirements));
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
mod tests;
