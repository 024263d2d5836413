//! The macOS zip built on this Linux machine by the cross route, on stand-ins: Miniforge in
//! constructor's `.sh` format holding real signed Mach-O files from a macOS wheel (one with
//! the prefix placeholder in signed bytes), the world's wheels and repos. Nothing of macOS runs
//! here: a CPython of this machine stands in for the target's python in the pure-Python steps,
//! the bytecode is for what the smoke checks reach by their imports, every Mach-O signature is
//! checked, and the zip is left to be verified on a Mac.

use std::path::Path;
use std::sync::OnceLock;

use support::{macos, TAG};
use xtask::model::platform::Platform;
use xtask::stages::verify::signatures;
use xtask::util::codesign::{self, State};

/// The stand-in installer's bytes and the Mach-O it was made from, made once per test binary.
fn installer() -> &'static (Vec<u8>, Vec<u8>) {
    static INSTALLER: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    INSTALLER.get_or_init(|| {
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
        let stdlib = host.prefix.join(format!("lib/python{}", host.version));
        let packages = macos::macos_packages("osx-arm64", &host.version, &stdlib, &macho, &pip[0]);
        let sh = support::shell_installer::shell_installer(
            support::shell_installer::READ_ONLY_BODY,
            &packages,
            "osx-arm64",
            TAG,
            // conda-standalone is a signed Mach-O program too, checked with the rest.
            &macho,
        );
        (sh, macho)
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

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
