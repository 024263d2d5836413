//! The protected core of a zip: the packages `protected` names, and every package one of them
//! pins with `==` (torch pins triton, cuDNN and `cuda-toolkit[cublas,…]`, which pins the CUDA
//! libraries of those extras: the extras asked for are followed), each at the exact version
//! installed in the zip's tree, as the tree's own python reads the metadata (markers evaluated as
//! pip evaluates them). A protected name that is not installed is an error naming its key.
//!
//! The constraints file pins each with `===` (arbitrary equality): only the installed build's
//! exact version string satisfies it, where `==2.11.0` also lets a `2.11.0+cpu` in (PEP 440
//! ignores a candidate's local label). `===` compares the normalized form, so a protected version
//! that is not written normalized is an error. Each file the zip holds of them is listed with its
//! sha256, which the package tool compares with what is installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::util::runner::Runner;
use crate::util::tools::Tools;

/// One protected package, for manifest.json and the zip's tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedPackage {
    pub name: String,
    pub version: String,
    /// `named in protected`, or which protected package pins it.
    pub why: String,
}

/// Given argv[1], a JSON list of [key, name], prints the protected packages (with the files of
/// each that the tree holds, and their sizes) and the site dir.
const CLOSURE: &str = r#"import csv, json, re, sys, sysconfig
from importlib.metadata import distributions
try:
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version
except ImportError:
    from packaging.requirements import Requirement
    from packaging.version import Version

INSTALL_RECORDS = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}

def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()

installed = {}
for dist in distributions():
    if dist.metadata["Name"]:
        installed.setdefault(canon(dist.metadata["Name"]), dist)
queue = [(canon(name), "named in " + key, key, name, [])
         for key, name in json.loads(sys.argv[1])]
# A package is protected once; its requirements are read again for each extra asked of it
# (torch pins cuda-toolkit[cublas,cudnn,...], whose pins are behind those extras).
done_extras, protected, missing, unnormal = {}, [], [], []
while queue:
    key, why, given_under, given, extras = queue.pop(0)
    dist = installed.get(key)
    if dist is None:
        missing.append([given_under, given])
        continue
    name, version = dist.metadata["Name"], dist.version
    if key not in done_extras:
        done_extras[key] = set()
        if str(Version(version)) != version:
            unnormal.append([name, version, str(Version(version))])
        files = []
        # RECORD itself, not `dist.files`, which stats every file (38,000 under Wine: 40 s):
        # which files exist, their sizes and digests are found by the tool.
        for row in csv.reader((dist.read_text("RECORD") or "").splitlines()):
            if not row or not row[0]:
                continue
            parts = row[0].replace("\\", "/").split("/")
            # What pip writes per install (its records, console scripts outside site-packages,
            # bytecode) differs between two installs of the same build: not compared.
            if ("__pycache__" in parts or parts[0] == ".."
                    or (parts[0].endswith(".dist-info") and parts[-1] in INSTALL_RECORDS)):
                continue
            files.append("/".join(parts))
        protected.append([name, version, why, files])
    new = [e for e in [""] + list(extras) if e not in done_extras[key]]
    done_extras[key].update(new)
    if not new:
        continue
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in new):
            continue
        # `==13.1.0.3.*` (cuda-toolkit's way) pins as surely as `==13.1.0.3`.
        pinned = any(s.operator in ("==", "===") for s in req.specifier)
        if pinned and canon(req.name) in installed:
            queue.append((canon(req.name), "%s %s pins it" % (name, version), "", req.name,
                          sorted(req.extras)))
print(json.dumps({"site": sysconfig.get_paths()["purelib"], "protected": protected,
                  "missing": missing, "unnormal": unnormal}))
"#;

/// A package's files, as its RECORD names them, with their sizes and sha256.
pub type HeldFiles = Vec<(String, u64, String)>;

