//! Bytecode for what the product imports when it starts, and nothing else. The bytecode-caches
//! rule leaves no `.pyc` in the tree, so every first start would compile thousands of modules
//! (and a copy unpacked where it cannot write would compile them at every start).
//!
//! The smoke checks and commands run once from the pruned tree with a recorder that lists every
//! module file loaded (a `.pth` hook in site-packages, removed afterwards, writing no bytecode);
//! what the run left in the tree is removed, and exactly the recorded sources are compiled into
//! `__pycache__` as checked-hash `.pyc` files: valid after unzip whatever the file times (an
//! edited source is still noticed, by its hash), and the same bytes from build to build.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::platform::Platform;
use crate::model::smoke::Smoke;
use crate::stages::describe::{Describe, Stage};
use crate::stages::verify;
use crate::util::inputs::Inputs;
use crate::util::runner::Runner;
use crate::util::tools::Tools;
use crate::util::tree::rel_path;
use crate::util::units::human_bytes;

/// What bytecode the zip ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bytecode {
    /// None: every module is compiled on first import (by the user's first start).
    None,
    /// The modules the smoke checks and commands import, as checked-hash `.pyc` files.
    #[default]
    Imported,
}

/// What compiling added to the tree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BytecodeSummary {
    pub modules: usize,
    pub bytes: u64,
}

const RECORDER_MODULE: &str = "_anymatix_record_imports";

const SCAN_IMPORTS: &str = include_str!("scan_imports.py");

/// Lists the module files loaded by the time the process ends, one file per process: those in
/// `sys.modules`, and every source compiled meanwhile (the audit hook sees what is loaded
/// without entering `sys.modules`, such as the database migrations ComfyUI runs by path, and
/// every module read from the bytecode cache the processes share outside the tree, which the
/// installed environment's checks filled); the records are joined.
const RECORDER: &str = r#"import atexit, os, sys
_OUT = __OUT__
_COMPILED = set()
_CACHE = sys.pycache_prefix

def _audit(event, args):
    if event == "compile" and len(args) > 1 and isinstance(args[1], str) and args[1].endswith(".py"):
        _COMPILED.add(args[1])
    elif event == "open" and _CACHE and isinstance(args[0], str) and args[0].endswith(".pyc") \
            and args[0].startswith(_CACHE + os.sep):
        # Loaded from the cache: x.cpython-311.pyc under the prefix is the source's x.py.
        folder, name = os.path.split(args[0][len(_CACHE):])
        _COMPILED.add(os.path.join(folder, name.split(".", 1)[0] + ".py"))

sys.addaudithook(_audit)

def _record():
    files = set(os.path.abspath(f) for f in _COMPILED)
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py"):
            files.add(os.path.abspath(path))
    name = os.path.join(_OUT, "%d.txt" % os.getpid())
    with open(name, "w", encoding="utf-8", errors="surrogateescape") as out:
        out.write("\n".join(sorted(files)))

atexit.register(_record)
"#;

