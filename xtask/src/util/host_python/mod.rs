//! The target's python stood in for by a CPython of this machine, where the target's cannot run
//! (a macOS zip built on Linux): the same `X.Y`, with the target's prefix as `sys.prefix`, its
//! site-packages on the path and its platform in the environment markers (`boot.py`). Only the
//! build's pure-Python steps run so: reading installed metadata, asking where site-packages is,
//! compiling bytecode. Nothing of the target is imported that is not Python source.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};

use crate::util::process::Command;

const BOOT_PY: &str = include_str!("boot.py");

/// Names a CPython to use (its path) instead of looking for `pythonX.Y`.
pub const HOST_PYTHON_VAR: &str = "ANYMATIX_HOST_PYTHON";

/// What environment markers see: the target's platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markers {
    pub sys_platform: &'static str,
    pub platform_system: &'static str,
    pub platform_machine: &'static str,
}

/// A CPython of this machine standing in for the target's python; found by [`prepare`] for the
/// target's version.
///
/// [`prepare`]: HostPython::prepare
#[derive(Debug, Clone)]
pub struct HostPython {
    pub markers: Markers,
    found: Arc<Mutex<Option<PathBuf>>>,
}

impl PartialEq for HostPython {
    fn eq(&self, other: &Self) -> bool {
        self.markers == other.markers
    }
}

impl Eq for HostPython {}

impl HostPython {
    pub fn new(markers: Markers) -> HostPython {
        HostPython {
            markers,
            found: Arc::default(),
        }
    }

    /// Finds the CPython of this machine of the version of `target` (the target's python, whose
    /// `lib/pythonX.Y` says it): `$ANYMATIX_HOST_PYTHON`, `pythonX.Y` on the PATH, or the one
    /// `uv python find X.Y` knows.
    pub fn prepare(&self, target: &Path) -> Result<()> {
        let version = target_version(target)?;
        let mut found = self.found.lock().expect("host python lock");
        if found
            .as_ref()
            .is_some_and(|python| probe(python).is_ok_and(|v| v == version))
        {
            return Ok(());
        }
        *found = Some(find(&version)?);
        Ok(())
    }

    /// `python <flags> -c CODE …` as the stand-in runs it (the caller adds `-c CODE` and its
    /// arguments).
    pub fn command(&self, target: &Path, flags: &[&str]) -> Command {
        let found = self.found.lock().expect("host python lock").clone();
        let python = found.expect("HostPython::prepare runs before its first command");
        let prefix = prefix_of(target);
        let stand_in_for = serde_json::json!({
            "prefix": prefix.to_string_lossy(),
            "sys_platform": self.markers.sys_platform,
            "platform_system": self.markers.platform_system,
            "platform_machine": self.markers.platform_machine,
        });
        Command::new(python)
            .args(flags.iter().copied())
            // No site: the host's own site-packages never enters; boot.py adds the target's.
            .args(["-S", "-c", BOOT_PY])
            .env("ANYMATIX_STAND_IN_FOR", stand_in_for.to_string())
    }
}

/// `bin/python3` → the prefix.
fn prefix_of(target: &Path) -> PathBuf {
    target
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// `X.Y` of the target's python: the `lib/pythonX.Y` that has a site-packages.
fn target_version(target: &Path) -> Result<String> {
    let lib = prefix_of(target).join("lib");
    let mut versions: Vec<String> = fs_err::read_dir(&lib)
        .with_context(|| {
            format!(
                "cannot find the target's python version in {}",
                lib.display()
            )
        })?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("site-packages").is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("python").map(str::to_string)
        })
        .collect();
    versions.sort();
    match versions.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no lib/pythonX.Y/site-packages in {}: is the target's python installed there?",
            lib.display()
        ),
        many => bail!(
            "{} has site-packages for several pythons ({}): which one is the target's?",
            lib.display(),
            many.join(", ")
        ),
    }
}

