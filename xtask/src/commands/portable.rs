//! `cargo xtask portable`: the plan's two stages, each redone only when its inputs changed.
//! The environment (fetch → install → repos → pip → check) is installed once and never pruned;
//! the zip (link → prune → relocate → scripts → manifest → zip → verify → publish) is made from
//! a hard-linked copy of it. So a changed prune rule re-prunes without reinstalling, and a
//! rebuild with nothing changed only checks.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::context::{Context, LockFlags, Target};
use crate::archive::{self, Compression};
use crate::distribution;
use crate::fetch::{self, Tag};
use crate::fingerprint::{self, Inputs, Record, Verdict};
use crate::plan::{self, Options, Plan, PolicyFile, Stage, Step};
use crate::project_root;
use crate::prune::Policy;
use crate::runner::{self, Installed, Results};
use crate::units::{human_bytes, human_duration};
use crate::{digest, repos, verify};

/// Bumped when what the environment stage makes changes meaning, so older ones are not reused.
const ENV_FORMAT: &str = "4";

#[derive(Debug, clap::Args)]
pub struct PortableArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub lock: LockFlags,
    /// The prune policy.
    #[arg(long, value_name = "FILE", default_value_os_t = project_root().join("anymatix/prune.yml"))]
    pub policy: PathBuf,
    /// The version in the zip's name [default: version.yml's]. A leading `v` is dropped, so a
    /// tag such as v1.2.3 can be passed as it is.
    #[arg(long, env = "ANYMATIX_VERSION")]
    pub version: Option<String>,
    /// Where the zip is larger, write it as volumes of at most this many bytes instead
    /// (`.part1.zip`, `.part2.zip`, ... each a zip of its own with a `.sha256`; unpacked into one
    /// folder they make the whole tree): GitHub refuses release assets of 2 GiB or more. 0 never
    /// splits.
    #[arg(long, value_name = "BYTES", default_value_t = crate::archive::GITHUB_ASSET_LIMIT)]
    pub split_size: u64,
    /// `best` makes a smaller zip (libdeflate's level 12) for about 5x the compressing time;
    /// either is plain deflate that every unzip opens.
    #[arg(long, value_enum, default_value_t)]
    pub compression: Compression,
    /// Print every step (URLs, command lines, paths) and do nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Install the environment again even if its inputs look unchanged: resolves unpinned
    /// packages anew (a build otherwise reuses its environment while the manifest, the Miniforge
    /// tag and the repos' commits are the same), then rewrites the lock file.
    #[arg(long, conflicts_with = "locked")]
    pub update: bool,
    /// Use no network: only what `cargo xtask fetch` put in the cache (the installer, git
    /// mirrors, a wheelhouse, conda packages).
    #[arg(long)]
    pub offline: bool,
}

impl PortableArgs {
    pub fn run(self) -> Result<()> {
        if self.dry_run {
            let version = self.version()?;
            let policy = self.policy_file()?;
            for (i, ctx) in self.target.resolve_each(&self.lock)?.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                let options = Options {
                    locked: ctx.locked.as_ref(),
                    split_size: self.split_size,
                    compression: self.compression,
                    offline: self.offline,
                    ..Options::default()
                };
                let plan = plan::plan(
                    &ctx.distribution,
                    ctx.platform,
                    &version,
                    &ctx.layout,
                    &policy,
                    options,
                );
                print_plan(&plan);
            }
            return Ok(());
        }
        let ctx = self.target.resolve(&self.lock)?;
        let policy = self.policy_file()?;
        let version = self.version()?;
        let options = Options {
            tag: Tag::Latest,
            locked: ctx.locked.as_ref(),
            offline: self.offline,
            split_size: self.split_size,
            compression: self.compression,
        };
        let (platform, layout) = (ctx.platform, &ctx.layout);
        let plan_with = |options| {
            plan::plan(
                &ctx.distribution,
                platform,
                &version,
                layout,
                &policy,
                options,
            )
        };
        ctx.check_host()?;

        let started = std::time::Instant::now();
        let artifacts = layout.artifacts(&version);
        eprintln!(
            "Building {} for {} in {}{}",
            artifacts.zip_name,
            ctx.variant,
            layout.out.display(),
            if self.offline { " (offline)" } else { "" }
        );
        // The tag names the installer, so `latest` is resolved before planning.
        let installer = &ctx.distribution.installer;
        let tag = fetch::resolve_tag(
            &installer.release,
            &installer.base_url,
            ctx.locked.as_ref().map(|l| l.miniforge.tag.as_str()),
            self.offline,
            layout,
            &ctx.tools,
        )?;
        let plan = plan_with(Options {
            tag: Tag::Resolved(tag),
            ..options
        });

