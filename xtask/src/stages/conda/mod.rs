//! The Miniforge base for another platform, without running its installer: the installer's
//! files taken out (`constructor`), each of its conda packages unpacked (`package`) and linked
//! for the target (`link`) in the order its explicit list gives, then the console scripts of its
//! `noarch: python` packages written as the target's launchers. `conda_packages` are solved by
//! this machine's conda for the target and linked the same way (`solve`, `transaction`).

pub mod constructor;
pub mod link;
pub mod package;
pub mod shar;
pub mod solve;
pub mod transaction;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use walkdir::WalkDir;

use crate::model::platform::Platform;
use crate::stages::describe::{Describe, Stage};
use crate::stages::relocate::launcher;
use crate::util::inputs::Inputs;
use crate::util::tools::Tools;

/// Installs the installer's packages into `prefix` for `platform`.
#[derive(Debug, Clone)]
pub struct LinkBase {
    pub platform: Platform,
    pub installer: PathBuf,
    /// Where the installer's files are taken out to (and its packages unpacked).
    pub payload: PathBuf,
    pub prefix: PathBuf,
}

impl LinkBase {
    pub fn run(&self, tools: &Tools) -> Result<()> {
        if self.prefix.exists() {
            bail!(
                "the prefix {} already exists: run `cargo xtask clean` (with the same --out) and build again",
                self.prefix.display()
            );
        }
        let payload = constructor::unpack(tools, &self.installer, self.platform, &self.payload)?;
        copy_installer_files(&payload.root, &self.prefix)?;
        let target = link::Target {
            platform: self.platform,
            prefix: self.prefix.clone(),
            prefix_text: self.prefix.to_string_lossy().into_owned(),
            python: None,
        };
        let mut linker = Linker::new(target, self.payload.join(".unpacked"));
        for listed in &payload.packages {
            let (file, record) = (payload.package_file(listed), payload.record(listed)?);
            linker.link(&file, listed.file.trim_end_matches(".conda"), &record)?;
        }
        let (target, written) = linker.finish()?;
        tools.reporter.note(format!(
            "{} conda packages linked for {} (Python {}), {written} console scripts",
            payload.packages.len(),
            self.platform,
            target.python.as_deref().unwrap_or("none"),
        ));
        Ok(())
    }
}

impl Describe for LinkBase {
    fn title(&self) -> String {
        "Link the Miniforge base".into()
    }

    fn stage(&self) -> Stage {
        Stage::Env
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.platform.is_windows() {
            "7-Zip"
        } else {
            "by the byte ranges its header declares"
        };
        write!(
            f,
            "link the base for {} without running its installer: take the files out of {} into {} \
             ({how}), then link the packages of its {} into {} (conda's link step, done here)",
            self.platform,
            self.installer.display(),
            self.payload.display(),
            constructor::EXPLICIT_LIST,
            self.prefix.display()
        )
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set("Miniforge base", self.installer.to_string_lossy());
        inputs.set("Miniforge base route", "linked for the target");
    }
}

/// Links packages one after another into a target (the base's, then conda's solve's), gathering
/// their console scripts, which it writes at the end with every package in place.
pub(crate) struct Linker {
    target: link::Target,
    unpacked_root: PathBuf,
    entry_points: Vec<String>,
    post_links: Vec<String>,
}

impl Linker {
    pub fn new(target: link::Target, unpacked_root: PathBuf) -> Linker {
        Linker {
            target,
            unpacked_root,
            entry_points: Vec::new(),
            post_links: Vec::new(),
        }
    }

    /// Unpacks the package `file` (conda's `dist` name), links it with its `record`, and removes
    /// what was unpacked. Linking python sets the target's Python version, for the scripts.
    pub fn link(&mut self, file: &Path, dist: &str, record: &serde_json::Value) -> Result<()> {
        let unpacked = package::unpack(file, &self.unpacked_root.join(dist))?;
        if unpacked.index.name == "python" {
            self.target.python = Some(major_minor(&unpacked.index.version));
        }
        let linked = link::link(&unpacked, &self.target, record)?;
        self.entry_points.extend(linked.entry_points);
        let post_link = linked.post_link.map(|s| format!("{} ({s})", linked.name));
        self.post_links.extend(post_link);
        fs_err::remove_dir_all(&unpacked.dir)?;
        Ok(())
    }

    /// Refuses packages with a post-link script (it would have to run on the target), then
    /// writes the console scripts: the target as linked, and how many scripts.
    pub fn finish(self) -> Result<(link::Target, usize)> {
        if !self.post_links.is_empty() {
            bail!(
                "conda would run these packages' post-link scripts on {}, which cannot run here: {}",
                self.target.platform,
                self.post_links.join(", ")
            );
        }
        let written = write_entry_points(&self.target, &self.entry_points)?;
        Ok((self.target, written))
    }
}

