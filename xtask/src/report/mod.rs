//! What a build tells: `manifest.json` (what is inside the zip, for users and for tests to
//! write against) and the HTML prune report.

pub mod html;

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::pip::Package;
use crate::prune::PruneReport;
use crate::relocate::RelocationReport;
use crate::repos::Checkout;

#[derive(Debug, Serialize)]
pub struct BuildManifest {
    pub version: String,
    pub platform: String,
    pub miniforge: Miniforge,
    pub python: String,
    /// Every installed Python distribution, as pip lists it, sorted by name.
    pub packages: Vec<Package>,
    pub repos: Vec<Checkout>,
    /// What the zip holds besides this file: files (and links) and their bytes.
    pub contents: Contents,
    pub prune: PruneReport,
    /// Scripts rewritten to run from anywhere, and files that still hold the build path.
    pub relocation: RelocationReport,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Miniforge {
    /// As the manifest asked: `latest` or a tag.
    pub release: String,
    pub tag: String,
    pub asset: String,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct Contents {
    pub files: u64,
    pub bytes: u64,
}

pub fn write(path: &Path, manifest: &BuildManifest) -> Result<()> {
    let mut text = serde_json::to_string_pretty(manifest)?;
    text.push('\n');
    fs_err::write(path, text)?;
    Ok(())
}
