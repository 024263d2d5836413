//! What a zip needs of the machine it runs on: the glibc and libstdc++ versions its ELF files
//! ask for, the macOS its Mach-O files were built for, the Windows its PE files declare; and the
//! ceiling `distribution.yml` may set on each (`requires_at_most`).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::platform::Os;

/// A dotted version such as `2.28`, `3.4.30` or `12.0`, compared part by part as numbers
/// (`2.9` < `2.28`), missing parts counting as 0 (`12` = `12.0`).
#[derive(Clone, Debug, Eq)]
pub struct Version(Vec<u32>);

impl Version {
    pub fn new(parts: &[u32]) -> Version {
        Version(parts.to_vec())
    }

    /// The first two parts: `2.28.1` → (2, 28).
    pub fn major_minor(&self) -> (u32, u32) {
        (
            self.0.first().copied().unwrap_or(0),
            self.0.get(1).copied().unwrap_or(0),
        )
    }

    fn significant(&self) -> &[u32] {
        let end = self.0.iter().rposition(|&p| p != 0).map_or(0, |i| i + 1);
        &self.0[..end]
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.significant() == other.significant()
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.significant().cmp(other.significant())
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

impl FromStr for Version {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Result<Vec<u32>, _> = s.split('.').map(str::parse).collect();
        match parts {
            Ok(parts) if !parts.is_empty() => Ok(Version(parts)),
            _ => Err(format!(
                "`{s}` is not a version: write numbers joined by dots, such as 2.28 or 12.0"
            )),
        }
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // YAML reads an unquoted 2.10 as the number 2.1: only whole numbers may go unquoted.
        let value = serde_yaml_ng::Value::deserialize(d)?;
        let text = match value {
            serde_yaml_ng::Value::String(s) => s,
            serde_yaml_ng::Value::Number(n) if n.is_u64() => n.to_string(),
            serde_yaml_ng::Value::Number(n) => {
                return Err(serde::de::Error::custom(format!(
                    "put the version {n} in quotes ('{n}'): YAML reads an unquoted 2.10 as the number 2.1"
                )))
            }
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a version such as '2.28', not {other:?}"
                )))
            }
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One kind of thing a binary can require of the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Requirement {
    /// The C library: the highest `GLIBC_x.y` symbol version an ELF file needs.
    Glibc,
    /// The C++ runtime: the highest `GLIBCXX_3.4.x` symbol version an ELF file needs.
    Glibcxx,
    /// The oldest macOS a Mach-O file runs on (`LC_BUILD_VERSION` or `LC_VERSION_MIN_MACOSX`).
    Macos,
    /// The Windows version in a PE file's header (its subsystem version, which the loader checks).
    Windows,
}

