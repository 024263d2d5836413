//! Miniforge stand-ins for macOS and Linux in constructor's real `.sh` format (`shar.py` and
//! `header.sh`): a shell header declaring the payloads' sizes where it computes their byte
//! ranges, then conda-standalone, then a tar of `preconda.tar.bz2` (the explicit list, `urls`,
//! each package's `repodata_record.json`), `postconda.tar.bz2` (`conda-meta/history`,
//! `.condarc`) and `pkgs/<package>.conda`.
//!
//! The linux-aarch64 packages: `python`, Debian's arm64 CPython (its `python3.11-minimal`,
//! `libpython3.11-minimal` and `libpython3.11-stdlib` packages) laid out as a conda prefix with
//! the aarch64 libraries it links (from this machine's multiarch `/usr/lib/aarch64-linux-gnu`),
//! found relative to itself (`$ORIGIN`); `pip` from its wheel; `standin-tools` with a text and
//! a binary file holding the placeholder.
//!
//! Two test-only adapters make Debian's python a conda-like one (Debian freezes its own `site`
//! into the interpreter, which looks in `dist-packages`): `sitecustomize.py` adds
//! `lib/python3.11/site-packages`, and `sysconfig.py` installs there (`posix_prefix`, not
//! Debian's `posix_local`); and its `EXTERNALLY-MANAGED` marker (PEP 668, which makes pip refuse
//! every install) is left out. A real Miniforge python needs none of this.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::constructor::{self, Package, PackageFile, UNIX_PLACEHOLDER};

/// The installer: `body` (a shell script, its first line the `#!`; it must end by exiting) with
/// the header lines constructor renders, then the payloads.
pub fn shell_installer(
    body: &str,
    packages: &[Package],
    subdir: &str,
    tag: &str,
    conda_exe: &[u8],
) -> Vec<u8> {
    let work = tempfile::tempdir().unwrap();
    let (pre, post) = (work.path().join("pre"), work.path().join("post"));
    let mut outer = tar::Builder::new(Vec::new());
    let mut package_files = Vec::new();
    for (rel, bytes) in constructor::payload_files(packages, subdir, tag) {
        let into = if rel.starts_with("pkgs/") && rel.ends_with(".conda") {
            package_files.push((rel, bytes));
            continue;
        } else if rel == "conda-meta/history" || rel == ".condarc" {
            &post
        } else {
            &pre
        };
        let path = into.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    // preconda carries an empty history that postconda's replaces, as constructor's does.
    std::fs::create_dir_all(pre.join("conda-meta")).unwrap();
    std::fs::write(pre.join("conda-meta/history"), b"").unwrap();
    for (name, dir) in [("preconda.tar.bz2", &pre), ("postconda.tar.bz2", &post)] {
        let file = work.path().join(name);
        let status = Command::new("tar")
            .arg("-cjf")
            .arg(&file)
            .arg("-C")
            .arg(dir)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success(), "tar -cjf {name}");
        append(&mut outer, name, &std::fs::read(file).unwrap());
    }
    for (rel, bytes) in &package_files {
        append(&mut outer, rel, bytes);
    }
    let tar = outer.into_inner().unwrap();
    let mut payloads = conda_exe.to_vec();
    payloads.extend_from_slice(&tar);
    let md5 = constructor::md5_hex(&payloads);
    let (shebang, rest) = body.split_once('\n').unwrap();
    let header = format!(
        "{shebang}\n#\n# Created by constructor (test stand-in)\n#\n# NAME:  Miniforge3\n\
         # VER:   {tag}\n# PLAT:  {subdir}\n# MD5:   {md5}\n{rest}\n\
         # The payloads, as constructor's header.sh extracts them:\n\
         boundary0=$(head -n \"${{last_line}}\" \"${{THIS_PATH}}\" | wc -c | sed 's/ //g')\n\
         boundary1=$(( boundary0 + {} ))\n\
         boundary2=$(( boundary1 + 0 ))\n\
         boundary3=$(( boundary2 + {} ))\n\
         CONDA_EXEC=\"$PREFIX/_conda\"\n\
         @@END_HEADER@@\n",
        conda_exe.len(),
        tar.len()
    );
    let mut out = header.into_bytes();
    out.extend_from_slice(&payloads);
    out
}

fn append(tar: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, path, bytes).unwrap();
}

/// A header body for a stand-in that is only read, never run here.
pub const READ_ONLY_BODY: &str = "#!/bin/sh\n\
    echo 'Miniforge3 (test stand-in): this installer is read by the cross route, not run' >&2\n\
    exit 1";

