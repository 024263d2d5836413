//! Miniforge stand-ins for macOS, in constructor's `.sh` format ([`crate::shell_installer`]).
//! Nothing of them runs here (the cross build never runs the target's programs; a CPython of
//! this machine of the same version stands in for the target's python), so what matters is
//! their layout and their Mach-O files, which come from real macOS wheels with their real
//! signatures:
//! - `python`: `bin/pythonX.Y`, a real signed arm64 Mach-O (an extension module of MarkupSafe's
//!   wheel: a stand-in that is never run), the host's own pure-Python stdlib (of the same
//!   version) and an empty site-packages;
//! - `standin-tools`: a text file and a Mach-O library holding the prefix placeholder, written
//!   into its header's padding and signed again, as a conda-forge build leaves it; the link
//!   stage's replacement then changes signed pages, which it must sign again;
//! - `pip`, from its wheel.

use std::io::Read;
use std::path::Path;

use xtask::util::codesign;

use crate::constructor::{self, Package, PackageFile, UNIX_PLACEHOLDER};
use crate::shell_installer;

/// Where the placeholder goes in the library: after the load commands, in the header's padding.
const PLACEHOLDER_SUFFIX: &str = "/lib/standin";

/// A real arm64 Mach-O, ad-hoc signed by the linker: MarkupSafe's `_speedups` module from its
/// macOS arm64 wheel (PyPI), downloaded once into `cache`.
pub fn arm64_macho(cache: &Path, python: &str) -> Vec<u8> {
    let wheels = crate::pip_download(
        cache,
        &["markupsafe==3.0.2"],
        &["macosx_11_0_arm64"],
        python,
    );
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheels[0]).unwrap()).unwrap();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if codesign::is_macho(&bytes) {
            return bytes;
        }
    }
    panic!("no Mach-O file in {}", wheels[0].display());
}

/// `macho` (a thin 64-bit Mach-O) with the placeholder (NUL-ended) in its header's padding,
/// signed again: valid, as a conda-forge package's binary is before it is linked.
pub fn with_placeholder(macho: &[u8]) -> Vec<u8> {
    let le32 = |at: usize| u32::from_le_bytes(macho[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(le32(0), 0xfeed_facf, "a thin 64-bit Mach-O");
    // mach_header_64 is 32 bytes; its load commands follow (sizeofcmds at offset 20).
    let at = 32 + le32(20) + 16;
    let text = format!("{UNIX_PLACEHOLDER}{PLACEHOLDER_SUFFIX}\0");
    let mut bytes = macho.to_vec();
    let room = &bytes[at - 16..at + text.len() + 16];
    assert!(
        room.iter().all(|b| *b == 0),
        "no room for the placeholder in the header's padding"
    );
    bytes[at..at + text.len()].copy_from_slice(text.as_bytes());
    let signed = codesign::resign_adhoc(&mut bytes).unwrap();
    assert_eq!(signed, 1);
    bytes
}

/// The packages of a macOS stand-in for `subdir` (`osx-arm64`, `osx-64`): python `version`
/// (the host's, whose stdlib at `stdlib` it copies), the tools with placeholders, pip.
pub fn macos_packages(
    subdir: &str,
    version: &str,
    stdlib: &Path,
    macho: &[u8],
    pip_wheel: &Path,
) -> Vec<Package> {
    let mut files = vec![PackageFile {
        path: format!("bin/python{version}"),
        bytes: macho.to_vec(),
        placeholder_mode: None,
        mode: None,
    }];
    let skipped = [
        "site-packages",
        "test",
        "tests",
        "__pycache__",
        "idlelib",
        "tkinter",
        "turtledemo",
        "lib2to3",
        "ensurepip",
        "pydoc_data",
        "lib-dynload",
    ];
    for entry in walkdir::WalkDir::new(stdlib)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            !skipped.contains(&name.as_ref()) && !name.starts_with("config-")
        })
    {
        let entry = entry.unwrap();
        if entry.file_type().is_file() && entry.path().extension().is_some_and(|e| e == "py") {
            let rel = entry.path().strip_prefix(stdlib).unwrap();
            files.push(PackageFile {
                path: format!("lib/python{version}/{}", rel.to_string_lossy()),
                bytes: std::fs::read(entry.path()).unwrap(),
                placeholder_mode: None,
                mode: None,
            });
        }
    }
    files.push(PackageFile {
        path: format!("lib/python{version}/site-packages/README.txt"),
        bytes: b"This directory exists so that 3rd party packages can be installed here.\n"
            .to_vec(),
        placeholder_mode: None,
        mode: None,
    });
    let python = Package {
        name: "python".into(),
        version: format!("{version}.0"),
        build: "h0_0_cpython".into(),
        subdir: subdir.into(),
        noarch: None,
        depends: vec![],
        files,
        links: vec![
            ("bin/python3".into(), format!("python{version}")),
            ("bin/python".into(), format!("python{version}")),
        ],
        entry_points: vec![],
    };
    let tools =
        shell_installer::standin_tools(subdir, "lib/libstandin.dylib", with_placeholder(macho));
    vec![python, tools, constructor::pip_package(pip_wheel)]
}

/// The placeholder's text in the library, to find where the prefix went.
pub fn placeholder_in_library() -> String {
    format!("{UNIX_PLACEHOLDER}{PLACEHOLDER_SUFFIX}")
}
