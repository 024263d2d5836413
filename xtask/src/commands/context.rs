//! The flags that say what to build and where, shared by `portable`, `fetch` and `doctor`, and
//! the one context they resolve into: the platform and its variant, the distribution as that
//! variant has it, the layout, the lock, and the tools the steps use.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use crate::build::cross;
use crate::build::layout::Layout;
use crate::model::distribution::{Distribution, Variant};
use crate::model::lock::{self, Lock};
use crate::model::platform::Platform;
use crate::project_root;
use crate::stages::resolve;
use crate::util::process;
use crate::util::tools::Tools;

#[derive(Debug, clap::Args)]
pub struct Target {
    /// The platform: linux-x86_64, linux-aarch64, macos-arm64, macos-x86_64 or windows-x86_64
    /// [default: this host's]. A build runs only on its own platform (Miniforge's installer
    /// must); a dry run shows any platform anywhere.
    #[arg(long)]
    pub platform: Option<Platform>,
    /// Which of the platform's zips, as distribution.yml names its variants (`nvidia`, `cpu`,
    /// ...) [default: the platform's default]. `all` with --dry-run shows each one's plan.
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
    #[command(flatten)]
    pub paths: Paths,
    /// Show every command line as it runs.
    #[arg(long, short)]
    pub verbose: bool,
}

/// The distribution a command reads and the folder it works in, for every command that reads
/// the distribution.
#[derive(Debug, clap::Args)]
pub struct Paths {
    /// The distribution's definition.
    #[arg(long, value_name = "FILE", default_value_os_t = project_root().join("anymatix/distribution.yml"))]
    pub manifest: PathBuf,
    /// The build folder: the zips, the download cache (cache/), the build stages (stage/) and
    /// `resolve`'s pinned sets (resolved/).
    #[arg(long, value_name = "DIR", default_value_os_t = project_root().join("target/portable"))]
    pub out: PathBuf,
}

/// Which lock a build follows.
#[derive(Debug, Default, clap::Args)]
pub struct LockFlags {
    /// Build exactly what the lock file says: its Miniforge tag and digest, its repo commits,
    /// its package versions with `pip --require-hashes`. Fails if the lock is missing or does
    /// not fit the manifest.
    #[arg(long)]
    pub locked: bool,
    /// The lock file [default: locks/<platform>[-<variant>].lock.yml beside the manifest]
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
}

/// What a command works with, resolved once from its flags.
pub struct Context {
    pub platform: Platform,
    pub variant: Variant,
    /// The distribution as this variant has it: every `*_for(platform)` includes its additions.
    pub distribution: Distribution,
    pub distribution_path: PathBuf,
    pub layout: Layout,
    /// Where the lock is read (`--locked`) or written.
    pub lock_path: PathBuf,
    /// The lock, when building `--locked`.
    pub locked: Option<Lock>,
    pub tools: Tools,
}

/// `--variant all`: every variant of the platform.
pub const ALL_VARIANTS: &str = "all";

impl Target {
    pub fn resolve(&self, lock: &LockFlags) -> Result<Context> {
        if self.variant.as_deref() == Some(ALL_VARIANTS) {
            bail!(
                "--variant all is for plans (with --dry-run) and `cargo xtask resolve`: a build \
                 makes one zip. Build each variant on its own (CI has a job for each: `cargo \
                 xtask matrix`)"
            );
        }
        let mut all = self.resolve_each(lock)?;
        Ok(all.remove(0))
    }