/// Debian's arm64 CPython packages, downloaded once into `cache` by `apt-get download` (the
/// machine needs `dpkg --add-architecture arm64` and `apt-get update`; .ci/run does it).
pub fn aarch64_python_debs(cache: &Path) -> Vec<PathBuf> {
    let names = [
        "python3.11-minimal:arm64",
        "libpython3.11-minimal:arm64",
        "libpython3.11-stdlib:arm64",
    ];
    let done = cache.join("aarch64-debs.done");
    if !done.exists() {
        std::fs::create_dir_all(cache).unwrap();
        let out = Command::new("apt-get")
            .arg("download")
            .args(names)
            .current_dir(cache)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "apt-get download {names:?} (needs dpkg --add-architecture arm64; apt-get update): {}",
            crate::stderr(&out)
        );
        std::fs::write(&done, "").unwrap();
    }
    let mut debs: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("_arm64.deb"))
        .collect();
    debs.sort();
    debs
}

/// The linux-aarch64 packages of the stand-in (see the module's comment).
pub fn linux_aarch64_packages(debs: &[PathBuf], pip_wheel: &Path) -> Vec<Package> {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    for deb in debs {
        let status = Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(&root)
            .status()
            .unwrap();
        assert!(status.success(), "dpkg-deb -x {}", deb.display());
    }
    let v = "3.11";
    let prefix = work.path().join("prefix");
    let stdlib = prefix.join(format!("lib/python{v}"));
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    std::fs::copy(
        root.join(format!("usr/bin/python{v}")),
        prefix.join(format!("bin/python{v}")),
    )
    .unwrap();
    copy_tree(&root.join(format!("usr/lib/python{v}")), &stdlib);
    std::fs::create_dir_all(stdlib.join("site-packages")).unwrap();
    // The libraries the interpreter and its extension modules link, but glibc's own.
    let mut programs = vec![prefix.join(format!("bin/python{v}"))];
    programs.extend(
        std::fs::read_dir(stdlib.join("lib-dynload"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    let mut todo = programs.clone();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(file) = todo.pop() {
        for needed in needed_libraries(&file) {
            if is_glibc(&needed) || !seen.insert(needed.clone()) {
                continue;
            }
            let found = ["/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu"]
                .iter()
                .map(|dir| Path::new(dir).join(&needed))
                .find(|p| p.exists())
                .unwrap_or_else(|| {
                    panic!(
                        "{needed} (linked by {}) is not in /usr/lib/aarch64-linux-gnu: apt-get \
                         install libpython3.11-stdlib:arm64 zlib1g:arm64 libexpat1:arm64",
                        file.display()
                    )
                });
            let dest = prefix.join("lib").join(&needed);
            std::fs::copy(&found, &dest).unwrap();
            todo.push(dest);
        }
    }
    patchelf(&prefix.join(format!("bin/python{v}")), "$ORIGIN/../lib");
    for module in &programs[1..] {
        patchelf(module, "$ORIGIN/../..");
    }
    // The test-only adapters (see the module's comment).
    let sysconfig = stdlib.join("sysconfig.py");
    let text = std::fs::read_to_string(&sysconfig).unwrap();
    let adapted = text.replace(
        "            prefix_scheme = 'posix_local'",
        "            prefix_scheme = 'posix_prefix'",
    );
    assert_ne!(text, adapted, "Debian's sysconfig.py chooses posix_local");
    std::fs::write(&sysconfig, adapted).unwrap();
    std::fs::write(
        stdlib.join("sitecustomize.py"),
        "# Test stand-in only: Debian's python (its own site module frozen in) looks in\n\
         # dist-packages; a conda python in lib/pythonX.Y/site-packages.\n\
         import os, site, sys\n\
         site.addsitedir(os.path.join(sys.prefix, 'lib', 'python%d.%d' % sys.version_info[:2], 'site-packages'))\n",
    )
    .unwrap();
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(&prefix).sort_by_file_name() {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(&prefix).unwrap();
        files.push(PackageFile {
            path: rel.to_string_lossy().into_owned(),
            bytes: std::fs::read(entry.path()).unwrap(),
            placeholder_mode: None,
            mode: None,
        });
    }
    let python = Package {
        name: "python".into(),
        version: format!("{v}.2"),
        build: "h0_0_cpython".into(),
        subdir: "linux-aarch64".into(),
        noarch: None,
        depends: vec![],
        files,
        links: vec![
            ("bin/python3".into(), format!("python{v}")),
            ("bin/python".into(), format!("python{v}")),
        ],
        entry_points: vec![],
    };
    let mut binary = b"\x7fSTANDIN\0".to_vec();
    binary.extend_from_slice(UNIX_PLACEHOLDER.as_bytes());
    binary.extend_from_slice(b"/share/standin\0after\0");
    let tools = standin_tools("linux-aarch64", "share/standin/prefix.bin", binary);
    vec![python, tools, constructor::pip_package(pip_wheel)]
}

/// `standin-tools` for a Unix `subdir`: a script holding the prefix placeholder in text, and
/// `binary` (holding it too) at `binary_path`.
pub fn standin_tools(subdir: &str, binary_path: &str, binary: Vec<u8>) -> Package {
    Package {
        name: "standin-tools".into(),
        version: "1.0".into(),
        build: "h0_0".into(),
        subdir: subdir.into(),
        noarch: None,
        depends: vec![],
        files: vec![
            PackageFile {
                path: "bin/standin-config".into(),
                bytes: format!("#!/bin/sh\necho {UNIX_PLACEHOLDER}/share\n").into_bytes(),
                placeholder_mode: Some("text"),
                mode: None,
            },
            PackageFile {
                path: binary_path.into(),
                bytes: binary,
                placeholder_mode: Some("binary"),
                mode: None,
            },
        ],
        links: vec![],
        entry_points: vec![],
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        let skip = rel.components().any(|c| {
            let c = c.as_os_str().to_string_lossy();
            c == "__pycache__"
                || c == "test"
                || c == "dist-packages"
                || c == "site-packages"
                // Debian's PEP 668 marker: pip refuses to install beside it (a conda python
                // has none).
                || c == "EXTERNALLY-MANAGED"
        });
        if skip {
            continue;
        }
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn needed_libraries(file: &Path) -> Vec<String> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(file)
        .output()
        .expect("readelf (binutils)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_string()))
        .collect()
}

fn is_glibc(name: &str) -> bool {
    [
        "libc.so",
        "libm.so",
        "libmvec.so",
        "libdl.so",
        "librt.so",
        "libpthread.so",
        "ld-linux",
        "libutil.so",
        "libresolv.so",
        "libanl.so",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

fn patchelf(file: &Path, rpath: &str) {
    let status = Command::new("patchelf")
        .arg("--set-rpath")
        .arg(rpath)
        .arg(file)
        .status()
        .expect("patchelf (Debian: apt-get install patchelf)");
    assert!(status.success(), "patchelf {}", file.display());
}

/// The linux-64 packages of a stand-in that installs what the script stand-in
/// ([`crate::installer`]) installed at `native_prefix`, for comparing the two routes on this
/// machine: `python` (the interpreter, its libraries and stdlib, exactly the files the script
/// copied), and pip and setuptools from ensurepip's bundled wheels as conda packages (where the
/// script ran ensurepip).
pub fn linux_x86_64_packages(native_prefix: &Path, bundled: &[PathBuf]) -> Vec<Package> {
    let skipped = |rel: &str| {
        [
            "conda-meta/",
            "pkgs/",
            "envs/",
            ".condarc",
            "bin/mamba",
            "bin/pip",
        ]
        .iter()
        .any(|p| rel.starts_with(p))
            || rel.contains("/site-packages/")
    };
    let mut files = Vec::new();
    let mut links = Vec::new();
    for entry in walkdir::WalkDir::new(native_prefix).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(native_prefix)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.is_empty() || skipped(&rel) {
            continue;
        }
        if entry.path_is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap();
            links.push((rel, target.to_string_lossy().into_owned()));
        } else if entry.file_type().is_file() {
            files.push(PackageFile {
                path: rel,
                bytes: std::fs::read(entry.path()).unwrap(),
                placeholder_mode: None,
                mode: mode_of(&entry.metadata().unwrap()),
            });
        }
    }
    // The version the interpreter says, as the record of a real python package does.
    let said = Command::new(native_prefix.join("bin/python3"))
        .args(["-c", "import platform; print(platform.python_version())"])
        .output()
        .unwrap();
    let version = String::from_utf8(said.stdout).unwrap().trim().to_string();
    let python = Package {
        name: "python".into(),
        version,
        build: "0".into(),
        subdir: "linux-64".into(),
        noarch: None,
        depends: vec![],
        files,
        links,
        entry_points: vec![],
    };
    let mut packages = vec![python];
    for wheel in bundled {
        let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
        packages.push(if name.starts_with("pip-") {
            constructor::pip_package(wheel)
        } else {
            constructor::wheel_package(wheel, &[])
        });
    }
    packages
}

#[cfg(unix)]
fn mode_of(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(meta.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_: &std::fs::Metadata) -> Option<u32> {
    None
}
