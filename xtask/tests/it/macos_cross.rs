//! The macOS zip built on this Linux machine by the cross route, on stand-ins: Miniforge in
//! constructor's `.sh` format holding real signed Mach-O files from a macOS wheel (one with
//! the prefix placeholder in signed bytes), the world's wheels and repos. Nothing of macOS runs
//! here: a CPython of this machine stands in for the target's python in the pure-Python steps,
//! the bytecode is for what the smoke checks reach by their imports, every Mach-O signature is
//! checked, and the zip is left to be verified on a Mac.

use std::path::Path;
use std::sync::OnceLock;

use support::{channel, macos, TAG};
use xtask::model::platform::Platform;
use xtask::stages::verify::signatures;
use xtask::util::codesign::{self, State};

/// What the macOS stand-ins are made of: a real signed arm64 Mach-O and pip's wheel, downloaded
/// once per test binary.
fn parts() -> &'static (Vec<u8>, std::path::PathBuf) {
    static PARTS: OnceLock<(Vec<u8>, std::path::PathBuf)> = OnceLock::new();
    PARTS.get_or_init(|| {
        let downloads = support::xtask_binary()
            .parent()
            .unwrap()
            .join("standin-miniforge-downloads");
        let host = &support::world().host;
        let macho = macos::arm64_macho(&downloads.join("macos-macho"), &host.version);
        let pip = support::pip_download(
            &downloads.join("pip-wheel"),
            &["pip==26.3"],
            &[],
            &host.version,
        );
        (macho, pip[0].clone())
    })
}

/// The packages of a macOS stand-in for `subdir` with python `version` (the host's stdlib).
fn packages(subdir: &str, version: &str) -> Vec<support::constructor::Package> {
    let host = &support::world().host;
    let (macho, pip) = parts();
    let stdlib = host.prefix.join(format!("lib/python{}", host.version));
    macos::macos_packages(subdir, version, &stdlib, macho, pip)
}

/// The stand-in installer's bytes and the Mach-O it was made from, made once per test binary.
fn installer() -> &'static (Vec<u8>, Vec<u8>) {
    static INSTALLER: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    INSTALLER.get_or_init(|| {
        let host = &support::world().host;
        let macho = &parts().0;
        let sh = support::shell_installer::shell_installer(
            support::shell_installer::READ_ONLY_BODY,
            &packages("osx-arm64", &host.version),
            "osx-arm64",
            TAG,
            // conda-standalone is a signed Mach-O program too, checked with the rest.
            macho,
        );
        (sh, macho.clone())
    })
}

#[test]
#[ignore = "needs PyPI (a macOS wheel's Mach-O files, pip's wheel)"]
fn a_macos_zip_is_built_here_with_valid_signatures_and_left_to_verify_on_a_mac() {
    support::serve_installer(Platform::MacosArm64, TAG, &installer().0);
    let dir = tempfile::tempdir().unwrap();
    let (done, out) = support::build_for(Platform::MacosArm64, dir.path(), TAG);
    let log = support::stderr(&done);
    assert!(done.status.success(), "{log}");
    assert!(log.contains("Link the Miniforge base done"), "{log}");
    assert!(
        log.contains("Check the Mach-O code signatures done"),
        "{log}"
    );
    assert!(
        log.contains("NOT VERIFIED HERE: a macos-arm64 zip runs only on macos-arm64"),
        "{log}"
    );
    let zip = out.join("anymatix-1.0.0-macos-arm64.zip");
    assert!(zip.is_file(), "{log}");

    // The placeholder in signed bytes became the prefix, and the file was signed again.
    let prefix = out.join("stage/macos-arm64/env/anymatix/python");
    let prefix_text = prefix.to_string_lossy().into_owned();
    let library = std::fs::read(prefix.join("lib/libstandin.dylib")).unwrap();
    let placeholder = macos::placeholder_in_library();
    let replaced = format!("{prefix_text}/lib/standin");
    assert!(find(&library, placeholder.as_bytes()).is_none());
    assert!(find(&library, replaced.as_bytes()).is_some());
    let slices = codesign::check(&library).unwrap();
    assert_eq!(
        slices.iter().map(|s| &s.state).collect::<Vec<_>>(),
        [&State::Valid { adhoc: true }]
    );
    // Linked for macOS: links, scripts for its python, the wheels in its site-packages.
    let v = &support::world().host.version;
    assert_eq!(
        std::fs::read_link(prefix.join("bin/python3")).unwrap(),
        Path::new(&format!("python{v}"))
    );
    let pip = std::fs::read_to_string(prefix.join("bin/pip")).unwrap();
    assert!(
        pip.starts_with(&format!("#!{prefix_text}/bin/python{v}\n")),
        "{pip}"
    );
    let site = format!("lib/python{v}/site-packages");
    assert!(prefix.join(&site).join("anyfix_cli/__init__.py").is_file());

    // Bytecode for what the checks and ComfyUI's start reach by their imports, read not run.
    let listing =
        std::fs::read_to_string(out.join("stage/macos-arm64/dist/imported-modules.txt")).unwrap();
    for module in [
        format!("python/{site}/anyfix_native/__init__.py"),
        format!("python/{site}/anyfix_native/testing/__init__.py"),
        format!("python/{site}/anyfix_cli/__init__.py"),
        format!("python/lib/python{v}/json/__init__.py"),
        "ComfyUI/main.py".to_string(),
    ] {
        assert!(listing.lines().any(|l| l == module), "{module}: {listing}");
    }
    assert!(!listing.contains("anyfix_native/tests/"), "{listing}");

    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings
        .bind(|| insta::assert_snapshot!("macos_cross_zip_tree", support::zip_listing(&zip, v)));
}

