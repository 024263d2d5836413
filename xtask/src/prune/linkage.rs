//! Proves pruning removed nothing a kept binary needs: every ELF, Mach-O and PE file of the
//! platform is parsed (on any host, no platform tools), and each library it needs is resolved the
//! way that platform's loader would. What resolves neither in the tree nor to a system library is
//! reported with the file, the library and, where pruning removed it, the rule that did.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use globset::GlobSet;
use goblin::mach::{Mach, MachO, SingleArch};
use serde::Serialize;

use crate::platform::{Os, Platform};
use crate::tree::normalise;

/// A file pruning removed, and the rule that removed it.
#[derive(Debug, Clone)]
pub struct Removed {
    pub path: String,
    pub rule: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MissingLibrary {
    /// The binary that needs it, relative to the tree.
    pub file: String,
    /// As the binary names it (`libjpeg.so.62`, `@rpath/libz.1.dylib`, `zlib.dll`).
    pub library: String,
    /// The rule that removed a file of that name, and that file.
    pub removed_by: Option<String>,
    pub removed_path: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkageReport {
    /// Binaries of the platform's format that were parsed.
    pub binaries: usize,
    /// Needed libraries found in the tree by the loader's own search.
    pub resolved_in_tree: usize,
    /// Needed libraries the platform itself provides.
    pub resolved_by_system: usize,
    /// Found in the tree only by name: loaded through a path set at run time (an already
    /// loaded library, `os.add_dll_directory`, an rpath of the loading executable).
    pub resolved_by_name: usize,
    pub missing: Vec<MissingLibrary>,
}

impl LinkageReport {
    /// A readable account of what is missing, one library a line.
    pub fn describe_missing(&self) -> String {
        let mut text = String::new();
        for m in &self.missing {
            text.push_str(&format!("  {} needs {}", m.file, m.library));
            match (&m.removed_by, &m.removed_path) {
                (Some(rule), Some(path)) => {
                    text.push_str(&format!(", which prune rule `{rule}` removed ({path})"))
                }
                _ => text.push_str(", which is neither in the tree nor a system library"),
            }
            text.push('\n');
        }
        text
    }
}

enum Found {
    InTree,
    System,
    ByName,
    Missing,
}

/// A kept file (or link), as the prune walk saw it.
#[derive(Debug, Clone)]
pub struct Kept {
    pub path: String,
    pub size: u64,
    /// A regular file whose name or mode says it may be a native binary of the platform;
    /// only these are opened, so the check costs little on trees of many thousand files.
    pub maybe_binary: bool,
}

/// Whether a regular file may be a native binary for `os`, by name and mode alone.
pub fn maybe_binary(os: Os, name: &str, executable: bool) -> bool {
    match os {
        Os::Linux => executable || name.ends_with(".so") || name.contains(".so."),
        Os::Macos => executable || name.ends_with(".so") || name.ends_with(".dylib"),
        Os::Windows => {
            let lower = name.to_ascii_lowercase();
            lower.ends_with(".dll") || lower.ends_with(".pyd") || lower.ends_with(".exe")
        }
    }
}

/// Checks the kept files of `tree` (pruning's own walk tells which: removed files count as gone
/// even while still on disk, as in a dry run).
pub fn check(
    tree: &Path,
    platform: Platform,
    system: &GlobSet,
    kept_files: &[Kept],
    removed: &[Removed],
) -> Result<LinkageReport> {
    let os = platform.os();
    let mut kept: HashSet<String> = HashSet::with_capacity(kept_files.len());
    let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
    let mut candidates: Vec<String> = Vec::new();
    for file in kept_files {
        let name = file.path.rsplit('/').next().unwrap_or(&file.path);
        by_name
            .entry(fold(os, name))
            .or_default()
            .push(file.path.clone());
        kept.insert(fold(os, &file.path));
        if file.maybe_binary && has_native_magic(&tree.join(&file.path), os)? {
            candidates.push(file.path.clone());
        }
    }
    let removed_by_name: HashMap<String, &Removed> = removed
        .iter()
        .map(|r| (fold(os, r.path.rsplit('/').next().unwrap_or(&r.path)), r))
        .collect();

    let mut report = LinkageReport::default();
    for rel in candidates {
        let path = tree.join(&rel);
        let file = fs_err::File::open(&path)?;
        // Mapped, not read: libtorch_cuda alone is over a gigabyte.
        // SAFETY: the tree is ours and not modified while the check runs.
        let bytes = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("cannot map {}", path.display()))?;
        let Some(needs) = needed_libraries(&bytes, os) else {
            continue; // not a binary of this platform after all (a Java class, a stub)
        };
        report.binaries += 1;
        let dir = parent(&rel);
        for need in needs {
            let found = resolve(os, &need, &dir, system, &kept, &by_name);
            match found {
                Found::InTree => report.resolved_in_tree += 1,
                Found::System => report.resolved_by_system += 1,
                Found::ByName => report.resolved_by_name += 1,
                Found::Missing if need.weak => report.resolved_by_system += 1,
                Found::Missing => {
                    let removed = removed_by_name.get(&fold(os, base_name(&need.name)));
                    report.missing.push(MissingLibrary {
                        file: rel.clone(),
                        library: need.name.clone(),
                        removed_by: removed.map(|r| r.rule.clone()),
                        removed_path: removed.map(|r| r.path.clone()),
                    });
                }
            }
        }
    }
    Ok(report)
}

/// One library a binary needs, with the places its own headers say to look.
struct Need {
    name: String,
    /// ELF RPATH/RUNPATH, Mach-O LC_RPATH; unexpanded.
    search: Vec<String>,
    /// Mach-O weak links may be absent.
    weak: bool,
}

fn has_native_magic(path: &Path, os: Os) -> Result<bool> {
    let mut magic = [0u8; 4];
    let mut file = fs_err::File::open(path)?;
    let n = file.read(&mut magic)?;
    if n < 4 {
        return Ok(false);
    }
    Ok(match os {
        Os::Linux => magic == *b"\x7fELF",
        Os::Macos => matches!(
            u32::from_be_bytes(magic),
            0xfeedface | 0xfeedfacf | 0xcefaedfe | 0xcffaedfe | 0xcafebabe
        ),
        // Only .dll, .pyd and .exe files get here (see `maybe_binary`).
        Os::Windows => magic[..2] == *b"MZ",
    })
}

fn needed_libraries(bytes: &[u8], os: Os) -> Option<Vec<Need>> {
    match os {
        Os::Linux => {
            let elf = goblin::elf::Elf::parse(bytes).ok()?;
            // The loader uses RUNPATH when present and ignores RPATH then.
            let search: Vec<String> = if elf.runpaths.is_empty() {
                &elf.rpaths
            } else {
                &elf.runpaths
            }
            .iter()
            .flat_map(|p| p.split(':'))
            .map(str::to_string)
            .collect();
            Some(
                elf.libraries
                    .iter()
                    .map(|lib| Need {
                        name: lib.to_string(),
                        search: search.clone(),
                        weak: false,
                    })
                    .collect(),
            )
        }
        Os::Macos => match Mach::parse(bytes).ok()? {
            Mach::Binary(macho) => Some(macho_needs(&macho)),
            Mach::Fat(fat) => {
                // A universal binary: every architecture must find its libraries.
                let mut all = Vec::new();
                for arch in &fat {
                    if let Ok(SingleArch::MachO(macho)) = arch {
                        all.extend(macho_needs(&macho));
                    }
                }
                Some(all)
            }
        },
        Os::Windows => {
            let pe = goblin::pe::PE::parse(bytes).ok()?;
            Some(
                pe.libraries
                    .iter()
                    .map(|lib| Need {
                        name: lib.to_string(),
                        search: Vec::new(),
                        weak: false,
                    })
                    .collect(),
            )
        }
    }
}

/// Weak links are told apart by their load command.
fn macho_needs(macho: &MachO) -> Vec<Need> {
    use goblin::mach::load_command::CommandVariant;
    let weak_count = macho
        .load_commands
        .iter()
        .filter(|c| matches!(c.command, CommandVariant::LoadWeakDylib(_)))
        .count();
    let mut weak_names = HashSet::new();
    if weak_count > 0 {
        // goblin lists every dylib in load-command order; pair them up with the commands.
        let mut libs = macho.libs.iter().skip(1);
        for command in &macho.load_commands {
            let is_dylib = matches!(
                command.command,
                CommandVariant::LoadDylib(_)
                    | CommandVariant::LoadUpwardDylib(_)
                    | CommandVariant::ReexportDylib(_)
                    | CommandVariant::LoadWeakDylib(_)
                    | CommandVariant::LazyLoadDylib(_)
            );
            if is_dylib {
                if let Some(name) = libs.next() {
                    if matches!(command.command, CommandVariant::LoadWeakDylib(_)) {
                        weak_names.insert(name.to_string());
                    }
                }
            }
        }
    }
    let search: Vec<String> = macho.rpaths.iter().map(|r| r.to_string()).collect();
    macho
        .libs
        .iter()
        .skip(1) // goblin puts "self" first
        .map(|lib| Need {
            name: lib.to_string(),
            search: search.clone(),
            weak: weak_names.contains(*lib),
        })
        .collect()
}

fn resolve(
    os: Os,
    need: &Need,
    dir: &str,
    system: &GlobSet,
    kept: &HashSet<String>,
    by_name: &HashMap<String, Vec<String>>,
) -> Found {
    let exists = |rel: &str| normalise(rel).is_some_and(|p| kept.contains(&fold(os, &p)));
    let name = need.name.as_str();
    let known_by_name = || by_name.contains_key(&fold(os, base_name(name)));
    match os {
        Os::Linux => {
            if system.is_match(name) {
                return Found::System;
            }
            if name.contains('/') {
                return if exists(name) {
                    Found::InTree
                } else {
                    Found::Missing
                };
            }
            let dirs = need
                .search
                .iter()
                .filter_map(|entry| {
                    entry
                        .strip_prefix("$ORIGIN")
                        .or_else(|| entry.strip_prefix("${ORIGIN}"))
                        .map(|rest| format!("{dir}{rest}"))
                })
                // conda's python finds its prefix's lib/ through its own RPATH.
                .chain(["python/lib".to_string()]);
            search(dirs, name, exists, known_by_name)
        }
        Os::Macos => {
            if name.starts_with('/') {
                return if system.is_match(name) {
                    Found::System
                } else {
                    Found::Missing
                };
            }
            let expand = |p: &str| -> Option<String> {
                if let Some(rest) = p.strip_prefix("@loader_path") {
                    Some(format!("{dir}{rest}"))
                } else {
                    p.strip_prefix("@executable_path")
                        .map(|rest| format!("python/bin{rest}"))
                }
            };
            let candidates: Vec<String> = if let Some(rest) = name.strip_prefix("@rpath") {
                need.search
                    .iter()
                    .filter_map(|r| expand(r))
                    .map(|r| format!("{r}{rest}"))
                    .collect()
            } else {
                expand(name).into_iter().collect()
            };
            if candidates.iter().any(|c| exists(c)) {
                Found::InTree
            } else if system.is_match(base_name(name)) {
                Found::System
            } else if (name.starts_with("@rpath") || !name.starts_with('@')) && known_by_name() {
                // dyld also uses the rpaths of the images that load this one.
                Found::ByName
            } else {
                Found::Missing
            }
        }
        Os::Windows => {
            let lower = name.to_ascii_lowercase();
            if system.is_match(&lower) {
                return Found::System;
            }
            // The DLL search: the loading file's folder, then where conda puts DLLs.
            let dirs = [dir, "python", "python/Library/bin", "python/DLLs"].map(str::to_string);
            search(dirs, name, exists, known_by_name)
        }
    }
}

/// The loader's folders in order, then anywhere in the tree by name.
fn search(
    dirs: impl IntoIterator<Item = String>,
    name: &str,
    exists: impl Fn(&str) -> bool,
    known_by_name: impl Fn() -> bool,
) -> Found {
    if dirs.into_iter().any(|d| exists(&format!("{d}/{name}"))) {
        Found::InTree
    } else if known_by_name() {
        Found::ByName
    } else {
        Found::Missing
    }
}

/// Windows paths are case-insensitive; elsewhere names are bytes.
fn fold(os: Os, s: &str) -> String {
    if os == Os::Windows {
        s.to_ascii_lowercase()
    } else {
        s.to_string()
    }
}

fn parent(rel: &str) -> String {
    rel.rsplit_once('/')
        .map_or(String::new(), |(dir, _)| dir.to_string())
}

fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prune::fixtures::{elf, macho, pe, MachLink};
    use crate::prune::{prune, Policy};
    use crate::tree::listing;

