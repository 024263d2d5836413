//! The real macOS arm64 product, built on this Linux machine by the cross route (opt-in, with the
//! real-product test: it downloads about 400 MB of macOS wheels). The default distribution's
//! `macos-arm64` (PyPI's torch 2.11.0, ComfyUI 0.33.0 and ComfyUI-Manager from
//! `../shared/product/`), with a Miniforge stand-in in constructor's `.sh` format whose python
//! is CPython 3.13's stdlib around a real signed arm64 Mach-O. Nothing of macOS runs here: the
//! build runs its pure-Python steps with this machine's CPython 3.13 standing in, checks every
//! Mach-O signature of the real wheels, and leaves verify to a Mac; this test checks the zip's
//! files (every Mach-O signature again, from the zip; the protected core; the layout) and
//! snapshots the tree's shape.
//!
//! ```sh
//! ANYMATIX_HOST_PYTHON=/path/to/python3.13 \
//!   cargo test --features real-product --test it real_product::macos -- --nocapture
//! ```
//! `ANYMATIX_REAL_PRODUCT_DIR=/some/dir` keeps the build in `/some/dir/macos` (and its wheels).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{macos, TAG};
use xtask::model::platform::Platform;
use xtask::util::codesign::{self, State};

/// The CPython 3.13 of this machine that stands in for the zip's: `$ANYMATIX_HOST_PYTHON`, or
/// `python3.13` on the PATH.
fn host_python_313() -> PathBuf {
    let named = std::env::var_os("ANYMATIX_HOST_PYTHON").map_or("python3.13".into(), PathBuf::from);
    let out = Command::new(&named)
        .args([
            "-c",
            "import sys; print(sys.base_prefix); print(sys.executable)",
        ])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap())
        }
        _ => panic!(
            "the macOS build needs a CPython 3.13 of this machine (Miniforge's python is 3.13): \
             put python3.13 on the PATH or name it in ANYMATIX_HOST_PYTHON"
        ),
    }
}

/// The zip's tree as a reviewer reads it: its folders two levels down, and the top-level names
/// of site-packages (versions cut from `.dist-info` names), each with its file count.
fn tree_shape(zip: &Path) -> String {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let site = "anymatix/python/lib/python3.13/site-packages/";
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..archive.len() {
        let entry = archive.by_index(i).unwrap();
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().unwrap().to_string();
        let key = if let Some(rest) = name.strip_prefix(site) {
            let top = rest.split('/').next().unwrap();
            let top = match top.find(".dist-info") {
                Some(_) => format!("{}-*.dist-info", top.split('-').next().unwrap()),
                None => top.to_string(),
            };
            format!("{site}{top}")
        } else {
            let parts: Vec<&str> = name.split('/').collect();
            parts[..parts.len().min(3)].join("/")
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k} ({} files)\n", if *n > 10 { "many" } else { "few" }))
        .collect()
}

#[test]
fn the_macos_arm64_product_is_built_here_with_every_signature_valid() {
    let host_python = host_python_313();
    let product = super::cross_product("macos", |_| {});

    // Miniforge's stand-in for macOS arm64 with python 3.13, served as `/latest` would be.
    let downloads = product.dir.join("standin-downloads");
    let macho = macos::arm64_macho(&downloads.join("macho"), "3.13");
    let pip = support::pip_download(&downloads.join("pip"), &["pip==26.3"], &[], "3.13");
    let stdlib_root = Command::new(&host_python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .unwrap();
    let stdlib = PathBuf::from(String::from_utf8_lossy(&stdlib_root.stdout).trim());
    let packages = macos::macos_packages("osx-arm64", "3.13", &stdlib, &macho, &pip[0]);
    let installer = support::shell_installer::shell_installer(
        support::shell_installer::READ_ONLY_BODY,
        &packages,
        "osx-arm64",
        TAG,
        &macho,
    );
    support::serve_installer(Platform::MacosArm64, TAG, &installer);

    let (build_time, build_log) = product.build(
        &["--platform", "macos-arm64"],
        &[("ANYMATIX_HOST_PYTHON", &host_python)],
    );
    assert!(build_log.contains("NOT VERIFIED HERE"), "{build_log}");
    let signatures = build_log
        .lines()
        .find(|l| l.contains("Mach-O files,"))
        .expect("the signature check's line")
        .trim()
        .to_string();
    let compiled = build_log
        .lines()
        .find(|l| l.contains("compiled ") && l.contains("imported modules"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    let steps = product.steps("macos-arm64");
    let zip = product.out.join("anymatix-0.0.0-real-macos-arm64.zip");
    let (zips, zip_bytes) = super::zip_volumes(&zip);

    // From the zip itself: every Mach-O file's signature, the protected core, the layout.
    let mut files = 0;
    let (mut macho_files, mut unsigned_x86_64) = (0, 0);
    let mut bad = Vec::new();
    let mut protected = String::new();
    for volume in &zips {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(volume).unwrap()).unwrap();
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).unwrap();
            if entry.is_dir() {
                continue;
            }
            files += 1;
            let name = entry.name().unwrap().to_string();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            if name == "anymatix/tools/protected.txt" {
                protected = String::from_utf8_lossy(&bytes).into_owned();
            }
            if entry.is_symlink() || !codesign::is_macho(&bytes) {
                continue;
            }
            macho_files += 1;
            for slice in codesign::check(&bytes).unwrap() {
                match slice.state {
                    State::Valid { .. } => {}
                    State::Unsigned if slice.arch == "x86_64" => unsigned_x86_64 += 1,
                    other => bad.push(format!("{name} ({}): {other:?}", slice.arch)),
                }
            }
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(macho_files > 100, "{macho_files} Mach-O files");
    assert!(protected.contains("\ntorch===2.11.0\n"), "{protected}");
    assert!(
        tree_shape(&zips[0]).contains("site-packages/torch (many files)"),
        "torch is in the first volume"
    );

    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    let shape: String = zips.iter().map(|z| tree_shape(z)).collect();
    settings.bind(|| insta::assert_snapshot!("real_product_tree@macos-arm64", shape));

    println!(
        "\nmacOS arm64 real product, built here on the cross route:\n  build {:.0?} ({})\n  \
         {signatures}\n  {compiled}\n  zip {:.1} MB in {} volume(s), {files} files, {macho_files} \
         Mach-O files ({unsigned_x86_64} unsigned x86_64 slices)",
        build_time,
        steps.join(", "),
        zip_bytes as f64 / 1e6,
        zips.len(),
    );
}
