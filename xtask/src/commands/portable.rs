//! `cargo xtask portable`: the plan's two stages, each redone only when its inputs changed.
//! The environment (fetch → install → repos → pip) is installed once and never pruned; the zip
//! (link → prune → relocate → scripts → manifest → zip → verify → publish) is made from a
//! hard-linked copy of it. So a changed prune rule re-prunes without reinstalling, and a rebuild
//! with nothing changed only checks.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use xshell::Shell;

use crate::distribution::{self, Distribution};
use crate::execute::{self, Build, Installed, Results};
use crate::fingerprint::{self, Inputs, Record, Verdict};
use crate::http::Fetcher;
use crate::lock::{self, Lock};
use crate::plan::{self, Layout, Options, Plan, Stage, Step};
use crate::platform::Platform;
use crate::progress::Reporter;
use crate::prune::Policy;
use crate::units::{human_bytes, human_duration};
use crate::{process, project_root, repos, verify};

/// Bumped when what the environment stage makes changes meaning, so older ones are not reused.
const ENV_FORMAT: &str = "2";

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
    #[arg(long, value_name = "BYTES", default_value_t = crate::archive::GITHUB_ASSET_LIMIT)]
    pub split_size: u64,
    /// Print every step (URLs, command lines, paths) and do nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Build exactly what the lock file says: its Miniforge tag and digest, its repo commits,
    /// its package versions with `pip --require-hashes`. Fails if the lock is missing or does not
    /// fit the manifest.
    #[arg(long, conflicts_with = "update")]
    pub locked: bool,
    /// Install the environment again even if its inputs look unchanged: resolves unpinned
    /// packages anew (a build otherwise reuses its environment while the manifest, the Miniforge
    /// tag and the repos' commits are the same), then rewrites the lock file.
    #[arg(long)]
    pub update: bool,
    /// Use no network: only what `cargo xtask fetch` put in the cache (the installer, git
    /// mirrors, a wheelhouse, conda packages).
    #[arg(long)]
    pub offline: bool,
    /// The lock file [default: locks/<platform>.lock.yml beside the manifest]
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// Show every command line as it runs.
    #[arg(long, short)]
    pub verbose: bool,
}

impl PortableArgs {
    pub fn run(self) -> Result<()> {
        let args = self;
        let manifest = Distribution::load(&args.manifest)?;
        let policy = Policy::load(&args.policy)?;
        let version = match args
            .version
            .as_deref()
            .map(|v| v.strip_prefix('v').unwrap_or(v))
        {
            Some(v) if !v.is_empty() => {
                distribution::check_version(v)?;
                v.to_string()
            }
            _ => distribution::load_version(&project_root().join("version.yml"))?,
        };
        let platform = target_platform(args.platform)?;
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
        let options = Options {
            tag: None,
            locked: locked.as_ref(),
            offline: args.offline,
            split_size: args.split_size,
        };

        if args.dry_run {
            let plan = plan::plan(
                &manifest,
                platform,
                &version,
                &layout,
                &args.policy,
                options,
            );
            print_plan(&plan, &policy);
            return Ok(());
        }
        check_host(platform, &manifest)?;

        let reporter = Reporter::new(args.verbose);
        let sh = Shell::new()?;
        let started = std::time::Instant::now();
        eprintln!(
            "Building {} for {platform} in {}{}",
            plan::zip_name(&version, platform),
            out.display(),
            if args.offline { " (offline)" } else { "" }
        );

        // The tag is needed to name the installer, so `latest` is resolved before planning.
        let fetcher = Fetcher::new()?;
        let tag = execute::resolve_tag(
            &manifest,
            locked.as_ref(),
            args.offline,
            &fetcher,
            &layout,
            &reporter,
        )?;
        let plan = plan::plan(
            &manifest,
            platform,
            &version,
            &layout,
            &args.policy,
            Options {
                tag: Some(&tag),
                ..options
            },
        );
        let build = Build {
            plan: &plan,
            manifest: &manifest,
            policy: Some(&policy),
            tag: &tag,
            fetcher: &fetcher,
            sh: &sh,
            reporter: &reporter,
            locked: locked.as_ref(),
        };

        if verify::restore_moved_aside(&layout.env)? {
            eprintln!(
                "Put back {}: an interrupted build had moved it aside to check the unpacked zip",
                layout.env.display()
            );
        }
        let env_inputs =
            env_inputs(&build, args.offline).context("stage `Resolve the repos' revs` failed")?;
        let (installed, reinstalled) = env_stage(&build, &env_inputs, args.update)?;
        let dist_inputs =
            dist_inputs(&plan, &manifest, &env_inputs, &args.policy, args.split_size)?;
        let rebuilt = dist_stage(&build, &dist_inputs, installed.clone(), reinstalled)?;

        if locked.is_none() {
            installed.lock(platform)?.write(&lock_path)?;
            eprintln!("Wrote {}", lock_path.display());
        }
        let zip_size = fs_err::metadata(&layout.zip)?.len();
        eprintln!(
            "{} {} ({}) in {}",
            if rebuilt { "Built" } else { "Up to date:" },
            layout.zip.display(),
            human_bytes(zip_size),
            human_duration(started.elapsed())
        );
        Ok(())
    }
}