/// Compiles the sources listed on its standard input (relative to the root) as checked-hash
/// `.pyc` files. The name stored in each is the relative path, so no build folder ends up in the
/// bytes; Python puts the real path in its place when it loads them.
const COMPILE: &str = r#"import py_compile, sys
root = sys.argv[1]
names = sys.stdin.buffer.read().decode("utf-8", "surrogateescape").splitlines()
for rel in names:
    py_compile.compile(root + "/" + rel, dfile=rel, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
"#;

/// Compiles what the product imports into the pruned tree.
#[derive(Debug, Clone)]
pub struct CompileImported {
    pub platform: Platform,
    /// How the tree's python runs here (under Wine for a Windows tree on Linux).
    pub runner: Runner,
    /// The pruned, relocated tree (`anymatix/`), which becomes the zip.
    pub tree: PathBuf,
    pub smoke: Smoke,
    pub mode: Bytecode,
    /// Where the list of compiled modules is written, for reviewers.
    pub listing: PathBuf,
    /// The installed environment's bytecode cache (its checks filled it) and where that
    /// environment is: the tree is its hard-linked copy, so the recording run reads that
    /// bytecode through a link in the cache, instead of compiling torch again.
    pub bytecode_cache: PathBuf,
    pub installed_at: PathBuf,
    /// Where the target's python runs here only emulated (Linux ARM under qemu): a CPython of
    /// this machine of the same `X.Y` to compile with, at native speed. A `.pyc` depends only on
    /// the source and the CPython `X.Y` (its magic number); without one, the target's compiles.
    pub host_compiler: Option<Runner>,
}

impl CompileImported {
    pub fn run(&self, tools: &Tools) -> Result<BytecodeSummary> {
        if self.mode == Bytecode::None {
            tools.reporter.note("bytecode: none (the policy says so)");
            return Ok(BytecodeSummary::default());
        }
        let python = self
            .tree
            .join("python")
            .join(self.platform.python_in_prefix());
        let runner = &self.runner;
        runner.prepare(&tools.reporter, &python)?;
        let mut ask = runner.python(&python, &["-s"]).args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ]);
        ask.env_remove = vec!["PYTHONPATH".into(), "PYTHONHOME".into()];
        ask.env.push(("PYTHONDONTWRITEBYTECODE".into(), "1".into()));
        let site = crate::util::process::read(&tools.sh, &ask)
            .context("cannot ask the tree's python where its site-packages is")?;
        let site = runner.host_path(site.trim());

        let recording = std::time::Instant::now();
        let modules = if runner.runs_the_target() {
            self.record(tools, &python, &site)?
        } else {
            scan(tools, runner, &python, &self.tree, &self.smoke)?
        };
        if modules.is_empty() {
            bail!(
                "no module of {} was recorded as imported: the recorder in {} did not run",
                self.tree.display(),
                site.display()
            );
        }
        fs_err::create_dir_all(self.listing.parent().context("a listing is in a folder")?)?;
        let listing: String = modules.iter().map(|m| format!("{m}\n")).collect();
        fs_err::write(&self.listing, &listing)?;
        // Under Wine each process mostly waits on the Wine server: twice as many keep the cores busy.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = if runner.waits_on_a_server() {
            2 * cores
        } else {
            cores
        };
        let recorded_in = recording.elapsed();
        let compiler = match &self.host_compiler {
            Some(host) => match host.prepare(&tools.reporter, &python) {
                Ok(()) => host,
                Err(e) => {
                    tools.reporter.note(format!(
                        "compiling with the target's own python, emulated: {e:#}"
                    ));
                    runner
                }
            },
            None => runner,
        };
        let before = snapshot(&self.tree)?;
        let compiling = std::time::Instant::now();
        compile(compiler, &python, &self.tree, &modules, workers)?;
        let compiled_in = compiling.elapsed();
        let after = snapshot(&self.tree)?;
        let bytes: u64 = after
            .iter()
            .filter(|(path, _)| !before.contains_key(*path))
            .map(|(_, (len, _))| len)
            .sum();
        let summary = BytecodeSummary {
            modules: modules.len(),
            bytes,
        };
        tools.reporter.note(format!(
            "compiled {} imported modules: {} of checked-hash .pyc (listed in {}); recorded in {}, \
             compiled in {}",
            summary.modules,
            human_bytes(summary.bytes),
            self.listing.display(),
            crate::util::units::human_duration(recorded_in),
            crate::util::units::human_duration(compiled_in)
        ));
        Ok(summary)
    }

    /// Runs the smoke checks and commands from the tree with the recorder in its site-packages;
    /// the module files they loaded, relative to the tree.
    fn record(&self, tools: &Tools, python: &Path, site: &Path) -> Result<Vec<String>> {
        let sh = &tools.sh;
        let runner = &self.runner;
        let before = snapshot(&self.tree)?;
        let records = tempfile::tempdir()?;
        // Outside the tree, where the installed environment's checks left theirs.
        let (cache_dir, _scratch_cache) = match share_cache(
            &self.bytecode_cache,
            &self.installed_at,
            &self.tree,
        ) {
            Ok(()) => (self.bytecode_cache.clone(), None),
            Err(e) => {
                tools.reporter.note(format!(
                    "the recording run compiles anew: cannot reuse the environment's bytecode ({e:#})"
                ));
                let scratch = tempfile::tempdir()?;
                (scratch.path().to_path_buf(), Some(scratch))
            }
        };
        let cache = verify::BytecodeCache::new(sh, &cache_dir);
        let hook = site.join(format!("{RECORDER_MODULE}.pth"));
        let module = site.join(format!("{RECORDER_MODULE}.py"));
        let out = serde_json::to_string(&records.path().to_string_lossy())?;
        fs_err::write(&module, RECORDER.replace("__OUT__", &out))?;
        fs_err::write(&hook, format!("import {RECORDER_MODULE}\n"))?;
        let ran = verify::run_checks_and_commands(
            &tools.reporter,
            runner,
            python,
            &self.tree,
            &self.smoke,
            &cache.dir,
        );
        drop(cache);
        fs_err::remove_file(&hook)?;
        fs_err::remove_file(&module)?;
        let left = clean_up(&self.tree, &before)?;
        // Verify judges the product (from the unpacked copy, the environment out of reach); here
        // a failure only means fewer modules were recorded.
        if let Err(e) = ran {
            tools.reporter.note(format!(
                "WARNING: a smoke check failed while the imports were recorded (verify will \
                 judge the zip): {e:#}"
            ));
        }
        if left > 0 {
            tools.reporter.detail(format!(
                "removed {left} files and folders the run left in the tree"
            ));
        }

        recorded(records.path(), &self.tree, runner)
    }
}

