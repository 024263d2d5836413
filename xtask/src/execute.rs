//! Runs a plan's steps, each by the stage module that does it. `portable` and `fetch` share it;
//! what a step found out goes into `Results`, for manifest.json and the lock.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use xshell::Shell;

use crate::distribution::{Distribution, Release};
use crate::http::Fetcher;
use crate::lock::{self, Lock};
use crate::plan::{self, Layout, Plan, Stage, Step};
use crate::platform::Platform;
use crate::progress::Reporter;
use crate::prune::{self, Policy, PruneReport};
use crate::relocate::{self, RelocationReport};
use crate::report::{self, BuildManifest, Contents, Miniforge};
use crate::repos::{self, Checkout};
use crate::{archive, atomic, install, pip, process, scripts, tree, verify};

/// What a build runs with.
pub struct Build<'a> {
    pub plan: &'a Plan,
    pub manifest: &'a Distribution,
    /// The prune policy; `fetch` prunes nothing.
    pub policy: Option<&'a Policy>,
    pub tag: &'a str,
    pub fetcher: &'a Fetcher,
    pub sh: &'a Shell,
    pub reporter: &'a Reporter,
    pub locked: Option<&'a Lock>,
}

/// What the environment stage found out. Kept in its record, so a reused environment still
/// gives manifest.json and the lock all of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Installed {
    pub miniforge: Option<Miniforge>,
    pub checkouts: Vec<Checkout>,
    pub python: Option<String>,
    pub packages: Vec<pip::Package>,
    /// What pip installed, with wheel digests: with the Miniforge and repo results, the lock.
    pub locked_packages: Vec<lock::LockedPackage>,
}

impl Installed {
    /// What this build resolved to, for the lock file.
    pub fn lock(&self, platform: Platform) -> Result<Lock> {
        let miniforge = self
            .miniforge
            .as_ref()
            .context("Miniforge was not fetched")?;
        Ok(Lock {
            platform: platform.to_string(),
            miniforge: lock::LockedInstaller {
                tag: miniforge.tag.clone(),
                sha256: miniforge.sha256.clone(),
            },
            repos: self
                .checkouts
                .iter()
                .map(|c| lock::LockedRepo {
                    name: c.name.clone(),
                    url: c.url.clone(),
                    commit: c.commit.clone(),
                })
                .collect(),
            python_packages: self.locked_packages.clone(),
        })
    }
}

#[derive(Default)]
pub struct Results {
    pub installed: Installed,
    pub prune: Option<PruneReport>,
    pub relocation: Option<RelocationReport>,
    /// Every file published, under its final name.
    pub published: Vec<PathBuf>,
}

/// The Miniforge tag to build: the lock's, the manifest's, or what `latest` means now. Offline,
/// `latest` is what it meant when last resolved online (kept in the cache).
pub fn resolve_tag(
    manifest: &Distribution,
    locked: Option<&Lock>,
    offline: bool,
    fetcher: &Fetcher,
    layout: &Layout,
    reporter: &Reporter,
) -> Result<String> {
    match (locked, &manifest.installer.release) {
        (Some(lock), _) => Ok(lock.miniforge.tag.clone()),
        (None, Release::Tag(tag)) => Ok(tag.clone()),
        (None, Release::Latest) if offline => {
            let text = fs_err::read_to_string(&layout.latest_tag).map_err(|_| {
                anyhow::anyhow!(
                    "--offline cannot ask which Miniforge release is the latest, and no online build or fetch \
                     has recorded it ({} is missing): run `cargo xtask fetch` with the network first",
                    layout.latest_tag.display()
                )
            })?;
            let tag = text.trim().to_string();
            reporter.note(format!("latest was {tag} when last resolved online"));
            Ok(tag)
        }
        (None, Release::Latest) => {
            let stage = reporter.stage("Resolve Miniforge's latest release");
            let tag = fetcher.resolve_latest_tag(&manifest.installer.base_url)?;
            reporter.note(format!("latest is {tag}"));
            fs_err::create_dir_all(&layout.cache)?;
            atomic::write_atomic(&layout.latest_tag, format!("{tag}\n").as_bytes())?;
            stage.finish();
            Ok(tag)
        }
    }
}

