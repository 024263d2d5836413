//! `cargo xtask matrix`: the release workflow's build matrix, read from the distribution: one
//! job per platform and variant, on the platform's native runner. The workflow reads it with
//! `fromJSON`, so a variant added to distribution.yml is built and released with no second list
//! to keep in step.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::model::distribution::Distribution;
use crate::project_root;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prints one line of JSON, {\"include\": [{\"id\", \"platform\", \"variant\", \"runner\", \"about\"}, ...]},
as GitHub's `strategy.matrix` takes it. `variant` is empty for a platform without variants.

Examples:
  cargo xtask matrix
  cargo xtask matrix --github-output     in a workflow: the job's output `matrix`"
)]
pub struct MatrixArgs {
    /// The distribution's definition.
    #[arg(long, value_name = "FILE", default_value_os_t = project_root().join("anymatix/distribution.yml"))]
    pub manifest: PathBuf,
    /// Also append `matrix=<json>` to the file $GITHUB_OUTPUT names, as a step's output.
    #[arg(long)]
    pub github_output: bool,
}

#[derive(Debug, Serialize)]
pub struct Matrix {
    pub include: Vec<Job>,
}

/// One build job: a zip.
#[derive(Debug, Serialize)]
pub struct Job {
    /// `<platform>[-<variant>]`, as in the zip's name: the job's and its artifact's name.
    pub id: String,
    pub platform: String,
    pub variant: String,
    pub runner: String,
    pub about: String,
}

impl MatrixArgs {
    pub fn run(self) -> Result<()> {
        let distribution = Distribution::load(&self.manifest)?;
        let json = serde_json::to_string(&matrix(&distribution))?;
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
        }
        Ok(())
    }
}

pub fn matrix(distribution: &Distribution) -> Matrix {
    let include = distribution
        .all_variants()
        .into_iter()
        .map(|variant| Job {
            id: variant.id(),
            platform: variant.platform.to_string(),
            variant: variant.name.clone().unwrap_or_default(),
            runner: variant.platform.github_runner().to_string(),
            about: distribution
                .variant_section(&variant)
                .and_then(|s| s.about.clone())
                .unwrap_or_default(),
        })
        .collect();
    Matrix { include }
}
