//! Undo that survives everything, and what cannot be stopped caught: the package tool killed
//! (SIGKILL) at every step that writes its history, keeps, removes or restores a state, then
//! run again with no hand (no traceback, and undo back to the start gives every file back); a
//! drive without hard links (a real exFAT, through FUSE); a file edited in place; a wheel that
//! overwrites a protected package's file (rolled back through the tool, named after pip by
//! hand); a uv from outside and `python -S` (named, with the undo that brings it back); files a
//! package wrote after it was installed, moved aside by undo, not deleted.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::package_zip::*;

/// A test-only start-up hook in the unpacked copy: in the package tool's process, the `op`
/// of `os` (replace, unlink, …) whose path matches `pattern` for the `count`-th time is
/// followed by SIGKILL; every match is written to ANYMATIX_TEST_KILL_LOG. The tool's own code
/// runs unchanged.
const KILLER: &str = r#"import os, re, sys
spec = os.environ.get("ANYMATIX_TEST_KILL")
argv = getattr(sys, "orig_argv", sys.argv)
if spec and any(a.endswith("packages.py") for a in argv):
    op, count, pattern = spec.split(":", 2)
    count, seen, log = int(count), [0], os.environ.get("ANYMATIX_TEST_KILL_LOG")
    real = getattr(os, op)
    def wrapped(*args, **kwargs):
        result = real(*args, **kwargs)
        path = os.fspath(args[1] if op in ("replace", "rename", "link") else args[0])
        if re.search(pattern, path.replace(os.sep, "/")):
            seen[0] += 1
            if log:
                with open(log, "a") as f:
                    f.write(path + "\n")
            if seen[0] == count:
                os.kill(os.getpid(), 9)
        return result
    setattr(os, op, wrapped)
"#;

fn install_killer(root: &Path) {
    let site = site_packages(root);
    std::fs::write(site.join("_anymatix_test_kill.py"), KILLER).unwrap();
    std::fs::write(
        site.join("_anymatix_test_kill.pth"),
        "import _anymatix_test_kill\n",
    )
    .unwrap();
}