impl Describe for CompileImported {
    fn title(&self) -> String {
        "Compile what the product imports".into()
    }

    fn stage(&self) -> Stage {
        Stage::Dist
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            Bytecode::None => write!(f, "compile nothing (bytecode: none)"),
            Bytecode::Imported if !self.runner.runs_the_target() => write!(
                f,
                "read the import statements the smoke imports, checks and commands reach in {} \
                 (its python cannot run here), then compile those modules as checked-hash .pyc",
                self.tree.display()
            ),
            Bytecode::Imported => write!(
                f,
                "run the smoke checks and commands from {} recording the modules they import, \
                 then compile those as checked-hash .pyc{}",
                self.tree.display(),
                if self.host_compiler.is_some() {
                    " (by this machine's CPython of the same X.Y where it has one)"
                } else {
                    ""
                }
            ),
        }
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set("bytecode", format!("{:?}", self.mode));
    }
}

/// Where the target's python cannot run: the module files the smoke imports, checks and
/// commands reach by their import statements (`scan_imports.py`, run by the CPython standing in
/// for the target's), relative to the tree.
fn scan(
    tools: &Tools,
    runner: &Runner,
    python: &Path,
    tree: &Path,
    smoke: &Smoke,
) -> Result<Vec<String>> {
    let mut scripts = Vec::new();
    let mut imports = smoke.imports.clone();
    for command in &smoke.commands {
        let cwd = tree.join(command.cwd.as_deref().unwrap_or("."));
        let mut args = command.run.iter();
        if args.next().map(String::as_str) != Some("{python}") {
            continue;
        }
        // The first argument that is not a flag: `-m MODULE` or the script.
        let mut args = args.skip_while(|a| a.starts_with('-') && *a != "-m");
        match args.next().map(String::as_str) {
            Some("-m") => imports.extend(args.next().cloned()),
            Some(script) if script.ends_with(".py") => {
                scripts.push(cwd.join(script).to_string_lossy().into_owned())
            }
            _ => {}
        }
    }
    let spec = serde_json::json!({
        "imports": imports,
        "codes": smoke.checks.iter().map(|c| &c.code).collect::<Vec<_>>(),
        "scripts": scripts,
    });
    let mut ask = runner
        .python(python, &["-s"])
        .args(["-c", SCAN_IMPORTS, &spec.to_string()]);
    ask.env_remove = vec!["PYTHONPATH".into(), "PYTHONHOME".into()];
    ask.env.push(("PYTHONDONTWRITEBYTECODE".into(), "1".into()));
    let out = crate::util::process::read(&tools.sh, &ask)
        .context("cannot read the import statements of the tree's modules")?;
    let records = tempfile::tempdir()?;
    fs_err::write(records.path().join("scan.txt"), out)?;
    recorded(records.path(), tree, runner)
}

/// Where Python keeps the bytecode of the sources under `folder` with `cache` as its
/// `PYTHONPYCACHEPREFIX`: the folder's absolute path under the cache (without a Windows drive).
fn mirror(cache: &Path, folder: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(folder)?;
    let inside: PathBuf = absolute
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    Ok(cache.join(inside))
}

/// Makes the cache's mirror of `tree` a link to its mirror of `installed_at`: the tree's files
/// are hard links of the environment's (same sizes and times), so the bytecode compiled for
/// one is valid for the other, and Python checks that anyway.
fn share_cache(cache: &Path, installed_at: &Path, tree: &Path) -> Result<()> {
    let target = mirror(cache, installed_at)?;
    let link = mirror(cache, tree)?;
    fs_err::create_dir_all(&target)?;
    fs_err::create_dir_all(link.parent().context("a tree is in a folder")?)?;
    match link.symlink_metadata() {
        Ok(meta) if meta.is_dir() => fs_err::remove_dir_all(&link)?,
        Ok(_) => fs_err::remove_file(&link)?,
        Err(_) => {}
    }
    make_dir_link(&target, &link)
}