/// `--platform`, or this host's.
pub(super) fn target_platform(platform: Option<Platform>) -> Result<Platform> {
    match platform.or_else(Platform::host) {
        Some(p) => Ok(p),
        None => bail!(
            "this host ({} {}) is none of the platforms we ship; pass --platform with --dry-run to see a plan",
            std::env::consts::OS,
            std::env::consts::ARCH
        ),
    }
}

/// A build runs on its own platform, with the tools it shells out to.
pub(super) fn check_host(platform: Platform, manifest: &Distribution) -> Result<()> {
    if Platform::host() != Some(platform) {
        bail!(
            "cannot build {platform} on this {} host: Miniforge's installer must run on its own platform. \
             Build it on a {platform} machine (CI has a runner for each), or pass --dry-run to see its plan",
            Platform::host().map_or("unknown", |p| p.name())
        );
    }
    if !platform.is_windows() {
        process::require_tool(
            "bash",
            "install bash; Miniforge's installer is a bash script",
        )?;
    }
    if !manifest.repos.is_empty() {
        process::require_tool(
            "git",
            "install git (https://git-scm.com) to clone the repos",
        )?;
    }
    Ok(())
}

/// What the environment is made from: every command line of its steps (which hold the manifest's
/// packages, indexes, the installer's tag and the paths), the commit each repo's rev names now
/// (asked of the remote: cheap), the locked requirements. Not the index's state: an unpinned
/// package is resolved again only with --update.
fn env_inputs(build: &Build, offline: bool) -> Result<Inputs> {
    let plan = build.plan;
    let mut inputs = Inputs::default();
    inputs.set("environment format", ENV_FORMAT);
    inputs.set("platform", plan.platform.name());
    let clones = plan
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Clone { .. }))
        .count();
    let header = (clones > 0).then(|| build.reporter.stage("Resolve the repos' revs"));
    // The smoke checks judge the environment; changing them does not change what is installed.
    let installs = |s: &&Step| s.stage() == Stage::Env && !matches!(s, Step::SmokeInstalled { .. });
    for step in plan.steps.iter().filter(installs) {
        let title = execute::step_title(step);
        inputs.set(&title, step.to_string());
        match step {
            Step::WriteFile { contents, .. } => {
                inputs.digest(format!("{title}: contents"), contents.as_bytes());
            }
            Step::Clone {
                name,
                from,
                rev,
                commit,
                ..
            } => {
                let commit = match commit {
                    Some(locked) => locked.clone(),
                    None => {
                        if offline && !plan.layout.git_mirror(name).is_dir() {
                            bail!(
                                "--offline, but the cache has no mirror of {name} ({}): run `cargo xtask fetch` with the network first",
                                plan.layout.git_mirror(name).display()
                            );
                        }
                        let commit = repos::remote_commit(build.sh, from, rev)
                            .with_context(|| format!("cannot resolve {name}'s rev"))?;
                        build.reporter.note(format!("{name}: {rev} is {commit}"));
                        commit
                    }
                };
                inputs.set(format!("{title}: commit"), commit);
            }
            _ => {}
        }
    }
    if let Some(header) = header {
        header.finish();
    }
    Ok(inputs)
}

/// Installs the environment, unless the one there was made from the same inputs. Returns what
/// it holds, and whether it was installed now.
fn env_stage(build: &Build, inputs: &Inputs, update: bool) -> Result<(Installed, bool)> {
    let layout = &build.plan.layout;
    let record: Option<Record<Installed>> = fingerprint::load(&layout.env_record);
    let verdict = match fingerprint::check(record.as_ref(), inputs) {
        _ if update => Verdict::Redo("--update".into()),
        Verdict::Reuse if !layout.prefix.is_dir() => {
            Verdict::Redo(format!("{} is missing", layout.prefix.display()))
        }
        verdict => verdict,
    };
    match (verdict, record) {
        (Verdict::Reuse, Some(record)) => {
            eprintln!(
                "==> The environment: unchanged, reusing {}",
                layout.env.display()
            );
            return Ok((record.outputs, false));
        }
        (Verdict::Redo(why), _) => eprintln!("==> The environment: installing ({why})"),
        (Verdict::Reuse, None) => unreachable!("reuse needs a record"),
    }
    // Nothing half-made by an earlier run is trusted: the record goes first, then the folder.
    fingerprint::forget(&layout.env_record)?;
    if layout.env.exists() {
        fs_err::remove_dir_all(&layout.env)?;
    }
    fs_err::create_dir_all(&layout.env_tree)?;
    let mut results = Results::default();
    execute::run_stage(build, Stage::Env, &mut results)?;
    fingerprint::save(
        &layout.env_record,
        &Record::new(inputs.clone(), results.installed.clone()),
    )?;
    Ok((results.installed, true))
}

