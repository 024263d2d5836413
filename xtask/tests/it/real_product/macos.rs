//! The real macOS products, built on this Linux machine by the cross route (opt-in, with the
//! real-product test: each downloads about 400 MB of macOS wheels). The default distribution's
//! `macos-arm64` (PyPI's torch 2.11.0) and `macos-x86_64` (torch 2.2.2 on python 3.12, numpy<2,
//! transformers<5), with ComfyUI 0.33.0 and ComfyUI-Manager from `../shared/product/`, and a
//! Miniforge stand-in in constructor's `.sh` format whose python 3.13 is a CPython stdlib around
//! a real signed arm64 Mach-O. macos-x86_64's `python=3.12` is solved by this machine's conda
//! (the stand-in solver of `support::channel`, in a Linux `.sh` of the same release) against a
//! loopback channel whose python 3.12 is made the same way. Nothing of macOS runs here: the build
//! runs its pure-Python steps with this machine's CPython of the target's `X.Y` standing in,
//! checks every Mach-O signature of the real wheels, and leaves verify to a Mac; these tests
//! check the zip's files (every Mach-O signature again, from the zip; the protected core; the
//! layout) and snapshot the tree's shape.
//!
//! ```sh
//! ANYMATIX_HOST_PYTHON=/path/to/python3.13 \
//!   cargo test --features real-product --test it real_product::macos::arm64 -- --nocapture
//! ANYMATIX_HOST_PYTHON=/path/to/python3.12 \
//!   cargo test --features real-product --test it real_product::macos::x86_64 -- --nocapture
//! ```
//! (or `python3.13`/`python3.12` on the PATH.) `ANYMATIX_REAL_PRODUCT_DIR=/some/dir` keeps each
//! build in `/some/dir/macos` and `/some/dir/macos-x86_64` (and its wheels).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{channel, macos, TAG};
use xtask::model::platform::Platform;
use xtask::util::codesign::{self, State};

/// The CPython `version` of this machine that stands in for the zip's, found as the build finds
/// it.
fn host_python(version: &str) -> PathBuf {
    xtask::util::host_python::find(version).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Its standard library's folder.
fn stdlib_of(python: &Path) -> PathBuf {
    let out = Command::new(python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn arm64_the_product_is_built_here_with_every_signature_valid() {
    let host_python = host_python("3.13");
    let product = super::cross_product("macos", |_| {});

    // Miniforge's stand-in for macOS arm64 with python 3.13, served as `/latest` would be.
    let downloads = product.dir.join("standin-downloads");
    let macho = macos::arm64_macho(&downloads.join("macho"), "3.13");
    let pip = support::pip_download(&downloads.join("pip"), &["pip==26.3"], &[], "3.13");
    let stdlib = stdlib_of(&host_python);
    let packages = macos::macos_packages("osx-arm64", "3.13", &stdlib, &macho, &pip[0]);
    let installer = support::shell_installer::shell_installer(
        support::shell_installer::READ_ONLY_BODY,
        &packages,
        "osx-arm64",
        TAG,
        &macho,
    );
    support::serve_installer(Platform::MacosArm64, TAG, &installer);
    build_and_check(
        &product,
        Platform::MacosArm64,
        "3.13",
        &host_python,
        "torch===2.11.0",
    );
}

/// The release of the x86_64 stand-ins: its own, as a Linux `.sh` of it holds the solver.
const X86_64_TAG: &str = "26.3.2-8";

#[test]
fn x86_64_the_product_is_built_here_with_its_python_solved_by_conda() {
    let host_python = host_python("3.12");
    let product = super::cross_product("macos-x86_64", |doc| {
        doc["installer"]["release"] = X86_64_TAG.into();
    });

    // Miniforge's stand-in for macOS x86_64 with python 3.13 (the host 3.12's stdlib under
    // 3.13's name: never run, the solve replaces it); a Linux `.sh` of the same release whose
    // conda-standalone is the stand-in solver; the channel's python 3.12.
    let downloads = product.dir.join("standin-downloads");
    let macho = macos::arm64_macho(&downloads.join("macho"), "3.12");
    let pip = support::pip_download(&downloads.join("pip"), &["pip==26.3"], &[], "3.12");
    let stdlib = stdlib_of(&host_python);
    let packages = macos::macos_packages("osx-64", "3.13", &stdlib, &macho, &pip[0]);
    let installer = support::shell_installer::shell_installer(
        support::shell_installer::READ_ONLY_BODY,
        &packages,
        "osx-64",
        X86_64_TAG,
        &macho,
    );
    support::serve_installer(Platform::MacosX86_64, X86_64_TAG, &installer);
    support::serve_installer(
        Platform::LinuxX86_64,
        X86_64_TAG,
        &channel::solver_installer(X86_64_TAG),
    );
    let mut python = macos::macos_packages("osx-64", "3.12", &stdlib, &macho, &pip[0]).remove(0);
    python.depends = vec!["__osx >=10.13".into()];
    channel::serve_channel(&[python], &["osx-64", "noarch"]);
    let log = build_and_check(
        &product,
        Platform::MacosX86_64,
        "3.12",
        &host_python,
        "torch===2.2.2",
    );
    assert!(
        log.contains("conda's solve for macos-x86_64 (osx-64)"),
        "{log}"
    );
}

/// Builds `platform` with `host_python` standing in, checks the zip's files (each Mach-O
/// signature, the protected core holding `torch`, the tree's shape) and prints the figures.
/// Returns the build's output.
fn build_and_check(
    product: &super::CrossProduct,
    platform: Platform,
    python: &str,
    host_python: &Path,
    torch: &str,
) -> String {
    let (build_time, build_log) = product.build(
        &["--platform", platform.name()],
        &[("ANYMATIX_HOST_PYTHON", host_python)],
    );
    assert!(build_log.contains("NOT VERIFIED HERE"), "{build_log}");
    let line_with = |parts: &[&str]| {
        build_log
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .map(|l| l.trim().to_string())
            .unwrap_or_default()
    };
    let signatures = line_with(&["Mach-O files,"]);
    let compiled = line_with(&["compiled ", "imported modules"]);
    let solve = line_with(&["conda's solve for"]);
    let steps = product.steps(platform.name());
    let zip = product
        .out
        .join(format!("anymatix-0.0.0-real-{platform}.zip"));
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
    assert!(protected.contains(&format!("\n{torch}\n")), "{protected}");
    assert!(
        super::tree_shape(&zips[0], python).contains("site-packages/torch (many files)"),
        "torch is in the first volume"
    );

    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    let shape: String = zips.iter().map(|z| super::tree_shape(z, python)).collect();
    let name = format!("real_product_tree@{platform}");
    settings.bind(|| insta::assert_snapshot!(name, shape));

    println!(
        "\n{platform} real product, built here on the cross route:\n  build {:.0?} ({})\n  \
         {solve}\n  {signatures}\n  {compiled}\n  zip {:.1} MB in {} volume(s), {files} files, \
         {macho_files} Mach-O files ({unsigned_x86_64} unsigned x86_64 slices)",
        build_time,
        steps.join(", "),
        zip_bytes as f64 / 1e6,
        zips.len(),
    );
    build_log
}
