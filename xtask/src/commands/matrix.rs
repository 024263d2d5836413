//! `cargo xtask matrix`: the release workflow's matrices, read from the distribution: a build job
//! per platform and variant, with the route and the runner it is built on, and a verify job on
//! the platform's own runner for each zip built on another. The workflow reads them with
//! `fromJSON`, so a variant added to distribution.yml is built, verified and released with no
//! second list to keep in step.
//!
//! Where each platform is built is decided here, once ([`release_route`]): every zip whose cross
//! build is trusted is made on Linux x86_64, the cheapest runner, and only checked on its own.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::build::cross::Route;
use crate::model::distribution::Distribution;
use crate::model::platform::Platform;
use crate::project_root;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prints the build matrix as one line of JSON, {\"include\": [{\"id\", \"platform\", \"variant\",
\"route\", \"build_runner\", \"verify_runner\", \"why\", \"about\"}, ...]}, as GitHub's `strategy.matrix`
takes it. `variant` is empty for a platform without variants; `verify_runner` is empty where the
build ran on the zip's own platform (the build verified it). With --github-output, also the
verify matrix (the jobs whose zip is verified on another runner).

Which machine builds and which verifies each zip:
  linux-x86_64    native on ubuntu-latest; verified by its build
  windows-x86_64  cross on ubuntu-latest (checked under Wine); verified on windows-latest
  macos-arm64     cross on ubuntu-latest (signatures checked); verified on macos-15
  macos-x86_64    cross on ubuntu-latest (its python=3.12 solved by conda for osx-64, signatures
                  checked); verified on macos-15-intel
  linux-aarch64   native on ubuntu-24.04-arm (ARM runners cost what x86_64 ones do, and run
                  its python natively instead of under qemu)

Examples:
  cargo xtask matrix
  cargo xtask matrix --github-output     in a workflow: the job's outputs `matrix` and `verify`"
)]
pub struct MatrixArgs {
    /// The distribution's definition.
    #[arg(long, value_name = "FILE", default_value_os_t = project_root().join("anymatix/distribution.yml"))]
    pub manifest: PathBuf,
    /// Also append `matrix=<json>` and `verify=<json>` to the file $GITHUB_OUTPUT names, as a
    /// step's outputs.
    #[arg(long)]
    pub github_output: bool,
}

#[derive(Debug, Serialize)]
pub struct Matrix {
    pub include: Vec<Job>,
}

/// One build job: a zip.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// `<platform>[-<variant>]`, as in the zip's name: the job's and its artifact's name.
    pub id: String,
    pub platform: String,
    pub variant: String,
    /// `native` or `cross`, as `portable --route` takes it.
    pub route: String,
    /// The GitHub runner that builds the zip.
    pub build_runner: String,
    /// The platform's own runner, where a zip built on another is verified; empty when the
    /// build ran on the zip's platform (and verified it).
    pub verify_runner: String,
    /// Why the platform is built there.
    pub why: String,
    pub about: String,
}

/// Where the release builds `platform`'s zips, on which route, and why.
pub fn release_route(platform: Platform) -> (Route, Platform, String) {
    let linux = Platform::LinuxX86_64;
    match platform {
        Platform::LinuxX86_64 => (Route::Native, linux, "its own platform".into()),
        Platform::LinuxAarch64 => (
            Route::Native,
            platform,
            "ARM runners cost what x86_64 ones do, and run its python natively instead of \
             under qemu"
                .into(),
        ),
        Platform::WindowsX86_64 => (
            Route::Cross,
            linux,
            "built on Linux (its python checked under Wine), verified on Windows".into(),
        ),
        Platform::MacosArm64 | Platform::MacosX86_64 => (
            Route::Cross,
            linux,
            "built on Linux (every Mach-O signature checked), verified on a Mac".into(),
        ),
    }
}

impl MatrixArgs {
    pub fn run(self) -> Result<()> {
        let distribution = Distribution::load(&self.manifest)?;
        let built = matrix(&distribution);
        let json = serde_json::to_string(&built)?;
        let verify = serde_json::to_string(&verify_matrix(&built))?;
        println!("{json}");
        if self.github_output {
            let Some(path) = std::env::var_os("GITHUB_OUTPUT") else {
                bail!("--github-output, but GITHUB_OUTPUT is not set (GitHub Actions sets it)");
            };
            let mut file = fs_err::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)?;
            writeln!(file, "matrix={json}")?;
            writeln!(file, "verify={verify}")?;
        }
        Ok(())
    }
}

pub fn matrix(distribution: &Distribution) -> Matrix {
    let include = distribution
        .all_variants()
        .into_iter()
        .map(|variant| {
            let platform = variant.platform;
            let (route, builder, why) = release_route(platform);
            Job {
                id: variant.id(),
                platform: platform.to_string(),
                variant: variant.name.clone().unwrap_or_default(),
                route: match route {
                    Route::Native => "native",
                    Route::Cross => "cross",
                }
                .into(),
                build_runner: builder.github_runner().to_string(),
                verify_runner: if builder == platform {
                    String::new()
                } else {
                    platform.github_runner().to_string()
                },
                why,
                about: distribution
                    .variant_section(&variant)
                    .and_then(|s| s.about.clone())
                    .unwrap_or_default(),
            }
        })
        .collect();
    Matrix { include }
}

/// The jobs whose zip is verified on another runner than the one that built it.
pub fn verify_matrix(matrix: &Matrix) -> Matrix {
    Matrix {
        include: matrix
            .include
            .iter()
            .filter(|job| !job.verify_runner.is_empty())
            .cloned()
            .collect(),
    }
}
