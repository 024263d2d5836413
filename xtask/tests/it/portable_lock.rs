//! Builds that follow a lock, and variants: a locked rebuild makes the same zip byte for
//! byte, a lock that does not fit is refused, and a variant builds its own suffixed zip, lock
//! and build folders.

use std::path::Path;
use std::process::Command;

use support::{host_platform, stderr, world, TAG};

use super::portable::build;

fn differing_entries(a: &Path, b: &Path) -> Vec<String> {
    let entries = |p: &Path| -> std::collections::BTreeSet<(String, u32, u64)> {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(p).unwrap()).unwrap();
        (0..zip.len())
            .map(|i| {
                let e = zip.by_index(i).unwrap();
                (e.name().unwrap().into_owned(), e.crc32(), e.size())
            })
            .collect()
    };
    let (a, b) = (entries(a), entries(b));
    a.symmetric_difference(&b)
        .map(|(name, _, _)| name.clone())
        .collect()
}

#[test]
fn lock_round_trip_builds_the_same_zip() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = w.manifest(dir.path(), "latest", "");
    let first_out = dir.path().join("out");
    let first = build(&manifest, &first_out, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let lock_path = dir
        .path()
        .join(format!("locks/{}.lock.yml", host_platform()));
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    let wheel = std::fs::read(w.wheelhouse.join("anyfix_native-1.0.0-py3-none-any.whl")).unwrap();
    for wanted in [
        format!("tag: {TAG}"),
        format!("sha256: {}", w.installer_sha256),
        format!("commit: {}", w.comfy_tag_commit),
        format!("commit: {}", w.node_commit),
        "name: anyfix-native\n  version: 1.0.0".to_string(),
        format!("sha256: {}", support::sha256_hex(&wheel)),
    ] {
        assert!(
            lock.contains(&wanted),
            "{wanted} is not in the lock:\n{lock}"
        );
    }

    // Locked, in the same folder: exactly the same zip. (Other folders would change only the
    // sizes of what pruning removes, such as compiled bytecode, which names its build path.)
    let first_zip =
        std::fs::read(first_out.join(format!("anymatix-0.0.0-test-{}.zip", host_platform())))
            .unwrap();
    let reference = dir.path().join("first.zip");
    std::fs::write(&reference, &first_zip).unwrap();
    let locked_out = first_out.clone();
    let locked = build(&manifest, &locked_out, &["--locked"]);
    let text = stderr(&locked);
    assert!(locked.status.success(), "{text}");
    assert!(
        text.contains("--require-hashes") || text.contains("locked requirements"),
        "{text}"
    );
    let zip_name = format!("anymatix-0.0.0-test-{}.zip", host_platform());
    let (a, b) = (reference.clone(), locked_out.join(&zip_name));
    assert_eq!(
        support::sha256_hex(&std::fs::read(&a).unwrap()),
        support::sha256_hex(&std::fs::read(&b).unwrap()),
        "a locked build gives the same zip; entries that differ: {:?}",
        differing_entries(&a, &b)
    );
    assert_eq!(
        std::fs::read_to_string(&lock_path).unwrap(),
        lock,
        "--locked leaves the lock alone"
    );

    // A lock that does not fit is refused before anything runs.
    std::fs::write(
        &lock_path,
        lock.replace("name: ComfyUI\n", "name: SomethingElse\n"),
    )
    .unwrap();
    let refused = build(&manifest, &dir.path().join("refused"), &["--locked"]);
    let text = stderr(&refused);
    assert!(!refused.status.success());
    assert!(text.contains("build with --update"), "{text}");
    std::fs::remove_file(&lock_path).unwrap();
    let missing = build(&manifest, &dir.path().join("missing"), &["--locked"]);
    assert!(
        stderr(&missing).contains("build once without --locked"),
        "{}",
        stderr(&missing)
    );
}

