//! `cargo xtask verify ZIP…`: what `portable` does last, for any zip (a downloaded release
//! asset too): unpacked (every volume) into a folder with a space and an "é", then the zip's
//! own python runs the smoke checks and the distribution's commands (ComfyUI's start) there:
//! directly where this machine runs the zip's platform, under Wine for a Windows zip on Linux.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use crate::build::cross;
use crate::model::distribution::Distribution;
use crate::model::platform::Platform;
use crate::project_root;
use crate::stages::verify;
use crate::util::tools::Tools;
use crate::util::units::human_duration;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The zip, or the first volume (`….part1.zip`) of one written as volumes; a folder:
    /// every zip in it (a release artifact as downloaded).
    #[arg(required = true, value_name = "ZIP")]
    pub zips: Vec<PathBuf>,
    /// The distribution whose smoke checks and commands are run, for the zip's platform and
    /// variant (read from its manifest.json).
    #[arg(long, value_name = "FILE", default_value_os_t = project_root().join("anymatix/distribution.yml"))]
    pub manifest: PathBuf,
    /// Where to unpack [default: a new folder with a space and an "é" in its name, removed
    /// afterwards].
    #[arg(long, value_name = "DIR")]
    pub into: Option<PathBuf>,
    /// Where Wine's prefix and adapters are kept, for a Windows zip on Linux.
    #[arg(long, value_name = "DIR", default_value_os_t = project_root().join("target/portable/cache"))]
    pub cache: PathBuf,
    /// Show every command line as it runs.
    #[arg(long, short)]
    pub verbose: bool,
}

impl VerifyArgs {
    pub fn run(self) -> Result<()> {
        let tools = Tools::new(self.verbose)?;
        let distribution = Distribution::load(&self.manifest)?;
        let mut zips = Vec::new();
        for given in &self.zips {
            if given.is_dir() {
                let found = zips_in(given)?;
                if found.is_empty() {
                    bail!("{} holds no zip to verify", given.display());
                }
                zips.extend(found);
            } else {
                zips.push(given.clone());
            }
        }
        for zip in &zips {
            let started = std::time::Instant::now();
            let (platform, variant_name) = what_it_is(zip)?;
            let variant = distribution
                .variant(platform, variant_name.as_deref())
                .with_context(|| {
                    format!(
                        "{} is a {platform} zip of variant {}, which {} does not name",
                        zip.display(),
                        variant_name.as_deref().unwrap_or("(none)"),
                        self.manifest.display()
                    )
                })?;
            let smoke = distribution.for_variant(&variant).smoke_for(platform);
            let runner = cross::runner_here(platform, &std::path::absolute(&self.cache)?)?;
            let scratch = tempfile::Builder::new()
                .prefix("anymatix verify é ")
                .tempdir()?;
            let into = match &self.into {
                Some(dir) => dir.clone(),
                None => scratch.path().join("unpacked copy é"),
            };
            let title = format!("Verify {} ({variant})", zip.display());
            let stage = tools.reporter.stage(&title);
            let root = verify::unpack(zip, &into)?;
            tools
                .reporter
                .note(format!("unpacked into {}", into.display()));
            verify::smoke_unpacked(&tools.sh, &tools.reporter, &runner, platform, &root, &smoke)
                .with_context(|| format!("{} failed its checks", zip.display()))?;
            stage.finish();
            eprintln!(
                "Verified {} in {}",
                zip.display(),
                human_duration(started.elapsed())
            );
        }
        Ok(())
    }
}

/// The zips in `dir`, a zip written as volumes once (by its first volume), sorted.
fn zips_in(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let mut found = std::collections::BTreeSet::new();
    for entry in fs_err::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let Some(stem) = name.strip_suffix(".zip") else {
            continue;
        };
        match stem.rsplit_once(".part") {
            Some((_, n)) if n.parse::<u32>().is_ok() => {
                if n == "1" {
                    found.insert(path.clone());
                }
            }
            _ => {
                found.insert(path.clone());
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// The platform and variant a zip's manifest.json names.
fn what_it_is(zip: &std::path::Path) -> Result<(Platform, Option<String>)> {
    let first = crate::stages::archive::zip_or_volumes(zip)
        .into_iter()
        .next()
        .with_context(|| format!("{} is missing, and so are its volumes", zip.display()))?;
    let mut archive = zip::ZipArchive::new(fs_err::File::open(&first)?)
        .with_context(|| format!("{} is not a zip", first.display()))?;
    let mut text = String::new();
    archive
        .by_name("anymatix/manifest.json")
        .with_context(|| {
            format!(
                "{} holds no anymatix/manifest.json: not a zip `portable` made",
                first.display()
            )
        })?
        .read_to_string(&mut text)?;
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("anymatix/manifest.json in {} is not JSON", first.display()))?;
    let Some(platform) = manifest["platform"].as_str() else {
        bail!(
            "anymatix/manifest.json in {} names no platform",
            first.display()
        );
    };
    let platform: Platform = platform
        .parse()
        .map_err(|e| anyhow::anyhow!("anymatix/manifest.json in {}: {e}", first.display()))?;
    let variant = manifest["variant"]["name"].as_str().map(str::to_string);
    Ok((platform, variant))
}
