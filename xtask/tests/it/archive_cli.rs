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

/// Large files are compressed in 1 MiB chunks (4 MiB for `best`) by every worker: the chunk
/// boundaries depend on offsets only, so the bytes are the same for any thread count, and the
/// pieces make one deflate stream that Python's zipfile and `unzip` both read back.
#[test]
fn chunked_files_give_the_same_bytes_for_any_thread_count_and_unzip_back() {
    const MIB: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("chunks");
    std::fs::create_dir_all(&tree).unwrap();
    let text = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|i| b"abcdefghij klmnop\n"[(i * 7 + i / 4096) % 18])
            .collect()
    };
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("one byte", b"x".to_vec()),
        ("one chunk", text(MIB)),
        ("one chunk and a byte", text(MIB + 1)),
        ("four best chunks and a byte", text(4 * MIB + 1)),
        ("several chunks", text(9 * MIB + 5)),
        ("noise of several chunks", support::noise(2 * MIB + 3, 7)),
        ("noise", support::noise(5000, 11)),
    ];
    for (name, bytes) in &files {
        std::fs::write(tree.join(name), bytes).unwrap();
    }
    for compression in ["default", "best"] {
        let zips: Vec<_> = ["1", "2", "8"]
            .iter()
            .map(|threads| {
                let zip = dir.path().join(format!("{compression}-{threads}.zip"));
                let (ok, text) = xtask(&[
                    "archive",
                    tree.to_str().unwrap(),
                    zip.to_str().unwrap(),
                    "--threads",
                    threads,
                    "--compression",
                    compression,
                ]);
                assert!(ok, "{text}");
                zip
            })
            .collect();
        let first = std::fs::read(&zips[0]).unwrap();
        for other in &zips[1..] {
            assert!(
                std::fs::read(other).unwrap() == first,
                "{compression}: {} differs from {}",
                other.display(),
                zips[0].display()
            );
        }
        // Each reader unpacks it, and every file comes back byte for byte.
        let by_python = dir.path().join(format!("{compression}-python"));
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
            ])
            .arg(&zips[0])
            .arg(&by_python)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let by_unzip = dir.path().join(format!("{compression}-unzip"));
        let out = Command::new("unzip")
            .args(["-q", "-d"])
            .arg(&by_unzip)
            .arg(&zips[0])
            .output()
            .expect("unzip runs (.ci/run installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for unpacked in [&by_python, &by_unzip] {
            for (name, bytes) in &files {
                let got = std::fs::read(unpacked.join("chunks").join(name)).unwrap();
                assert!(
                    &got == bytes,
                    "{compression}: {name} in {}",
                    unpacked.display()
                );
            }
        }
        // Noise is stored rather than grown, large or small; the rest is deflated.
        let code = "import sys, zipfile\nfor i in zipfile.ZipFile(sys.argv[1]).infolist():\n    print(i.filename, i.compress_type)";
        let out = Command::new("python3")
            .args(["-c", code])
            .arg(&zips[0])
            .output()
            .unwrap();
        let methods = String::from_utf8(out.stdout).unwrap();
        for (name, method) in [
            ("noise", 0),
            ("noise of several chunks", 0),
            ("empty", 0),
            ("several chunks", 8),
            ("one byte", 0),
            ("one chunk and a byte", 8),
        ] {
            assert!(
                methods
                    .lines()
                    .any(|l| l == format!("chunks/{name} {method}")),
                "{compression}: {name} should use method {method}:\n{methods}"
            );
        }
    }
}

/// A FIFO would make the zip wait forever for data; a name that is not UTF-8 would come back
/// under another name; a link to nothing would unpack broken. All are named before anything is
/// written.
#[cfg(unix)]
#[test]
fn odd_files_are_refused_before_writing() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("odd");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("fine.txt"), "fine").unwrap();
    let fifo = tree.join("pipe");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let bad_name = tree.join(std::ffi::OsStr::from_bytes(b"\x80\xffbad"));
    std::fs::write(&bad_name, "x").unwrap();
    std::os::unix::fs::symlink("self", tree.join("self")).unwrap();
    std::os::unix::fs::symlink("missing.txt", tree.join("dangling")).unwrap();
    let zip = dir.path().join("odd.zip");
    let (ok, text) = xtask(&["archive", tree.to_str().unwrap(), zip.to_str().unwrap()]);
    assert!(!ok, "{text}");
    for needle in [
        "holds 4 files that a zip cannot hold faithfully",
        "pipe: a named pipe (FIFO)",
        "its name is not valid UTF-8",
        "self: a symlink to self that resolves to nothing",
        "dangling: a symlink to missing.txt",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "only the tree remains: {left:?}");
}
