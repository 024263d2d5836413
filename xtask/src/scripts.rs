//! The helper scripts that install more packages into an unpacked environment.
//! Their text lives in `anymatix/scripts/`, as data; it is compiled in so the tool never
//! depends on where it runs from.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::fingerprint::Inputs;
use crate::platform::Platform;
use crate::step::{Describe, Stage};

/// Writes the platform's helper script into the tree.
#[derive(Debug, Clone)]
pub struct HelperScript {
    pub platform: Platform,
    pub path: PathBuf,
}

impl HelperScript {
    pub fn run(&self) -> Result<()> {
        write_helper_script(self.platform, &self.path)
    }
}

impl Describe for HelperScript {
    fn title(&self) -> String {
        "Write the helper script".into()
    }

    fn stage(&self) -> Stage {
        Stage::Dist
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "write helper script {}", self.path.display())
    }

    fn inputs(&self, _: &mut Inputs) {}
}

const INSTALL_PACKAGE_SH: &str = include_str!("../../anymatix/scripts/install_package.sh");
const INSTALL_PACKAGE_BAT: &str = include_str!("../../anymatix/scripts/install_package.bat");

pub fn helper_script(platform: Platform) -> String {
    if platform.is_windows() {
        // cmd.exe wants CRLF line endings.
        INSTALL_PACKAGE_BAT
            .replace("\r\n", "\n")
            .replace('\n', "\r\n")
    } else {
        INSTALL_PACKAGE_SH.to_string()
    }
}

/// Writes the platform's helper script at `path`, executable.
pub fn write_helper_script(platform: Platform, path: &Path) -> Result<()> {
    fs_err::write(path, helper_script(platform))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_run_the_python_beside_them_with_dash_s() {
        let sh = helper_script(Platform::LinuxX86_64);
        assert!(sh.starts_with("#!/bin/sh\n"));
        assert!(sh.contains(r#""$here/python/bin/python3" -s -m pip install "$@""#));
        let bat = helper_script(Platform::WindowsX86_64);
        assert!(bat.contains(r#""%~dp0python\python.exe" -s -m pip install %*"#));
        assert!(
            bat.lines().count() > 1 && bat.matches("\r\n").count() == bat.matches('\n').count()
        );
    }

    #[cfg(unix)]
    #[test]
    fn written_script_is_executable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("install_package.sh");
        write_helper_script(Platform::MacosArm64, &path).unwrap();
        assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o755);
    }
}
