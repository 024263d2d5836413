//! Package management in the zip: `packages.sh`/`packages.bat` (and `install_package.*`, which
//! is `packages install`), the Python tool they run (`anymatix/tools/`), the start-up rules every
//! python of the zip obeys (`_anymatix_site`, in site-packages), the protected core with the
//! versions this build installed, and pip's site configuration naming the indexes the build used.
//! The shipped code lives in `anymatix/` as files of its own language; it is compiled in here so
//! the tool never depends on where it runs from.

pub mod protected;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::distribution::{Distribution, Smoke};
use crate::fingerprint::Inputs;
use crate::platform::Platform;
use crate::step::{Describe, Stage};
use crate::tools::Tools;
use crate::verify::{smoke_steps, SmokeStep};

pub use protected::{HeldFiles, ProtectedPackage};

/// The tool, by its place under `anymatix/`.
const TOOL_FILES: &[(&str, &str)] = &[
    (
        "tools/packages.py",
        include_str!("../../../anymatix/tools/packages.py"),
    ),
    (
        "tools/anymatix_packages/__init__.py",
        include_str!("../../../anymatix/tools/anymatix_packages/__init__.py"),
    ),
    (
        "tools/anymatix_packages/changes.py",
        include_str!("../../../anymatix/tools/anymatix_packages/changes.py"),
    ),
    (
        "tools/anymatix_packages/check.py",
        include_str!("../../../anymatix/tools/anymatix_packages/check.py"),
    ),
    (
        "tools/anymatix_packages/cli.py",
        include_str!("../../../anymatix/tools/anymatix_packages/cli.py"),
    ),
    (
        "tools/anymatix_packages/environment.py",
        include_str!("../../../anymatix/tools/anymatix_packages/environment.py"),
    ),
    (
        "tools/anymatix_packages/history.py",
        include_str!("../../../anymatix/tools/anymatix_packages/history.py"),
    ),
    (
        "tools/anymatix_packages/protection.py",
        include_str!("../../../anymatix/tools/anymatix_packages/protection.py"),
    ),
    (
        "tools/anymatix_packages/pip_run.py",
        include_str!("../../../anymatix/tools/anymatix_packages/pip_run.py"),
    ),
    (
        "tools/anymatix_packages/states.py",
        include_str!("../../../anymatix/tools/anymatix_packages/states.py"),
    ),
    (
        "tools/anymatix_packages/views.py",
        include_str!("../../../anymatix/tools/anymatix_packages/views.py"),
    ),
    (
        "tools/anymatix_packages/gui.py",
        include_str!("../../../anymatix/tools/anymatix_packages/gui.py"),
    ),
    (
        "tools/anymatix_packages/page/index.html",
        include_str!("../../../anymatix/tools/anymatix_packages/page/index.html"),
    ),
    (
        "tools/anymatix_packages/page/page.css",
        include_str!("../../../anymatix/tools/anymatix_packages/page/page.css"),
    ),
    (
        "tools/anymatix_packages/page/page.js",
        include_str!("../../../anymatix/tools/anymatix_packages/page/page.js"),
    ),
    // The same runner the build's checks use, so `packages.sh check` runs them alike.
    (
        "tools/anymatix_packages/smoke_runner.py",
        include_str!("../verify/smoke_runner.py"),
    ),
];

/// The start-up rules, by their name in site-packages.
const SITE_FILES: &[(&str, &str)] = &[
    (
        "_anymatix_site.py",
        include_str!("../../../anymatix/site/_anymatix_site.py"),
    ),
    (
        "_anymatix_site.pth",
        include_str!("../../../anymatix/site/_anymatix_site.pth"),
    ),
    (
        "_anymatix_guard.py",
        include_str!("../../../anymatix/site/_anymatix_guard.py"),
    ),
];

const PACKAGES_SH: &str = include_str!("../../../anymatix/scripts/packages.sh");
const INSTALL_PACKAGE_SH: &str = include_str!("../../../anymatix/scripts/install_package.sh");
const PACKAGES_BAT: &str = include_str!("../../../anymatix/scripts/packages.bat");
const INSTALL_PACKAGE_BAT: &str = include_str!("../../../anymatix/scripts/install_package.bat");

/// The scripts at the top of `anymatix/` for `platform`: (name, text). cmd.exe wants CRLF.
pub fn scripts(platform: Platform) -> Vec<(&'static str, String)> {
    if platform.is_windows() {
        let crlf = |text: &str| text.replace("\r\n", "\n").replace('\n', "\r\n");
        vec![
            ("packages.bat", crlf(PACKAGES_BAT)),
            ("install_package.bat", crlf(INSTALL_PACKAGE_BAT)),
        ]
    } else {
        vec![
            ("packages.sh", PACKAGES_SH.to_string()),
            ("install_package.sh", INSTALL_PACKAGE_SH.to_string()),
        ]
    }
}

/// The options of `pip_args` and `pip:` that name where packages come from and still mean the
/// same on a user's machine: index URLs over http(s). Find-links folders and --no-index are the
/// build machine's own.
pub fn carried_indexes(distribution: &Distribution, platform: Platform) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let web = |url: &str| url.starts_with("https://") || url.starts_with("http://");
    if let Some(url) = distribution.pip.index_url.as_deref().filter(|u| web(u)) {
        found.push(("index-url".to_string(), url.to_string()));
    }
    for url in distribution.pip.extra_index_urls.iter().filter(|u| web(u)) {
        found.push(("extra-index-url".to_string(), url.clone()));
    }
    let args = distribution.pip_args_for(platform);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        for option in ["index-url", "extra-index-url"] {
            let flag = format!("--{option}");
            let value = if *arg == flag {
                it.clone().next().cloned()
            } else {
                arg.strip_prefix(&format!("{flag}=")).map(str::to_string)
            };
            if let Some(url) = value.filter(|u| web(u)) {
                found.retain(|(key, _)| !(option == "index-url" && key == "index-url"));
                found.push((option.to_string(), url));
            }
        }
    }
    found
}