/// The CPython `X.Y` of this machine that stands in for the target's: `$ANYMATIX_HOST_PYTHON`, else
/// `pythonX.Y` on the PATH, else `uv python find X.Y`, each probed.
pub fn find(version: &str) -> Result<PathBuf> {
    if let Some(named) = std::env::var_os(HOST_PYTHON_VAR) {
        let python = PathBuf::from(named);
        let found = probe(&python)
            .with_context(|| format!("{HOST_PYTHON_VAR}={} does not run", python.display()))?;
        if found != version {
            bail!(
                "{HOST_PYTHON_VAR}={} is python {found}; the target's is {version}",
                python.display()
            );
        }
        return Ok(python);
    }
    let mut tried = Vec::new();
    let name = format!("python{version}");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path)
        .map(|dir| dir.join(&name))
        .filter(|p| p.is_file());
    let from_uv = std::process::Command::new("uv")
        .args(["python", "find", version])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    for python in on_path.chain(from_uv) {
        match probe(&python) {
            Ok(found) if found == version => return Ok(python),
            Ok(found) => tried.push(format!("{} is {found}", python.display())),
            Err(e) => tried.push(format!("{}: {e:#}", python.display())),
        }
    }
    bail!(
        "the target's python ({version}) cannot run here, and a CPython {version} of this machine \
         stands in for it in the build's pure-Python steps: none was found{}. Install one (`uv \
         python install {version}`, pyenv, python.org) and put `python{version}` on the PATH, or \
         name it in {HOST_PYTHON_VAR}",
        if tried.is_empty() {
            String::new()
        } else {
            format!(" ({})", tried.join("; "))
        }
    )
}

/// The `X.Y` `python` reports.
fn probe(python: &Path) -> Result<String> {
    let out = std::process::Command::new(python)
        .args([
            "-S",
            "-c",
            "import sys; print('%d.%d' % sys.version_info[:2])",
        ])
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A prefix laid out as a macOS one, its python a file that cannot run here: the stand-in
    /// finds its site-packages through sysconfig, reads its metadata (not the host's), and shows
    /// environment markers the target's platform.
    #[test]
    fn a_host_cpython_stands_in_for_a_target_python_that_cannot_run() {
        let version = probe(Path::new("python3")).expect("python3 runs here");
        let prefix = tempfile::tempdir().unwrap();
        let site = prefix
            .path()
            .join(format!("lib/python{version}/site-packages"));
        let info = site.join("standin-1.0.dist-info");
        fs_err::create_dir_all(&info).unwrap();
        fs_err::write(
            info.join("METADATA"),
            "Metadata-Version: 2.1\nName: standin\nVersion: 1.0\n\
",
        )
        .unwrap();
        let target = prefix.path().join("bin/python3");
        fs_err::create_dir_all(target.parent().unwrap()).unwrap();
        fs_err::write(&target, b"\xcf\xfa\xed\xfe not for this machine").unwrap();

        let host = HostPython::new(Markers {
            sys_platform: "darwin",
            platform_system: "Darwin",
            platform_machine: "arm64",
        });
        std::env::set_var(HOST_PYTHON_VAR, python3_executable());
        host.prepare(&target).unwrap();
        // The host's own site-packages (its pip) is out of sight; the target's is in it.
        let code = "import importlib.util, platform, sys, sysconfig\n\
                    from importlib.metadata import version\n\
                    print(sysconfig.get_paths()['purelib'])\n\
                    print(sys.argv[1], version('standin'), importlib.util.find_spec('pip'))\n\
                    print(sys.platform, platform.system(), platform.machine())\n";
        let command = host
            .command(&target, &["-s"])
            .args(["-c", code, "an argument"]);
        let out = std::process::Command::new(&command.program)
            .args(&command.args)
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!(
                "{}\nan argument 1.0 None\ndarwin Darwin arm64\n",
                site.display()
            )
        );

        // Another version's prefix is refused by name.
        let other = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(other.path().join("lib/python2.7/site-packages")).unwrap();
        let err = host
            .prepare(&other.path().join("bin/python3"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{HOST_PYTHON_VAR}=")) && err.contains("the target's is 2.7"),
            "{err}"
        );
    }

    fn python3_executable() -> PathBuf {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .unwrap();
        assert!(out.status.success());
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    }
}