#[cfg(unix)]
fn make_dir_link(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("cannot link {} to {}", link.display(), target.display()))
}

#[cfg(not(unix))]
fn make_dir_link(_: &Path, _: &Path) -> Result<()> {
    // A junction would do on Windows; unproven there, so the run compiles anew.
    bail!("not tried on this system")
}

/// Compiles `modules` (paths relative to `tree`) with `workers` processes of `python` at once,
/// each taking every `workers`-th module. A `.pyc` depends only on its source and the name
/// stored in it, so the bytes are the same for any number of workers.
pub fn compile(
    runner: &Runner,
    python: &Path,
    tree: &Path,
    modules: &[String],
    workers: usize,
) -> Result<()> {
    let workers = workers.clamp(1, modules.len().max(1));
    let shares: Vec<String> = (0..workers)
        .map(|w| {
            modules
                .iter()
                .skip(w)
                .step_by(workers)
                .map(|m| format!("{m}\n"))
                .collect()
        })
        .collect();
    std::thread::scope(|scope| {
        let running: Vec<_> = shares
            .iter()
            .map(|share| scope.spawn(move || compile_share(runner, python, tree, share)))
            .collect();
        running
            .into_iter()
            .try_for_each(|worker| worker.join().expect("a compile worker panicked"))
    })
}

