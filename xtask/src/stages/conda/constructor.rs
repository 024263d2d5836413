//! What a constructor-made installer (Miniforge's) carries, read without running it. Its Windows
//! `.exe` is an NSIS installer whose script (constructor's `nsis/main.nsi.tmpl`) writes, under
//! the install folder: `conda-meta/history` and `conda-meta/initial-state.explicit.txt` (the
//! `@EXPLICIT` list of the base's packages, in install order, each `url#md5`), `_conda.exe`
//! (conda-standalone), `.condarc`, and `pkgs/` with every package file, `urls`, `urls.txt` and
//! `<dist>/info/repodata_record.json` per package; then it runs `_conda.exe constructor
//! --extract-conda-pkgs` and `_conda.exe install --offline --file
//! conda-meta/initial-state.explicit.txt`. Here 7-Zip takes the files out of the `.exe` (it reads
//! NSIS archives, `$INSTDIR` left off the names) and the link stage does conda's part. The `.sh`
//! installers of macOS and Linux are read by the byte ranges their header declares ([`shar`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::model::platform::Platform;
use crate::stages::conda::shar;
use crate::util::digest;
use crate::util::process::{self, Command};
use crate::util::tools::Tools;

/// The explicit list, where constructor writes it in the install folder.
pub const EXPLICIT_LIST: &str = "conda-meta/initial-state.explicit.txt";

/// One package of the explicit list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub url: String,
    /// The package file's name, as the installer holds it under `pkgs/`.
    pub file: String,
}

/// The installer's files, taken out into a folder.
#[derive(Debug)]
pub struct Payload {
    pub root: PathBuf,
    pub packages: Vec<Listed>,
}

impl Payload {
    /// The package file of `listed` in the payload.
    pub fn package_file(&self, listed: &Listed) -> PathBuf {
        self.root.join("pkgs").join(&listed.file)
    }

    /// `pkgs/<dist>/info/repodata_record.json`: where the package came from and its digests.
    pub fn record(&self, listed: &Listed) -> Result<Value> {
        let dist = listed.file.strip_suffix(".conda").unwrap_or(&listed.file);
        let path = self
            .root
            .join("pkgs")
            .join(dist)
            .join("info/repodata_record.json");
        let text = fs_err::read(&path)?;
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))
    }
}

/// 7-Zip's command line that takes every file out of `installer` into `into`.
pub fn unpack_command(seven_zip: &str, installer: &Path, into: &Path) -> Command {
    Command::new(seven_zip)
        .args(["x", "-y", "-bd", "-bso0"])
        .arg(format!("-o{}", into.display()))
        .arg(process::path_arg(installer))
}

/// The 7-Zip program this machine has (`7zz` from Debian's `7zip`, or `7z` from `p7zip-full`).
pub fn seven_zip() -> Result<String> {
    for name in ["7zz", "7z"] {
        if process::require_tool(name, "").is_ok() {
            return Ok(name.to_string());
        }
    }
    bail!(
        "7-Zip is needed to read Miniforge's Windows installer without running it: install it \
         (Debian/Ubuntu: apt-get install 7zip; macOS: brew install sevenzip)"
    )
}

/// Takes the files out of `installer` into `into` (made anew): the Windows `.exe` by 7-Zip,
/// the `.sh` of macOS and Linux by the offsets its header declares ([`shar`]). Then reads and
/// checks its explicit list against the package files it carries.
pub fn unpack(tools: &Tools, installer: &Path, platform: Platform, into: &Path) -> Result<Payload> {
    if into.exists() {
        fs_err::remove_dir_all(into)?;
    }
    fs_err::create_dir_all(into)?;
    if platform.is_windows() {
        unpack_exe(tools, installer, into)?;
    } else {
        shar::unpack(tools, installer, into)?;
    }
    let list = into.join(EXPLICIT_LIST);
    if !list.is_file() {
        bail!(
            "{} holds no {EXPLICIT_LIST}: it is not a constructor installer, or one of a layout \
             this tool does not know",
            installer.display()
        );
    }
    let text = fs_err::read_to_string(&list)?;
    let packages = parse_explicit(&text, platform)
        .with_context(|| format!("{EXPLICIT_LIST} of {}", installer.display()))?;
    let payload = Payload {
        root: into.to_path_buf(),
        packages,
    };
    for listed in &payload.packages {
        check_package(&payload, listed)
            .with_context(|| format!("{} is damaged", installer.display()))?;
    }
    Ok(payload)
}