    /// One context per variant `--variant` names: `all` gives each of the platform's.
    pub fn resolve_each(&self, lock: &LockFlags) -> Result<Vec<Context>> {
        let distribution = Distribution::load(&self.paths.manifest)?;
        let platform = Platform::chosen_or_host(self.platform)?;
        let variants = match self.variant.as_deref() {
            Some(ALL_VARIANTS) => {
                if lock.lock.is_some() {
                    bail!("--lock names one lock file, so it cannot go with --variant all");
                }
                distribution.variants_of(platform)
            }
            name => vec![distribution
                .variant(platform, name)
                .with_context(|| format!("bad --variant in {}", self.paths.manifest.display()))?],
        };
        let out = std::path::absolute(&self.paths.out)
            .with_context(|| format!("bad --out {}", self.paths.out.display()))?;
        let mut contexts = Vec::new();
        for variant in variants {
            let lock_path = lock
                .lock
                .clone()
                .unwrap_or_else(|| lock::default_path(&self.paths.manifest, &variant));
            let locked = if lock.locked {
                let found = Lock::load(&lock_path)?;
                found.check_fits(&distribution, &variant, &lock_path)?;
                Some(found)
            } else {
                None
            };
            contexts.push(Context {
                platform,
                layout: Layout::new(&out, &variant),
                distribution: distribution.for_variant(&variant),
                variant,
                distribution_path: self.paths.manifest.clone(),
                lock_path,
                locked,
                tools: Tools::new(self.verbose)?,
            });
        }
        Ok(contexts)
    }
}

impl Context {
    /// A build runs on `route`: native on its own platform, cross (from Linux x86_64) for the
    /// others or, to compare the two, its own; with the tools it shells out to.
    pub fn check_host(&self, route: cross::Route) -> Result<()> {
        let platform = self.platform;
        let host = Platform::host();
        let host_name = host.map_or("unknown", |p| p.name());
        if route == cross::Route::Native && host != Some(platform) {
            bail!(
                "cannot build {platform} on the native route on this {host_name} host: it runs \
                 Miniforge's installer and pip, which run only on {platform}. Build it there, or \
                 drop `--route native` to take the cross route where this host has one"
            );
        }
        if route == cross::Route::Cross {
            if host != Some(platform) && !host.is_some_and(|h| cross::builds_across(h, platform)) {
                bail!(
                    "cannot build {platform} on this {host_name} host: the cross route builds \
                     every platform's zip on Linux x86_64; other hosts run Miniforge's installer \
                     on their own platform. Build it on Linux x86_64 or a {platform} machine (CI \
                     has a runner for each), or pass --dry-run to see its plan"
                );
            }
            for (tool, hint) in [
                (
                    "uv",
                    "the cross route resolves for the target with uv: python3 -m pip install uv",
                ),
                (
                    "python3",
                    "the cross route downloads the target's wheels with this machine's pip",
                ),
            ] {
                process::require_tool(tool, hint)?;
            }
            if platform.is_windows() {
                for (tool, hint) in [
                    ("wine", "the Windows python runs under Wine here: apt-get install wine"),
                    ("x86_64-w64-mingw32-gcc", "Wine's adapters are built with mingw-w64: apt-get install gcc-mingw-w64-x86-64"),
                ] {
                    process::require_tool(tool, hint)?;
                }
                crate::stages::conda::constructor::seven_zip()?;
            } else {
                process::require_tool(
                    "tar",
                    "the `.sh` installer's inner archives are unpacked with tar",
                )?;
                if platform == Platform::LinuxAarch64 {
                    cross::emulates_aarch64()?;
                }
            }
            // The stand-in CPython, found now where the distribution pins the python
            // (`python=X.Y`), not minutes into the build; else its `X.Y` is the base's, known
            // once the base is linked.
            let pinned = resolve::python_version(&self.distribution, platform, "");
            if platform.is_macos() && !pinned.is_empty() {
                crate::util::host_python::find(&pinned)?;
            }
        }
        if !platform.is_windows() {
            process::require_tool(
                "bash",
                "install bash; Miniforge's installer is a bash script",
            )?;
        }
        if !self.distribution.repos.is_empty() {
            process::require_tool(
                "git",
                "install git (https://git-scm.com) to clone the repos",
            )?;
        }
        Ok(())
    }
}
