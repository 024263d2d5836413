//! `cargo xtask portable`: fetch → install → repos → pip → prune → scripts → manifest → zip →
//! verify → publish, each step from the plan, each failure naming its stage.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::fetch::{self, Fetcher};
use crate::lock::{self, Lock};
use crate::manifest::{self, Manifest, Release};
use crate::plan::{self, Layout, Plan, Step};
use crate::platform::Platform;
use crate::progress::Reporter;
use crate::prune::{self, Policy, PruneReport};
use crate::relocate::{self, RelocationReport};
use crate::report::{self, BuildManifest, Contents, Miniforge};
use crate::repos::{self, Checkout};
use crate::{archive, exec, install, pip, project_root, scripts, tree, verify};

#[derive(Debug, clap::Args)]
pub struct PortableArgs {
    /// The platform to build for: linux-x86_64, linux-aarch64, macos-arm64, macos-x86_64 or
    /// windows-x86_64. Defaults to this host's. A build runs only on its own platform (Miniforge's
    /// installer must), but --dry-run shows the plan of any platform anywhere.
    #[arg(long)]
    pub platform: Option<Platform>,
    /// The distribution's definition.
    #[arg(long, value_name = "FILE", default_value_os_t = project_root().join("anymatix/distribution.yml"))]
    pub manifest: PathBuf,
    /// The prune policy.
    #[arg(long, value_name = "FILE", default_value_os_t = project_root().join("anymatix/prune.yml"))]
    pub policy: PathBuf,
    /// Where the zip, the download cache (cache/) and the build stages (stage/) go.
    #[arg(long, value_name = "DIR", default_value_os_t = project_root().join("target/portable"))]
    pub out: PathBuf,
    /// The version in the zip's name [default: version.yml's]. A leading `v` is dropped, so a
    /// tag such as v1.2.3 can be passed as it is.
    #[arg(long, env = "ANYMATIX_VERSION")]
    pub version: Option<String>,
    /// Where the zip is larger, also write parts of at most this many bytes (`.zip.001`, ...,
    /// each with a `.sha256`): GitHub refuses release assets of 2 GiB or more.
    #[arg(long, value_name = "BYTES", default_value_t = archive::GITHUB_ASSET_LIMIT)]
    pub split_size: u64,
    /// Print every step (URLs, command lines, paths) and do nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Build exactly what the lock file says: its Miniforge tag and digest, its repo commits,
    /// its package versions with `pip --require-hashes`. Fails if the lock is missing or does not
    /// fit the manifest.
    #[arg(long, conflicts_with = "update")]
    pub locked: bool,
    /// Follow the manifest (latest, branches, unpinned packages) and rewrite the lock file; this
    /// is also what a build without --locked does.
    #[arg(long)]
    pub update: bool,
    /// The lock file [default: locks/<platform>.lock.yml beside the manifest]
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// Show every command line as it runs.
    #[arg(long, short)]
    pub verbose: bool,
}

/// What the steps found out, for manifest.json.
#[derive(Default)]
struct Results {
    miniforge: Option<Miniforge>,
    checkouts: Vec<Checkout>,
    python: Option<String>,
    packages: Vec<pip::Package>,
    prune: Option<PruneReport>,
    relocation: Option<RelocationReport>,
    /// What pip installed, with wheel digests: with the Miniforge and repo results, the lock.
    locked_packages: Vec<lock::LockedPackage>,
}

impl Results {
    /// What this build resolved to, for the lock file.
    fn lock(&self, platform: Platform) -> Result<Lock> {
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

pub fn run(args: PortableArgs) -> Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    let policy = Policy::load(&args.policy)?;
    let version = match args
        .version
        .as_deref()
        .map(|v| v.strip_prefix('v').unwrap_or(v))
    {
        Some(v) if !v.is_empty() => {
            manifest::check_version(v)?;
            v.to_string()
        }
        _ => manifest::load_version(&project_root().join("version.yml"))?,
    };
    let platform = match args.platform.or_else(Platform::host) {
        Some(p) => p,
        None => bail!(
            "this host ({} {}) is none of the platforms we ship; pass --platform with --dry-run to see a plan",
            std::env::consts::OS,
            std::env::consts::ARCH
        ),
    };
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("bad --out {}", args.out.display()))?;
    let layout = Layout::new(&out, platform, &version);
    let lock_path = args
        .lock
        .clone()
        .unwrap_or_else(|| lock::default_path(&args.manifest, platform));
    let locked = if args.locked {
        let lock = Lock::load(&lock_path)?;
        check_lock_fits(&lock, &manifest, platform, &lock_path)?;
        Some(lock)
    } else {
        None
    };

