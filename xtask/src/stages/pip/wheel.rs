//! Installs a wheel into a prefix of another platform, as pip would there: the files into
//! site-packages, `<name>-<version>.data/` into its scheme's folders, `console_scripts` and
//! `gui_scripts` as the target's launchers, and `RECORD` (every file with its sha256 and size)
//! and `INSTALLER` in the `.dist-info`. pip cannot do this from another OS: it evaluates markers
//! for the host and writes no Windows launchers off Windows.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::model::platform::Platform;
use crate::stages::relocate::launcher;
use crate::util::digest;

/// Where a wheel's parts go on the target.
#[derive(Debug, Clone)]
pub struct Scheme {
    pub platform: Platform,
    pub prefix: PathBuf,
    /// Relative to the prefix, `/`-separated: `Lib/site-packages` on Windows.
    pub site_packages: String,
    pub scripts: String,
    pub python: String,
    /// pip's launcher programs (`t64.exe`, `w64.exe`) on Windows.
    pub console_stub: Vec<u8>,
    pub gui_stub: Vec<u8>,
}

impl Scheme {
    /// The scheme of a Windows conda prefix, with the launcher programs of its own pip.
    pub fn windows(prefix: &Path) -> Result<Scheme> {
        let distlib = prefix.join("Lib/site-packages/pip/_vendor/distlib");
        let stub = |name: &str| {
            fs_err::read(distlib.join(name)).with_context(|| {
                format!(
                    "the base's pip has no launcher program {name}: console scripts cannot be written"
                )
            })
        };
        Ok(Scheme {
            platform: Platform::WindowsX86_64,
            prefix: prefix.to_path_buf(),
            site_packages: "Lib/site-packages".into(),
            scripts: "Scripts".into(),
            python: "python.exe".into(),
            console_stub: stub("t64.exe")?,
            gui_stub: stub("w64.exe")?,
        })
    }
}

impl Scheme {
    /// The scheme of a macOS or Linux conda prefix whose Python is `python` (`X.Y`).
    pub fn unix(platform: Platform, prefix: &Path, python: &str) -> Scheme {
        Scheme {
            platform,
            prefix: prefix.to_path_buf(),
            site_packages: format!("lib/python{python}/site-packages"),
            scripts: "bin".into(),
            // As pip writes its console scripts when the base's `bin/python3` runs it (the
            // native route), so both routes' scripts are the same bytes.
            python: platform.python_in_prefix().into(),
            console_stub: Vec::new(),
            gui_stub: Vec::new(),
        }
    }
}

/// A wheel as installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledWheel {
    pub name: String,
    pub version: String,
}

/// Installs `wheel` by `scheme`.
pub fn install(wheel: &Path, scheme: &Scheme) -> Result<InstalledWheel> {
    install_inner(wheel, scheme).with_context(|| format!("cannot install {}", wheel.display()))
}

fn install_inner(wheel: &Path, scheme: &Scheme) -> Result<InstalledWheel> {
    let mut zip = zip::ZipArchive::new(fs_err::File::open(wheel)?)?;
    let dist_info = dist_info_dir(&zip)?;
    let (name, version) = dist_info
        .strip_suffix(".dist-info")
        .and_then(|stem| stem.split_once('-'))
        .with_context(|| format!("`{dist_info}` is not <name>-<version>.dist-info"))?;
    let data_dir = format!("{name}-{version}.data/");
    let site = scheme.prefix.join(&scheme.site_packages);
    let mut record: BTreeMap<String, String> = BTreeMap::new();
    let mut entry_points = String::new();
    let mut metadata = String::new();
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index)?;
        if entry.is_dir() {
            continue;
        }
        let Some(inside) = entry.enclosed_name() else {
            bail!(
                "the entry `{}` would leave its folder",
                entry.name().unwrap_or_default()
            );
        };
        let inside = inside.to_string_lossy().replace('\\', "/");
        if inside == format!("{dist_info}/RECORD")
            || inside.starts_with(&format!("{dist_info}/RECORD."))
        {
            continue;
        }
        let dest_rel = match inside.strip_prefix(&data_dir) {
            Some(rest) => data_destination(rest, name, scheme)?,
            None => format!("{}/{inside}", scheme.site_packages),
        };
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes)?;
        if inside == format!("{dist_info}/entry_points.txt") {
            entry_points = String::from_utf8_lossy(&bytes).into_owned();
        }
        if inside == format!("{dist_info}/METADATA") {
            metadata = String::from_utf8_lossy(&bytes).into_owned();
        }
        // pip keeps a member's executable bit (and makes `.data/scripts` executable).
        let executable = entry.unix_mode().is_some_and(|m| m & 0o111 != 0)
            || dest_rel.starts_with(&format!("{}/", scheme.scripts));
        write_file(&scheme.prefix, &dest_rel, &bytes, &site, &mut record)?;
        if executable {
            make_executable(&scheme.prefix.join(&dest_rel), scheme.platform)?;
        }
    }
    for (section, gui) in [("console_scripts", false), ("gui_scripts", true)] {
        for (script, module, attr) in entry_points_of(&entry_points, section) {
            let bytes = script_for(scheme, &script, &module, &attr, gui)?;
            let rel = match scheme.platform.is_windows() {
                true => format!("{}/{script}.exe", scheme.scripts),
                false => format!("{}/{script}", scheme.scripts),
            };
            write_file(&scheme.prefix, &rel, &bytes, &site, &mut record)?;
            make_executable(&scheme.prefix.join(&rel), scheme.platform)?;
        }
    }
    write_file(
        &scheme.prefix,
        &format!("{}/{dist_info}/INSTALLER", scheme.site_packages),
        b"pip\n",
        &site,
        &mut record,
    )?;
    let record_rel = format!("{dist_info}/RECORD");
    let mut text: String = record.values().cloned().collect();
    text.push_str(&format!("{record_rel},,\n"));
    fs_err::write(site.join(&record_rel), text)?;
    let field = |key: &str| {
        metadata
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
    };
    Ok(InstalledWheel {
        name: field("Name:").unwrap_or_else(|| name.to_string()),
        version: field("Version:").unwrap_or_else(|| version.to_string()),
    })
}