    #[test]
    fn paths_normalise_inside_the_tree_only() {
        assert_eq!(normalise("a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalise("a/./b//c").as_deref(), Some("a/b/c"));
        assert_eq!(normalise("a/../../etc"), None);
    }

    /// A policy with one careless rule and the real system-library lists.
    fn policy(careless: &str) -> Policy {
        let real = include_str!("../../../anymatix/prune.yml");
        let system = &real[real.find("system_libraries:").unwrap()..];
        Policy::parse(&format!(
            "rules:\n  - {{name: careless, reason: testing, match: any, patterns: ['{careless}']}}\n{system}"
        ))
        .unwrap()
    }

    const SITE: &str = "python/lib/python3.12/site-packages";

    fn linux_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        // As auditwheel lays it out: the extension finds its vendored libraries by RUNPATH.
        elf(t, &format!("{SITE}/pkg.libs/libbar-1a2b.so.2"), &[], None);
        elf(
            t,
            &format!("{SITE}/pkg.libs/libfoo-3c4d.so.1"),
            &[(&format!("{SITE}/pkg.libs"), "libbar-1a2b.so.2")],
            Some("$ORIGIN"),
        );
        elf(
            t,
            &format!("{SITE}/pkg/_ext.so"),
            &[(&format!("{SITE}/pkg.libs"), "libfoo-3c4d.so.1")],
            Some("$ORIGIN/../pkg.libs"),
        );
        dir
    }

    #[test]
    fn linux_vendored_libraries_resolve_by_runpath() {
        let dir = linux_tree();
        let report = prune(
            dir.path(),
            &policy("nothing/matches"),
            Platform::LinuxX86_64,
            true,
        )
        .unwrap();
        assert_eq!(report.linkage.binaries, 3);
        assert_eq!(report.linkage.resolved_in_tree, 2, "{:?}", report.linkage);
        assert!(
            report.linkage.resolved_by_system >= 3,
            "libc for each: {:?}",
            report.linkage
        );
        assert!(report.linkage.missing.is_empty());
    }

    #[test]
    fn removing_a_needed_library_fails_naming_file_library_and_rule() {
        let dir = linux_tree();
        let before = listing(dir.path()).unwrap();
        let err = prune(
            dir.path(),
            &policy("**/libbar-*.so.*"),
            Platform::LinuxX86_64,
            false,
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "{SITE}/pkg.libs/libfoo-3c4d.so.1 needs libbar-1a2b.so.2, which prune rule `careless` removed ({SITE}/pkg.libs/libbar-1a2b.so.2)"
            )),
            "{message}"
        );
        assert_eq!(
            listing(dir.path()).unwrap(),
            before,
            "nothing is deleted when the check fails"
        );
    }

    #[test]
    fn windows_dlls_resolve_in_their_folder_and_conda_dirs_case_insensitively() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        pe(t, "python/Library/bin/zlib.dll", &[]);
        pe(t, "python/Lib/site-packages/pkg/helper.dll", &[]);
        pe(
            t,
            "python/Lib/site-packages/pkg/_ext.pyd",
            &[
                "python/Library/bin/zlib.dll",
                "python/Lib/site-packages/pkg/helper.dll",
            ],
        );
        // Windows file names are case-insensitive: the import may not match the file's case.
        fs_err::rename(
            t.join("python/Library/bin/zlib.dll"),
            t.join("python/Library/bin/ZLIB.dll"),
        )
        .unwrap();
        let ok = prune(t, &policy("nothing/matches"), Platform::WindowsX86_64, true).unwrap();
        assert_eq!(ok.linkage.binaries, 3);
        assert_eq!(ok.linkage.resolved_in_tree, 2, "{:?}", ok.linkage);
        assert!(
            ok.linkage.resolved_by_system > 0,
            "kernel32 and the CRT: {:?}",
            ok.linkage
        );

        let err = prune(
            t,
            &policy("python/Library/bin/*"),
            Platform::WindowsX86_64,
            true,
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("python/Lib/site-packages/pkg/_ext.pyd needs zlib.dll, which prune rule `careless` removed (python/Library/bin/ZLIB.dll)"),
            "{message}"
        );
        // Linux ELF rules do not look at PE files: on Linux nothing here is a binary.
        let linux = prune(
            t,
            &policy("python/Library/bin/*"),
            Platform::LinuxX86_64,
            true,
        )
        .unwrap();
        assert_eq!(linux.linkage.binaries, 0);
    }

    #[test]
    fn macos_rpath_loader_path_weak_and_system_links() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        macho(
            t,
            &format!("{SITE}/PIL/.dylibs/libjpeg.62.dylib"),
            &[MachLink::Load("/usr/lib/libSystem.B.dylib")],
            &[],
        );
        macho(
            t,
            "python/lib/libz.1.dylib",
            &[MachLink::Load("/usr/lib/libSystem.B.dylib")],
            &[],
        );
        macho(
            t,
            &format!("{SITE}/PIL/_imaging.cpython-312-darwin.so"),
            &[
                MachLink::Load("@loader_path/.dylibs/libjpeg.62.dylib"),
                MachLink::Load("@rpath/libz.1.dylib"),
                MachLink::Load("/usr/lib/libSystem.B.dylib"),
                MachLink::Load(
                    "/System/Library/Frameworks/Accelerate.framework/Versions/A/Accelerate",
                ),
                MachLink::Weak("@rpath/libmaybe.dylib"),
            ],
            &["@loader_path/../../.."],
        );
        let ok = prune(t, &policy("nothing/matches"), Platform::MacosArm64, true).unwrap();
        assert_eq!(ok.linkage.binaries, 3);
        assert!(ok.linkage.missing.is_empty(), "{:?}", ok.linkage);
        assert_eq!(ok.linkage.resolved_in_tree, 2, "{:?}", ok.linkage);

        let err = prune(t, &policy("**/.dylibs"), Platform::MacosArm64, true).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "{SITE}/PIL/_imaging.cpython-312-darwin.so needs @loader_path/.dylibs/libjpeg.62.dylib, which prune rule `careless` removed"
            )),
            "{err}"
        );
        // A build machine's absolute path would not exist on a user's machine.
        macho(
            t,
            "python/lib/libbad.dylib",
            &[MachLink::Load("/Users/runner/work/lib/libz.1.dylib")],
            &[],
        );
        let err = prune(t, &policy("nothing/matches"), Platform::MacosArm64, true).unwrap_err();
        assert!(
            err.to_string().contains("python/lib/libbad.dylib needs /Users/runner/work/lib/libz.1.dylib, which is neither in the tree nor a system library"),
            "{err}"
        );
    }
}