#[derive(Debug, Deserialize)]
struct Closure {
    site: PathBuf,
    /// (name, version, why, the files its RECORD names, relative to site-packages)
    protected: Vec<(String, String, String, Vec<String>)>,
    /// (key, name) of the names that are not installed.
    missing: Vec<(String, String)>,
    /// (name, version, its normalized form) of versions not written normalized.
    unnormal: Vec<(String, String, String)>,
}

/// The protected core of the tree whose python is `python`.
pub fn protected_closure(
    tools: &Tools,
    runner: &Runner,
    python: &Path,
    named: &[(String, String)],
    platform: impl std::fmt::Display,
) -> Result<ProtectedCore> {
    let named_json = serde_json::to_string(named)?;
    runner.prepare(&tools.reporter, python)?;
    let out = crate::stages::pip::ask_python(&tools.sh, runner, python, CLOSURE, &named_json)?;
    let mut found: Closure = serde_json::from_str(&out)
        .with_context(|| format!("the protected packages, as python told them: {out}"))?;
    found.site = runner.host_path(&found.site.to_string_lossy());
    let missing: Vec<String> = found
        .missing
        .iter()
        .filter(|(key, _)| !key.is_empty())
        .map(|(key, name)| format!("{key}: `{name}` is not installed for {platform}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "cannot protect packages the zip does not hold:\n  {}\n(protect only what \
             python_packages installs on that platform)",
            missing.join("\n  ")
        );
    }
    if !found.unnormal.is_empty() {
        bail!(
            "cannot pin protected packages whose version is not written in its normalized form \
             (pip's `===` compares that form):\n  {}",
            found
                .unnormal
                .iter()
                .map(|(name, version, normal)| format!("{name} {version} (normalized: {normal})"))
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    let mut protected = Vec::new();
    let mut files = BTreeMap::new();
    for (name, version, why, held) in found.protected {
        files.insert(name.clone(), with_digests(&found.site, held)?);
        protected.push(ProtectedPackage { name, version, why });
    }
    protected.sort_by_key(|p| p.name.to_lowercase());
    Ok(ProtectedCore {
        site: found.site,
        protected,
        files,
    })
}

/// Each file (relative to `site`) that is there, with its size and sha256, found here on every
/// core: the target's python only lists them (under Wine, hashing them in Python took most of a
/// minute).
fn with_digests(site: &Path, held: Vec<String>) -> Result<HeldFiles> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = held.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let running: Vec<_> = held
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut found = Vec::new();
                    for rel in part {
                        let path = site.join(rel);
                        let Ok(meta) = fs_err::metadata(&path) else {
                            continue;
                        };
                        if meta.is_file() {
                            let sha256 = crate::util::digest::sha256_file(&path)?;
                            found.push((rel.clone(), meta.len(), sha256));
                        }
                    }
                    Ok::<_, anyhow::Error>(found)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(held.len());
        for worker in running {
            all.extend(worker.join().expect("a hashing worker panicked")?);
        }
        Ok(all)
    })
}

/// The protected core of a tree.
pub struct ProtectedCore {
    /// The tree's site-packages.
    pub site: PathBuf,
    pub protected: Vec<ProtectedPackage>,
    /// Name → the files of it the zip holds (as its RECORD names them, from site-packages) with
    /// their sizes and sha256: what the package tool compares with what is installed.
    pub files: BTreeMap<String, HeldFiles>,
}

/// `tools/protected.txt`: a pip constraints file, each package at exactly the installed build.
pub fn constraints(protected: &[ProtectedPackage]) -> String {
    let mut text = String::from(
        "# The protected core of this anymatix environment, written by the build: every pip that\n\
         # this environment's python runs keeps these packages at exactly these builds (`===`:\n\
         # no other local label, such as +cpu; see `packages.sh --help` or `packages.bat --help`\n\
         # to change one deliberately).\n",
    );
    for p in protected {
        text.push_str(&format!("{}==={}\n", p.name, p.version));
    }
    text
}
