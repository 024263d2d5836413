//! `cargo xtask prune DIR`: the policy applied to any folder, from the command line.

use support::run_xtask as xtask;

use support::write_file as write;

#[test]
fn dry_run_reports_and_changes_nothing_then_prune_removes() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    write(
        t,
        "python/lib/python3.12/site-packages/pkg/__init__.py",
        "x = 1\n",
    );
    write(
        t,
        "python/lib/python3.12/site-packages/pkg/__pycache__/a.pyc",
        "0123456789",
    );
    write(
        t,
        "python/lib/python3.12/site-packages/pkg/tests/test_a.py",
        "def test(): pass\n",
    );
    write(t, "python/lib/python3.12/unittest/__init__.py", "\n");
    let tree = t.to_str().unwrap();

    let (ok, text) = xtask(&["prune", tree, "--platform", "linux-x86_64", "--dry-run"]);
    assert!(ok, "{text}");
    assert!(text.contains("dry run: nothing removed"), "{text}");
    assert!(text.contains("bytecode-caches"), "{text}");
    assert!(text.contains("largest kept folders:"), "{text}");
    assert!(t
        .join("python/lib/python3.12/site-packages/pkg/__pycache__/a.pyc")
        .exists());

    let (ok, text) = xtask(&["prune", tree, "--platform", "linux-x86_64"]);
    assert!(ok, "{text}");
    assert!(!t
        .join("python/lib/python3.12/site-packages/pkg/__pycache__")
        .exists());
    assert!(!t
        .join("python/lib/python3.12/site-packages/pkg/tests")
        .exists());
    assert!(t
        .join("python/lib/python3.12/unittest/__init__.py")
        .exists());
}

#[test]
fn a_policy_with_mistakes_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("prune.yml");
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    for (text, expected) in [
        ("rules:\n  - name: a\n    reason: r\n    match: dir\n    patterns: [x]\n    colour: red\n", "unknown field `colour`"),
        ("rules:\n  - name: a\n    reason: r\n    match: dir\n    patterns: [x]\n    platforms: [beos]\n", "unknown platform `beos`"),
        ("rules:\n  - name: a\n    reason: r\n    match: folder\n    patterns: [x]\n", "unknown variant `folder`"),
    ] {
        std::fs::write(&policy, text).unwrap();
        let (ok, out) = xtask(&["prune", tree.to_str().unwrap(), "--dry-run", "--policy", policy.to_str().unwrap()]);
        assert!(!ok);
        assert!(out.contains("prune.yml") && out.contains(expected) && out.contains("line "), "{out}");
    }
    std::fs::write(
        &policy,
        "rules:\n  - {name: a, reason: r, match: dir, patterns: ['[x']}\n",
    )
    .unwrap();
    let (ok, out) = xtask(&[
        "prune",
        tree.to_str().unwrap(),
        "--dry-run",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        out.contains("prune.yml")
            && out.contains("rule `a` at line 2")
            && out.contains("bad pattern `[x`"),
        "{out}"
    );
}
