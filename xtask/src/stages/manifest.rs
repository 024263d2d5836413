//! `manifest.json`: what is inside the zip, for users and for tests to write against.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::model::distribution::{normalise_package_name, VariantInfo};
use crate::model::platform::Platform;
use crate::stages::bytecode::BytecodeSummary;
use crate::stages::describe::{Describe, Stage};
use crate::stages::miniforge::Miniforge;
use crate::stages::packages::ProtectedPackage;
use crate::stages::pip::leave_out::LeftOut;
use crate::stages::pip::{self, Package};
use crate::stages::prune::Pruned;
use crate::stages::relocate::Relocated;
use crate::stages::repos::Checkout;
use crate::util::inputs::Inputs;

/// `manifest.json`: what the zip holds, for users and for tests to write against.
#[derive(Debug, Serialize)]
pub struct BuildManifest {
    pub version: String,
    pub platform: Platform,
    /// Which of the platform's zips this is (`variants` in distribution.yml), when it has several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<VariantInfo>,
    pub miniforge: Miniforge,
    pub python: String,
    /// Every Python distribution in the zip, as pip lists it, sorted by name.
    pub packages: Vec<Package>,
    /// Installed packages the zip leaves out (`leave_out`), with what they held.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOut>,
    /// The protected core: what no pip run by the zip's python may change (`protected`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<ProtectedPackage>,
    pub repos: Vec<Checkout>,
    /// What the zip holds besides this file: files (and links) and their bytes.
    pub contents: Contents,
    pub prune: Pruned,
    /// Scripts rewritten to run from anywhere, and files that still hold the build path.
    pub relocation: Relocated,
    /// The `.pyc` files compiled for what the product imports when it starts.
    pub bytecode: BytecodeSummary,
}

#[derive(Debug, Serialize)]
pub struct Contents {
    pub files: u64,
    pub bytes: u64,
}

/// What a build found out, from the steps that found it, for manifest.json.
pub struct Findings<'a> {
    pub miniforge: &'a Miniforge,
    pub pip: &'a pip::Installed,
    pub checkouts: &'a [Checkout],
    pub left_out: &'a [LeftOut],
    pub protected: &'a [ProtectedPackage],
    pub prune: &'a Pruned,
    pub relocation: &'a Relocated,
    pub bytecode: &'a BytecodeSummary,
}

/// Writes `manifest.json` into the tree.
#[derive(Debug, Clone)]
pub struct WriteManifest {
    pub version: String,
    pub platform: Platform,
    pub variant: Option<VariantInfo>,
    pub tree: PathBuf,
    pub path: PathBuf,
}

impl WriteManifest {
    pub fn run(&self, found: &Findings) -> Result<()> {
        let (files, bytes) = crate::util::tree::stats(&self.tree)?;
        let built = BuildManifest {
            version: self.version.clone(),
            platform: self.platform,
            variant: self.variant.clone(),
            miniforge: found.miniforge.clone(),
            python: found.pip.python.clone(),
            packages: found
                .pip
                .packages
                .iter()
                .filter(|p| {
                    let name = normalise_package_name(&p.name);
                    !found
                        .left_out
                        .iter()
                        .any(|l| normalise_package_name(&l.name) == name)
                })
                .cloned()
                .collect(),
            left_out: found.left_out.to_vec(),
            protected: found.protected.to_vec(),
            repos: found.checkouts.to_vec(),
            contents: Contents { files, bytes },
            prune: found.prune.clone(),
            relocation: found.relocation.clone(),
            bytecode: found.bytecode.clone(),
        };
        write(&self.path, &built)
    }
}

impl Describe for WriteManifest {
    fn title(&self) -> String {
        "Write manifest.json".into()
    }

    fn stage(&self) -> Stage {
        Stage::Dist
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "write {}", self.path.display())
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set("version", self.version.clone());
        if let Some(variant) = &self.variant {
            inputs.set(
                "variant",
                serde_json::to_string(variant).unwrap_or_default(),
            );
        }
    }
}

pub fn write(path: &Path, manifest: &BuildManifest) -> Result<()> {
    let mut text = serde_json::to_string_pretty(manifest)?;
    text.push('\n');
    fs_err::write(path, text)?;
    Ok(())
}