/// Runs the plan's steps of `stage`, each under a header naming it, each failure naming it.
pub fn run_stage(build: &Build, stage: Stage, results: &mut Results) -> Result<()> {
    for step in build.plan.steps.iter().filter(|s| s.stage() == stage) {
        run_step(build, step, results)?;
    }
    Ok(())
}

pub fn run_step(build: &Build, step: &Step, results: &mut Results) -> Result<()> {
    let title = step_title(step);
    let header = build.reporter.stage(&title);
    execute(build, step, results).with_context(|| format!("stage `{title}` failed"))?;
    header.finish();
    Ok(())
}

pub fn step_title(step: &Step) -> String {
    match step {
        Step::FetchInstaller { .. } => "Fetch Miniforge".into(),
        Step::InstallBase { .. } => "Install the Miniforge base".into(),
        Step::CondaInstall(_) => "Install conda packages".into(),
        Step::Clone { name, .. } => format!("Clone {name}"),
        Step::WriteFile { title, .. } => title.clone(),
        Step::PipInstall(_) => "Install Python packages".into(),
        Step::SmokeInstalled { .. } => "Check the installed environment".into(),
        Step::Prune { .. } => "Prune".into(),
        Step::Relocate { .. } => "Relocate".into(),
        Step::HelperScript { .. } => "Write the helper script".into(),
        Step::WriteManifest { .. } => "Write manifest.json".into(),
        Step::Archive { .. } => "Zip".into(),
        Step::Verify { .. } => "Verify the unpacked zip".into(),
        Step::Publish { .. } => "Publish".into(),
        Step::LinkTree { .. } => "Copy the environment to prune it".into(),
        Step::Mirror { name, .. } => format!("Mirror {name}"),
        Step::Wheelhouse(_) => "Gather wheels".into(),
    }
}