pub(crate) fn major_minor(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// The files the installer writes itself (conda-standalone, `.condarc`, the explicit list and
/// history in `conda-meta/`), not its package cache nor NSIS's own (`$PLUGINSDIR`).
fn copy_installer_files(payload: &Path, prefix: &Path) -> Result<()> {
    for entry in WalkDir::new(payload).min_depth(1) {
        let entry = entry?;
        let rel = entry.path().strip_prefix(payload)?;
        let top = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let top = top.unwrap_or_default();
        if top == "pkgs" || top.starts_with('$') || top == ".unpacked" {
            continue;
        }
        let dest = prefix.join(rel);
        if entry.file_type().is_dir() {
            fs_err::create_dir_all(&dest)?;
        } else {
            fs_err::create_dir_all(dest.parent().context("a file is in a folder")?)?;
            fs_err::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Each `name = module:function` as a console script of the target: on Windows a launcher made
/// from the stub pip ships (as pip writes them), relative to the python beside it; on macOS and
/// Linux a script whose `#!` names the prefix's python, as conda writes it (the relocate stage
/// then makes it find the python beside it).
pub(crate) fn write_entry_points(target: &link::Target, entry_points: &[String]) -> Result<usize> {
    if entry_points.is_empty() {
        return Ok(0);
    }
    let windows = target.platform.is_windows();
    let stub = if windows {
        let stub_path = target
            .prefix
            .join("Lib/site-packages/pip/_vendor/distlib/t64.exe");
        fs_err::read(&stub_path).context(
            "the base has console scripts but no pip, whose launcher program they are made from",
        )?
    } else {
        Vec::new()
    };
    for spec in entry_points {
        let (name, target_spec) = spec
            .split_once('=')
            .with_context(|| format!("entry point `{spec}` has no `=`"))?;
        let (module, attr) = target_spec
            .trim()
            .split_once(':')
            .with_context(|| format!("entry point `{spec}` names no function"))?;
        let main = launcher::entry_point_main(module.trim(), attr.trim());
        let (script, bytes) = if windows {
            let script = format!("Scripts/{}.exe", name.trim());
            let interpreter = launcher::relative_interpreter(&script, "python.exe", false)?;
            let bytes = launcher::new_launcher(&stub, &interpreter, &main)?;
            (script, bytes)
        } else {
            let python = target
                .python
                .as_deref()
                .context("console scripts of a base without python")?;
            let interpreter = format!("{}/bin/python{python}", target.prefix_text);
            (
                format!("bin/{}", name.trim()),
                format!("#!{interpreter}\n{main}").into_bytes(),
            )
        };
        let path = target.prefix.join(&script);
        fs_err::create_dir_all(path.parent().context("a script is in a folder")?)?;
        fs_err::write(&path, bytes)?;
        #[cfg(unix)]
        if !windows {
            use std::os::unix::fs::PermissionsExt;
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(entry_points.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use support::constructor::{Package, PackageFile};

    fn package(name: &str, files: &[&str]) -> Package {
        Package {
            name: name.into(),
            version: "1.0".into(),
            build: "h0_0".into(),
            subdir: "linux-aarch64".into(),
            noarch: None,
            depends: vec![],
            files: files
                .iter()
                .map(|path| PackageFile {
                    path: path.to_string(),
                    bytes: format!("{name}\n").into_bytes(),
                    placeholder_mode: None,
                    mode: None,
                })
                .collect(),
            links: vec![],
            entry_points: vec![],
        }
    }

    #[test]
    fn a_package_with_a_post_link_script_is_refused_once_all_are_linked() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("prefix");
        let link_all = |packages: &[Package]| {
            let _ = fs_err::remove_dir_all(&prefix);
            let target = link::Target {
                platform: Platform::LinuxAarch64,
                prefix: prefix.clone(),
                prefix_text: prefix.to_string_lossy().into_owned(),
                python: None,
            };
            let mut linker = Linker::new(target, dir.path().join(".unpacked"));
            for package in packages {
                let file = dir.path().join(package.file_name());
                fs_err::write(&file, package.conda_bytes()).unwrap();
                let record = serde_json::json!({"fn": package.file_name()});
                linker.link(&file, &package.dist(), &record).unwrap();
            }
            linker.finish()
        };
        let plain = package("plain", &["share/plain.txt"]);
        let (_, scripts) = link_all(&[plain]).unwrap();
        assert_eq!(scripts, 0);
        assert!(prefix.join("share/plain.txt").is_file());
        assert!(prefix.join("conda-meta/plain-1.0-h0_0.json").is_file());
        assert!(!dir.path().join(".unpacked/plain-1.0-h0_0").exists());

        let hooked = package("hooked", &["bin/.hooked-post-link.sh"]);
        let error = link_all(&[package("plain", &["share/plain.txt"]), hooked])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("post-link scripts on linux-aarch64"),
            "{error}"
        );
        assert!(
            error.contains("hooked (bin/.hooked-post-link.sh)"),
            "{error}"
        );
        assert!(!error.contains("plain"), "{error}");
    }
}
