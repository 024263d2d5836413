//! Proves pruning removed nothing a kept binary needs: every ELF, Mach-O and PE file of the
//! platform is parsed (on any host, no platform tools), and each library it needs is resolved the
//! way that platform's loader would. A library that resolves neither in the tree nor to a system
//! library is either one pruning removed (named with the rule that did) or one the environment
//! never had (a plugin's optional dependency, or a real gap). The same parse tells what each
//! binary needs of the system: glibc, libstdc++, macOS and Windows versions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use globset::GlobSet;
use goblin::mach::{Mach, MachO, SingleArch};
use serde::Serialize;

use super::Policy;
use crate::model::platform::{Os, Platform};
use crate::model::system::{self, Ceiling, Requirement, Version};
use crate::util::tree::normalise;

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
    /// The rule that removed a file of that name, and that file: pruning broke this link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_path: Option<String>,
    /// The `optional_libraries` entry of the policy that expects this library to be absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<String>,
}

impl MissingLibrary {
    /// Pruning removed it: the prune's fault.
    pub fn is_broken(&self) -> bool {
        self.removed_by.is_some()
    }

    fn describe(&self) -> String {
        let mut text = format!("{} needs {}", self.file, self.library);
        match (&self.removed_by, &self.removed_path, &self.optional) {
            (Some(rule), Some(path), _) => {
                text.push_str(&format!(", which prune rule `{rule}` removed ({path})"))
            }
            (_, _, Some(entry)) => text.push_str(&format!(
                ", which the environment does not have (optional: `{entry}`)"
            )),
            _ => text.push_str(", which is neither in the tree nor a system library"),
        }
        text
    }
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
    /// Every needed library that is not there: removed by pruning (`removed_by`), expected to be
    /// absent (`optional`), or missing from the environment without explanation.
    pub missing: Vec<MissingLibrary>,
    /// The newest system each kind of binary asks for, with the binaries that ask for it.
    pub requires: BTreeMap<Requirement, Highest>,
    /// What each binary asks of the system, for checking a ceiling.
    #[serde(skip)]
    pub per_binary: Vec<(String, Requirement, Version)>,
}

/// The highest version of one requirement, and which binaries need exactly that.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Highest {
    pub version: Version,
    /// Up to five of them, in tree order.
    pub binaries: Vec<String>,
    /// How many binaries need this version.
    pub count: usize,
}

/// How many binaries a `Highest` names.
const NAMED: usize = 5;

impl LinkageReport {
    /// Links pruning broke: these fail the prune.
    pub fn broken(&self) -> impl Iterator<Item = &MissingLibrary> {
        self.missing.iter().filter(|m| m.is_broken())
    }

    /// Missing before pruning, and expected so by the policy.
    pub fn optional(&self) -> impl Iterator<Item = &MissingLibrary> {
        self.missing
            .iter()
            .filter(|m| !m.is_broken() && m.optional.is_some())
    }

    /// Missing before pruning, and not known to the policy: shown loudly.
    pub fn unexplained(&self) -> impl Iterator<Item = &MissingLibrary> {
        self.missing
            .iter()
            .filter(|m| !m.is_broken() && m.optional.is_none())
    }