/// The check the build makes before the zip: a changed byte in a signed page fails it, naming
/// the file, its slice and the page.
#[test]
#[ignore = "needs PyPI (a macOS wheel's Mach-O files)"]
fn a_mach_o_file_whose_bytes_no_longer_match_its_signature_fails_the_check() {
    let macho = &installer().1;
    let tree = tempfile::tempdir().unwrap();
    let lib = tree.path().join("python/lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("good.so"), macho).unwrap();
    std::fs::write(lib.join("not-macho.txt"), b"\xcf\xfa\xed").unwrap();
    let found = signatures::check_tree(tree.path()).unwrap();
    assert_eq!((found.files, found.valid_slices), (1, 1));

    let mut tampered = macho.clone();
    let at = 32 + u32::from_le_bytes(tampered[20..24].try_into().unwrap()) as usize + 8;
    tampered[at] ^= 0xff;
    std::fs::write(lib.join("tampered.so"), &tampered).unwrap();
    let err = format!("{:#}", signatures::check_tree(tree.path()).unwrap_err());
    assert!(
        err.contains("1 Mach-O slices") && err.contains("python/lib/tampered.so (arm64): "),
        "{err}"
    );
    assert!(!err.contains("good.so"), "{err}");
}

/// `conda_packages` on the cross route: this machine's conda-standalone (the stand-in solver, from
/// the Linux `.sh` of the same release) solves `python=<host X.Y>` for osx-64 against a base
/// whose python is another `X.Y`, and the tool carries out its answer: the old python unlinked,
/// the channel's downloaded and linked, and pip (`noarch: python`) relinked from the installer's
/// own package into the new python's site-packages.
#[test]
#[ignore = "needs PyPI (a macOS wheel's Mach-O files, pip's wheel)"]
fn conda_packages_for_macos_are_solved_by_this_machines_conda_and_linked() {
    const SOLVE_TAG: &str = "26.3.2-7";
    let host = &support::world().host;
    let (major, minor) = host.version.split_once('.').unwrap();
    let base_version = format!("{major}.{}", minor.parse::<u32>().unwrap() - 1);
    let sh = support::shell_installer::shell_installer(
        support::shell_installer::READ_ONLY_BODY,
        &packages("osx-64", &base_version),
        "osx-64",
        SOLVE_TAG,
        &parts().0,
    );
    support::serve_installer(Platform::MacosX86_64, SOLVE_TAG, &sh);
    support::serve_installer(
        Platform::LinuxX86_64,
        SOLVE_TAG,
        &channel::solver_installer(SOLVE_TAG),
    );
    let mut python = packages("osx-64", &host.version).remove(0);
    python.depends = vec!["__osx >=10.13".into()];
    let python_file = python.file_name();
    channel::serve_channel(&[python], &["osx-64", "noarch"]);

    let dir = tempfile::tempdir().unwrap();
    let extra = format!("conda_packages: [python={}]\n", host.version);
    let manifest = support::world().manifest(dir.path(), SOLVE_TAG, &extra);
    let out = dir.path().join("out");
    let done = support::portable(&manifest, &out, "1.0.0", &["--platform", "macos-x86_64"]);
    let log = support::stderr(&done);
    assert!(done.status.success(), "{log}");
    assert!(
        log.contains(
            "conda's solve for macos-x86_64 (osx-64): 2 unlinked, 2 linked (1 from the \
             installer, 1 downloaded or cached)"
        ),
        "{log}"
    );
    assert!(
        out.join("anymatix-1.0.0-macos-x86_64.zip").is_file(),
        "{log}"
    );
    let requests = support::world().requests_of(&support::client_name(dir.path()));
    for path in [
        "osx-64/repodata.json".to_string(),
        "noarch/repodata.json".to_string(),
        format!("osx-64/{python_file}"),
    ] {
        assert!(
            requests
                .iter()
                .any(|r| r.ends_with(&format!("/conda-forge/{path}"))),
            "{path}: {requests:?}"
        );
    }

    // The base's python is gone, every file of it; the new one and pip are in its place.
    let prefix = out.join("stage/macos-x86_64/env/anymatix/python");
    let v = &host.version;
    assert!(!prefix.join(format!("lib/python{base_version}")).exists());
    assert!(!prefix.join(format!("bin/python{base_version}")).exists());
    assert_eq!(
        std::fs::read_link(prefix.join("bin/python3")).unwrap(),
        Path::new(&format!("python{v}"))
    );
    let site = prefix.join(format!("lib/python{v}/site-packages"));
    assert!(site.join("pip/__init__.py").is_file());
    let pip = std::fs::read_to_string(prefix.join("bin/pip")).unwrap();
    assert!(
        pip.starts_with(&format!("#!{}/bin/python{v}\n", prefix.display())),
        "{pip}"
    );
    let records: Vec<String> = std::fs::read_dir(prefix.join("conda-meta"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("python-"))
        .collect();
    assert_eq!(records, [format!("python-{v}.0-h0_0_cpython.json")]);
    let answer: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("stage/macos-x86_64/env/conda-solve.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(answer["actions"]["LINK"][1]["name"], "pip", "{answer}");
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