/// `packages.sh ARGS`, killed at the `count`-th `op` on a path matching `pattern` (0: never,
/// only logged); returns the matching paths seen.
fn killed(
    root: &Path,
    home: &Path,
    args: &[&str],
    op: &str,
    count: usize,
    pattern: &str,
) -> Vec<String> {
    let log = home.join(format!("kill-log-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut cmd = command(&root.join("packages.sh"), args, home);
    cmd.env("ANYMATIX_TEST_KILL", format!("{op}:{count}:{pattern}"))
        .env("ANYMATIX_TEST_KILL_LOG", &log);
    let out = cmd.output().unwrap();
    if count == 0 {
        assert!(out.status.success(), "{}", text(&out));
    }
    let seen = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    seen.lines().map(str::to_string).collect()
}

/// After whatever happened: the tool runs without a hand and without a traceback, and undo
/// back through every change ends at `start`, file for file.
fn recovers_to(
    root: &Path,
    home: &Path,
    start: &(std::collections::BTreeMap<String, String>, String),
    what: &str,
) {
    for command in [&["list"][..], &["history"], &["check"]] {
        let out = packages(root, command, home);
        assert!(
            !text(&out).contains("Traceback"),
            "{what}: {command:?} ended in a traceback: {}",
            text(&out)
        );
        assert!(
            command == ["check"] || out.status.success(),
            "{what}: {command:?}: {}",
            text(&out)
        );
    }
    for _ in 0..6 {
        let out = packages(root, &["undo"], home);
        if text(&out).contains("there is nothing to undo") {
            break;
        }
        assert!(out.status.success(), "{what}: undo: {}", text(&out));
    }
    assert_same(&fingerprint(root, home), start, what);
}

/// Some of `points` (at most `most`, spread from the first to the last).
fn spread(points: usize, most: usize) -> Vec<usize> {
    if points <= most {
        return (1..=points).collect();
    }
    (0..most)
        .map(|i| 1 + i * (points - 1) / (most - 1))
        .collect()
}

#[cfg(unix)]
#[test]
fn killed_at_any_step_of_a_change_the_next_run_needs_no_hand() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    // Every write of the history and every state put in place, in a first run and a change.
    let writes = r"(history\.json|/states/\d+(\.json)?)$";
    let probe = unpack(&dir.path().join("probe"));
    install_killer(&probe);
    let first = killed(&probe, home, &["list"], "replace", 0, writes).len();
    let change = killed(
        &probe,
        home,
        &["install", "addon==1.0"],
        "replace",
        0,
        writes,
    )
    .len();
    assert!(first >= 3 && change >= 4, "{first} {change}");
    for (args, points) in [(&["list"][..], first), (&["install", "addon==1.0"], change)] {
        for k in 1..=points {
            let case = dir.path().join(format!("{}-{k}", args[0]));
            let root = unpack(&case);
            install_killer(&root);
            if args[0] == "install" {
                assert!(packages(&root, &["list"], home).status.success());
            }
            let start = fingerprint(&root, home);
            killed(&root, home, args, "replace", k, writes);
            recovers_to(
                &root,
                home,
                &start,
                &format!("{args:?} killed after write {k}"),
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn an_undo_killed_half_way_is_finished_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let prepare = |case: &Path| {
        let root = unpack(case);
        install_killer(&root);
        assert!(packages(&root, &["install", "addon==1.0"], home)
            .status
            .success());
        let middle = fingerprint(&root, home);
        // addon 1.0 -> 2.0 and addon-friend added: undo replaces files and removes others.
        assert!(packages(&root, &["install", "addon-friend"], home)
            .status
            .success());
        (root, middle)
    };
    let (probe, _) = prepare(&dir.path().join("probe"));
    let inside = r"/python/lib/";
    let replaced = killed(&probe, home, &["undo"], "replace", 0, inside).len();
    let (probe, _) = prepare(&dir.path().join("probe2"));
    let removed = killed(&probe, home, &["undo"], "unlink", 0, inside).len();
    assert!(replaced >= 2 && removed >= 2, "{replaced} {removed}");
    for (op, points) in [("replace", replaced), ("unlink", removed)] {
        for k in spread(points, 4) {
            let (root, middle) = prepare(&dir.path().join(format!("{op}-{k}")));
            killed(&root, home, &["undo"], op, k, inside);
            let next = packages(&root, &["list"], home);
            assert!(next.status.success(), "{}", text(&next));
            assert!(
                text(&next).contains(
                    "stopped half way through putting back an earlier state: finishing it"
                ),
                "{}",
                text(&next)
            );
            assert_same(
                &fingerprint(&root, home),
                &middle,
                &format!("undo killed at {op} {k}"),
            );
            let history = text(&packages(&root, &["history"], home));
            assert!(
                history.contains("finished after an interruption"),
                "{history}"
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn killed_while_an_old_state_is_removed_the_next_run_needs_no_hand() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let root = unpack(&dir.path().join("case"));
    install_killer(&root);
    assert!(packages(&root, &["keep", "1"], home).status.success());
    assert!(packages(&root, &["install", "addon==1.0"], home)
        .status
        .success());
    let middle = fingerprint(&root, home);
    // Keeping one change, the next removes the state before the first: killed as it does.
    let seen = killed(
        &root,
        home,
        &["install", "addon-friend"],
        "replace",
        1,
        r"\.removing-\d+$",
    );
    assert_eq!(seen.len(), 1, "no old state was removed");
    let next = packages(&root, &["list"], home);
    assert!(next.status.success(), "{}", text(&next));
    let undone = packages(&root, &["undo"], home);
    assert!(undone.status.success(), "{}", text(&undone));
    assert_same(&fingerprint(&root, home), &middle, "undo after the kill");
    let leftovers: Vec<String> = std::fs::read_dir(root.join(".packages/states"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("removing") || n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A command that hits something no message was written for says so in a line, and keeps the
/// traceback in a log.
#[test]
fn an_unexpected_error_ends_in_a_line_not_a_traceback() {
    let (dir, root) = unpacked();
    let home = dir.path();
    assert!(packages(&root, &["list"], home).status.success());
    let states = root.join(".packages/states");
    std::fs::remove_dir_all(&states).unwrap();
    std::fs::write(&states, "not a folder").unwrap();
    let out = packages(&root, &["install", "addon==1.0"], home);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(4), "{said}");
    assert!(!said.contains("Traceback"), "{said}");
    assert!(
        said.contains("error: something unexpected stopped this command"),
        "{said}"
    );
    let log = std::fs::read_to_string(root.join(".packages/errors.log")).unwrap();
    assert!(log.contains("Traceback"), "{log}");
}

/// A filesystem without hard links, for real: exFAT in a file, mounted through FUSE. None when
/// this machine cannot mount one (not root, no loop devices or FUSE, no exfat-fuse).
struct ExFat {
    mount: PathBuf,
    device: String,
    _dir: tempfile::TempDir,
}

impl ExFat {
    fn mount() -> Option<ExFat> {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("exfat.img");
        let mount = dir.path().join("drive");
        std::fs::create_dir_all(&mount).unwrap();
        let ok = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
        if !ok(Command::new("truncate").args(["-s", "2G"]).arg(&image))
            || !ok(Command::new("mkfs.exfat").arg(&image))
        {
            return None;
        }
        let device = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&image)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())?;
        if !ok(Command::new("mount.exfat-fuse").arg(&device).arg(&mount)) {
            let _ = Command::new("losetup").args(["-d", &device]).status();
            return None;
        }
        Some(ExFat {
            mount,
            device,
            _dir: dir,
        })
    }
}

impl Drop for ExFat {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// Unpacked on exFAT (its links made copies, as an unzip there must): states are copies the
/// tool says it makes, compared by size and time, so runs without a change keep no new copy and
/// record nothing; undo puts every file back, and one killed half way is finished.
#[cfg(target_os = "linux")]
#[test]
fn on_a_drive_without_hard_links_states_are_copies_that_still_undo() {
    let Some(drive) = ExFat::mount() else {
        assert!(
            std::env::var_os("CI").is_none() || !Path::new("/usr/sbin/mount.exfat-fuse").exists(),
            "CI has exfat-fuse but could not mount an exFAT image"
        );
        eprintln!("skipped: cannot mount an exFAT image here (needs root, losetup, exfat-fuse)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let unpacked = unpack(dir.path());
    let root = drive.mount.join("anymatix");
    let copied = Command::new("cp")
        .args(["-rL"])
        .arg(&unpacked)
        .arg(&root)
        .status()
        .unwrap();
    assert!(copied.success());
    install_killer(&root);
    let start = fingerprint(&root, home);
    let first = packages(&root, &["list"], home);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("has no hard links (exFAT or FAT32?)"),
        "{}",
        text(&first)
    );
    for _ in 0..2 {
        let again = packages(&root, &["list"], home);
        assert!(
            !text(&again).contains("Kept the environment's state"),
            "{}",
            text(&again)
        );
    }
    let history = text(&packages(&root, &["history"], home));
    assert!(!history.contains("changed outside"), "{history}");
    let states = std::fs::read_dir(root.join(".packages/states"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(states, 1, "three runs without a change keep one state");

    assert!(packages(&root, &["install", "addon==1.0"], home)
        .status
        .success());
    let middle = fingerprint(&root, home);
    let friend = packages(&root, &["install", "addon-friend"], home);
    assert!(friend.status.success(), "{}", text(&friend));
    // Killed at its first removal: the old tool removed every file that differed before putting
    // any back, and the next run did not finish it.
    killed(&root, home, &["undo"], "unlink", 1, r"/lib/python");
    let next = packages(&root, &["list"], home);
    assert!(next.status.success(), "{}", text(&next));
    assert_same(
        &fingerprint(&root, home),
        &middle,
        "undo killed on exFAT, finished",
    );
    let undone = packages(&root, &["undo"], home);
    assert!(undone.status.success(), "{}", text(&undone));
    assert_same(&fingerprint(&root, home), &start, "undo on exFAT");
}

/// Changes no guard could stop: a protected file edited in place (every kept state shares it,
/// so the fix named is a reinstall of the zip's build), another package's wheel overwriting a
/// protected file (rolled back when it comes through the tool; named with its undo when pip
/// ran it by hand), `python -S` running pip past the start-up hook, and a file of an added
/// package edited in place (the history says undo cannot bring it back).
#[test]
fn what_cannot_be_stopped_is_caught_and_named_with_its_way_back() {
    let (dir, root) = unpacked();
    let home = dir.path();
    assert!(packages(&root, &["list"], home).status.success());
    let start = fingerprint(&root, home);
    let site = site_packages(&root);

    // Through the tool: rolled back at once.
    let through = packages(&root, &["install", "overwriter"], home);
    let said = text(&through);
    assert_eq!(through.status.code(), Some(3), "{said}");
    assert!(
        said.contains("Rolled back: this change altered packages"),
        "{said}"
    );
    assert!(
        said.contains("anyfix-native 1.0.0: anyfix_native/__init__.py (changed) (also installed by overwriter 1.0)"),
        "{said}"
    );
    assert_same(&fingerprint(&root, home), &start, "rolled back");
    let history = text(&packages(&root, &["history"], home));
    assert!(
        history.contains("install overwriter  [rolled back]"),
        "{history}"
    );

    // By hand: pip cannot tell; the next run names it, with the undo that brings it back.
    let by_hand = run(
        &python(&root),
        &["-m", "pip", "install", "overwriter"],
        home,
    );
    assert!(by_hand.status.success(), "{}", text(&by_hand));
    let listed = text(&packages(&root, &["list"], home));
    assert!(
        listed.contains("NOT the zip's: 1 of its files differ (anyfix_native/__init__.py (changed)); `packages.sh undo` brings them back"),
        "{listed}"
    );
    let checked = packages(&root, &["check"], home);
    assert_eq!(checked.status.code(), Some(1));
    assert!(text(&checked)
        .contains("anyfix-native 1.0.0 (protected): 1 of its files are not the zip's"));
    assert!(packages(&root, &["undo"], home).status.success());
    assert_same(&fingerprint(&root, home), &start, "undone");

    // python -S: pip run without the start-up hook changes a protected version.
    let pip_dir = site.join("pip");
    let bypass = run(
        &python(&root),
        &[
            "-S",
            pip_dir.to_str().unwrap(),
            "install",
            "anyfix-native==0.9.0",
        ],
        home,
    );
    assert!(bypass.status.success(), "{}", text(&bypass));
    let listed = text(&packages(&root, &["list"], home));
    assert!(
        listed.contains("NOT the zip's: it has 1.0.0; `packages.sh undo` brings it back"),
        "{listed}"
    );
    assert!(packages(&root, &["undo"], home).status.success());
    assert_same(&fingerprint(&root, home), &start, "python -S undone");

    // Edited in place: the states share the file, so a reinstall is the way back.
    let init = site.join("anyfix_native/__init__.py");
    let mut text_now = std::fs::read_to_string(&init).unwrap();
    text_now.push_str("# patched in place by a node\n");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&init)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text_now.as_bytes()))
        .unwrap();
    let listed = text(&packages(&root, &["list"], home));
    assert!(
        listed.contains("`packages.sh install --force-reinstall --no-deps anyfix-native==1.0.0` brings them back"),
        "{listed}"
    );
    let history = text(&packages(&root, &["history"], home));
    assert!(
        history.contains("edited in place (undo cannot bring back"),
        "{history}"
    );
    assert!(
        history.contains("protected anyfix-native: anyfix_native/__init__.py"),
        "{history}"
    );
    let repaired = packages(
        &root,
        &[
            "install",
            "--force-reinstall",
            "--no-deps",
            "anyfix-native==1.0.0",
        ],
        home,
    );
    assert!(repaired.status.success(), "{}", text(&repaired));
    let checked = packages(&root, &["check"], home);
    assert!(checked.status.success(), "{}", text(&checked));
}

/// uv from outside the environment (`uv pip install --python <its python>`) never runs the
/// zip's start-up hook: the next run of the tool names what it changed, and undo brings it back.
#[test]
fn a_uv_from_outside_is_caught_at_the_next_run() {
    let Some(uv) = ["uv"]
        .iter()
        .find(|u| Command::new(u).arg("--version").output().is_ok())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have uv (.ci/run installs it)"
        );
        eprintln!("skipped: no uv");
        return;
    };
    let (dir, root) = unpacked();
    let home = dir.path();
    assert!(packages(&root, &["list"], home).status.success());
    let start = fingerprint(&root, home);
    let b = built();
    let out: Output = Command::new(uv)
        .args(["pip", "install", "--python"])
        .arg(python(&root))
        .args(["--no-index", "--find-links"])
        .arg(&b.other_index)
        .args(["--reinstall", "anyfix-native==1.0.0+cpu"])
        .env("UV_NO_CACHE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let listed = text(&packages(&root, &["list"], home));
    assert!(
        listed
            .lines()
            .any(|l| l.contains("anyfix-native ") && l.contains(" 1.0.0+cpu ")),
        "{listed}"
    );
    assert!(
        listed.contains("NOT the zip's: it has 1.0.0; `packages.sh undo` brings it back"),
        "{listed}"
    );
    assert!(packages(&root, &["undo"], home).status.success());
    assert_same(&fingerprint(&root, home), &start, "undone");
}

/// What a package wrote into site-packages after it was installed (weights, caches: no RECORD
/// names them) is moved aside by an undo that removes it, not deleted.
#[test]
fn undo_moves_aside_what_no_package_installed() {
    let (dir, root) = unpacked();
    let home = dir.path();
    assert!(packages(&root, &["list"], home).status.success());
    let start = fingerprint(&root, home);
    assert!(packages(&root, &["install", "addon==1.0"], home)
        .status
        .success());
    let weights = site_packages(&root).join("addon/weights/model.bin");
    std::fs::create_dir_all(weights.parent().unwrap()).unwrap();
    std::fs::write(&weights, b"downloaded after installing").unwrap();
    let undone = packages(&root, &["undo", "2"], home);
    let said = text(&undone);
    assert!(undone.status.success(), "{said}");
    assert!(said.contains("1 file no package installed"), "{said}");
    assert_same(&fingerprint(&root, home), &start, "undo 2");
    let aside: Vec<PathBuf> = walkdir::WalkDir::new(root.join(".packages/set-aside"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.ends_with("addon/weights/model.bin"))
        .collect();
    assert_eq!(aside.len(), 1, "{said}");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        b"downloaded after installing"
    );
}
