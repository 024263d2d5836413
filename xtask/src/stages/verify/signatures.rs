//! Every Mach-O file of a macOS tree carries a code signature that matches its bytes, checked
//! before the zip is made: a broken one fails the build here instead of on a user's Mac, where
//! arm64 macOS refuses to load the file ("code signature invalid"). An arm64 slice must be
//! signed (the kernel loads no unsigned arm64 code); an x86_64 one may be unsigned, as Intel
//! Macs load it (several wheels ship such slices).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use walkdir::WalkDir;

use crate::model::platform::Platform;
use crate::stages::describe::{Describe, Stage};
use crate::util::codesign::{self, State};
use crate::util::inputs::Inputs;
use crate::util::tools::Tools;
use crate::util::tree::rel_path;

/// Checks the code signature of every Mach-O file in a macOS tree.
#[derive(Debug, Clone)]
pub struct CheckSignatures {
    pub platform: Platform,
    pub tree: PathBuf,
}

/// What the check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signatures {
    /// Mach-O files, and their slices whose signature matched.
    pub files: usize,
    pub valid_slices: usize,
    /// x86_64 slices without a signature (Intel Macs load them).
    pub unsigned_x86_64: usize,
}

impl CheckSignatures {
    pub fn run(&self, tools: &Tools) -> Result<Signatures> {
        let found = check_tree(&self.tree)?;
        tools.reporter.note(format!(
            "{} Mach-O files, {} signed slices whose hashes match their bytes{}",
            found.files,
            found.valid_slices,
            if found.unsigned_x86_64 > 0 {
                format!(
                    "; {} unsigned x86_64 slices (Intel Macs load them)",
                    found.unsigned_x86_64
                )
            } else {
                String::new()
            }
        ));
        Ok(found)
    }
}

impl Describe for CheckSignatures {
    fn title(&self) -> String {
        "Check the Mach-O code signatures".into()
    }

    fn stage(&self) -> Stage {
        Stage::Dist
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "check that every Mach-O file in {} has a code signature matching its bytes (arm64 \
             slices must be signed)",
            self.tree.display()
        )
    }

    fn inputs(&self, _: &mut Inputs) {}
}

/// Checks every Mach-O file under `tree`, on every core; an error lists each bad one.
pub fn check_tree(tree: &Path) -> Result<Signatures> {
    let mut candidates = Vec::new();
    for entry in WalkDir::new(tree).follow_links(false) {
        let entry = entry.with_context(|| format!("cannot walk {}", tree.display()))?;
        if entry.file_type().is_file() && starts_as_macho(entry.path())? {
            candidates.push(entry.into_path());
        }
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = candidates.len().div_ceil(workers).max(1);
    let checked: Vec<(PathBuf, Vec<codesign::SliceSignature>)> = std::thread::scope(|scope| {
        let running: Vec<_> = candidates
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|path| {
                            let bytes = match fs_err::read(path) {
                                Ok(bytes) => bytes,
                                Err(e) => return Some(Err(anyhow::Error::from(e))),
                            };
                            if !codesign::is_macho(&bytes) {
                                return None;
                            }
                            Some(
                                codesign::check(&bytes)
                                    .with_context(|| {
                                        format!("cannot read the Mach-O file {}", path.display())
                                    })
                                    .map(|slices| (path.clone(), slices)),
                            )
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        running
            .into_iter()
            .map(|w| w.join().expect("a signature worker panicked"))
            .collect::<Result<Vec<Vec<_>>>>()
            .map(|parts| parts.into_iter().flatten().collect())
    })?;

    let mut found = Signatures::default();
    let mut bad = Vec::new();
    for (path, slices) in &checked {
        found.files += 1;
        for slice in slices {
            match (&slice.state, slice.arch) {
                (State::Valid { .. }, _) => found.valid_slices += 1,
                (State::Unsigned, "x86_64") => found.unsigned_x86_64 += 1,
                (State::Unsigned, arch) => bad.push(format!(
                    "{} ({arch}): not signed; macOS loads no unsigned {arch} code",
                    rel_path(tree, path)
                )),
                (State::Invalid(why), arch) => {
                    bad.push(format!("{} ({arch}): {why}", rel_path(tree, path)))
                }
            }
        }
    }
    if !bad.is_empty() {
        bad.sort();
        let shown = bad.len().min(20);
        bail!(
            "{} Mach-O slices in {} have no valid code signature, and macOS would refuse to load \
             them:\n  {}{}\nA file the build changed was not signed again: that is a bug of \
             this tool (report it with this list); a file shipped so by a package needs `codesign \
             -s - -f` on a Mac",
            bad.len(),
            tree.display(),
            bad[..shown].join("\n  "),
            if bad.len() > shown {
                format!("\n  … and {} more", bad.len() - shown)
            } else {
                String::new()
            }
        );
    }
    Ok(found)
}

/// Whether the file's first four bytes are a Mach-O or universal magic (cheap, before the read).
fn starts_as_macho(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let mut file = fs_err::File::open(path)?;
    let mut read = 0;
    while read < 4 {
        match file.read(&mut magic[read..])? {
            0 => return Ok(false),
            n => read += n,
        }
    }
    Ok(matches!(
        magic,
        [0xca, 0xfe, 0xba, 0xbe]
            | [0xca, 0xfe, 0xba, 0xbf]
            | [0xce, 0xfa, 0xed, 0xfe]
            | [0xcf, 0xfa, 0xed, 0xfe]
    ))
}
