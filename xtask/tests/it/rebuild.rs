//! Rebuilds: what each kind of change redoes (the stage fingerprints), that pruning never
//! damages the installed environment, and offline builds from what `fetch` gathered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use support::{host_platform, stderr, world, xtask};

fn build(manifest: &Path, policy: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["--policy", policy.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = support::portable(manifest, out, "0.0.0-test", &args);
    (output.status.success(), stderr(&output))
}

/// Every file of a tree with its digest (links by target), to prove a tree was not touched.
fn contents(root: &Path) -> BTreeMap<String, String> {
    walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| !e.file_type().is_dir())
        .map(|e| {
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let what = if e.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(e.path()).unwrap().display())
            } else {
                support::sha256_hex(&std::fs::read(e.path()).unwrap())
            };
            (rel, what)
        })
        .collect()
}

fn ran(stderr: &str, stage: &str) -> bool {
    stderr.lines().any(|l| l == format!("==> {stage}"))
}

fn zip_entries(zip: &Path) -> Vec<String> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))",
        ])
        .arg(zip)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn each_change_redoes_only_the_stages_it_affects() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = w.manifest(dir.path(), "latest", "");
    let policy = dir.path().join("prune.yml");
    let project_policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../anymatix/prune.yml");
    std::fs::copy(&project_policy, &policy).unwrap();
    let out = dir.path().join("out");
    let env = out.join(format!("stage/{}/env/anymatix", host_platform()));
    let zip = out.join(format!("anymatix-0.0.0-test-{}.zip", host_platform()));

    let (ok, first) = build(&manifest, &policy, &out, &[]);
    assert!(ok, "{first}");
    assert!(
        first.contains("==> The environment: installing (no finished build of it is recorded)"),
        "{first}"
    );
    assert!(
        ran(&first, "Install Python packages") && ran(&first, "Prune"),
        "{first}"
    );
    let installed = contents(&env);
    let zip_bytes = std::fs::read(&zip).unwrap();
    assert!(
        installed.keys().any(|p| p.contains("/tests/")),
        "the environment keeps what prune removes from the zip"
    );

    // Nothing changed: both stages are reused; only `latest` and the repos' revs are asked.
    let client = support::client_name(dir.path());
    let before = w.requests_of(&client).len();
    let (ok, again) = build(&manifest, &policy, &out, &[]);
    assert!(ok, "{again}");
    assert!(
        again.contains("==> The environment: unchanged, reusing"),
        "{again}"
    );
    assert!(again.contains("==> The zip: unchanged inputs"), "{again}");
    assert!(again.contains("Up to date:"), "{again}");
    for stage in [
        "Fetch Miniforge",
        "Install Python packages",
        "Prune",
        "Zip",
        "Verify the unpacked zip",
    ] {
        assert!(!ran(&again, stage), "{stage} ran again:\n{again}");
    }
    let asked = w.requests_of(&client)[before..].to_vec();
    assert!(asked.iter().all(|p| p.ends_with("/latest")), "{asked:?}");
    assert_eq!(std::fs::read(&zip).unwrap(), zip_bytes);

    // Only the prune policy changed: the environment is reused, and stays as it was.
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        text.replacen(
            "rules:\n",
            "rules:\n  - name: no-docs\n    reason: a test rule\n    match: dir\n    patterns: ['ComfyUI/docs']\n",
            1,
        ),
    )
    .unwrap();
    let (ok, pruned) = build(&manifest, &policy, &out, &[]);
    assert!(ok, "{pruned}");
    assert!(
        pruned.contains("==> The environment: unchanged, reusing"),
        "{pruned}"
    );
    assert!(
        pruned.contains("==> The zip: making it (changed: prune policy)"),
        "{pruned}"
    );
    assert!(!ran(&pruned, "Fetch Miniforge") && !ran(&pruned, "Install Python packages"));
    assert!(ran(&pruned, "Prune") && ran(&pruned, "Verify the unpacked zip"));
    let entries = zip_entries(&zip);
    assert!(entries
        .iter()
        .any(|e| e.starts_with("anymatix/ComfyUI/main.py")));
    assert!(
        !entries
            .iter()
            .any(|e| e.starts_with("anymatix/ComfyUI/docs/")),
        "the new rule took effect"
    );
    assert_eq!(
        contents(&env),
        installed,
        "pruning never touches the environment"
    );

    // A zip that was tampered with after publishing is remade, from the same environment.
    std::fs::write(&zip, b"not the zip we built").unwrap();
    let (ok, remade) = build(&manifest, &policy, &out, &[]);
    assert!(ok, "{remade}");
    assert!(
        remade.contains("has changed since it was built"),
        "{remade}"
    );
    assert!(
        remade.contains("==> The environment: unchanged, reusing"),
        "{remade}"
    );

    // A conda package changed: the environment is installed again.
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("zlib=1.3.1", "zlib=1.3.2")).unwrap();
    let (ok, conda) = build(&manifest, &policy, &out, &[]);
    assert!(ok, "{conda}");
    assert!(
        conda.contains("==> The environment: installing (changed: conda packages)"),
        "{conda}"
    );
    assert!(
        conda.contains("==> The zip: making it (changed: environment)"),
        "{conda}"
    );

    // --update installs again even when nothing changed.
    let (ok, update) = build(&manifest, &policy, &out, &["--update"]);
    assert!(ok, "{update}");
    assert!(
        update.contains("==> The environment: installing (--update)"),
        "{update}"
    );
    assert!(
        update.contains("==> The zip: making it (the environment was installed again)"),
        "{update}"
    );
}