/// pip's site configuration (`pip.conf`, `pip.ini` on Windows, in the prefix): read by every
/// pip this python runs, below the user's own options.
pub fn pip_config(indexes: &[(String, String)]) -> Option<String> {
    if indexes.is_empty() {
        return None;
    }
    let mut text = String::from(
        "# Written by the anymatix build: the package indexes this zip's packages came from, so\n\
         # that pip in this environment finds the same builds (PyTorch's CUDA builds, for one).\n\
         # Options given on pip's command line (--index-url, --extra-index-url) still apply.\n\
         [global]\n",
    );
    for key in ["index-url", "extra-index-url"] {
        let urls: Vec<&str> = indexes
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, u)| u.as_str())
            .collect();
        if !urls.is_empty() {
            text.push_str(&format!("{key} = {}\n", urls.join("\n    ")));
        }
    }
    Some(text)
}

/// `tools/environment.json`: what the tool needs to know of the build.
#[derive(Serialize)]
struct Setup<'a> {
    version: &'a str,
    platform: Platform,
    protected: &'a [ProtectedPackage],
    /// The build's smoke imports and checks, `{scratch}` standing for a folder of their own.
    smoke: Vec<SmokeStep>,
    indexes: &'a [(String, String)],
}

/// Writes the package tools into the zip's tree.
#[derive(Debug, Clone)]
pub struct PackageTools {
    pub version: String,
    pub platform: Platform,
    pub tree: PathBuf,
    /// (key, name) as distribution.yml gives them.
    pub protected: Vec<(String, String)>,
    pub smoke: Smoke,
    /// (pip option, URL) carried into pip's site configuration.
    pub indexes: Vec<(String, String)>,
}

impl PackageTools {
    pub fn run(&self, tools: &Tools) -> Result<Vec<ProtectedPackage>> {
        let python = self
            .tree
            .join("python")
            .join(self.platform.python_in_prefix());
        let core = protected::protected_closure(tools, &python, &self.protected, self.platform)?;
        lay_out(&Shipped {
            version: &self.version,
            platform: self.platform,
            tree: &self.tree,
            site: &core.site,
            protected: &core.protected,
            files: &core.files,
            smoke: &self.smoke,
            indexes: &self.indexes,
        })?;
        tools.reporter.note(format!(
            "protected {} packages: {}",
            core.protected.len(),
            core.protected
                .iter()
                .map(|p| format!("{} {}", p.name, p.version))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(core.protected)
    }
}

/// Everything the package tools are written from.
pub struct Shipped<'a> {
    pub version: &'a str,
    pub platform: Platform,
    /// `anymatix/`
    pub tree: &'a Path,
    /// Its python's site-packages.
    pub site: &'a Path,
    pub protected: &'a [ProtectedPackage],
    pub files: &'a BTreeMap<String, HeldFiles>,
    pub smoke: &'a Smoke,
    pub indexes: &'a [(String, String)],
}

/// Writes the package tools into a tree (the Windows tests lay them into a real Windows
/// CPython's folder with this).
pub fn lay_out(shipped: &Shipped) -> Result<()> {
    let tree = shipped.tree;
    for (name, text) in SITE_FILES {
        fs_err::write(shipped.site.join(name), text)?;
    }
    for (rel, text) in TOOL_FILES {
        let path = tree.join(rel);
        fs_err::create_dir_all(path.parent().expect("a file in a folder"))?;
        fs_err::write(path, text)?;
    }
    fs_err::write(
        tree.join("tools/protected.txt"),
        protected::constraints(shipped.protected),
    )?;
    fs_err::write(
        tree.join("tools/protected-files.json"),
        serde_json::to_string(shipped.files)? + "\n",
    )?;
    let setup = Setup {
        version: shipped.version,
        platform: shipped.platform,
        protected: shipped.protected,
        smoke: smoke_steps(shipped.smoke, Path::new("{scratch}")),
        indexes: shipped.indexes,
    };
    fs_err::write(
        tree.join("tools/environment.json"),
        serde_json::to_string_pretty(&setup)? + "\n",
    )?;
    if let Some(config) = pip_config(shipped.indexes) {
        let name = if shipped.platform.is_windows() {
            "pip.ini"
        } else {
            "pip.conf"
        };
        fs_err::write(tree.join("python").join(name), config)?;
    }
    for (name, text) in scripts(shipped.platform) {
        write_executable(&tree.join(name), &text)?;
    }
    Ok(())
}

fn write_executable(path: &Path, text: &str) -> Result<()> {
    fs_err::write(path, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

impl Describe for PackageTools {
    fn title(&self) -> String {
        "Write the package tools and the protected core".into()
    }

    fn stage(&self) -> Stage {
        Stage::Dist
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.protected.iter().map(|(_, n)| n.as_str()).collect();
        write!(
            f,
            "write {} and tools/ into {}, protecting [{}]",
            scripts(self.platform)
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
            self.tree.display(),
            names.join(", ")
        )?;
        for (key, url) in &self.indexes {
            write!(f, ", pip {key} {url}")?;
        }
        Ok(())
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set("version", self.version.clone());
    }
}

#[cfg(test)]
mod tests;