/// A variant other than the default: its own zip, lock, reports and build folders, named with
/// its suffix, holding what it adds to the platform (a package, a protected name, a check).
#[test]
fn a_variant_builds_its_own_suffixed_zip_and_lock() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = w.manifest(dir.path(), "latest", "");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let platform = host_platform();
    let with_variants = text.replace(
        "platforms:\n",
        &format!(
            "platforms:\n  {platform}:\n    variants:\n      full: {{default: true, about: everything}}\n      lite:\n        about: the small one\n        python_packages: [anyfix-extra]\n        protected: [anyfix-extra]\n        pip_args: [--extra-index-url, 'https://download.example/whl/lite']\n        checks: [{{name: the lite package, code: 'import anyfix_extra'}}]\n"
        ),
    );
    // The stand-in manifest names linux-x86_64 already; the host's entry must be the only one.
    let with_variants = with_variants.replacen(
        "  linux-x86_64:\n    conda_packages: [zlib=1.3.1]\n",
        "",
        usize::from(platform.name() == "linux-x86_64"),
    );
    std::fs::write(&manifest, &with_variants).unwrap();
    let out = dir.path().join("out");

    let unknown = build(&manifest, &out, &["--variant", "heavy"]);
    let message = stderr(&unknown);
    assert!(!unknown.status.success());
    assert!(
        message.contains(&format!(
            "{platform} has no variant `heavy`; its variants are `full` (the default): everything; `lite`: the small one"
        )),
        "{message}"
    );

    let built = build(&manifest, &out, &["--variant", "lite"]);
    let message = stderr(&built);
    assert!(built.status.success(), "{message}");
    let stem = format!("anymatix-0.0.0-test-{platform}-lite");
    for name in [
        format!("{stem}.zip"),
        format!("{stem}.zip.sha256"),
        format!("{stem}.prune.html"),
        format!("{stem}.build.json"),
    ] {
        assert!(out.join(&name).is_file(), "{name} missing: {message}");
    }
    assert!(
        !out.join(format!("anymatix-0.0.0-test-{platform}.zip"))
            .exists(),
        "only the variant asked for is built"
    );
    assert!(out.join(format!("stage/{platform}-lite/env")).is_dir());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{stem}.build.json"))).unwrap())
            .unwrap();
    assert_eq!(report["variant"], "lite");
    let size_report = std::fs::read_to_string(out.join(format!("{stem}.prune.html"))).unwrap();
    assert!(
        size_report.contains("\"variant\":\"lite\""),
        "the size report names the variant"
    );

    let lock = std::fs::read_to_string(dir.path().join(format!("locks/{platform}-lite.lock.yml")))
        .unwrap();
    assert!(lock.contains("variant: lite"), "{lock}");
    assert!(lock.contains("name: anyfix-extra"), "{lock}");
    assert!(!dir
        .path()
        .join(format!("locks/{platform}.lock.yml"))
        .exists());

    let zip = out.join(format!("{stem}.zip"));
    let read = |entry: &str| {
        let out = Command::new("unzip")
            .arg("-p")
            .arg(&zip)
            .arg(entry)
            .output()
            .unwrap();
        assert!(out.status.success(), "{entry} is not in {}", zip.display());
        String::from_utf8(out.stdout).unwrap()
    };
    let manifest_json: serde_json::Value =
        serde_json::from_str(&read("anymatix/manifest.json")).unwrap();
    assert_eq!(manifest_json["variant"]["name"], "lite");
    assert_eq!(manifest_json["variant"]["default"], false);
    assert_eq!(manifest_json["variant"]["about"], "the small one");
    assert!(
        read("anymatix/tools/protected.txt").contains("anyfix-extra===0.5.0"),
        "the variant's protected names are in the zip's core"
    );
    assert!(
        read("anymatix/python/pip.conf").contains("https://download.example/whl/lite"),
        "the zip's pip keeps the variant's index"
    );
    assert!(
        message.contains("the lite package"),
        "the variant's check ran: {message}"
    );

    // Locked, the variant takes its own lock, and refuses the default's.
    let locked = build(&manifest, &out, &["--variant", "lite", "--locked"]);
    assert!(locked.status.success(), "{}", stderr(&locked));
    let wrong = build(
        &manifest,
        &out,
        &[
            "--locked",
            "--lock",
            dir.path()
                .join(format!("locks/{platform}-lite.lock.yml"))
                .to_str()
                .unwrap(),
        ],
    );
    assert!(
        stderr(&wrong).contains("is the lock of")
            && stderr(&wrong).contains("not of its variant `full`"),
        "{}",
        stderr(&wrong)
    );
}