/// What the zip is made from: the environment, the prune policy, this tool (its prune, relocate,
/// zip and verify code and the helper script's template), and the steps' paths and imports.
fn dist_inputs(
    plan: &Plan,
    manifest: &Distribution,
    env: &Inputs,
    policy: &Path,
    split_size: u64,
) -> Result<Inputs> {
    let mut inputs = Inputs::default();
    inputs.set("environment", env.fingerprint());
    inputs.file("prune policy", policy)?;
    inputs.set("smoke checks", serde_json::to_string(&manifest.smoke)?);
    let tool = std::env::current_exe().context("cannot find this program's own file")?;
    inputs.set("tool", crate::digest::sha256_file(&tool)?);
    inputs.set("split size", split_size.to_string());
    for step in plan.steps.iter().filter(|s| s.stage() == Stage::Dist) {
        inputs.set(execute::step_title(step), step.to_string());
    }
    Ok(inputs)
}

/// What the zip stage published, so a rebuild with nothing changed can check it is still there.
#[derive(Debug, Serialize, Deserialize)]
struct Published {
    zip: PathBuf,
    sha256: String,
    files: Vec<PathBuf>,
}

impl Published {
    /// Why it cannot be trusted any more, if so.
    fn damage(&self) -> Option<String> {
        if let Some(missing) = self.files.iter().find(|f| !f.is_file()) {
            return Some(format!("{} is gone", missing.display()));
        }
        match crate::digest::sha256_file(&self.zip) {
            Ok(sha256) if sha256 == self.sha256 => None,
            _ => Some(format!(
                "{} has changed since it was built",
                self.zip.display()
            )),
        }
    }
}

/// Prunes, zips, verifies and publishes, unless the published zip was made from the same inputs
/// and is unchanged. Returns whether it made the zip.
fn dist_stage(
    build: &Build,
    inputs: &Inputs,
    installed: Installed,
    reinstalled: bool,
) -> Result<bool> {
    let layout = &build.plan.layout;
    let record: Option<Record<Published>> = fingerprint::load(&layout.dist_record);
    let verdict = match fingerprint::check(record.as_ref(), inputs) {
        // Same inputs, but --update may have resolved other versions.
        Verdict::Reuse if reinstalled => {
            Verdict::Redo("the environment was installed again".into())
        }
        Verdict::Reuse => match record.as_ref().and_then(|r| r.outputs.damage()) {
            Some(why) => Verdict::Redo(why),
            None => Verdict::Reuse,
        },
        verdict => verdict,
    };
    match verdict {
        Verdict::Reuse => {
            eprintln!(
                "==> The zip: unchanged inputs, and {} is as it was built",
                layout.zip.display()
            );
            return Ok(false);
        }
        Verdict::Redo(why) => eprintln!("==> The zip: making it ({why})"),
    }
    fingerprint::forget(&layout.dist_record)?;
    for folder in [layout.dist(), layout.unpack.parent().expect("in verify/")] {
        if folder.exists() {
            fs_err::remove_dir_all(folder)?;
        }
    }
    fs_err::create_dir_all(layout.dist())?;
    let mut results = Results {
        installed,
        ..Results::default()
    };
    execute::run_stage(build, Stage::Dist, &mut results)?;
    // The zip was hashed as it was written; its .sha256 holds that digest.
    let sidecar = fs_err::read_to_string(crate::digest::sidecar_path(&layout.zip))?;
    let published = Published {
        sha256: crate::digest::parse_sidecar(&sidecar)?,
        zip: layout.zip.clone(),
        files: results.published,
    };
    fingerprint::save(&layout.dist_record, &Record::new(inputs.clone(), published))?;
    Ok(true)
}

/// `--locked` needs a lock made for this platform and these repos.
fn check_lock_fits(
    lock: &Lock,
    manifest: &Distribution,
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
    let mut stage = None;
    for (i, step) in plan.steps.iter().enumerate() {
        if stage != Some(step.stage()) {
            stage = Some(step.stage());
            println!(
                "{}",
                match step.stage() {
                    Stage::Env => "The environment (reused while these steps and the repos' commits are unchanged):",
                    Stage::Dist => "The zip (remade when the environment, the prune policy or this tool changed):",
                }
            );
        }
        println!("{:>2}. {step}", i + 1);
        if let Step::Prune { .. } = step {
            for rule in policy.rules.iter().filter(|r| r.applies_to(plan.platform)) {
                println!("      rule {}: {}", rule.name, rule.patterns.join(", "));
                println!("        ({})", rule.reason);
            }
            println!("      keep: {}", policy.keep_patterns.join(", "));
            let optional: Vec<&str> = policy
                .optional
                .iter()
                .filter(|o| o.applies_to(plan.platform))
                .map(|o| o.name.as_str())
                .collect();
            if !optional.is_empty() {
                println!(
                    "      missing libraries expected (optional_libraries): {}",
                    optional.join(", ")
                );
            }
            if policy.strict_linkage {
                println!("      strict_linkage: any missing library fails");
            }
        }
    }
}