impl Requirement {
    pub const ALL: [Requirement; 4] = [
        Requirement::Glibc,
        Requirement::Glibcxx,
        Requirement::Macos,
        Requirement::Windows,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Requirement::Glibc => "glibc",
            Requirement::Glibcxx => "glibcxx",
            Requirement::Macos => "macos",
            Requirement::Windows => "windows",
        }
    }

    /// What a reader calls it.
    pub fn label(self) -> &'static str {
        match self {
            Requirement::Glibc => "glibc",
            Requirement::Glibcxx => "libstdc++ (GLIBCXX)",
            Requirement::Macos => "macOS",
            Requirement::Windows => "Windows",
        }
    }

    pub fn os(self) -> Os {
        match self {
            Requirement::Glibc | Requirement::Glibcxx => Os::Linux,
            Requirement::Macos => Os::Macos,
            Requirement::Windows => Os::Windows,
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// `requires_at_most` in `distribution.yml`: the newest system version each kind may ask for.
/// A zip whose binaries ask for more fails the build, naming them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ceiling {
    pub glibc: Option<Version>,
    pub glibcxx: Option<Version>,
    pub macos: Option<Version>,
    pub windows: Option<Version>,
}

impl Ceiling {
    pub fn get(&self, kind: Requirement) -> Option<&Version> {
        match kind {
            Requirement::Glibc => self.glibc.as_ref(),
            Requirement::Glibcxx => self.glibcxx.as_ref(),
            Requirement::Macos => self.macos.as_ref(),
            Requirement::Windows => self.windows.as_ref(),
        }
    }

    /// Each limit that is set, in a stable order.
    pub fn limits(&self) -> impl Iterator<Item = (Requirement, &Version)> {
        Requirement::ALL
            .into_iter()
            .filter_map(|kind| self.get(kind).map(|v| (kind, v)))
    }
}

/// `GLIBC_2.28` → (Glibc, 2.28); `GLIBCXX_3.4.30` → (Glibcxx, 3.4.30); anything else (such as
/// `GLIBC_PRIVATE` or `CXXABI_1.3`) → `None`.
pub fn elf_symbol_version(name: &str) -> Option<(Requirement, Version)> {
    let (kind, version) = if let Some(v) = name.strip_prefix("GLIBCXX_") {
        (Requirement::Glibcxx, v)
    } else if let Some(v) = name.strip_prefix("GLIBC_") {
        (Requirement::Glibc, v)
    } else {
        return None;
    };
    version.parse().ok().map(|v| (kind, v))
}

/// Mach-O packs X.Y.Z into nibbles `xxxx.yy.zz`; a zero Z is left out, as macOS names itself.
pub fn macho_version(packed: u32) -> Version {
    let patch = packed & 0xff;
    let mut parts = vec![packed >> 16, (packed >> 8) & 0xff];
    if patch != 0 {
        parts.push(patch);
    }
    Version(parts)
}

/// `glibc=2.28` as given on a command line.
pub fn parse_limit(text: &str) -> Result<(Requirement, Version), String> {
    let (kind, version) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: write KIND=VERSION, such as glibc=2.28 or macos=12.0"))?;
    let kind = Requirement::ALL
        .into_iter()
        .find(|k| k.name() == kind)
        .ok_or_else(|| format!("`{kind}` is not one of glibc, glibcxx, macos, windows"))?;
    Ok((kind, version.parse()?))
}

impl Ceiling {
    pub fn from_limits(limits: &[(Requirement, Version)]) -> Ceiling {
        let mut ceiling = Ceiling::default();
        for (kind, version) in limits {
            let slot = match kind {
                Requirement::Glibc => &mut ceiling.glibc,
                Requirement::Glibcxx => &mut ceiling.glibcxx,
                Requirement::Macos => &mut ceiling.macos,
                Requirement::Windows => &mut ceiling.windows,
            };
            *slot = Some(version.clone());
        }
        ceiling
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn versions_compare_as_numbers_part_by_part() {
        assert!(v("2.9") < v("2.28"));
        assert!(v("3.4.30") > v("3.4.9"));
        assert_eq!(v("12"), v("12.0.0"));
        assert!(v("12.0.1") > v("12"));
        assert_eq!(v("2.17").to_string(), "2.17");
        assert!("2.x".parse::<Version>().is_err());
        assert!("".parse::<Version>().is_err());
    }

    #[test]
    fn elf_version_names_are_read_and_others_ignored() {
        assert_eq!(
            elf_symbol_version("GLIBC_2.2.5"),
            Some((Requirement::Glibc, v("2.2.5")))
        );
        assert_eq!(
            elf_symbol_version("GLIBCXX_3.4.30"),
            Some((Requirement::Glibcxx, v("3.4.30")))
        );
        assert_eq!(elf_symbol_version("GLIBC_PRIVATE"), None);
        assert_eq!(elf_symbol_version("CXXABI_1.3.9"), None);
        assert_eq!(elf_symbol_version("GCC_3.0"), None);
    }

    #[test]
    fn macho_nibbles_unpack() {
        assert_eq!(macho_version(0x000b_0000).to_string(), "11.0");
        assert_eq!(macho_version(0x000a_0f02).to_string(), "10.15.2");
        assert_eq!(
            parse_limit("glibc=2.28"),
            Ok((Requirement::Glibc, v("2.28")))
        );
        assert!(parse_limit("glib=2.28").is_err());
        assert!(parse_limit("macos").is_err());
    }

    #[test]
    fn ceilings_are_quoted_versions_or_whole_numbers() {
        let c: Ceiling = serde_yaml_ng::from_str("glibc: '2.28'\nmacos: 12\n").unwrap();
        assert_eq!(c.glibc, Some(v("2.28")));
        assert_eq!(c.macos, Some(v("12")));
        let kinds: Vec<Requirement> = c.limits().map(|(k, _)| k).collect();
        assert_eq!(kinds, [Requirement::Glibc, Requirement::Macos]);
        assert!(serde_yaml_ng::from_str::<Ceiling>("glib: '2.28'\n").is_err());
        // Unquoted, 2.10 would silently be 2.1.
        let err = serde_yaml_ng::from_str::<Ceiling>("glibc: 2.10\n").unwrap_err();
        assert!(err.to_string().contains("in quotes"), "{err}");
    }
}
