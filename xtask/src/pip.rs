//! What pip put into the environment: the Python version and every installed package.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
}

pub fn python_version(sh: &Shell, python: &Path) -> Result<String> {
    let code = "import sys; print('%d.%d.%d' % sys.version_info[:3])";
    let out = cmd!(sh, "{python} -s -c {code}")
        .quiet()
        .read()
        .with_context(|| format!("cannot run {}", python.display()))?;
    Ok(out.trim().to_string())
}

/// Every installed distribution, sorted by name: read before pruning, from pip's own view.
pub fn installed_packages(sh: &Shell, python: &Path) -> Result<Vec<Package>> {
    let out = cmd!(
        sh,
        "{python} -s -m pip list --format=json --disable-pip-version-check"
    )
    .quiet()
    .read()
    .with_context(|| format!("cannot list the packages of {}", python.display()))?;
    let mut packages: Vec<Package> =
        serde_json::from_str(&out).context("pip list printed something that is not JSON")?;
    packages.sort_by_key(|p| p.name.to_lowercase());
    Ok(packages)
}
