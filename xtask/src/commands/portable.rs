//! `cargo xtask portable`: its flags, the plan a dry run prints, and what a build says at its
//! end (where the time went, the zip). The build itself is `build::portable`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use super::context::{LockFlags, Target};
use crate::build::plan::{self, Options, Plan, PolicyFile, Route};
use crate::build::portable;
use crate::model::distribution;
use crate::project_root;
use crate::stages::archive::Compression;
use crate::stages::describe::Stage;
use crate::stages::prune::Policy;
use crate::util::units::{human_bytes, human_duration};

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
    #[arg(long, value_name = "BYTES", default_value_t = crate::stages::archive::GITHUB_ASSET_LIMIT)]
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
    /// How the environment is made [default: native on the platform's own machine, cross on
    /// Linux x86_64 for the others]. `cross` on the host's own platform builds it as for
    /// another (to compare the two); `native` runs Miniforge's installer and pip, so only on the
    /// platform itself.
    #[arg(long, value_enum)]
    pub route: Option<RouteChoice>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RouteChoice {
    Native,
    Cross,
}

impl From<RouteChoice> for Route {
    fn from(choice: RouteChoice) -> Route {
        match choice {
            RouteChoice::Native => Route::Native,
            RouteChoice::Cross => Route::Cross,
        }
    }
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
                    route: self.route.map(Route::from),
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
        let route = self
            .route
            .map_or(Route::for_target(ctx.platform), Route::from);
        ctx.check_host(route)?;
        let version = self.version()?;
        let artifacts = ctx.layout.artifacts(&version);
        eprintln!(
            "Building {} for {} in {}{}",
            artifacts.zip_name,
            ctx.variant,
            ctx.layout.out.display(),
            if self.offline { " (offline)" } else { "" }
        );
        let built = portable::build(&portable::Build {
            distribution: &ctx.distribution,
            variant: &ctx.variant,
            layout: &ctx.layout,
            version: &version,
            policy: &self.policy_file()?,
            locked: ctx.locked.as_ref(),
            lock_path: &ctx.lock_path,
            offline: self.offline,
            update: self.update,
            split_size: self.split_size,
            compression: self.compression,
            route,
            tools: &ctx.tools,
        })?;
        if built.lock_written {
            eprintln!("Wrote {}", ctx.lock_path.display());
        }
        print_timings(&built.timings);
        let what = match built.zips.as_slice() {
            [zip] => zip.display().to_string(),
            volumes => format!(
                "{} volumes, {} to {}",
                volumes.len(),
                volumes[0].display(),
                volumes[volumes.len() - 1].display()
            ),
        };
        eprintln!(
            "{} {what} ({}) in {}",
            if built.rebuilt {
                "Built"
            } else {
                "Up to date:"
            },
            human_bytes(built.zip_bytes),
            human_duration(built.took)
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
    println!("Route: {}", plan.route);
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
