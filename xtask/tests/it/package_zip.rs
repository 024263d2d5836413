//! The stand-in zip the package tests share, built once per test binary: it protects
//! anyfix-native and anyfix-core (which pins anyfix-pin, and anyfix-kit whose extra pins
//! anyfix-gpu-lib), with wheels for installs after it was built; and the helpers that run its
//! programs as a user would, each test in its own unpacked copy (a folder with a space and an
//! "é"), and fingerprint its `python/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_yaml_ng::Value;
use support::wheels::{build_wheel, module_wheel, WheelSpec};
use support::{host_platform, stderr, world};

pub(crate) struct Built {
    _dir: tempfile::TempDir,
    pub(crate) zip: PathBuf,
    /// Wheels for installs after the build: other versions of the protected packages, a
    /// package that needs an older one, and packages nobody protects.
    pub(crate) wheels: PathBuf,
    /// The world's wheelhouse, with what the zip was built from.
    pub(crate) world_wheels: PathBuf,
    /// Another index (a PEP 503 folder, `simple/`, beside its one wheel): a CPU build of a
    /// protected package at the same version, `anyfix-native 1.0.0+cpu`, as PyTorch's CPU index
    /// holds `torch 2.11.0+cpu`.
    pub(crate) other_index: PathBuf,
}

pub(crate) fn spec<'a>(name: &'a str, version: &'a str, requires: &'a [&'a str]) -> WheelSpec<'a> {
    WheelSpec {
        name,
        version,
        requires,
        files: &[],
        console_scripts: &[],
    }
}

/// A stand-in zip that protects anyfix-native and anyfix-core (which pins anyfix-pin).
pub(crate) fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let w = world();
        let dir = tempfile::tempdir().unwrap();
        let (server, manifest, copies) = w.private_sources(dir.path());
        let wheelhouse = copies.join("wheelhouse");
        // anyfix-core pins anyfix-pin, and anyfix-kit with an extra whose pin (a wildcard one,
        // as cuda-toolkit's) reaches anyfix-gpu-lib: all protected with it.
        module_wheel(
            &wheelhouse,
            "anyfix-core",
            "1.0.0",
            &["anyfix-pin==1.0.0", "anyfix-kit[gpu]==1.0.0"],
        );
        module_wheel(&wheelhouse, "anyfix-pin", "1.0.0", &[]);
        module_wheel(
            &wheelhouse,
            "anyfix-kit",
            "1.0.0",
            &[
                "anyfix-gpu-lib==2.0.*; extra == 'gpu'",
                "anyfix-extra==0.5.0; extra == 'all'",
            ],
        );
        module_wheel(&wheelhouse, "anyfix-gpu-lib", "2.0.1", &[]);
        let zip = build_stand_in(
            dir.path(),
            &manifest,
            &["anyfix-core"],
            "[anyfix-native, anyfix_core]",
        );
        drop(server);

        let wheels = dir.path().join("later wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        module_wheel(&wheels, "anyfix-native", "0.9.0", &[]);
        module_wheel(&wheels, "anyfix-pin", "0.5.0", &[]);
        module_wheel(&wheels, "needs-old", "1.0", &["anyfix-native<1"]);
        module_wheel(&wheels, "addon", "1.0", &[]);
        module_wheel(&wheels, "addon", "2.0", &[]);
        module_wheel(&wheels, "addon-friend", "1.0", &["addon>=2"]);
        // Big enough that a kill lands while pip is still writing it.
        let bulk: Vec<(String, Vec<u8>)> = (0..3000)
            .map(|i| (format!("bulky/part{i:04}.py"), support::noise(2048, i)))
            .collect();
        let files: Vec<(&str, &[u8])> = bulk
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_slice()))
            .collect();
        build_wheel(
            &wheels,
            &WheelSpec {
                files: &files,
                ..spec("bulky", "1.0", &[])
            },
        );
        // A package that ships a file of a protected one (as a careless wheel can).
        build_wheel(
            &wheels,
            &WheelSpec {
                files: &[("anyfix_native/__init__.py", b"VALUE = 'overwritten'\n")],
                ..spec("overwriter", "1.0", &[])
            },
        );
        let other_index = dir.path().join("other index");
        std::fs::create_dir_all(&other_index).unwrap();
        let cpu = module_wheel(&other_index, "anyfix-native", "1.0.0+cpu", &[]);
        support::write_file(
            &other_index,
            "simple/anyfix-native/index.html",
            format!(
                "<!DOCTYPE html><html><body><a href=\"../../{0}\">{0}</a></body></html>\n",
                cpu.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .replace('+', "%2B")
            ),
        );
        Built {
            zip,
            wheels,
            world_wheels: wheelhouse,
            other_index,
            _dir: dir,
        }
    })
}

/// A fresh copy of the zip, unpacked: (its temporary folder, which the tests also give its
/// programs as HOME; its `anymatix/`).
pub(crate) fn unpacked() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = unpack(dir.path());
    (dir, root)
}

/// The zip unpacked into `dir/unpacked é x/`; returns its `anymatix/`.
pub(crate) fn unpack(dir: &Path) -> PathBuf {
    let home = dir.join("unpacked é x");
    xtask::stages::archive::extract::extract(&built().zip, &home, 2).unwrap();
    home.join("anymatix")
}