/// 7-Zip reads NSIS archives.
fn unpack_exe(tools: &Tools, installer: &Path, into: &Path) -> Result<()> {
    let command = unpack_command(&seven_zip()?, installer, into);
    let out = process::output(&tools.sh, &tools.reporter, &command)?;
    if !out.status.success() {
        bail!(
            "{} cannot be read as an NSIS installer ({command} failed: {}). A damaged or \
             truncated download: delete it and build again, which downloads it anew",
            installer.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The packages of an `@EXPLICIT` list, in order; its `# platform:` line must be the target's.
pub fn parse_explicit(text: &str, platform: Platform) -> Result<Vec<Listed>> {
    let subdir = conda_subdir(platform);
    let mut explicit = false;
    let mut packages = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(named) = line.strip_prefix("# platform:") {
            let named = named.trim();
            if named != subdir {
                bail!(
                    "line {}: the installer is for {named}, not {subdir}",
                    number + 1
                );
            }
        } else if line == "@EXPLICIT" {
            explicit = true;
        } else if explicit && !line.is_empty() && !line.starts_with('#') {
            let url = line.split('#').next().unwrap_or(line).to_string();
            let file = url.rsplit('/').next().unwrap_or(&url).to_string();
            if file.is_empty() {
                bail!("line {}: `{line}` names no package file", number + 1);
            }
            packages.push(Listed { url, file });
        }
    }
    if !explicit {
        bail!("no @EXPLICIT line");
    }
    if packages.is_empty() {
        bail!("no package is listed");
    }
    Ok(packages)
}

/// The package file is there, with the sha256 its repodata record gives.
fn check_package(payload: &Payload, listed: &Listed) -> Result<()> {
    let file = payload.package_file(listed);
    if !file.is_file() {
        bail!("pkgs/{} is listed but missing", listed.file);
    }
    let record = payload.record(listed)?;
    let Some(expected) = record.get("sha256").and_then(Value::as_str) else {
        bail!(
            "the record of pkgs/{} has no sha256 to check it by",
            listed.file
        );
    };
    let actual = digest::sha256_file(&file)?;
    if actual != expected {
        bail!(
            "pkgs/{} has sha256 {actual}, its record says {expected}",
            listed.file
        );
    }
    Ok(())
}

/// conda's name for the platform (`win-64`, …).
pub fn conda_subdir(platform: Platform) -> &'static str {
    match platform {
        Platform::WindowsX86_64 => "win-64",
        Platform::LinuxX86_64 => "linux-64",
        Platform::LinuxAarch64 => "linux-aarch64",
        Platform::MacosArm64 => "osx-arm64",
        Platform::MacosX86_64 => "osx-64",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_explicit_list_is_read_in_order_for_its_platform() {
        let text = "# This file may be used to create an environment using:\n\
                    # $ conda create --name <env> --file <this file>\n\
                    # platform: win-64\n@EXPLICIT\n\
                    https://conda.anaconda.org/conda-forge/win-64/python-3.13.2-h_0_cpython.conda#0f\n\
                    https://conda.anaconda.org/conda-forge/noarch/pip-26.3-pyh_0.conda#1e\n";
        let listed = parse_explicit(text, Platform::WindowsX86_64).unwrap();
        assert_eq!(
            listed.iter().map(|l| l.file.as_str()).collect::<Vec<_>>(),
            ["python-3.13.2-h_0_cpython.conda", "pip-26.3-pyh_0.conda"]
        );
        let err = parse_explicit(text, Platform::LinuxX86_64).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: the installer is for win-64, not linux-64"
        );
        let err = parse_explicit("# platform: win-64\n", Platform::WindowsX86_64).unwrap_err();
        assert_eq!(err.to_string(), "no @EXPLICIT line");
    }
}
