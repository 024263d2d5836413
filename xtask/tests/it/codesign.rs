//! Mach-O code signatures on real macOS wheels from PyPI: every signed file's hashes check, a
//! changed page is caught naming it, and re-hashing an ad-hoc signature makes it whole again
//! (what the cross build does after conda's binary prefix replacement).

use std::io::Read;

use xtask::util::codesign::{self, State};

/// Every Mach-O file in the wheels of `specs` for `platform`: (wheel member, bytes).
fn macho_files(specs: &[&str], platform: &str) -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut found = Vec::new();
    for wheel in support::pip_download(dir.path(), specs, &[platform], "3.11") {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            if codesign::is_macho(&bytes) {
                found.push((entry.name().unwrap().into_owned(), bytes));
            }
        }
    }
    found
}

#[test]
#[ignore = "needs PyPI; run with `cargo test -- --include-ignored` (.ci/run does)"]
fn real_wheels_signatures_check_and_a_changed_page_is_caught_and_signed_again() {
    // Pillow's arm64 wheel: its extension modules and the libraries delocate vendored, each
    // ad-hoc signed (the linker signs arm64 code). MarkupSafe's universal2: two slices.
    let arm64 = macho_files(&["pillow==11.1.0"], "macosx_11_0_arm64");
    assert!(arm64.len() >= 10, "{} Mach-O files", arm64.len());
    for (name, bytes) in &arm64 {
        let slices = codesign::check(bytes).unwrap();
        assert_eq!(slices.len(), 1, "{name}");
        assert_eq!(slices[0].arch, "arm64", "{name}");
        assert_eq!(slices[0].state, State::Valid { adhoc: true }, "{name}");
    }
    let universal = macho_files(&["markupsafe==3.0.2"], "macosx_10_9_universal2");
    let (name, bytes) = &universal[0];
    let slices = codesign::check(bytes).unwrap();
    assert_eq!(
        slices.iter().map(|s| s.arch).collect::<Vec<_>>(),
        ["x86_64", "arm64"],
        "{name}"
    );
    // Only arm64 code must be signed; its x86_64 slice is not.
    assert_eq!(slices[0].state, State::Unsigned, "{name}");
    assert_eq!(slices[1].state, State::Valid { adhoc: true }, "{name}");
    // The Intel wheel: whatever each file carries, no signature that is there is broken.
    let intel = macho_files(&["pillow==11.1.0"], "macosx_10_10_x86_64");
    let mut signed = 0;
    for (name, bytes) in &intel {
        for slice in codesign::check(bytes).unwrap() {
            assert_eq!(slice.arch, "x86_64");
            assert!(
                !matches!(slice.state, State::Invalid(_)),
                "{name}: {slice:?}"
            );
            signed += usize::from(slice.state != State::Unsigned);
        }
    }
    eprintln!(
        "Pillow x86_64: {signed} of {} Mach-O files signed",
        intel.len()
    );

    // A prefix written into a string of the first page, as conda's binary replacement does.
    let (name, original) = arm64
        .iter()
        .find(|(n, _)| n.ends_with("_imaging.cpython-311-darwin.so"))
        .expect("PIL/_imaging");
    let mut changed = original.clone();
    let at = memchr::memmem::find(&changed, b"/usr/lib/libSystem.B.dylib").expect("a load path");
    changed[at..at + 4].copy_from_slice(b"/opt");
    let state = &codesign::check(&changed).unwrap()[0].state;
    let State::Invalid(why) = state else {
        panic!("{name}: a changed page passed: {state:?}");
    };
    assert!(why.starts_with("page 0 "), "{why}");
    assert_eq!(codesign::resign_adhoc(&mut changed).unwrap(), 1);
    assert_eq!(
        codesign::check(&changed).unwrap()[0].state,
        State::Valid { adhoc: true }
    );
    // Only the page hashes moved: the same length, the load path as written.
    assert_eq!(changed.len(), original.len());
    assert_eq!(&changed[at..at + 4], b"/opt");
    // The universal file: its arm64 slice signed again for its own bytes, the other left.
    let mut both = bytes.clone();
    let at = fat_slice_start(&both, 1) + 40;
    both[at] ^= 0xff;
    assert!(matches!(
        codesign::check(&both).unwrap()[1].state,
        State::Invalid(_)
    ));
    assert_eq!(codesign::resign_adhoc(&mut both).unwrap(), 1);
    let slices = codesign::check(&both).unwrap();
    assert_eq!(slices[0].state, State::Unsigned);
    assert_eq!(slices[1].state, State::Valid { adhoc: true });
}

fn fat_slice_start(bytes: &[u8], index: usize) -> usize {
    let at = 8 + index * 20 + 8;
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
}
