//! `cargo xtask fetch`: fills the cache with everything a build downloads, so that
//! `cargo xtask portable --offline` needs no network: the Miniforge installer, conda's packages,
//! a bare mirror of each repo, and a wheelhouse of every wheel pip would install.

use std::path::PathBuf;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::distribution::Distribution;
use crate::execute::{self, Build, Results};
use crate::http::Fetcher;
use crate::lock::{self, Lock};
use crate::plan::{self, Layout, Options, Plan};
use crate::progress::Reporter;
use crate::project_root;
use crate::units::{human_bytes, human_duration};

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The platform to fetch for [default: this host's]. pip runs in a Miniforge base of that
    /// platform, so like a build it runs on its own platform.
    #[arg(long)]
    pub platform: Option<crate::platform::Platform>,
    /// The distribution's definition.
    #[arg(long, value_name = "FILE", default_value_os_t = project_root().join("anymatix/distribution.yml"))]
    pub manifest: PathBuf,
    /// The build folder whose cache/ is filled, as given to `portable --out`.
    #[arg(long, value_name = "DIR", default_value_os_t = project_root().join("target/portable"))]
    pub out: PathBuf,
    /// Fetch exactly what the lock file says (for `portable --offline --locked`).
    #[arg(long)]
    pub locked: bool,
    /// The lock file [default: locks/<platform>.lock.yml beside the manifest]
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// Print every step and do nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Show every command line as it runs.
    #[arg(long, short)]
    pub verbose: bool,
}

impl FetchArgs {
    pub fn run(self) -> Result<()> {
        let args = self;
        let manifest = Distribution::load(&args.manifest)?;
        let platform = super::portable::target_platform(args.platform)?;
        let out = std::path::absolute(&args.out)
            .with_context(|| format!("bad --out {}", args.out.display()))?;
        // The version only names zips, which fetch does not make.
        let layout = Layout::new(&out, platform, "0");
        let locked = if args.locked {
            let path = args
                .lock
                .clone()
                .unwrap_or_else(|| lock::default_path(&args.manifest, platform));
            Some(Lock::load(&path)?)
        } else {
            None
        };
        let options = Options {
            tag: None,
            locked: locked.as_ref(),
            offline: false,
            split_size: 0,
        };
        if args.dry_run {
            println!(
                "Fetch for {platform} into {} (dry run: nothing is done)",
                layout.cache.display()
            );
            let steps = plan::fetch_plan(&manifest, platform, &layout, options);
            for (i, step) in steps.iter().enumerate() {
                println!("{:>2}. {step}", i + 1);
            }
            return Ok(());
        }
        super::portable::check_host(platform, &manifest)?;

        let reporter = Reporter::new(args.verbose);
        let sh = Shell::new()?;
        let started = std::time::Instant::now();
        eprintln!("Fetching for {platform} into {}", layout.cache.display());
        let fetcher = Fetcher::new()?;
        let tag = execute::resolve_tag(
            &manifest,
            locked.as_ref(),
            false,
            &fetcher,
            &layout,
            &reporter,
        )?;
        let steps = plan::fetch_plan(
            &manifest,
            platform,
            &layout,
            Options {
                tag: Some(&tag),
                ..options
            },
        );
        let plan = Plan {
            platform,
            version: "0".into(),
            layout: layout.clone(),
            steps,
        };
        let build = Build {
            plan: &plan,
            manifest: &manifest,
            policy: None,
            tag: &tag,
            fetcher: &fetcher,
            sh: &sh,
            reporter: &reporter,
            locked: locked.as_ref(),
        };
        let scratch = layout.fetch_prefix.parent().expect("in a folder");
        if scratch.exists() {
            fs_err::remove_dir_all(scratch)?;
        }
        fs_err::create_dir_all(scratch)?;
        let mut results = Results::default();
        for step in &plan.steps {
            execute::run_step(&build, step, &mut results)?;
        }
        // The scratch base only ran pip; the next fetch installs a fresh one.
        fs_err::remove_dir_all(scratch)?;
        eprintln!(
            "Fetched into {} ({}) in {}: `cargo xtask portable --offline{}` can now build without a network",
            layout.cache.display(),
            human_bytes(super::clean::size(&layout.cache)),
            human_duration(started.elapsed()),
            if args.locked { " --locked" } else { "" }
        );
        Ok(())
    }
}