    if args.dry_run {
        let plan = plan::plan(
            &manifest,
            platform,
            &version,
            &layout,
            None,
            &args.policy,
            locked.as_ref(),
        );
        print_plan(&plan, &policy);
        return Ok(());
    }
    if Platform::host() != Some(platform) {
        bail!(
            "cannot build {platform} on this {} host: Miniforge's installer must run on its own platform. \
             Build it on a {platform} machine (CI has a runner for each), or pass --dry-run to see its plan",
            Platform::host().map_or("unknown", |p| p.name())
        );
    }
    if !platform.is_windows() {
        exec::require_tool(
            "bash",
            "install bash; Miniforge's installer is a bash script",
        )?;
    }
    if !manifest.repos.is_empty() {
        exec::require_tool(
            "git",
            "install git (https://git-scm.com) to clone the repos",
        )?;
    }

    let reporter = Reporter::new(args.verbose);
    let sh = Shell::new()?;
    let started = std::time::Instant::now();
    eprintln!(
        "Building {} for {platform} in {}",
        plan::zip_name(&version, platform),
        out.display()
    );

    // The tag is needed to name the installer, so `latest` is resolved before planning.
    let fetcher = Fetcher::new()?;
    let tag = match (&locked, &manifest.installer.release) {
        (Some(lock), _) => lock.miniforge.tag.clone(),
        (None, Release::Tag(tag)) => tag.clone(),
        (None, Release::Latest) => {
            let stage = reporter.stage("Resolve Miniforge's latest release");
            let tag = fetcher.resolve_latest_tag(&manifest.installer.base_url)?;
            reporter.note(format!("latest is {tag}"));
            stage.finish();
            tag
        }
    };
    let plan = plan::plan(
        &manifest,
        platform,
        &version,
        &layout,
        Some(&tag),
        &args.policy,
        locked.as_ref(),
    );

    // Every build starts from an empty stage: nothing half-made by an earlier run is trusted.
    if layout.stage().exists() {
        fs_err::remove_dir_all(layout.stage())?;
    }
    fs_err::create_dir_all(&layout.tree)?;

    let mut results = Results::default();
    for step in &plan.steps {
        let title = step_title(step);
        let stage = reporter.stage(&title);
        execute(
            step,
            &plan,
            &manifest,
            &policy,
            &tag,
            &fetcher,
            &sh,
            &reporter,
            &mut results,
            args.split_size,
            locked.as_ref(),
        )
        .with_context(|| format!("stage `{title}` failed"))?;
        stage.finish();
    }
    if locked.is_none() {
        results.lock(platform)?.write(&lock_path)?;
        eprintln!("Wrote {}", lock_path.display());
    }
    let zip_size = fs_err::metadata(&layout.zip)?.len();
    eprintln!(
        "Built {} ({}) in {}",
        layout.zip.display(),
        crate::progress::human_bytes(zip_size),
        crate::progress::human_duration(started.elapsed())
    );
    Ok(())
}