fn execute(build: &Build, step: &Step, results: &mut Results) -> Result<()> {
    let Build {
        plan,
        manifest,
        policy,
        tag,
        fetcher,
        sh,
        reporter,
        locked,
    } = *build;
    let platform = plan.platform;
    let layout = &plan.layout;
    match step {
        Step::FetchInstaller {
            url, dest, offline, ..
        } => {
            let (url, dest) = (
                url.as_ref().expect("tag resolved"),
                dest.as_ref().expect("tag resolved"),
            );
            let sha256 = match crate::digest::verified_digest(dest)? {
                Some(digest) => {
                    reporter.note(format!("cached: {}", dest.display()));
                    digest
                }
                None if *offline => bail!(
                    "--offline, but Miniforge {tag} is not in the cache ({} with its .sha256): \
                     run `cargo xtask fetch` with the network first",
                    dest.display()
                ),
                None => {
                    let digest = fetcher.fetch_sha256(&format!("{url}.sha256"))?;
                    fetcher.download_verified(url, &digest, dest, reporter)?;
                    crate::digest::write_sidecar(dest, &digest)?;
                    digest
                }
            };
            reporter.note(format!("sha256 {sha256}"));
            if let Some(lock) = locked {
                if !lock.miniforge.sha256.eq_ignore_ascii_case(&sha256) {
                    bail!(
                        "Miniforge {tag} now has sha256 {sha256}, but the lock says {}: the release was replaced. \
                         Check it, then build with --update to accept it",
                        lock.miniforge.sha256
                    );
                }
            }
            results.installed.miniforge = Some(Miniforge {
                release: manifest.installer.release.to_string(),
                tag: tag.to_string(),
                asset: platform.miniforge_asset(tag),
                sha256,
            });
        }
        Step::InstallBase { command, prefix } => {
            if prefix != &layout.prefix && prefix.exists() {
                // fetch's scratch base, left by an interrupted fetch.
                fs_err::remove_dir_all(prefix)?;
            }
            install::install_base(sh, reporter, platform, command, prefix)?;
        }
        Step::CondaInstall(command) => install::install_conda_packages(sh, reporter, command)?,
        Step::Clone {
            name,
            url,
            from,
            rev,
            commit: locked_commit,
            dest,
            requirements,
        } => {
            let commit = repos::clone(sh, reporter, from, rev, locked_commit.as_deref(), dest)?;
            reporter.note(format!("{name} at {commit}"));
            if let Some(req) = requirements {
                if !req.is_file() {
                    bail!(
                        "repo {name} at {rev} has no requirements file {}",
                        req.display()
                    );
                }
            }
            results.installed.checkouts.push(Checkout {
                name: name.clone(),
                url: url.clone(),
                rev: rev.clone(),
                commit,
                path: tree::rel_path(&layout.env_tree, dest),
            });
        }
        Step::WriteFile { path, contents, .. } => {
            if let Some(parent) = path.parent() {
                fs_err::create_dir_all(parent)?;
            }
            fs_err::write(path, contents)?
        }
        Step::PipInstall(command) => {
            process::run(sh, reporter, command)?;
            let report = fs_err::read_to_string(&layout.pip_report)?;
            let installed = &mut results.installed;
            installed.locked_packages = lock::packages_from_report(&report)?;
            let python = layout.prefix.join(platform.python_in_prefix());
            installed.python = Some(pip::python_version(sh, &python)?);
            installed.packages = pip::installed_packages(sh, &python)?;
            reporter.note(format!(
                "Python {}, {} packages",
                installed.python.as_deref().unwrap_or("?"),
                installed.packages.len()
            ));
        }
        Step::SmokeInstalled { python, smoke } => {
            verify::smoke_installed(sh, reporter, python, smoke)?;
        }
        Step::LinkTree { from, to } => {
            let copied = tree::link_copy(from, to)?;
            if copied > 0 {
                reporter.note(format!(
                    "{copied} files copied: hard links cannot be made here (another filesystem?)"
                ));
            }
        }
        Step::Prune {
            tree,
            report: html,
            requires_at_most,
            ..
        } => {
            let policy = policy.context("no prune policy was given")?;
            let report = prune::prune(tree, policy, platform, false)?;
            for line in report.summary() {
                reporter.note(line);
            }
            let name = plan::zip_name(&plan.version, platform);
            report::html::write(
                html,
                &report::html::page_data(&name, platform, &report, policy),
            )?;
            reporter.note(format!("size report: {}", html.display()));
            report.linkage.check_ceiling(
                requires_at_most,
                &format!("platforms.{platform}.requires_at_most"),
            )?;
            results.prune = Some(report);
        }
        Step::Relocate { tree, installed_at } => {
            let mut paths = vec![installed_at.to_string_lossy().into_owned()];
            if let Ok(canonical) = installed_at.canonicalize() {
                paths.push(canonical.to_string_lossy().into_owned());
            }
            let report = relocate::relocate(tree, &paths, !platform.is_windows())?;
            reporter.note(format!(
                "{} scripts now find the python beside them; {} other files still hold the build path",
                report.rewritten.len(),
                report.remaining.len()
            ));
            for file in &report.remaining {
                reporter.note(format!("  {} ({})", file.path, file.kind));
            }
            results.relocation = Some(report);
        }
        Step::HelperScript { path } => scripts::write_helper_script(platform, path)?,
        Step::WriteManifest { path } => {
            let (files, bytes) = tree::stats(&layout.tree)?;
            let built = BuildManifest {
                version: plan.version.clone(),
                platform: platform.to_string(),
                miniforge: results
                    .installed
                    .miniforge
                    .clone()
                    .context("Miniforge was not fetched")?,
                python: results
                    .installed
                    .python
                    .clone()
                    .context("pip did not run")?,
                packages: results.installed.packages.clone(),
                repos: results.installed.checkouts.clone(),
                contents: Contents { files, bytes },
                prune: results.prune.take().context("prune did not run")?,
                relocation: results.relocation.take().context("relocate did not run")?,
            };
            report::write(path, &built)?;
        }
        Step::Archive { tree, zip } => {
            let mut transfer: Option<crate::progress::Transfer> = None;
            let summary = archive::archive_with(
                tree,
                "anymatix",
                zip,
                archive::Settings::default(),
                &mut |done, total| {
                    transfer
                        .get_or_insert_with(|| {
                            reporter.transfer("zipped", "anymatix/", Some(total))
                        })
                        .advance_to(done);
                },
            )?;
            if let Some(t) = transfer {
                t.finish();
            }
            reporter.note(format!(
                "{} entries, {}",
                summary.entries,
                crate::units::human_bytes(summary.bytes)
            ));
        }
        Step::Verify {
            zip,
            unpack,
            env,
            smoke,
        } => {
            let root = verify::unpack(zip, unpack)?;
            let aside = verify::MovedAside::new(env)?;
            reporter.note(format!(
                "{} is moved aside while the unpacked copy runs",
                env.display()
            ));
            verify::smoke_unpacked(sh, reporter, platform, &root, smoke)?;
            aside.restore()?;
        }
        Step::Publish {
            zip,
            report,
            split_size,
        } => {
            results.published = publish(zip, report, *split_size, reporter)?;
        }
        Step::Mirror {
            name,
            url,
            rev,
            commit,
            mirror,
            requirements,
        } => {
            repos::mirror(sh, reporter, url, mirror)?;
            let commit = match commit {
                Some(locked) => repos::mirror_commit(sh, mirror, locked)
                    .with_context(|| format!("the locked commit of {name} is not in {url}"))?,
                None => repos::mirror_commit(sh, mirror, rev)?,
            };
            reporter.note(format!("{name}: {rev} is {commit}"));
            if let Some((path, out)) = requirements {
                let text = repos::file_at(sh, mirror, &commit, path)?;
                fs_err::write(out, text + "\n")?;
            }
        }
        Step::Wheelhouse(command) => {
            fs_err::create_dir_all(&layout.wheelhouse)?;
            process::run(sh, reporter, command)?;
            let wheels = fs_err::read_dir(&layout.wheelhouse)?
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".whl"))
                .count();
            reporter.note(format!(
                "{wheels} wheels in {}",
                layout.wheelhouse.display()
            ));
        }
    }
    Ok(())
}