/// Runs a program of the unpacked zip as a user would: from another folder, HOME of its own,
/// no PIP_* or PYTHON* variables of this machine, packages from the test's wheelhouses only.
pub(crate) fn run(program: &Path, args: &[&str], home: &Path) -> Output {
    let mut cmd = command(program, args, home);
    cmd.output().unwrap()
}

pub(crate) fn command(program: &Path, args: &[&str], home: &Path) -> Command {
    let b = built();
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(home);
    support::without_python_settings(&mut cmd);
    cmd.env("HOME", home)
        .env("PIP_NO_INDEX", "1")
        .env(
            "PIP_FIND_LINKS",
            format!("{} {}", url(&b.wheels), url(&b.world_wheels)),
        )
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    cmd
}

/// A folder as pip's space-separated variables take it.
pub(crate) fn url(path: &Path) -> String {
    format!("file://{}", path.display()).replace(' ', "%20")
}

pub(crate) fn packages(root: &Path, args: &[&str], home: &Path) -> Output {
    run(&root.join("packages.sh"), args, home)
}

pub(crate) fn python(root: &Path) -> PathBuf {
    root.join("python/bin/python3")
}

/// Every file and link of python/ with its sha256 (bytecode aside: Python writes it as it
/// imports), and what pip freeze says.
pub(crate) fn fingerprint(root: &Path, home: &Path) -> (BTreeMap<String, String>, String) {
    let prefix = root.join("python");
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&prefix) {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(&prefix)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.contains("__pycache__") || rel == "anymatix-environment-id" {
            continue;
        }
        let kind = if entry.path_is_symlink() {
            format!(
                "link {}",
                std::fs::read_link(entry.path()).unwrap().display()
            )
        } else if entry.file_type().is_file() {
            support::sha256_hex(&std::fs::read(entry.path()).unwrap())
        } else {
            "dir".into()
        };
        files.insert(rel, kind);
    }
    let freeze = run(&python(root), &["-m", "pip", "freeze", "--all"], home);
    assert!(freeze.status.success(), "{}", stderr(&freeze));
    (files, String::from_utf8_lossy(&freeze.stdout).into_owned())
}

pub(crate) fn text(out: &Output) -> String {
    stderr(out)
}

pub(crate) fn site_packages(root: &Path) -> PathBuf {
    root.join(format!(
        "python/lib/python{}/site-packages",
        world().host.version
    ))
}

/// Builds the world's stand-in with `packages` added and `protected` (YAML) protected; returns
/// the zip.
fn build_stand_in(dir: &Path, manifest: &Path, packages: &[&str], protected: &str) -> PathBuf {
    let mut doc: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    for name in packages {
        doc["python_packages"]
            .as_sequence_mut()
            .unwrap()
            .push(Value::from(*name));
    }
    doc["protected"] = serde_yaml_ng::from_str(protected).unwrap();
    std::fs::write(manifest, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
    let out = dir.join("out");
    let built = support::portable(manifest, &out, "0.0.0-test", &[]);
    assert!(built.status.success(), "{}", stderr(&built));
    out.join(format!(
        "anymatix-0.0.0-test-{}.zip",
        host_platform().name()
    ))
}

/// A stand-in zip with numpy from PyPI and a protected stand-in torch that requires it.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) fn built_with_numpy() -> &'static (tempfile::TempDir, PathBuf) {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let w = world();
        let dir = tempfile::tempdir().unwrap();
        let (server, manifest, copies) = w.private_sources(dir.path());
        let wheelhouse = copies.join("wheelhouse");
        let python = w.host.version.replace('.', "");
        support::pip_download(
            &wheelhouse,
            &["numpy==2.2.6"],
            &["manylinux_2_17_x86_64", "manylinux2014_x86_64"],
            &python,
        );
        module_wheel(&wheelhouse, "torch", "2.11.0", &["numpy"]);
        let zip = build_stand_in(dir.path(), &manifest, &["numpy==2.2.6", "torch"], "[torch]");
        drop(server);
        (dir, zip)
    })
}

/// Runs a program of the unpacked zip with PyPI as its index (and the machine's transport
/// settings), from another folder, with a HOME of its own.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) fn from_pypi(program: &Path, args: &[&str], home: &Path) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(home).env("HOME", home);
    support::pypi_env(&mut cmd);
    cmd.env_remove("PIP_CONFIG_FILE");
    cmd.output().unwrap()
}

/// Two fingerprints are the same; where not, the paths that differ are named (not both maps).
pub(crate) fn assert_same(
    got: &(BTreeMap<String, String>, String),
    want: &(BTreeMap<String, String>, String),
    what: &str,
) {
    let differing: Vec<&String> = got
        .0
        .keys()
        .chain(want.0.keys())
        .filter(|k| got.0.get(*k) != want.0.get(*k))
        .collect();
    assert!(differing.is_empty(), "{what}: these differ: {differing:?}");
    assert_eq!(got.1, want.1, "{what}: pip freeze");
}

/// A python holding the lock as the package tool does (recorded as its holder): (it, its pid).
pub(crate) fn hold_the_lock(root: &Path) -> (std::process::Child, u32) {
    let mut holder = Command::new(python(root))
        .args([
            "-c",
            "import time, _anymatix_guard; h = _anymatix_guard.hold_lock(); \
             print('held', flush=True); time.sleep(120)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "held");
    let pid = holder.id();
    (holder, pid)
}
