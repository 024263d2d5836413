//! Fetch Miniforge: the installer of one release for one platform, from the cache when it holds
//! it with a matching sidecar, else downloaded and checked against the release's published
//! `.sha256`. Also where `latest` is turned into a tag, before anything is planned.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use crate::model::distribution::Release;
use crate::model::platform::Platform;
use crate::stages::describe::{Describe, Stage};
use crate::util::digest;
use crate::util::inputs::Inputs;
use crate::util::tools::Tools;

/// Which installer a build fetched, for manifest.json and the lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Miniforge {
    /// As the distribution asked: `latest` or a tag.
    pub release: String,
    pub tag: String,
    pub asset: String,
    pub sha256: String,
}

/// The Miniforge release a plan installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    Resolved(String),
    /// `latest`, not asked yet: a dry run does not ask, a build asks before it plans.
    Latest,
}

#[derive(Debug, Clone)]
pub struct DownloadInstaller {
    pub platform: Platform,
    pub base_url: String,
    pub release: Release,
    pub tag: Tag,
    /// Where the installer is kept.
    pub cache: PathBuf,
    /// Only the cache may be used.
    pub offline: bool,
    /// Building `--locked`: the installer must still have the lock's digest.
    pub locked_sha256: Option<String>,
}

impl DownloadInstaller {
    /// The versioned asset's URL and where it is cached; `None` while `latest` is unresolved.
    pub fn download(&self) -> Option<(String, PathBuf)> {
        match &self.tag {
            Tag::Resolved(tag) => Some((
                installer_url(&self.base_url, tag, self.platform),
                self.cache.join(self.platform.miniforge_asset(tag)),
            )),
            Tag::Latest => None,
        }
    }

    /// The cached installer's path; a placeholder name while `latest` is unresolved.
    pub fn installer(&self) -> PathBuf {
        match self.download() {
            Some((_, path)) => path,
            None => self.cache.join(self.platform.miniforge_asset("<latest>")),
        }
    }

    pub fn run(&self, tools: &Tools) -> Result<Miniforge> {
        let (Tag::Resolved(tag), Some((url, dest))) = (&self.tag, self.download()) else {
            bail!("Miniforge's latest release must be resolved to a tag before the build runs");
        };
        let reporter = &tools.reporter;
        let sha256 = match digest::verified_digest(&dest)? {
            Some(digest) => {
                reporter.note(format!("cached: {}", dest.display()));
                digest
            }
            None if self.offline => bail!(
                "--offline, but Miniforge {tag} is not in the cache ({} with its .sha256): \
                 run `cargo xtask fetch` with the network first",
                dest.display()
            ),
            None => {
                let digest = tools.downloader.download_sha256(&format!("{url}.sha256"))?;
                tools
                    .downloader
                    .download_verified(&url, &digest, &dest, reporter)?;
                digest::write_sidecar(&dest, &digest)?;
                digest
            }
        };
        reporter.note(format!("sha256 {sha256}"));
        if let Some(locked) = &self.locked_sha256 {
            if !locked.eq_ignore_ascii_case(&sha256) {
                bail!(
                    "Miniforge {tag} now has sha256 {sha256}, but the lock says {locked}: the release was replaced. \
                     Check it, then build with --update to accept it"
                );
            }
        }
        Ok(Miniforge {
            release: self.release.to_string(),
            tag: tag.clone(),
            asset: self.platform.miniforge_asset(tag),
            sha256,
        })
    }
}

impl Describe for DownloadInstaller {
    fn title(&self) -> String {
        "Fetch Miniforge".into()
    }

    fn stage(&self) -> Stage {
        Stage::Env
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.download(), self.offline) {
            (Some((url, _)), false) => write!(f, "fetch {url}\n      verify with {url}.sha256")?,
            (Some((url, _)), true) => write!(f, "use the cached download of {url} (offline)")?,
            (None, false) => write!(
                f,
                "fetch Miniforge {}: resolve the tag from {}/latest, then download its versioned asset and .sha256",
                self.release, self.base_url
            )?,
            (None, true) => write!(
                f,
                "use the cached Miniforge {}: the tag it meant when last resolved online (offline)",
                self.release
            )?,
        }
        if let Some((_, dest)) = self.download() {
            write!(f, "\n      into {}", dest.display())?;
        }
        Ok(())
    }

    fn inputs(&self, inputs: &mut Inputs) {
        // The versioned asset's URL names the tag; where it came from (cache or server) is not
        // an input.
        if let Some((url, _)) = self.download() {
            inputs.set("Miniforge installer", url);
        }
    }
}

/// The Miniforge tag to build: the lock's, the distribution's, or what `latest` means now.
/// Offline, `latest` is what it meant when last resolved online (kept in the cache).
pub fn resolve_tag(
    release: &Release,
    base_url: &str,
    locked: Option<&str>,
    offline: bool,
    latest_tag: &Path,
    tools: &Tools,
) -> Result<String> {
    let reporter = &tools.reporter;
    match (locked, release) {
        (Some(tag), _) => Ok(tag.to_string()),
        (None, Release::Tag(tag)) => Ok(tag.clone()),
        (None, Release::Latest) if offline => {
            let text = fs_err::read_to_string(latest_tag).map_err(|_| {
                anyhow!(
                    "--offline cannot ask which Miniforge release is the latest, and no online build or fetch \
                     has recorded it ({} is missing): run `cargo xtask fetch` with the network first",
                    latest_tag.display()
                )
            })?;
            let tag = text.trim().to_string();
            reporter.note(format!("latest was {tag} when last resolved online"));
            Ok(tag)
        }
        (None, Release::Latest) => {
            let stage = reporter.stage("Resolve Miniforge's latest release");
            let tag = tools.downloader.resolve_latest_tag(base_url)?;
            reporter.note(format!("latest is {tag}"));
            if let Some(cache) = latest_tag.parent() {
                fs_err::create_dir_all(cache)?;
            }
            crate::util::atomic::write_atomic(latest_tag, format!("{tag}\n").as_bytes())?;
            stage.finish();
            Ok(tag)
        }
    }
}

pub fn installer_url(base_url: &str, tag: &str, platform: Platform) -> String {
    format!(
        "{}/download/{tag}/{}",
        base_url.trim_end_matches('/'),
        platform.miniforge_asset(tag)
    )
}
