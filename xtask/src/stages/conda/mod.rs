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
        let mut target = link::Target {
            platform: self.platform,
            prefix: self.prefix.clone(),
            prefix_text: self.prefix.to_string_lossy().into_owned(),
            python: None,
        };
        let unpacked_root = self.payload.join(".unpacked");
        let mut entry_points = Vec::new();
        let mut post_links = Vec::new();
        for listed in &payload.packages {
            let file = payload.package_file(listed);
            let dist = listed.file.trim_end_matches(".conda");
            let unpacked = package::unpack(&file, &unpacked_root.join(dist))?;
            if unpacked.index.name == "python" {
                target.python = Some(major_minor(&unpacked.index.version));
            }
            let linked = link::link(&unpacked, &target, &payload.record(listed)?)?;
            entry_points.extend(linked.entry_points);
            post_links.extend(linked.post_link.map(|s| format!("{} ({s})", linked.name)));
            fs_err::remove_dir_all(&unpacked.dir)?;
        }
        let written = write_entry_points(&target, &entry_points)?;
        tools.reporter.note(format!(
            "{} conda packages linked for {} (Python {}), {written} console scripts",
            payload.packages.len(),
            self.platform,
            target.python.as_deref().unwrap_or("none"),
        ));
        if !post_links.is_empty() {
            bail!(
                "conda would run these packages' post-link scripts on {}, which cannot run here: {}",
                self.platform,
                post_links.join(", ")
            );
        }
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
