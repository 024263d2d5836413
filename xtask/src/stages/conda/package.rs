//! One conda package, as conda's package cache holds it: a `.conda` file (a zip holding
//! `info-<dist>.tar.zst` and `pkg-<dist>.tar.zst`, format version 2) unpacked into a folder with
//! `info/` beside the package's files. Only what linking needs is read: `info/index.json`,
//! `info/paths.json`, `info/link.json`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// `info/index.json`: who the package is.
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    pub name: String,
    pub version: String,
    pub build: String,
    #[serde(default)]
    pub subdir: Option<String>,
    /// `python` for a pure-Python package laid out as `site-packages/` and `python-scripts/`,
    /// which the link puts where the target's Python looks.
    #[serde(default)]
    pub noarch: Option<String>,
    #[serde(default)]
    pub depends: Vec<String>,
}

/// One entry of `info/paths.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct PathEntry {
    #[serde(rename = "_path")]
    pub path: String,
    #[serde(default = "hardlink")]
    pub path_type: String,
    #[serde(default)]
    pub prefix_placeholder: Option<String>,
    #[serde(default)]
    pub file_mode: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

fn hardlink() -> String {
    "hardlink".into()
}

#[derive(Debug, Deserialize)]
struct Paths {
    paths: Vec<PathEntry>,
}

/// `info/link.json` of a `noarch: python` package: its console scripts.
#[derive(Debug, Default, Deserialize)]
struct Link {
    #[serde(default)]
    noarch: Option<LinkNoarch>,
}

#[derive(Debug, Default, Deserialize)]
struct LinkNoarch {
    #[serde(default)]
    entry_points: Vec<String>,
}

/// An unpacked package: its folder and what its `info/` says.
#[derive(Debug)]
pub struct Unpacked {
    pub dir: PathBuf,
    pub index: Index,
    pub paths: Vec<PathEntry>,
    /// `name = module:function`, as conda writes them.
    pub entry_points: Vec<String>,
}

/// Unpacks the `.conda` file `file` into `dir` (made anew) and reads its `info/`.
pub fn unpack(file: &Path, dir: &Path) -> Result<Unpacked> {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_default();
    let Some(stem) = name.strip_suffix(".conda") else {
        bail!(
            "{}: only `.conda` packages are read (the format constructor has shipped since 2022); \
             a `.tar.bz2` package needs conda itself",
            file.display()
        );
    };
    if dir.exists() {
        fs_err::remove_dir_all(dir)?;
    }
    fs_err::create_dir_all(dir)?;
    let mut zip = zip::ZipArchive::new(fs_err::File::open(file)?)
        .with_context(|| format!("{} is not a .conda package (not a zip)", file.display()))?;
    for part in ["info", "pkg"] {
        let inner = format!("{part}-{stem}.tar.zst");
        let entry = zip
            .by_name(&inner)
            .with_context(|| format!("{} has no {inner}", file.display()))?;
        untar_zst(entry, dir)
            .with_context(|| format!("cannot unpack {inner} of {}", file.display()))?;
    }
    read_info(dir).with_context(|| format!("the package {} has a bad info/", file.display()))
}

fn untar_zst(reader: impl Read, dir: &Path) -> Result<()> {
    let decoder = ruzstd::decoding::StreamingDecoder::new(reader)
        .map_err(|e| anyhow::anyhow!("not zstd: {e}"))?;
    let mut archive = tar::Archive::new(decoder);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        // `unpack_in` refuses a path that would leave `dir`.
        if !entry.unpack_in(dir)? {
            bail!(
                "an entry would be written outside the package: {:?}",
                entry.path()?
            );
        }
    }
    Ok(())
}

fn read_info(dir: &Path) -> Result<Unpacked> {
    let info = dir.join("info");
    let index: Index = serde_json::from_slice(&fs_err::read(info.join("index.json"))?)
        .context("info/index.json")?;
    let paths: Paths = serde_json::from_slice(&fs_err::read(info.join("paths.json"))?)
        .context("info/paths.json")?;
    let link = info.join("link.json");
    let link: Link = if link.is_file() {
        serde_json::from_slice(&fs_err::read(&link)?).context("info/link.json")?
    } else {
        Link::default()
    };
    Ok(Unpacked {
        dir: dir.to_path_buf(),
        index,
        paths: paths.paths,
        entry_points: link.noarch.map(|n| n.entry_points).unwrap_or_default(),
    })
}
