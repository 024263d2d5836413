//! `cargo xtask archive DIR OUT.zip`: any folder packed exactly as `portable` packs `anymatix/`.

use std::path::Path;
use std::process::Command;

use support::run_xtask as xtask;

fn python_reads(zip: &Path, name: &str) -> (u64, String) {
    let code = format!(
        "import sys, zipfile\ni = zipfile.ZipFile(sys.argv[1]).getinfo({name:?})\nprint(i.file_size, oct(i.external_attr >> 16))"
    );
    let out = Command::new("python3")
        .args(["-c", &code])
        .arg(zip)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (size, mode) = text.trim().split_once(' ').unwrap();
    (size.parse().unwrap(), mode.to_string())
}

#[test]
fn the_folder_becomes_the_root_and_threads_do_not_change_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("my env");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    for i in 0..50 {
        std::fs::write(
            tree.join(format!("f{i}.txt")),
            format!("{i} ").repeat(1000 * i),
        )
        .unwrap();
    }
    std::fs::write(tree.join("bin/run"), "#!/bin/sh\necho hi\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tree.join("bin/run"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let (a, b) = (dir.path().join("a.zip"), dir.path().join("b.zip"));
    let (ok, text) = xtask(&["archive", tree.to_str().unwrap(), a.to_str().unwrap()]);
    assert!(ok, "{text}");
    let (ok, text) = xtask(&[
        "archive",
        tree.to_str().unwrap(),
        b.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert!(ok, "{text}");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let sidecar = std::fs::read_to_string(dir.path().join("a.zip.sha256")).unwrap();
    assert!(sidecar.ends_with("  a.zip\n"), "{sidecar}");
    let (size, mode) = python_reads(&a, "my env/bin/run");
    assert_eq!(
        (size, mode.as_str()),
        (18, if cfg!(unix) { "0o100755" } else { "0o100644" })
    );
}

/// ZIP64: an entry of 4 GiB and more (a sparse file, so it costs no disk) is stored with 64-bit
/// sizes that other readers understand, and memory stays small while it is compressed.
#[cfg(unix)]
#[test]
fn entries_over_4_gib_use_zip64() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("big");
    std::fs::create_dir_all(&tree).unwrap();
    let size = (4u64 << 30) + 12_345;
    std::fs::File::create(tree.join("huge.bin"))
        .unwrap()
        .set_len(size)
        .unwrap();
    let zip = dir.path().join("big.zip");
    let (ok, text) = xtask(&["archive", tree.to_str().unwrap(), zip.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(
        std::fs::metadata(&zip).unwrap().len() < 10 << 20,
        "zeros compress well"
    );
    assert_eq!(python_reads(&zip, "big/huge.bin").0, size);
}