/// Gives the verified zip its final name and `.sha256`, writes parts where it is larger than
/// `split_size`, and moves them and the report into the output folder.
fn publish(
    (staged, zip): &(PathBuf, PathBuf),
    (staged_report, report): &(PathBuf, PathBuf),
    split_size: u64,
    reporter: &Reporter,
) -> Result<Vec<PathBuf>> {
    // Named for what it is only now that it passed verify; its digest was taken as it was written.
    let sidecar = crate::digest::sidecar_path(staged);
    let sha256 = crate::digest::parse_sidecar(&fs_err::read_to_string(&sidecar)?)?;
    let verified = staged.with_file_name(zip.file_name().context("the zip has a name")?);
    fs_err::rename(staged, &verified)?;
    fs_err::remove_file(&sidecar)?;
    crate::digest::write_sidecar(&verified, &sha256)?;
    let parts = archive::split(&verified, split_size)?;
    if !parts.is_empty() {
        reporter.note(format!(
            "the zip is over {}: also written as {} parts",
            crate::units::human_bytes(split_size),
            parts.len()
        ));
    }
    let out = zip.parent().expect("the zip is in --out");
    let files: Vec<(PathBuf, PathBuf)> = parts
        .iter()
        .flat_map(|p| [p.clone(), crate::digest::sidecar_path(p)])
        .chain([crate::digest::sidecar_path(&verified), verified.clone()])
        .map(|from| {
            let to = out.join(from.file_name().expect("a file has a name"));
            (from, to)
        })
        .chain([(staged_report.clone(), report.clone())])
        .collect();
    let mut published = Vec::new();
    for (from, to) in files {
        fs_err::rename(&from, &to)?;
        published.push(to);
    }
    Ok(published)
}
