//! `cargo xtask doctor --install-cross-tools`: what this Linux machine runs to build another
//! platform's zip on the cross route, installed (a CI runner starts without it): uv, for the
//! target's resolve; Wine, mingw-w64 and 7-Zip, for a Windows zip; qemu-user and the aarch64 C
//! library, for a Linux ARM one; a CPython of the target's python version, standing in for a
//! macOS one (uv's).

use anyhow::{bail, Result};

use crate::model::distribution::Distribution;
use crate::model::platform::Platform;
use crate::stages::resolve;
use crate::util::process::{self, Command};
use crate::util::tools::Tools;

/// Installs what the cross route needs for `platform` on this Linux machine (Debian's or
/// Ubuntu's apt-get, through sudo when not root; uv with pip where it is missing).
pub fn install(tools: &Tools, distribution: &Distribution, platform: Platform) -> Result<()> {
    if Platform::host() != Some(Platform::LinuxX86_64) {
        bail!("--install-cross-tools installs the cross route's tools on Linux x86_64 only");
    }
    let mut steps = Vec::new();
    if process::require_tool("uv", "").is_err() {
        steps.push(Command::new("python3").args(["-m", "pip", "install", "--user", "uv"]));
    }
    let apt: &[&str] = match platform {
        Platform::WindowsX86_64 => &["wine", "gcc-mingw-w64-x86-64", "7zip"],
        Platform::LinuxAarch64 => &["qemu-user-static", "binfmt-support", "libc6:arm64"],
        _ => &[],
    };
    if !apt.is_empty() {
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
        let apt_get = |args: &[&str]| {
            let command = if root {
                Command::new("apt-get")
            } else {
                Command::new("sudo").arg("apt-get")
            };
            command.args(args.iter().copied())
        };
        if platform == Platform::LinuxAarch64 {
            let dpkg = if root {
                Command::new("dpkg")
            } else {
                Command::new("sudo").arg("dpkg")
            };
            steps.push(dpkg.args(["--add-architecture", "arm64"]));
        }
        steps.push(apt_get(&["update", "-q"]));
        steps.push(apt_get(&["install", "-y", "-q"]).args(apt.iter().copied()));
    }
    if platform.is_macos() {
        let version = resolve::python_version(distribution, platform, resolve::DEFAULT_PYTHON);
        steps.push(Command::new("uv").args(["python", "install", &version]));
    }
    for step in steps {
        tools.reporter.note(format!("running {step}"));
        process::run(&tools.sh, &tools.reporter, &step)?;
    }
    Ok(())
}
