//! `cargo xtask release DIR`: attaches the built zips to the GitHub release of a tag, with the
//! `gh` CLI. A zip of 2 GiB or more (GitHub's limit for one asset) goes as its parts.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::archive::GITHUB_ASSET_LIMIT;
use crate::process;

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The folder holding the build artifacts (zips, .sha256 files, parts, size reports).
    pub dir: PathBuf,
    /// The release's tag [default: GITHUB_REF_NAME, as set in GitHub Actions]
    #[arg(long, env = "GITHUB_REF_NAME")]
    pub tag: String,
    /// List what would be uploaded, and upload nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl ReleaseArgs {
    pub fn run(self) -> Result<()> {
        let assets = assets(&self.dir)?;
        if assets.is_empty() {
            bail!(
                "no anymatix-*.zip in {}: download the build artifacts there first",
                self.dir.display()
            );
        }
        println!("release {}: {} assets", self.tag, assets.len());
        for asset in &assets {
            println!("  {}", asset.display());
        }
        if self.dry_run {
            return Ok(());
        }
        process::require_tool(
            "gh",
            "install the GitHub CLI (preinstalled on GitHub's runners)",
        )?;
        let sh = Shell::new()?;
        let tag = &self.tag;
        if cmd!(sh, "gh release view {tag}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_err()
        {
            cmd!(sh, "gh release create {tag} --title {tag} --notes-file -")
                .stdin(format!(
                    "anymatix {tag}: portable environments for ComfyUI.\n"
                ))
                .run()
                .with_context(|| format!("cannot create the release {tag}"))?;
        }
        cmd!(sh, "gh release upload {tag} {assets...} --clobber")
            .run()
            .with_context(|| format!("cannot upload to the release {tag}"))?;
        Ok(())
    }
}

/// What goes to the release: each size report, and each zip with its `.sha256`, or, for a zip
/// GitHub would refuse, its parts with theirs.
pub fn assets(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut names: Vec<String> = fs_err::read_dir(dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.sort();
    let mut chosen = Vec::new();
    for name in names.iter().filter(|n| n.starts_with("anymatix-")) {
        let path = dir.join(name);
        if name.ends_with(".prune.html") {
            chosen.push(path);
        } else if let Some(zip) = name.strip_suffix(".zip") {
            let parts: Vec<&String> = names
                .iter()
                .filter(|n| is_part(n, zip) || is_part(n.trim_end_matches(".sha256"), zip))
                .collect();
            if fs_err::metadata(&path)?.len() > GITHUB_ASSET_LIMIT || !parts.is_empty() {
                if parts.is_empty() {
                    bail!("{name} is over GitHub's asset limit and has no parts beside it");
                }
                chosen.extend(parts.into_iter().map(|p| dir.join(p)));
            } else {
                chosen.push(path);
                chosen.push(dir.join(format!("{name}.sha256")));
            }
        }
    }
    Ok(chosen)
}

fn is_part(name: &str, zip_stem: &str) -> bool {
    name.strip_prefix(zip_stem)
        .and_then(|rest| rest.strip_prefix(".zip."))
        .is_some_and(|n| n.len() == 3 && n.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_replace_a_zip_github_would_refuse() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "anymatix-1.0.0-linux-x86_64.zip",
            "anymatix-1.0.0-linux-x86_64.zip.sha256",
            "anymatix-1.0.0-linux-x86_64.zip.001",
            "anymatix-1.0.0-linux-x86_64.zip.001.sha256",
            "anymatix-1.0.0-linux-x86_64.zip.002",
            "anymatix-1.0.0-linux-x86_64.zip.002.sha256",
            "anymatix-1.0.0-linux-x86_64.prune.html",
            "anymatix-1.0.0-macos-arm64.zip",
            "anymatix-1.0.0-macos-arm64.zip.sha256",
            "unrelated.txt",
        ] {
            fs_err::write(dir.path().join(name), "x").unwrap();
        }
        let names: Vec<String> = assets(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "anymatix-1.0.0-linux-x86_64.prune.html",
                "anymatix-1.0.0-linux-x86_64.zip.001",
                "anymatix-1.0.0-linux-x86_64.zip.001.sha256",
                "anymatix-1.0.0-linux-x86_64.zip.002",
                "anymatix-1.0.0-linux-x86_64.zip.002.sha256",
                "anymatix-1.0.0-macos-arm64.zip",
                "anymatix-1.0.0-macos-arm64.zip.sha256",
            ]
        );
    }
}