        if verify::restore_moved_aside(&layout.env)? {
            eprintln!(
                "Put back {}: an interrupted build had moved it aside to check the unpacked zip",
                layout.env.display()
            );
        }
        let env_inputs = env_inputs(&plan, &ctx, self.offline)
            .context("stage `Resolve the repos' revs` failed")?;
        let (installed, reinstalled) = env_stage(&plan, &ctx, &env_inputs, self.update)?;
        let dist_inputs = dist_inputs(&plan, &env_inputs)?;
        let rebuilt = dist_stage(&plan, &ctx, &dist_inputs, installed.clone(), reinstalled)?;

        if ctx.locked.is_none() {
            let left_out = ctx
                .distribution
                .leave_out_for(platform)
                .iter()
                .map(|l| distribution::normalise_package_name(&l.entry.name))
                .collect();
            installed
                .lock(&ctx.variant, left_out)?
                .write(&ctx.lock_path)?;
            eprintln!("Wrote {}", ctx.lock_path.display());
        }
        let zips = archive::zip_or_volumes(&artifacts.zip);
        let mut zip_size = 0;
        for zip in &zips {
            zip_size += fs_err::metadata(zip)?.len();
        }
        let what = match zips.as_slice() {
            [zip] => zip.display().to_string(),
            volumes => format!(
                "{} volumes, {} to {}",
                volumes.len(),
                volumes[0].display(),
                volumes[volumes.len() - 1].display()
            ),
        };
        let timings = ctx.tools.reporter.timings();
        print_timings(&timings);
        let total = started.elapsed();
        if rebuilt {
            let report = BuildReport {
                version: version.clone(),
                platform: platform.to_string(),
                variant: ctx.variant.name.clone(),
                environment: if reinstalled { "installed" } else { "reused" },
                seconds: seconds(total),
                zip_bytes: zip_size,
                volumes: zips.len(),
                steps: timings
                    .iter()
                    .map(|(step, took)| StepTime {
                        step: step.clone(),
                        seconds: seconds(*took),
                    })
                    .collect(),
            };
            crate::atomic::write_atomic(
                &artifacts.build_report,
                serde_json::to_string_pretty(&report)?.as_bytes(),
            )?;
        }
        eprintln!(
            "{} {what} ({}) in {}",
            if rebuilt { "Built" } else { "Up to date:" },
            human_bytes(zip_size),
            human_duration(total)
        );
        Ok(())
    }

    fn policy_file(&self) -> Result<PolicyFile> {
        Ok(PolicyFile {
            policy: Arc::new(Policy::load(&self.policy)?),
            path: self.policy.clone(),
        })
    }

    /// `--version` without a leading `v`, or version.yml's.
    fn version(&self) -> Result<String> {
        match self
            .version
            .as_deref()
            .map(|v| v.strip_prefix('v').unwrap_or(v))
        {
            Some(v) if !v.is_empty() => {
                distribution::check_version(v)?;
                Ok(v.to_string())
            }
            _ => distribution::load_version(&project_root().join("version.yml")),
        }
    }
}

/// What the environment is made from: each of its steps' inputs (the installer's URL, the conda
/// and pip packages, indexes and paths, the locked requirements), and the commit each repo's rev
/// names now (asked of the remote: cheap). Not the index's state: an unpinned package is
/// resolved again only with --update. Not whether it is built offline: an environment installed
/// online is reused offline, and the other way round.
fn env_inputs(plan: &Plan, ctx: &Context, offline: bool) -> Result<Inputs> {
    let reporter = &ctx.tools.reporter;
    let mut inputs = Inputs::default();
    inputs.set("environment format", ENV_FORMAT);
    inputs.set("platform", plan.platform.name());
    if let Some(variant) = &plan.layout.variant.name {
        inputs.set("variant", variant.clone());
    }
    let clones = plan
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Clone(_)))
        .count();
    let header = (clones > 0).then(|| reporter.stage("Resolve the repos' revs"));
    for step in plan.steps.iter().filter(|s| s.stage() == Stage::Env) {
        step.about().inputs(&mut inputs);
        let Step::Clone(clone) = step else {
            continue;
        };
        let name = &clone.name;
        let commit = match &clone.locked_commit {
            Some(locked) => locked.clone(),
            None => {
                let mirror = plan.layout.git_mirror(name);
                if offline && !mirror.is_dir() {
                    anyhow::bail!(
                        "--offline, but the cache has no mirror of {name} ({}): run `cargo xtask fetch` with the network first",
                        mirror.display()
                    );
                }
                let commit = repos::remote_commit(&ctx.tools.sh, &clone.from, &clone.rev)
                    .with_context(|| format!("cannot resolve {name}'s rev"))?;
                reporter.note(format!("{name}: {} is {commit}", clone.rev));
                commit
            }
        };
        inputs.set(format!("repo {name}: commit"), commit);
    }
    if let Some(header) = header {
        header.finish();
    }
    Ok(inputs)
}