    /// A readable account of some missing libraries, one a line.
    pub fn describe<'a>(missing: impl IntoIterator<Item = &'a MissingLibrary>) -> String {
        missing
            .into_iter()
            .map(|m| format!("  {}\n", m.describe()))
            .collect()
    }

    /// Each binary that asks for more than `ceiling` allows, with what it asks for.
    pub fn over(&self, ceiling: &Ceiling) -> Vec<(String, Requirement, Version)> {
        self.per_binary
            .iter()
            .filter(|(_, kind, version)| ceiling.get(*kind).is_some_and(|max| version > max))
            .cloned()
            .collect()
    }

    /// Fails when a binary asks more of the system than `ceiling` (set by `source`) allows,
    /// naming each.
    pub fn check_ceiling(&self, ceiling: &Ceiling, source: &str) -> Result<()> {
        let over = self.over(ceiling);
        if over.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for (file, kind, version) in over.iter().take(30) {
            let limit = ceiling.get(*kind).expect("over a set limit");
            text.push_str(&format!(
                "  {file} needs {kind} {version} (at most {limit} allowed)\n"
            ));
        }
        if over.len() > 30 {
            text.push_str(&format!("  … and {} more\n", over.len() - 30));
        }
        anyhow::bail!(
            "{} binar{} need a newer system than {source} allows:\n{text}\
             Pin an older release of the package that ships them, build on an older system, or \
             raise the limit (users of older systems then cannot run the zip).",
            over.len(),
            if over.len() == 1 { "y" } else { "ies" },
        )
    }

    /// One line per requirement: `glibc 2.28 (3 binaries, e.g. …)`.
    pub fn requirement_lines(&self) -> Vec<String> {
        self.requires
            .iter()
            .map(|(kind, highest)| {
                format!(
                    "{kind} {} ({} binar{}, e.g. {})",
                    highest.version,
                    highest.count,
                    if highest.count == 1 { "y" } else { "ies" },
                    highest.binaries[0]
                )
            })
            .collect()
    }

    fn require(&mut self, file: &str, kind: Requirement, version: Version) {
        self.per_binary
            .push((file.to_string(), kind, version.clone()));
        let entry = self.requires.entry(kind).or_insert_with(|| Highest {
            version: version.clone(),
            binaries: Vec::new(),
            count: 0,
        });
        if version > entry.version {
            *entry = Highest {
                version,
                binaries: Vec::new(),
                count: 0,
            };
        } else if version < entry.version {
            return;
        }
        entry.count += 1;
        if entry.binaries.len() < NAMED {
            entry.binaries.push(file.to_string());
        }
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
    policy: &Policy,
    kept_files: &[Kept],
    removed: &[Removed],
) -> Result<LinkageReport> {
    let os = platform.os();
    let system = policy.system_libraries(os);
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
        let Some(binary) = inspect(&bytes, platform) else {
            continue; // not a binary of this platform after all (a Java class, a stub)
        };
        report.binaries += 1;
        for (kind, version) in binary.requires {
            report.require(&rel, kind, version);
        }
        let dir = parent(&rel);
        for need in binary.needs {
            let found = resolve(platform, &need, &dir, system, &kept, &by_name);
            match found {
                Found::InTree => report.resolved_in_tree += 1,
                Found::System => report.resolved_by_system += 1,
                Found::ByName => report.resolved_by_name += 1,
                Found::Missing if need.weak => report.resolved_by_system += 1,
                Found::Missing => {
                    // Found before pruning (a file of that name was in the tree): pruning broke it.
                    let removed = removed_by_name.get(&fold(os, base_name(&need.name)));
                    let optional = match removed {
                        Some(_) => None,
                        None => policy
                            .optional_for(platform, &rel, &need.name)
                            .map(|o| o.name.clone()),
                    };
                    report.missing.push(MissingLibrary {
                        file: rel.clone(),
                        library: need.name.clone(),
                        removed_by: removed.map(|r| r.rule.clone()),
                        removed_path: removed.map(|r| r.path.clone()),
                        optional,
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

/// What one binary needs: libraries, and versions of the system.
struct Binary {
    needs: Vec<Need>,
    /// The highest version of each kind it asks for.
    requires: Vec<(Requirement, Version)>,
}

/// Parses `bytes` as a binary of `platform`; `None` if it is not one.
fn inspect(bytes: &[u8], platform: Platform) -> Option<Binary> {
    match platform.os() {
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
            let needs = elf
                .libraries
                .iter()
                .map(|lib| Need {
                    name: lib.to_string(),
                    search: search.clone(),
                    weak: false,
                })
                .collect();
            // Symbol versions (GLIBC_2.28, GLIBCXX_3.4.30) say which C and C++ runtimes it needs.
            let mut highest: BTreeMap<Requirement, Version> = BTreeMap::new();
            if let Some(verneed) = &elf.verneed {
                for needed in verneed.iter() {
                    for aux in needed.iter() {
                        let found = elf
                            .dynstrtab
                            .get_at(aux.vna_name)
                            .and_then(system::elf_symbol_version);
                        if let Some((kind, version)) = found {
                            keep_highest(&mut highest, kind, version);
                        }
                    }
                }
            }
            Some(Binary {
                needs,
                requires: highest.into_iter().collect(),
            })
        }
        Os::Macos => match Mach::parse(bytes).ok()? {
            Mach::Binary(macho) => Some(Binary {
                needs: macho_needs(&macho),
                requires: macos_minimum(&macho)
                    .map(|v| (Requirement::Macos, v))
                    .into_iter()
                    .collect(),
            }),
            Mach::Fat(fat) => {
                // A universal binary: every architecture must find its libraries; the minimum
                // macOS is that of the platform's own architecture (the others never load).
                let mut needs = Vec::new();
                let mut own = None;
                let mut any: BTreeMap<Requirement, Version> = BTreeMap::new();
                for arch in &fat {
                    if let Ok(SingleArch::MachO(macho)) = arch {
                        needs.extend(macho_needs(&macho));
                        if let Some(version) = macos_minimum(&macho) {
                            if macho.header.cputype == macho_cpu(platform) {
                                own = Some(version.clone());
                            }
                            keep_highest(&mut any, Requirement::Macos, version);
                        }
                    }
                }
                let minimum = own.or_else(|| any.remove(&Requirement::Macos));
                Some(Binary {
                    needs,
                    requires: minimum
                        .map(|v| (Requirement::Macos, v))
                        .into_iter()
                        .collect(),
                })
            }
        },
        Os::Windows => {
            let pe = goblin::pe::PE::parse(bytes).ok()?;
            let needs = pe
                .libraries
                .iter()
                .map(|lib| Need {
                    name: lib.to_string(),
                    search: Vec::new(),
                    weak: false,
                })
                .collect();
            // The loader refuses an image whose subsystem version is newer than Windows itself.
            let requires = pe
                .header
                .optional_header
                .map(|h| {
                    let w = h.windows_fields;
                    (
                        Requirement::Windows,
                        Version::new(&[
                            u32::from(w.major_subsystem_version),
                            u32::from(w.minor_subsystem_version),
                        ]),
                    )
                })
                .into_iter()
                .collect();
            Some(Binary { needs, requires })
        }
    }
}

fn keep_highest(highest: &mut BTreeMap<Requirement, Version>, kind: Requirement, version: Version) {
    match highest.get(&kind) {
        Some(known) if *known >= version => {}
        _ => {
            highest.insert(kind, version);
        }
    }
}

/// `LC_BUILD_VERSION` (for macOS) or the older `LC_VERSION_MIN_MACOSX`.
fn macos_minimum(macho: &MachO) -> Option<Version> {
    use goblin::mach::load_command::CommandVariant;
    const PLATFORM_MACOS: u32 = 1;
    macho.load_commands.iter().find_map(|c| match &c.command {
        CommandVariant::BuildVersion(b) if b.platform == PLATFORM_MACOS => {
            Some(system::macho_version(b.minos))
        }
        CommandVariant::VersionMinMacosx(v) => Some(system::macho_version(v.version)),
        _ => None,
    })
}

/// The Mach-O CPU type of the platform's architecture.
fn macho_cpu(platform: Platform) -> u32 {
    const CPU_TYPE_X86_64: u32 = 0x0100_0007;
    const CPU_TYPE_ARM64: u32 = 0x0100_000c;
    if platform == Platform::MacosArm64 {
        CPU_TYPE_ARM64
    } else {
        CPU_TYPE_X86_64
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
    platform: Platform,
    need: &Need,
    dir: &str,
    system: &GlobSet,
    kept: &HashSet<String>,
    by_name: &HashMap<String, Vec<String>>,
) -> Found {
    let os = platform.os();
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
            if system.is_match(&lower) || super::windows_dlls::is_windows_dll(platform, &lower) {
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
