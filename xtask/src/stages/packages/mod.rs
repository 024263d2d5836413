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

use crate::model::distribution::VariantInfo;
use crate::model::platform::Platform;
use crate::model::smoke::Smoke;
use crate::model::smoke::{smoke_steps, SmokeStep};
use crate::stages::describe::{Describe, Stage};
use crate::util::inputs::Inputs;
use crate::util::runner::Runner;
use crate::util::tools::Tools;

pub use protected::{HeldFiles, ProtectedPackage};

/// Files of `anymatix/` compiled in: (their place under `anymatix/`, their text).
macro_rules! shipped {
    ($($rel:literal),* $(,)?) => {
        &[$(($rel, include_str!(concat!("../../../../anymatix/", $rel)))),*]
    };
}

/// The tool, by its place under `anymatix/`.
const TOOL_FILES: &[(&str, &str)] = shipped![
    "tools/packages.py",
    "tools/anymatix_packages/__init__.py",
    "tools/anymatix_packages/changes.py",
    "tools/anymatix_packages/check.py",
    "tools/anymatix_packages/cli.py",
    "tools/anymatix_packages/environment.py",
    "tools/anymatix_packages/gui.py",
    "tools/anymatix_packages/history.py",
    "tools/anymatix_packages/pip_run.py",
    "tools/anymatix_packages/protection.py",
    // The same runner the build's checks use, so `packages.sh check` runs them alike.
    "tools/anymatix_packages/smoke_runner.py",
    "tools/anymatix_packages/states.py",
    "tools/anymatix_packages/views.py",
    "tools/anymatix_packages/page/index.html",
    "tools/anymatix_packages/page/page.css",
    "tools/anymatix_packages/page/page.js",
    "tools/update.py",
    "tools/anymatix_update/__init__.py",
    "tools/anymatix_update/build.py",
    "tools/anymatix_update/carry.py",
    "tools/anymatix_update/cli.py",
    "tools/anymatix_update/errors.py",
    "tools/anymatix_update/layout.py",
    "tools/anymatix_update/plan.py",
    "tools/anymatix_update/processes.py",
    "tools/anymatix_update/progress.py",
    "tools/anymatix_update/remote.py",
    "tools/anymatix_update/requirements_met.py",
    "tools/anymatix_update/runner.py",
    "tools/anymatix_update/switch.py",
    "tools/anymatix_update/switch.sh",
    "tools/anymatix_update/zips.py",
];

/// The start-up rules, by their place under `anymatix/` (they go into site-packages).
const SITE_FILES: &[(&str, &str)] = shipped![
    "site/_anymatix_site.py",
    "site/_anymatix_site.pth",
    "site/_anymatix_guard.py",
];

const SCRIPTS: &[(&str, &str)] = shipped![
    "scripts/packages.sh",
    "scripts/install_package.sh",
    "scripts/update.sh",
    "scripts/run_comfyui.sh",
    "scripts/packages.bat",
    "scripts/install_package.bat",
    "scripts/update.bat",
    "scripts/run_comfyui.bat",
];

const README: &str = include_str!("../../../../anymatix/scripts/README.txt");

/// What the files at the top of `anymatix/` say of this zip.
#[derive(Debug, Clone, Default)]
pub struct Folder {
    /// ComfyUI's options for the variant (`--cpu` for a build without CUDA).
    pub comfyui_args: String,
    /// What the machine needs, in a line.
    pub needs: String,
}

impl Folder {
    pub fn new(
        platform: Platform,
        variant: Option<&VariantInfo>,
        requires: &crate::model::system::Ceiling,
    ) -> Folder {
        let cpu = variant.is_some_and(|v| v.cuda.as_deref() == Some("none"));
        let mut needs: Vec<String> = crate::model::system::Requirement::ALL
            .iter()
            .filter_map(|kind| {
                requires
                    .get(*kind)
                    .map(|v| format!("{} {v} or newer", kind.label()))
            })
            .collect();
        needs.insert(0, platform.to_string());
        if let Some(about) = variant.and_then(|v| v.about.as_deref()) {
            needs.push(about.to_string());
        }
        Folder {
            comfyui_args: if cpu { "--cpu ".into() } else { String::new() },
            needs: needs.join("; "),
        }
    }
}

/// The scripts at the top of `anymatix/` for `platform`: (name, text). cmd.exe wants CRLF.
pub fn scripts(platform: Platform, folder: &Folder) -> Vec<(&'static str, String)> {
    let suffix = if platform.is_windows() { ".bat" } else { ".sh" };
    SCRIPTS
        .iter()
        .filter(|(rel, _)| rel.ends_with(suffix))
        .map(|(rel, text)| {
            let name = rel.strip_prefix("scripts/").expect("under scripts/");
            let text = text.replace("@VARIANT_ARGS@", &folder.comfyui_args);
            (name, line_ends(platform, &text))
        })
        .collect()
}

/// `README.txt` at the top of `anymatix/`: how to start, add packages, update and go back.
pub fn readme(platform: Platform, folder: &Folder) -> String {
    let ext = if platform.is_windows() { ".bat" } else { ".sh" };
    let text = README
        .replace("@EXT@", ext)
        .replace("@NEEDS@", &folder.needs);
    line_ends(platform, &text)
}

fn line_ends(platform: Platform, text: &str) -> String {
    if platform.is_windows() {
        text.replace("\r\n", "\n").replace('\n', "\r\n")
    } else {
        text.to_string()
    }
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
    pub runner: Runner,
    pub tree: PathBuf,
    /// (key, name) as distribution.yml gives them.
    pub protected: Vec<(String, String)>,
    pub smoke: Smoke,
    /// (pip option, URL) carried into pip's site configuration.
    pub indexes: Vec<(String, String)>,
    pub folder: Folder,
}

impl PackageTools {
    pub fn run(&self, tools: &Tools) -> Result<Vec<ProtectedPackage>> {
        let python = self
            .tree
            .join("python")
            .join(self.platform.python_in_prefix());
        let core = protected::protected_closure(
            tools,
            &self.runner,
            &python,
            &self.protected,
            self.platform,
        )?;
        lay_out(&Shipped {
            version: &self.version,
            platform: self.platform,
            tree: &self.tree,
            site: &core.site,
            protected: &core.protected,
            files: &core.files,
            smoke: &self.smoke,
            indexes: &self.indexes,
            folder: &self.folder,
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
    pub folder: &'a Folder,
}

/// Writes the package tools into a tree (the Windows tests lay them into a real Windows
/// CPython's folder with this).
pub fn lay_out(shipped: &Shipped) -> Result<()> {
    let tree = shipped.tree;
    for (rel, text) in SITE_FILES {
        let name = rel.strip_prefix("site/").expect("under site/");
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
    for (name, text) in scripts(shipped.platform, shipped.folder) {
        write_executable(&tree.join(name), &text)?;
    }
    fs_err::write(
        tree.join("README.txt"),
        readme(shipped.platform, shipped.folder),
    )?;
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
            "write {}, README.txt and tools/ into {}, protecting [{}]",
            scripts(self.platform, &self.folder)
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
        if !self.folder.comfyui_args.is_empty() {
            write!(
                f,
                ", ComfyUI started with {}",
                self.folder.comfyui_args.trim()
            )?;
        }
        Ok(())
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set("version", self.version.clone());
    }
}

#[cfg(test)]
mod tests;
