//! `anymatix/locks/<platform>[-<variant>].lock.yml`: what a build's moving parts resolved to (the Miniforge
//! tag and digest `latest` meant, each repo's commit, each Python package's exact version and
//! wheel digest), committed so reviewers see dependency changes as a diff, and read back by
//! `--locked` to build exactly that again.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::distribution::{Distribution, Variant};
use crate::model::platform::Platform;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub platform: Platform,
    /// The platform's variant it was built as, when the platform has variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub miniforge: LockedInstaller,
    pub repos: Vec<LockedRepo>,
    pub python_packages: Vec<LockedPackage>,
    /// Packages installed (and locked above) that the zip leaves out (`leave_out`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedInstaller {
    pub tag: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedRepo {
    pub name: String,
    pub url: String,
    pub commit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

const HEADER: &str = "\
# Written by `cargo xtask portable`: what this platform's build resolved to. Commit it: a diff
# here is a dependency change. `cargo xtask portable --locked` builds exactly this;
# a build without --locked (or with --update) refreshes it.
";

/// Where the lock of `variant` lives: `locks/<platform>[-<variant>].lock.yml` beside the
/// manifest (the default variant's without suffix).
pub fn default_path(manifest: &Path, variant: &Variant) -> PathBuf {
    manifest
        .parent()
        .unwrap_or(Path::new("."))
        .join("locks")
        .join(format!("{}.lock.yml", variant.id()))
}

impl Lock {
    pub fn load(path: &Path) -> Result<Lock> {
        let text = match fs_err::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no lock file at {}: build once without --locked to write it",
                path.display()
            ),
            Err(e) => return Err(e.into()),
        };
        serde_yaml_ng::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        let text = format!("{HEADER}{}", serde_yaml_ng::to_string(self)?);
        crate::util::atomic::write_atomic(path, text.as_bytes())
    }

    /// pip's requirements with every version pinned and every wheel's digest, for
    /// `--require-hashes`.
    pub fn requirements(&self) -> String {
        self.python_packages
            .iter()
            .map(|p| format!("{}=={} --hash=sha256:{}\n", p.name, p.version, p.sha256))
            .collect()
    }

    /// `--locked` needs a lock made for this platform, variant and repos.
    pub fn check_fits(
        &self,
        distribution: &Distribution,
        variant: &Variant,
        path: &Path,
    ) -> Result<()> {
        let platform = variant.platform;
        if self.platform != platform {
            bail!(
                "{} is the lock of {}, not {platform}",
                path.display(),
                self.platform
            );
        }
        if self.variant != variant.name {
            let name = |v: &Option<String>| {
                v.as_deref()
                    .map_or("no variant".into(), |n| format!("variant `{n}`"))
            };
            bail!(
                "{} is the lock of {platform}'s {}, not of its {}: pass the variant's own lock",
                path.display(),
                name(&self.variant),
                name(&variant.name)
            );
        }
        let mut wanted: Vec<&str> = distribution.repos.iter().map(|r| r.name.as_str()).collect();
        let mut locked: Vec<&str> = self.repos.iter().map(|r| r.name.as_str()).collect();
        wanted.sort();
        locked.sort();
        if wanted != locked {
            bail!(
                "{} locks the repos {locked:?} but the manifest has {wanted:?}: build with --update to refresh the lock",
                path.display()
            );
        }
        Ok(())
    }

    pub fn commit_of(&self, repo: &str) -> Option<&str> {
        self.repos
            .iter()
            .find(|r| r.name == repo)
            .map(|r| r.commit.as_str())
    }
}

/// What pip installed, from its `--report` JSON: names, versions and the archives' sha256.
pub fn packages_from_report(json: &str) -> Result<Vec<LockedPackage>> {
    let report: serde_json::Value =
        serde_json::from_str(json).context("pip's report is not JSON")?;
    let mut packages = Vec::new();
    for item in report["install"]
        .as_array()
        .context("pip's report lists no installs")?
    {
        let name = item["metadata"]["name"]
            .as_str()
            .context("an install without a name")?;
        let version = item["metadata"]["version"]
            .as_str()
            .context("an install without a version")?;
        let sha256 = item["download_info"]["archive_info"]["hashes"]["sha256"]
            .as_str()
            .with_context(|| {
                format!("pip reported no sha256 for {name} {version} (not from an archive?)")
            })?;
        packages.push(LockedPackage {
            name: name.to_lowercase(),
            version: version.to_string(),
            sha256: sha256.to_string(),
        });
    }
    packages.sort();
    Ok(packages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_gives_pinned_hashed_requirements() {
        let report = r#"{"install": [
          {"metadata": {"name": "Pillow", "version": "11.0.0"},
           "download_info": {"url": "https://x/p.whl", "archive_info": {"hashes": {"sha256": "aa"}}}},
          {"metadata": {"name": "numpy", "version": "2.1.0"},
           "download_info": {"url": "https://x/n.whl", "archive_info": {"hashes": {"sha256": "bb"}}}}
        ]}"#;
        let packages = packages_from_report(report).unwrap();
        let lock = Lock {
            platform: Platform::LinuxX86_64,
            variant: None,
            miniforge: LockedInstaller {
                tag: "t".into(),
                sha256: "s".into(),
            },
            repos: vec![],
            python_packages: packages,
            left_out: vec!["pillow".into()],
        };
        assert_eq!(
            lock.requirements(),
            "numpy==2.1.0 --hash=sha256:bb\npillow==11.0.0 --hash=sha256:aa\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/linux-x86_64.lock.yml");
        lock.write(&path).unwrap();
        assert_eq!(Lock::load(&path).unwrap(), lock);
        let err = Lock::load(&dir.path().join("missing.yml")).unwrap_err();
        assert!(
            err.to_string().contains("build once without --locked"),
            "{err}"
        );
    }

    #[test]
    fn each_variant_has_its_own_lock_and_takes_no_other() {
        let distribution: Distribution = serde_yaml_ng::from_str(
            "platforms:\n  linux-x86_64:\n    variants:\n      nvidia: {default: true}\n      cpu: {}\n",
        )
        .unwrap();
        let linux = Platform::LinuxX86_64;
        let nvidia = distribution.variant(linux, None).unwrap();
        let cpu = distribution.variant(linux, Some("cpu")).unwrap();
        let manifest = Path::new("/r/anymatix/distribution.yml");
        assert_eq!(
            default_path(manifest, &nvidia),
            Path::new("/r/anymatix/locks/linux-x86_64.lock.yml")
        );
        assert_eq!(
            default_path(manifest, &cpu),
            Path::new("/r/anymatix/locks/linux-x86_64-cpu.lock.yml")
        );
        let lock = Lock {
            platform: linux,
            variant: Some("cpu".into()),
            miniforge: LockedInstaller {
                tag: "t".into(),
                sha256: "s".into(),
            },
            repos: vec![],
            python_packages: vec![],
            left_out: vec![],
        };
        let path = Path::new("linux-x86_64-cpu.lock.yml");
        lock.check_fits(&distribution, &cpu, path).unwrap();
        let err = lock.check_fits(&distribution, &nvidia, path).unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux-x86_64-cpu.lock.yml is the lock of linux-x86_64's variant `cpu`, not of its \
             variant `nvidia`: pass the variant's own lock"
        );
        assert!(serde_yaml_ng::to_string(&lock)
            .unwrap()
            .contains("variant: cpu"));
    }
}