fn compile_share(runner: &Runner, python: &Path, tree: &Path, share: &str) -> Result<()> {
    use std::io::Write;
    use std::process::Stdio;
    let command = runner
        .python(python, &["-s"])
        .args(["-c", COMPILE])
        .arg(tree.to_string_lossy());
    let mut child = Runner::std_command(&command)
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env_remove("PYTHONPYCACHEPREFIX")
        .env_remove("PYTHONOPTIMIZE")
        // Only py_compile writes: the modules this run imports get no cache of their own.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONNOUSERSITE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", python.display()))?;
    let mut stdin = child.stdin.take().expect("piped");
    // Written from here while the child reads; its output is collected after.
    let written = stdin.write_all(share.as_bytes());
    drop(stdin);
    let out = child.wait_with_output()?;
    if !out.status.success() || written.is_err() {
        bail!(
            "cannot compile the imported modules ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

type Snapshot = BTreeMap<PathBuf, (u64, Option<SystemTime>)>;

/// Every path under `tree` with its size and time, to see what a run added or changed.
fn snapshot(tree: &Path) -> Result<Snapshot> {
    let mut seen = BTreeMap::new();
    for item in walkdir::WalkDir::new(tree).follow_links(false) {
        let item = item.with_context(|| format!("cannot walk {}", tree.display()))?;
        let meta = item.path().symlink_metadata()?;
        let len = if meta.is_file() { meta.len() } else { 0 };
        seen.insert(item.path().to_path_buf(), (len, meta.modified().ok()));
    }
    Ok(seen)
}

/// Removes what the run added; a file changed in place is an error, as the tree's files are
/// hard links to the installed environment's. Returns how many paths it removed.
fn clean_up(tree: &Path, before: &Snapshot) -> Result<usize> {
    let after = snapshot(tree)?;
    let changed: Vec<String> = after
        .iter()
        .filter(|(path, (len, time))| {
            path.is_file()
                && before
                    .get(*path)
                    .is_some_and(|(l, t)| (l, t) != (len, time))
        })
        .map(|(path, _)| path.display().to_string())
        .collect();
    if !changed.is_empty() {
        bail!(
            "the smoke checks changed files of the tree in place, which are hard links to the \
             installed environment's (reinstall it with --update): {}",
            changed.join(", ")
        );
    }
    // Deepest first, so a folder is empty when its turn comes.
    let added: BTreeSet<&PathBuf> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    let mut count = 0;
    for path in added.iter().rev() {
        let meta = path.symlink_metadata()?;
        if meta.is_dir() {
            fs_err::remove_dir_all(path)?;
        } else {
            fs_err::remove_file(path)?;
        }
        count += 1;
    }
    Ok(count)
}

/// The recorded module files that are in the tree, relative to it, sorted.
fn recorded(records: &Path, tree: &Path, runner: &Runner) -> Result<Vec<String>> {
    let tree = fs_err::canonicalize(tree)?;
    let mut modules = BTreeSet::new();
    for record in fs_err::read_dir(records)? {
        let text = fs_err::read_to_string(record?.path())?;
        for line in text.lines().filter(|l| !l.is_empty()) {
            let path = runner.host_path(line);
            let path = fs_err::canonicalize(&path).unwrap_or(path);
            if path.starts_with(&tree) && path.is_file() {
                modules.insert(rel_path(&tree, &path));
            }
        }
    }
    Ok(modules.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.pyc` under `tree`, relative path → bytes.
    fn caches(tree: &Path) -> BTreeMap<String, Vec<u8>> {
        walkdir::WalkDir::new(tree)
            .into_iter()
            .map(Result::unwrap)
            .filter(|e| e.path().extension().is_some_and(|x| x == "pyc"))
            .map(|e| (rel_path(tree, e.path()), fs_err::read(e.path()).unwrap()))
            .collect()
    }

    #[test]
    fn compiling_on_every_core_gives_the_bytes_of_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut modules = Vec::new();
        for i in 0..40 {
            let rel = format!("pkg{}/mod_{i}.py", i % 3);
            let path = dir.path().join("one").join(&rel);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(&path, format!("X = {i}\ndef f():\n    return X * {i}\n")).unwrap();
            modules.push(rel);
        }
        crate::util::tree::link_copy(&dir.path().join("one"), &dir.path().join("many")).unwrap();
        let python = Path::new("python3");
        compile(
            &Runner::Native,
            python,
            &dir.path().join("one"),
            &modules,
            1,
        )
        .unwrap();
        compile(
            &Runner::Native,
            python,
            &dir.path().join("many"),
            &modules,
            7,
        )
        .unwrap();
        let (one, many) = (
            caches(&dir.path().join("one")),
            caches(&dir.path().join("many")),
        );
        assert_eq!(one.len(), 40, "{:?}", one.keys());
        assert_eq!(one, many);
        // Checked-hash (flags 0b11) and the stored name relative: no build folder in the bytes.
        let first = one.values().next().unwrap();
        assert_eq!(u32::from_le_bytes(first[4..8].try_into().unwrap()), 0b11);
        let folder = dir.path().to_string_lossy().into_owned();
        assert!(one
            .values()
            .all(|b| !b.windows(folder.len()).any(|w| w == folder.as_bytes())));
    }

    /// A module loaded by path without entering `sys.modules` (as ComfyUI runs its database
    /// migrations) is recorded also when it comes from the shared bytecode cache, where another
    /// process (the installed environment's checks) compiled it.
    #[test]
    fn modules_read_from_the_shared_cache_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        let cache = dir.path().join("cache");
        let records = dir.path().join("records");
        let hook = dir.path().join("hook");
        for folder in [&tree, &records, &hook] {
            fs_err::create_dir_all(folder).unwrap();
        }
        fs_err::write(tree.join("by_path.py"), "X = 1\n").unwrap();
        let out = serde_json::to_string(&records.to_string_lossy()).unwrap();
        fs_err::write(
            hook.join(format!("{RECORDER_MODULE}.py")),
            RECORDER.replace("__OUT__", &out),
        )
        .unwrap();
        let load = format!(
            "import importlib.util as u; s = u.spec_from_file_location('by_path', {:?}); \
             s.loader.exec_module(u.module_from_spec(s))",
            tree.join("by_path.py").to_string_lossy()
        );
        let run = |code: String| {
            let status = std::process::Command::new("python3")
                .args(["-s", "-c", &code])
                .env("PYTHONPYCACHEPREFIX", &cache)
                .env("PYTHONPATH", &hook)
                .env_remove("PYTHONDONTWRITEBYTECODE")
                .status()
                .unwrap();
            assert!(status.success());
        };
        run(load.clone());
        assert!(
            walkdir::WalkDir::new(&cache).into_iter().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("by_path.")),
            "the first process compiled it into the cache"
        );
        run(format!("import {RECORDER_MODULE}; {load}"));
        assert_eq!(
            recorded(&records, &tree, &Runner::Native).unwrap(),
            ["by_path.py"]
        );
    }

    #[test]
    fn a_module_that_does_not_compile_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("bad.py"), "def (:\n").unwrap();
        let err = compile(
            &Runner::Native,
            Path::new("python3"),
            dir.path(),
            &["bad.py".into()],
            2,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("bad.py"), "{err:#}");
    }
}
