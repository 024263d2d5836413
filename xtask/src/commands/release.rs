//! `cargo xtask release DIR`: attaches the built zips to the GitHub release of a tag, with the
//! `gh` CLI: zips and the volumes of larger ones, each with its `.sha256`, and the size reports.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::stages::archive::GITHUB_ASSET_LIMIT;
use crate::util::process;

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The folder holding the build artifacts (zips or volumes, .sha256 files, size reports).
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

/// What goes to the release: each size report, and each zip (a whole one or a volume) with its
/// `.sha256`. A zip GitHub would refuse is an error: `portable` writes volumes under the limit.
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
        } else if name.ends_with(".zip") {
            let size = fs_err::metadata(&path)?.len();
            if size > GITHUB_ASSET_LIMIT {
                bail!(
                    "{} is {size} bytes, over GitHub's limit for a release asset: build it with \
                     `cargo xtask portable` and its default --split-size, which writes volumes \
                     under the limit",
                    path.display()
                );
            }
            let sidecar = dir.join(format!("{name}.sha256"));
            if !sidecar.is_file() {
                bail!("{} has no .sha256 beside it", path.display());
            }
            chosen.push(path);
            chosen.push(sidecar);
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_go_with_their_digests_and_a_zip_github_would_refuse_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "anymatix-1.0.0-linux-x86_64.part1.zip",
            "anymatix-1.0.0-linux-x86_64.part1.zip.sha256",
            "anymatix-1.0.0-linux-x86_64.part2.zip",
            "anymatix-1.0.0-linux-x86_64.part2.zip.sha256",
            "anymatix-1.0.0-linux-x86_64.prune.html",
            "anymatix-1.0.0-linux-x86_64-cpu.zip",
            "anymatix-1.0.0-linux-x86_64-cpu.zip.sha256",
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
                "anymatix-1.0.0-linux-x86_64-cpu.zip",
                "anymatix-1.0.0-linux-x86_64-cpu.zip.sha256",
                "anymatix-1.0.0-linux-x86_64.part1.zip",
                "anymatix-1.0.0-linux-x86_64.part1.zip.sha256",
                "anymatix-1.0.0-linux-x86_64.part2.zip",
                "anymatix-1.0.0-linux-x86_64.part2.zip.sha256",
                "anymatix-1.0.0-linux-x86_64.prune.html",
                "anymatix-1.0.0-macos-arm64.zip",
                "anymatix-1.0.0-macos-arm64.zip.sha256",
            ]
        );
        let big = dir.path().join("anymatix-1.0.0-windows-x86_64.zip");
        fs_err::File::create(&big)
            .unwrap()
            .set_len(GITHUB_ASSET_LIMIT + 1)
            .unwrap();
        let err = assets(dir.path()).unwrap_err().to_string();
        assert!(err.contains("over GitHub's limit"), "{err}");
        fs_err::remove_file(&big).unwrap();
        fs_err::remove_file(dir.path().join("anymatix-1.0.0-macos-arm64.zip.sha256")).unwrap();
        let err = assets(dir.path()).unwrap_err().to_string();
        assert!(err.contains("has no .sha256"), "{err}");
    }
}