/// The one top-level `*.dist-info` folder of the wheel.
fn dist_info_dir(zip: &zip::ZipArchive<fs_err::File>) -> Result<String> {
    let mut found: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok()?.split('/').next().map(str::to_string))
        .filter(|top| top.ends_with(".dist-info"))
        .collect();
    found.sort();
    found.dedup();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no .dist-info folder: not a wheel"),
        more => bail!("more than one .dist-info folder: {}", more.join(", ")),
    }
}

/// Where `<name>-<version>.data/<key>/<rest>` goes, as pip's install scheme says.
fn data_destination(rest: &str, name: &str, scheme: &Scheme) -> Result<String> {
    let (key, path) = rest
        .split_once('/')
        .with_context(|| format!("`{rest}` in the .data folder has no scheme key"))?;
    Ok(match key {
        "purelib" | "platlib" => format!("{}/{path}", scheme.site_packages),
        "scripts" => format!("{}/{path}", scheme.scripts),
        "headers" if scheme.platform.is_windows() => format!("Include/{name}/{path}"),
        "headers" => format!("include/{name}/{path}"),
        "data" => path.to_string(),
        other => bail!("unknown .data scheme key `{other}` (pip knows purelib, platlib, scripts, headers, data)"),
    })
}

/// Writes `bytes` at `rel` in the prefix and records it relative to site-packages.
fn write_file(
    prefix: &Path,
    rel: &str,
    bytes: &[u8],
    site: &Path,
    record: &mut BTreeMap<String, String>,
) -> Result<()> {
    let dest = prefix.join(rel);
    fs_err::create_dir_all(dest.parent().context("a file is in a folder")?)?;
    fs_err::write(&dest, bytes)?;
    let listed = relative_to(site, &dest);
    record.insert(
        listed.clone(),
        format!(
            "{listed},sha256={},{}\n",
            digest::record_digest(bytes),
            bytes.len()
        ),
    );
    Ok(())
}

/// Mode 755 for a script or program of a macOS or Linux target (Windows has no such bit).
fn make_executable(path: &Path, platform: Platform) -> Result<()> {
    #[cfg(unix)]
    if !platform.is_windows() {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    let _ = (path, platform);
    Ok(())
}

/// `to` relative to the folder `from`, `/`-separated (`../../Scripts/pip.exe`).
fn relative_to(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// `(script, module, attr)` of a section of `entry_points.txt`.
fn entry_points_of(text: &str, section: &str) -> Vec<(String, String, String)> {
    let mut inside = false;
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == format!("[{section}]");
        } else if inside && !line.is_empty() && !line.starts_with('#') {
            let Some((script, target)) = line.split_once('=') else {
                continue;
            };
            // `module:attr [extra]`: extras do not change the script.
            let target = target.split('[').next().unwrap_or(target).trim();
            let (module, attr) = target.split_once(':').unwrap_or((target, ""));
            if attr.is_empty() {
                continue;
            }
            found.push((
                script.trim().to_string(),
                module.trim().to_string(),
                attr.trim().to_string(),
            ));
        }
    }
    found
}

/// A console script for the target: a launcher relative to the python beside it on Windows.
fn script_for(
    scheme: &Scheme,
    script: &str,
    module: &str,
    attr: &str,
    gui: bool,
) -> Result<Vec<u8>> {
    let main = launcher::entry_point_main(module, attr);
    if scheme.platform.is_windows() {
        let launcher_rel = format!("{}/{script}.exe", scheme.scripts);
        let interpreter = launcher::relative_interpreter(&launcher_rel, &scheme.python, gui)?;
        let stub = if gui {
            &scheme.gui_stub
        } else {
            &scheme.console_stub
        };
        return launcher::new_launcher(stub, &interpreter, &main);
    }
    Ok(format!("#!{}\n{main}", scheme.prefix.join(&scheme.python).display()).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_are_read_by_section() {
        let text = "[console_scripts]\npip = pip._internal.cli.main:main\nx=a.b:c.d [extra]\n\
                    [gui_scripts]\nidle = idlelib.pyshell:main\n";
        assert_eq!(
            entry_points_of(text, "console_scripts"),
            [
                ("pip".into(), "pip._internal.cli.main".into(), "main".into()),
                ("x".into(), "a.b".into(), "c.d".into())
            ]
        );
        assert_eq!(entry_points_of(text, "gui_scripts").len(), 1);
    }

    #[test]
    fn record_paths_are_relative_to_site_packages() {
        let site = Path::new("/p/Lib/site-packages");
        assert_eq!(
            relative_to(site, Path::new("/p/Scripts/pip.exe")),
            "../../Scripts/pip.exe"
        );
        assert_eq!(
            relative_to(site, Path::new("/p/Lib/site-packages/a/b.py")),
            "a/b.py"
        );
    }
}
