//! `cargo xtask fetch`: fills the cache with everything a build downloads, so that
//! `cargo xtask portable --offline` needs no network: the Miniforge installer, conda's packages,
//! a bare mirror of each repo, and a wheelhouse of every wheel pip would install.

use anyhow::Result;

use super::context::{LockFlags, Target};
use crate::build::fetch;
use crate::build::plan::{self, Options};
use crate::util::units::{human_bytes, human_duration};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "pip runs in a Miniforge base of the platform, so like a build, fetch runs on its own
platform. --out is the build folder whose cache/ is filled, as given to `portable`; with
--locked, fetch gathers exactly what the lock says (for `portable --offline --locked`).

Examples:
  cargo xtask fetch && cargo xtask portable --offline
  cargo xtask fetch --locked && cargo xtask portable --offline --locked"
)]
pub struct FetchArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub lock: LockFlags,
    /// Print every step and do nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl FetchArgs {
    pub fn run(self) -> Result<()> {
        if self.dry_run {
            for ctx in self.target.resolve_each(&self.lock)? {
                let options = Options {
                    locked: ctx.locked.as_ref(),
                    ..Options::default()
                };
                println!(
                    "Fetch for {} into {} (dry run: nothing is done)",
                    ctx.variant,
                    ctx.layout.cache.display()
                );
                let steps = plan::fetch_plan(&ctx.distribution, ctx.platform, &ctx.layout, options);
                for (i, step) in steps.iter().enumerate() {
                    println!("{:>2}. {step}", i + 1);
                }
            }
            return Ok(());
        }
        let ctx = self.target.resolve(&self.lock)?;
        let layout = &ctx.layout;
        let route = plan::Route::for_target(ctx.platform);
        ctx.check_host(route)?;
        if route == plan::Route::Cross {
            anyhow::bail!(
                "fetch for {} on this host (the cross route) is not built yet: a cross build keeps the \
                 installer and every wheel it downloads in {}, so build once online; `--offline` then \
                 needs the repos' mirrors, which only a native fetch makes so far",
                ctx.platform,
                layout.cache.display()
            );
        }

        eprintln!(
            "Fetching for {} into {}",
            ctx.variant,
            layout.cache.display()
        );
        let started = std::time::Instant::now();
        fetch::fetch(
            &ctx.distribution,
            ctx.platform,
            layout,
            ctx.locked.as_ref(),
            &ctx.tools,
        )?;
        let (_, cached) = crate::util::tree::stats(&layout.cache)?;
        eprintln!(
            "Fetched into {} ({}) in {}: `cargo xtask portable --offline{}` can now build without a network",
            layout.cache.display(),
            human_bytes(cached),
            human_duration(started.elapsed()),
            if self.lock.locked { " --locked" } else { "" }
        );
        Ok(())
    }
}