fn step_title(step: &Step) -> String {
    match step {
        Step::FetchInstaller { .. } => "Fetch Miniforge".into(),
        Step::InstallBase(_) => "Install the Miniforge base".into(),
        Step::CondaInstall(_) => "Install conda packages".into(),
        Step::Clone { name, .. } => format!("Clone {name}"),
        Step::WriteFile { .. } => "Write the locked requirements".into(),
        Step::PipInstall(_) => "Install Python packages".into(),
        Step::Prune { .. } => "Prune".into(),
        Step::Relocate { .. } => "Relocate".into(),
        Step::HelperScript { .. } => "Write the helper script".into(),
        Step::WriteManifest { .. } => "Write manifest.json".into(),
        Step::Archive { .. } => "Zip".into(),
        Step::Verify { .. } => "Verify the unpacked zip".into(),
        Step::Publish { .. } => "Publish".into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn execute(
    step: &Step,
    plan: &Plan,
    manifest: &Manifest,
    policy: &Policy,
    tag: &str,
    fetcher: &Fetcher,
    sh: &Shell,
    reporter: &Reporter,
    results: &mut Results,
    split_size: u64,
    locked: Option<&Lock>,
) -> Result<()> {
    let platform = plan.platform;
    let layout = &plan.layout;
    match step {
        Step::FetchInstaller { url, dest, .. } => {
            let (url, dest) = (
                url.as_ref().expect("tag resolved"),
                dest.as_ref().expect("tag resolved"),
            );
            let sha256 = match fetch::cached_digest(dest)? {
                Some(digest) => {
                    reporter.note(format!("cached: {}", dest.display()));
                    digest
                }
                None => {
                    let digest = fetcher.fetch_sha256(&format!("{url}.sha256"))?;
                    fetcher.download_verified(url, &digest, dest, reporter)?;
                    fetch::write_sidecar(dest, &digest)?;
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
            results.miniforge = Some(Miniforge {
                release: manifest.installer.release.to_string(),
                tag: tag.to_string(),
                asset: platform.miniforge_asset(tag),
                sha256,
            });
        }
        Step::InstallBase(command) => {
            install::install_base(sh, reporter, platform, command, &layout.prefix)?;
        }
        Step::CondaInstall(command) => install::install_conda_packages(sh, reporter, command)?,
        Step::Clone {
            name,
            url,
            rev,
            commit: locked_commit,
            dest,
            requirements,
        } => {
            let commit = repos::clone(sh, reporter, url, rev, locked_commit.as_deref(), dest)?;
            reporter.note(format!("{name} at {commit}"));
            if let Some(req) = requirements {
                if !req.is_file() {
                    bail!(
                        "repo {name} at {rev} has no requirements file {}",
                        req.display()
                    );
                }
            }
            results.checkouts.push(Checkout {
                name: name.clone(),
                url: url.clone(),
                rev: rev.clone(),
                commit,
                path: tree::rel_path(&layout.tree, dest),
            });
        }
        Step::WriteFile { path, contents } => fs_err::write(path, contents)?,
        Step::PipInstall(command) => {
            exec::run(sh, reporter, command)?;
            let report = fs_err::read_to_string(&layout.pip_report)?;
            results.locked_packages = lock::packages_from_report(&report)?;
            let python = layout.prefix.join(platform.python_in_prefix());
            results.python = Some(pip::python_version(sh, &python)?);
            results.packages = pip::installed_packages(sh, &python)?;
            reporter.note(format!(
                "Python {}, {} packages",
                results.python.as_deref().unwrap_or("?"),
                results.packages.len()
            ));
        }
        Step::Prune {
            tree, report: html, ..
        } => {
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
            results.prune = Some(report);
        }
        Step::Relocate { tree } => {
            let mut paths = vec![tree.to_string_lossy().into_owned()];
            if let Ok(canonical) = tree.canonicalize() {
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
                    .miniforge
                    .clone()
                    .context("Miniforge was not fetched")?,
                python: results.python.clone().context("pip did not run")?,
                packages: std::mem::take(&mut results.packages),
                repos: results.checkouts.clone(),
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
                crate::progress::human_bytes(summary.bytes)
            ));
        }
        Step::Verify {
            zip,
            unpack,
            imports,
        } => {
            let root = verify::unpack(zip, unpack)?;
            verify::smoke(sh, reporter, platform, &root, imports)?;
        }
        Step::Publish { files } => publish(files, layout, split_size, reporter)?,
    }
    Ok(())
}

/// Moves the verified zip, its `.sha256` and the report to their final names; where the zip is
/// over `split_size`, its parts too.
fn publish(
    files: &[(PathBuf, PathBuf)],
    layout: &Layout,
    split_size: u64,
    reporter: &Reporter,
) -> Result<()> {
    let parts = archive::split(&layout.staged_zip, split_size)?;
    if !parts.is_empty() {
        reporter.note(format!(
            "the zip is over {}: also written as {} parts",
            crate::progress::human_bytes(split_size),
            parts.len()
        ));
    }
    let out = layout.zip.parent().expect("the zip is in --out");
    for part in parts
        .iter()
        .flat_map(|p| [p.clone(), fetch::sidecar_path(p)])
    {
        fs_err::rename(
            &part,
            out.join(part.file_name().expect("a part has a name")),
        )?;
    }
    for (from, to) in files {
        fs_err::rename(from, to)?;
    }
    Ok(())
}

/// `--locked` needs a lock made for this platform and these repos.
fn check_lock_fits(
    lock: &Lock,
    manifest: &Manifest,
    platform: Platform,
    path: &Path,
) -> Result<()> {
    if lock.platform != platform.name() {
        bail!(
            "{} is the lock of {}, not {platform}",
            path.display(),
            lock.platform
        );
    }
    let mut wanted: Vec<&str> = manifest.repos.iter().map(|r| r.name.as_str()).collect();
    let mut locked: Vec<&str> = lock.repos.iter().map(|r| r.name.as_str()).collect();
    wanted.sort();
    locked.sort();
    if wanted != locked {
        bail!(
            "{} locks the repos {locked:?} but the manifest has {wanted:?}: build with --update to refresh the lock",
            path.display()
        );
    }
    Ok(())
}

fn print_plan(plan: &Plan, policy: &Policy) {
    println!(
        "Plan for {} on {} (dry run: nothing is done)",
        plan::zip_name(&plan.version, plan.platform),
        plan.platform
    );
    for (i, step) in plan.steps.iter().enumerate() {
        println!("{:>2}. {step}", i + 1);
        if let Step::Prune { .. } = step {
            for rule in policy.rules.iter().filter(|r| r.applies_to(plan.platform)) {
                println!("      rule {}: {}", rule.name, rule.patterns.join(", "));
                println!("        ({})", rule.reason);
            }
            println!("      keep: {}", policy.keep_patterns.join(", "));
        }
    }
}
