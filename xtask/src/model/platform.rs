//! The five platforms the distribution ships for: a closed type, with strings only at the edges.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Platform {
    LinuxX86_64,
    LinuxAarch64,
    MacosArm64,
    MacosX86_64,
    WindowsX86_64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Os {
    Linux,
    Macos,
    Windows,
}

impl Platform {
    pub const ALL: [Platform; 5] = [
        Platform::LinuxX86_64,
        Platform::LinuxAarch64,
        Platform::MacosArm64,
        Platform::MacosX86_64,
        Platform::WindowsX86_64,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Platform::LinuxX86_64 => "linux-x86_64",
            Platform::LinuxAarch64 => "linux-aarch64",
            Platform::MacosArm64 => "macos-arm64",
            Platform::MacosX86_64 => "macos-x86_64",
            Platform::WindowsX86_64 => "windows-x86_64",
        }
    }

    pub fn os(self) -> Os {
        match self {
            Platform::LinuxX86_64 | Platform::LinuxAarch64 => Os::Linux,
            Platform::MacosArm64 | Platform::MacosX86_64 => Os::Macos,
            Platform::WindowsX86_64 => Os::Windows,
        }
    }

    pub fn is_windows(self) -> bool {
        self.os() == Os::Windows
    }

    pub fn is_macos(self) -> bool {
        self.os() == Os::Macos
    }

    /// The platform this binary was compiled for, if it is one we ship.
    pub fn host() -> Option<Platform> {
        let (os, arch) = (std::env::consts::OS, std::env::consts::ARCH);
        Platform::ALL.into_iter().find(|p| {
            let os_matches = match p.os() {
                Os::Linux => os == "linux",
                Os::Macos => os == "macos",
                Os::Windows => os == "windows",
            };
            os_matches && p.rust_arch() == arch
        })
    }

    /// `choice`, or this host's platform; the one place that default is made.
    pub fn chosen_or_host(choice: Option<Platform>) -> anyhow::Result<Platform> {
        match choice.or_else(Platform::host) {
            Some(p) => Ok(p),
            None => anyhow::bail!(
                "this host ({} {}) is none of the platforms we ship: pass --platform (with --dry-run to see a plan)",
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
        }
    }

    fn rust_arch(self) -> &'static str {
        match self {
            Platform::LinuxAarch64 | Platform::MacosArm64 => "aarch64",
            _ => "x86_64",
        }
    }

    /// Miniforge's versioned asset name, e.g. `Miniforge3-26.3.2-3-Linux-x86_64.sh`.
    /// Only the versioned names carry a `.sha256` sidecar, so we always use them.
    pub fn miniforge_asset(self, tag: &str) -> String {
        let (os, arch, ext) = match self {
            Platform::LinuxX86_64 => ("Linux", "x86_64", "sh"),
            Platform::LinuxAarch64 => ("Linux", "aarch64", "sh"),
            Platform::MacosArm64 => ("MacOSX", "arm64", "sh"),
            Platform::MacosX86_64 => ("MacOSX", "x86_64", "sh"),
            Platform::WindowsX86_64 => ("Windows", "x86_64", "exe"),
        };
        format!("Miniforge3-{tag}-{os}-{arch}.{ext}")
    }

    /// The prefix's python, relative to the prefix.
    pub fn python_in_prefix(self) -> &'static str {
        if self.is_windows() {
            "python.exe"
        } else {
            "bin/python3"
        }
    }

    /// mamba as Miniforge installs it (mamba 2 is a native binary).
    pub fn mamba_in_prefix(self) -> &'static str {
        if self.is_windows() {
            "Library/bin/mamba.exe"
        } else {
            "bin/mamba"
        }
    }

    /// The GitHub-hosted runner that builds this platform natively (runner-images, 2026):
    /// `macos-14` is deprecated, so arm64 builds on `macos-15`; `macos-15-intel` is the last
    /// x86_64 image announced (until August 2027).
    pub fn github_runner(self) -> &'static str {
        match self {
            Platform::LinuxX86_64 => "ubuntu-latest",
            Platform::LinuxAarch64 => "ubuntu-24.04-arm",
            Platform::MacosArm64 => "macos-15",
            Platform::MacosX86_64 => "macos-15-intel",
            Platform::WindowsX86_64 => "windows-latest",
        }
    }

    /// The helper script that installs more packages, as named in the archive.
    pub fn helper_script_name(self) -> &'static str {
        if self.is_windows() {
            "install_package.bat"
        } else {
            "install_package.sh"
        }
    }
}

impl serde::Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Platform {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug)]
pub struct UnknownPlatform(pub String);

impl fmt::Display for UnknownPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let valid: Vec<&str> = Platform::ALL.iter().map(|p| p.name()).collect();
        write!(
            f,
            "unknown platform `{}`: valid platforms are {}",
            self.0,
            valid.join(", ")
        )
    }
}

impl std::error::Error for UnknownPlatform {}

impl FromStr for Platform {
    type Err = UnknownPlatform;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPlatform(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Platform::ALL {
            assert_eq!(p.name().parse::<Platform>().unwrap(), p);
        }
    }

    #[test]
    fn unknown_name_lists_the_valid_ones() {
        let err = "linux-riscv".parse::<Platform>().unwrap_err().to_string();
        assert!(err.contains("linux-riscv"), "{err}");
        for p in Platform::ALL {
            assert!(err.contains(p.name()), "{err}");
        }
    }

    #[test]
    fn assets_follow_miniforge_naming() {
        let tag = "26.3.2-3";
        let names: Vec<String> = Platform::ALL
            .iter()
            .map(|p| p.miniforge_asset(tag))
            .collect();
        assert_eq!(
            names,
            [
                "Miniforge3-26.3.2-3-Linux-x86_64.sh",
                "Miniforge3-26.3.2-3-Linux-aarch64.sh",
                "Miniforge3-26.3.2-3-MacOSX-arm64.sh",
                "Miniforge3-26.3.2-3-MacOSX-x86_64.sh",
                "Miniforge3-26.3.2-3-Windows-x86_64.exe",
            ]
        );
    }

    #[test]
    fn this_host_is_known_here() {
        // CI and development happen on linux-x86_64; the others are built on their own runners.
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(Platform::host(), Some(Platform::LinuxX86_64));
        }
    }
}