/// Installs the environment, unless the one there was made from the same inputs. Returns what
/// it holds, and whether it was installed now.
fn env_stage(
    plan: &Plan,
    ctx: &Context,
    inputs: &Inputs,
    update: bool,
) -> Result<(Installed, bool)> {
    let layout = &plan.layout;
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
    runner::run_stage(&plan.steps, Stage::Env, &ctx.tools, &mut results)?;
    fingerprint::save(
        &layout.env_record,
        &Record::new(inputs.clone(), results.installed.clone()),
    )?;
    Ok((results.installed, true))
}

/// What the zip is made from: the environment, this tool (its prune, relocate, zip and verify
/// code and the helper script's template), and each of the zip's steps' inputs (the prune
/// policy, the system limits, the version, the smoke checks, the split size).
fn dist_inputs(plan: &Plan, env: &Inputs) -> Result<Inputs> {
    let mut inputs = Inputs::default();
    inputs.set("environment", env.fingerprint());
    let tool = std::env::current_exe().context("cannot find this program's own file")?;
    inputs.set("tool", digest::sha256_file(&tool)?);
    for step in plan.steps.iter().filter(|s| s.stage() == Stage::Dist) {
        step.about().inputs(&mut inputs);
    }
    Ok(inputs)
}

/// What the zip stage published, so a rebuild with nothing changed can check it is still there.
#[derive(Debug, Serialize, Deserialize)]
struct Published {
    /// The zip, or its volumes, with the digest each had when written.
    zips: Vec<(PathBuf, String)>,
    files: Vec<PathBuf>,
}

impl Published {
    /// Why it cannot be trusted any more, if so.
    fn damage(&self) -> Option<String> {
        if let Some(missing) = self.files.iter().find(|f| !f.is_file()) {
            return Some(format!("{} is gone", missing.display()));
        }
        self.zips
            .iter()
            .find_map(|(zip, sha256)| match digest::sha256_file(zip) {
                Ok(now) if &now == sha256 => None,
                _ => Some(format!("{} has changed since it was built", zip.display())),
            })
    }
}

/// Prunes, zips, verifies and publishes, unless the published zip was made from the same inputs
/// and is unchanged. Returns whether it made the zip.
fn dist_stage(
    plan: &Plan,
    ctx: &Context,
    inputs: &Inputs,
    installed: Installed,
    reinstalled: bool,
) -> Result<bool> {
    let (layout, zip) = (&plan.layout, &plan.artifacts.zip);
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
                zip.display()
            );
            return Ok(false);
        }
        Verdict::Redo(why) => eprintln!("==> The zip: making it ({why})"),
    }
    fingerprint::forget(&layout.dist_record)?;
    for folder in [&layout.dist, layout.unpack.parent().expect("in verify/")] {
        if folder.exists() {
            fs_err::remove_dir_all(folder)?;
        }
    }
    fs_err::create_dir_all(&layout.dist)?;
    let mut results = Results {
        installed,
        ..Results::default()
    };
    runner::run_stage(&plan.steps, Stage::Dist, &ctx.tools, &mut results)?;
    // Each zip was hashed as it was written; its .sha256 holds that digest.
    let mut zips = Vec::new();
    for zip in archive::zip_or_volumes(zip) {
        let sha256 = digest::read_sidecar(&zip)?;
        zips.push((zip, sha256));
    }
    let published = Published {
        zips,
        files: results.published,
    };
    fingerprint::save(&layout.dist_record, &Record::new(inputs.clone(), published))?;
    Ok(true)
}

/// How a zip was built, kept beside it (`anymatix-<version>-<platform>.build.json`):
/// manifest.json is written before the zip exists, so it cannot hold the zip's own figures.
#[derive(Debug, Serialize)]
struct BuildReport {
    version: String,
    platform: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    /// `installed` by this build, or `reused` from an earlier one (its steps are then not listed).
    environment: &'static str,
    seconds: f64,
    zip_bytes: u64,
    volumes: usize,
    steps: Vec<StepTime>,
}

#[derive(Debug, Serialize)]
struct StepTime {
    step: String,
    seconds: f64,
}

fn seconds(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// Where the time went: every step that ran, longest first, with its share of the whole.
fn print_timings(timings: &[(String, std::time::Duration)]) {
    let total: f64 = timings.iter().map(|(_, d)| d.as_secs_f64()).sum();
    if timings.is_empty() || total < 1.0 {
        return;
    }
    let mut sorted: Vec<&(String, std::time::Duration)> = timings.iter().collect();
    sorted.sort_by_key(|(_, took)| std::cmp::Reverse(*took));
    eprintln!("Where the time went:");
    for (step, took) in sorted.into_iter().filter(|(_, d)| d.as_secs_f64() >= 0.05) {
        eprintln!(
            "  {:>8}  {:>3.0}%  {step}",
            human_duration(*took),
            100.0 * took.as_secs_f64() / total
        );
    }
}

fn print_plan(plan: &Plan) {
    println!(
        "Plan for {} on {} (dry run: nothing is done)",
        plan.artifacts.zip_name, plan.layout.variant
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
    }
}