#[test]
fn an_interrupted_build_leaves_nothing_a_later_build_trusts() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    // The unpacked zip's smoke command fails (its output holds a text that fails it): the
    // environment was finished, the zip was not.
    let manifest = w.manifest(dir.path(), "latest", "");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let failing = text.replace(
        "fail_on: [\"IMPORT FAILED\"]",
        "fail_on: [\"IMPORT FAILED\", \"ComfyUI stand-in v1.0\"]",
    );
    assert_ne!(failing, text);
    std::fs::write(&manifest, failing).unwrap();
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../anymatix/prune.yml");
    let out = dir.path().join("out");
    let (ok, failed) = build(&manifest, &policy, &out, &[]);
    assert!(!ok, "{failed}");
    assert!(
        failed.contains("stage `Verify the unpacked zip` failed"),
        "{failed}"
    );
    let stage = out.join(format!("stage/{}", host_platform()));
    assert!(stage.join("env.done.json").is_file());
    assert!(!stage.join("dist.done.json").exists());
    assert!(!out
        .join(format!("anymatix-0.0.0-test-{}.zip", host_platform()))
        .exists());

    std::fs::write(&manifest, text).unwrap();
    let (ok, fixed) = build(&manifest, &policy, &out, &[]);
    assert!(ok, "{fixed}");
    assert!(
        fixed.contains("==> The environment: unchanged, reusing"),
        "{fixed}"
    );
    assert!(
        fixed.contains("==> The zip: making it (no finished build of it is recorded)"),
        "{fixed}"
    );

    // An environment whose record is unreadable (cut off mid-write by a crash) is installed anew.
    std::fs::write(stage.join("env.done.json"), "{\"fingerprint\": \"").unwrap();
    let (ok, redone) = build(&manifest, &policy, &out, &[]);
    assert!(ok, "{redone}");
    assert!(
        redone.contains("==> The environment: installing (no finished build"),
        "{redone}"
    );
}

#[test]
fn offline_builds_from_what_fetch_gathered() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let (server, manifest, sources) = w.private_sources(dir.path());
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../anymatix/prune.yml");
    let out = dir.path().join("out");

    // Offline with an empty cache: refused, saying what to do.
    let (ok, empty) = build(&manifest, &policy, &out, &["--offline"]);
    assert!(!ok);
    assert!(empty.contains("run `cargo xtask fetch`"), "{empty}");

    let (ok, online) = build(&manifest, &policy, &out, &[]);
    assert!(ok, "{online}");
    let zip = out.join(format!("anymatix-0.0.0-test-{}.zip", host_platform()));
    let online_manifest = manifest_json_packages(&out);

    let fetched = xtask(&[
        "fetch",
        "--manifest",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = stderr(&fetched);
    assert!(fetched.status.success(), "{text}");
    assert!(
        text.contains("==> Gather wheels") && text.contains("==> Mirror ComfyUI"),
        "{text}"
    );
    let wheels: Vec<PathBuf> =
        std::fs::read_dir(out.join(format!("cache/wheels/{}", host_platform())))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    assert!(
        wheels
            .iter()
            .any(|p| p.to_string_lossy().contains("anyfix_native")),
        "{wheels:?}"
    );
    assert!(
        !out.join(format!("stage/{}/fetch", host_platform()))
            .exists(),
        "scratch removed"
    );

    // No network any more: the server is stopped, the repos and the index are gone.
    drop(server);
    std::fs::remove_dir_all(&sources).unwrap();

    // The environment the online build installed is the one an offline build would install:
    // its inputs are what is installed, not where it comes from. Reused, and so is the zip.
    let (ok, reused) = build(&manifest, &policy, &out, &["--offline"]);
    assert!(ok, "{reused}");
    assert!(
        reused.contains("==> The environment: unchanged, reusing"),
        "{reused}"
    );
    assert!(reused.contains("==> The zip: unchanged inputs"), "{reused}");

    let cleaned = xtask(&["clean", "--out", out.to_str().unwrap()]);
    assert!(cleaned.status.success());
    std::fs::remove_file(&zip).unwrap();
    let (ok, broken) = build(&manifest, &policy, &out, &[]);
    assert!(!ok, "without the network an online build fails:\n{broken}");

    let (ok, offline) = build(&manifest, &policy, &out, &["--offline"]);
    assert!(ok, "{offline}");
    assert!(
        offline.contains("latest was 26.3.2-3 when last resolved online"),
        "{offline}"
    );
    assert!(
        offline.contains("==> The environment: installing"),
        "{offline}"
    );
    assert!(zip.is_file());
    assert_eq!(manifest_json_packages(&out), online_manifest);
}

/// manifest.json's package list, read from the unpacked copy verify made.
fn manifest_json_packages(out: &Path) -> String {
    let path = out.join(format!(
        "verify/{}/unpacked copy ü/anymatix/manifest.json",
        host_platform()
    ));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["packages"].to_string()
}
