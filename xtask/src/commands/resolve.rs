//! `cargo xtask resolve`: shows that each platform's package set resolves, from this one machine
//! and without building: the manifest's packages and the repos' requirements, with the same
//! indexes, resolved by `uv pip compile` for each platform's wheel tags, markers, Python and
//! system limits. Each platform's variants are resolved as their builds would install them
//! (`--variant`). The pinned sets are written to `<out>/resolved/<platform>[-<variant>].txt`.

use anyhow::{bail, Context, Result};
use xshell::Shell;

use super::context::Paths;
use crate::model::distribution::{Distribution, Variant};
use crate::model::platform::Platform;
use crate::stages::pip::requirements;
use crate::stages::{repos, resolve};
use crate::util::process;
use crate::util::progress::Reporter;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  cargo xtask resolve                                  every platform's default variant
  cargo xtask resolve --variant all                    every variant of every platform
  cargo xtask resolve --platform linux-x86_64 --variant cpu
  cargo xtask resolve --platform macos-x86_64          one platform
  cargo xtask resolve --manifest my.yml --out /tmp/r   another manifest; lists in /tmp/r/resolved/

Needs uv (`python3 -m pip install uv`). It clones each repo at its rev to read its requirements.")]
pub struct ResolveArgs {
    /// A platform to resolve (repeat for several) [default: all five]
    #[arg(long = "platform", value_name = "PLATFORM")]
    pub platforms: Vec<Platform>,
    /// Which variant of each platform, as distribution.yml names them, or `all` [default: each
    /// platform's default]
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
    #[command(flatten)]
    pub paths: Paths,
    /// The Python to resolve for where the manifest pins none (`python=X.Y` among a platform's
    /// conda_packages); Miniforge's current releases ship this one.
    #[arg(long, value_name = "X.Y", default_value = resolve::DEFAULT_PYTHON)]
    pub python_version: String,
    /// Show every command line as it runs.
    #[arg(long, short)]
    pub verbose: bool,
}

impl ResolveArgs {
    pub fn run(self) -> Result<()> {
        let manifest = Distribution::load(&self.paths.manifest)?;
        let platforms = if self.platforms.is_empty() {
            Platform::ALL.to_vec()
        } else {
            self.platforms.clone()
        };
        let mut variants: Vec<Variant> = Vec::new();
        for platform in platforms {
            match self.variant.as_deref() {
                Some(super::context::ALL_VARIANTS) => {
                    variants.extend(manifest.variants_of(platform))
                }
                name => variants.push(manifest.variant(platform, name).with_context(|| {
                    format!("bad --variant in {}", self.paths.manifest.display())
                })?),
            }
        }
        process::require_tool(
            "uv",
            "install uv, which resolves for other platforms than this one: `python3 -m pip install uv`",
        )?;
        let reporter = Reporter::new(self.verbose);
        let sh = Shell::new()?;
        let scratch = tempfile::tempdir()?;
        let out = std::path::absolute(&self.paths.out)?.join("resolved");
        fs_err::create_dir_all(&out)?;

        // The repos' requirements, as the build would read them: at each rev.
        let mut requirement_files = Vec::new();
        for repo in &manifest.repos {
            let Some(requirements) = &repo.requirements else {
                continue;
            };
            let stage = reporter.stage(format!(
                "Read {}'s {requirements} at {}",
                repo.name, repo.rev
            ));
            let dest = scratch.path().join("repos").join(&repo.name);
            let commit = repos::clone(&sh, &reporter, &repo.url, &repo.rev, None, &dest)
                .with_context(|| format!("cannot clone {} to read its requirements", repo.name))?;
            reporter.note(format!("{} at {commit}", repo.name));
            let file = dest.join(requirements);
            if !file.is_file() {
                bail!("repo {} at {} has no {requirements}", repo.name, repo.rev);
            }
            requirement_files.push((repo.name.clone(), file));
            stage.finish();
        }

        let mut failed = Vec::new();
        let tried = variants.len();
        for variant in variants {
            let platform = variant.platform;
            let manifest = manifest.for_variant(&variant);
            let id = variant.id();
            let python = resolve::python_version(&manifest, platform, &self.python_version);
            let stage = reporter.stage(format!(
                "Resolve {variant} (Python {python}, {})",
                resolve::uv_platform(&manifest, platform)
            ));
            let packages = scratch.path().join(format!("{id}-packages.txt"));
            fs_err::write(
                &packages,
                manifest.python_packages_for(platform).join("\n") + "\n",
            )?;
            let output = out.join(format!("{id}.txt"));
            // The requirements as this platform's build reads them (its skip_requirements).
            let (skip, requirement_files) = requirements::skipping(
                platform,
                manifest.skip_requirements_for(platform),
                requirement_files.clone(),
                &scratch.path().join("skipped").join(&id),
            );
            if let Some(skip) = skip {
                skip.run(&reporter)?;
            }
            let command = resolve::compile_command(
                &manifest,
                platform,
                &python,
                &packages,
                &requirement_files,
                &output,
            )?;
            let done = process::output(&sh, &reporter, &command)?;
            if !done.status.success() {
                let stderr = String::from_utf8_lossy(&done.stderr);
                reporter.note(format!("FAILED: {variant} does not resolve:"));
                for line in stderr.lines() {
                    reporter.note(format!("  {line}"));
                }
                failed.push(
                    match resolve::unreached_index(&manifest, platform, &stderr) {
                        Some(index) => format!("{id} (its index {index} was not reached)"),
                        None => id,
                    },
                );
                continue;
            }
            let pins = resolve::pinned(&fs_err::read_to_string(&output)?);
            let named: Vec<String> = manifest
                .python_packages_for(platform)
                .iter()
                .filter_map(|spec| {
                    let name = spec
                        .split(['=', '<', '>', '!', '~', '[', ';', ' '])
                        .next()?
                        .to_lowercase();
                    pins.iter()
                        .find(|(pinned, _)| *pinned == name)
                        .map(|(n, v)| format!("{n} {v}"))
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            reporter.note(format!(
                "{} packages: {}; all in {}",
                pins.len(),
                named.join(", "),
                output.display()
            ));
            stage.finish();
        }
        if !failed.is_empty() {
            bail!(
                "{} of {tried} do not resolve: {} (uv's reasons above)",
                failed.len(),
                failed.join(", ")
            );
        }
        Ok(())
    }
}
