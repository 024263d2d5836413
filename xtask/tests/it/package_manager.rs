//! Package management in the unpacked zip, through its real entry points (`packages.sh`,
//! `install_package.sh`, `python -m pip`, a pip started by a python as ComfyUI-Manager starts
//! it): the protected core refused at another version however pip is run, `--unprotect`, exact
//! undo (file by file, after a kill, after a move), `check`, `list` and `history`, the user's
//! own site-packages kept out, and one change at a time. Each test unpacks its own copy of the
//! shared stand-in zip (`package_zip`).

#[cfg(unix)]
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::package_zip::*;
use support::world;

#[test]
fn the_zip_carries_the_protected_core_at_the_versions_the_build_installed() {
    let dir = tempfile::tempdir().unwrap();
    let root = unpack(dir.path());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap())
            .unwrap();
    let protected: Vec<String> = manifest["protected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {} ({})",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap(),
                p["why"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        protected,
        [
            "anyfix-core 1.0.0 (named in protected)",
            "anyfix-gpu-lib 2.0.1 (anyfix-kit 1.0.0 pins it)",
            "anyfix-kit 1.0.0 (anyfix-core 1.0.0 pins it)",
            "anyfix-native 1.0.0 (named in protected)",
            "anyfix-pin 1.0.0 (anyfix-core 1.0.0 pins it)",
        ]
    );
    let constraints = std::fs::read_to_string(root.join("tools/protected.txt")).unwrap();
    let pins: Vec<&str> = constraints
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(
        pins,
        [
            "anyfix-core===1.0.0",
            "anyfix-gpu-lib===2.0.1",
            "anyfix-kit===1.0.0",
            "anyfix-native===1.0.0",
            "anyfix-pin===1.0.0"
        ]
    );
    // Indexes: the stand-in build used only a local wheelhouse, which means nothing elsewhere.
    assert!(!root.join("python/pip.conf").exists());

    let listed = packages(&root, &["list"], dir.path());
    assert!(listed.status.success(), "{}", text(&listed));
    let listed = text(&listed);
    for name in [
        "anyfix-core",
        "anyfix-gpu-lib",
        "anyfix-kit",
        "anyfix-native",
        "anyfix-pin",
    ] {
        let line = listed
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} not listed: {listed}"));
        assert!(line.ends_with(" protected"), "{line}");
    }
    assert!(
        listed.contains("Added since the zip was made:\n  (nothing)"),
        "{listed}"
    );
}

#[test]
fn a_protected_package_at_another_version_is_refused_however_pip_is_run() {
    let (dir, root) = unpacked();
    let home = dir.path();
    let before = fingerprint(&root, home);
    let python = python(&root);
    let manager_like = "import subprocess, sys; \
        sys.exit(subprocess.run([sys.executable, '-m', 'pip', 'install', 'needs-old']).returncode)";
    let attempts: Vec<(String, Output)> = vec![
        (
            "packages.sh, directly".into(),
            packages(&root, &["install", "anyfix-native==0.9.0"], home),
        ),
        (
            "packages.sh, through a dependency".into(),
            packages(&root, &["install", "needs-old"], home),
        ),
        (
            "install_package.sh".into(),
            run(
                &root.join("install_package.sh"),
                &["anyfix-pin==0.5.0"],
                home,
            ),
        ),
        (
            "python -m pip".into(),
            run(
                &python,
                &["-m", "pip", "install", "anyfix-native==0.9.0"],
                home,
            ),
        ),
        (
            "bin/pip".into(),
            run(
                &root.join("python/bin/pip"),
                &["install", "needs-old"],
                home,
            ),
        ),
        (
            "a pip started as ComfyUI-Manager starts it".into(),
            run(&python, &["-c", manager_like], home),
        ),
    ];
    for (how, out) in &attempts {
        let said = text(out);
        assert!(!out.status.success(), "{how}: {said}");
        assert!(
            said.contains("The user requested (constraint) anyfix-native===1.0.0")
                || said.contains("The user requested (constraint) anyfix-pin===1.0.0"),
            "{how}: pip names the protected version: {said}"
        );
        assert_same(
            &fingerprint(&root, home),
            &before,
            "{how} changed the environment",
        );
    }
    // A pip run by hand adds a word after pip's own message.
    let by_hand = text(&attempts[3].1);
    assert!(
        by_hand.contains("This environment protects anyfix-native (anyfix-native===1.0.0)")
            && by_hand.contains("packages.sh install --unprotect anyfix-native ..."),
        "{by_hand}"
    );
    // packages.sh says it in words: which package, what asked, what stays, how to change it.
    let said = text(&attempts[1].1);
    assert!(
        said.contains(
            "anyfix-native: `needs-old 1.0 depends on anyfix-native<1` asks for another version; \
             the environment keeps anyfix-native 1.0.0."
        ),
        "{said}"
    );
    assert!(
        said.contains("packages.sh install --unprotect anyfix-native needs-old"),
        "{said}"
    );
    assert!(text(&attempts[2].1).contains("anyfix-pin: `The user requested anyfix-pin==0.5.0`"));
    // Constraints do not cover uninstalling: pip by hand is refused before it starts.
    let removed = run(
        &python,
        &["-m", "pip", "uninstall", "-y", "anyfix_native"],
        home,
    );
    assert_eq!(removed.status.code(), Some(1), "{}", text(&removed));
    assert!(
        text(&removed).contains("This environment protects anyfix-native (anyfix-native===1.0.0): what ComfyUI here depends on is not uninstalled"),
        "{}",
        text(&removed)
    );
    assert_same(
        &fingerprint(&root, home),
        &before,
        "pip uninstall changed the environment",
    );
    // Reinstalling the protected version itself is a repair, and allowed.
    let repair = packages(
        &root,
        &[
            "install",
            "--force-reinstall",
            "--no-deps",
            "anyfix-native==1.0.0",
        ],
        home,
    );
    assert!(repair.status.success(), "{}", text(&repair));
    let history = text(&packages(&root, &["history"], home));
    assert!(
        history.contains("install needs-old  [refused]"),
        "{history}"
    );
}

#[test]
fn unprotect_changes_it_deliberately_and_check_and_undo_follow() {
    let (dir, root) = unpacked();
    let home = dir.path();
    let before = fingerprint(&root, home);
    let healthy = packages(&root, &["check"], home);
    assert!(healthy.status.success(), "{}", text(&healthy));
    assert!(
        text(&healthy).contains("ok     import anyfix_native"),
        "{}",
        text(&healthy)
    );

    let unknown = packages(&root, &["install", "--unprotect", "addon", "addon"], home);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown).contains("--unprotect addon: not a protected package"));

    let lifted = packages(
        &root,
        &["install", "--unprotect", "anyfix-native", "needs-old"],
        home,
    );
    assert!(lifted.status.success(), "{}", text(&lifted));
    let history = text(&packages(&root, &["history"], home));
    assert!(
        history.contains("install needs-old  (unprotected: anyfix-native)"),
        "{history}"
    );
    assert!(
        history.contains("downgraded anyfix-native 1.0.0 -> 0.9.0"),
        "{history}"
    );
    assert!(history.contains("added needs-old 1.0"), "{history}");
    // The protection is back for the next pip.
    let again = run(
        &python(&root),
        &[
            "-m",
            "pip",
            "install",
            "anyfix-native==0.9.0",
            "--force-reinstall",
        ],
        home,
    );
    assert!(!again.status.success(), "{}", text(&again));

    let unhealthy = packages(&root, &["check"], home);
    assert_eq!(unhealthy.status.code(), Some(1), "{}", text(&unhealthy));
    assert!(
        text(&unhealthy).contains("anyfix-native (protected) is 0.9.0: the zip has 1.0.0"),
        "{}",
        text(&unhealthy)
    );

    let undone = packages(&root, &["undo"], home);
    assert!(undone.status.success(), "{}", text(&undone));
    assert_same(&fingerprint(&root, home), &before, "the environment");
    assert!(packages(&root, &["check"], home).status.success());
}

#[test]
fn check_names_a_broken_protected_package() {
    let (dir, root) = unpacked();
    let home = dir.path();
    let site = site_packages(&root);
    std::fs::write(
        site.join("anyfix_native/__init__.py"),
        "raise ImportError('broken on purpose')\n",
    )
    .unwrap();
    std::fs::remove_dir_all(site.join("anyfix_pin")).unwrap();
    let out = packages(&root, &["check"], home);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("FAILED import anyfix_native"), "{said}");
    assert!(said.contains("ImportError: broken on purpose"), "{said}");
    // The checks after a failure still run, each named.
    assert!(said.contains("ok     import json"), "{said}");
    // The files the zip gave each protected package, by their content: a deleted module is
    // named.
    assert!(
        said.contains(
            "anyfix-pin 1.0.0 (protected): 1 of its files are not the zip's: \
             anyfix_pin/__init__.py (missing)"
        ),
        "{said}"
    );
    assert!(
        said.contains("anyfix_native/__init__.py (changed)"),
        "{said}"
    );
    assert!(said.contains("3 problems:"), "{said}");
}

#[test]
fn install_then_undo_gives_back_every_file() {
    let (dir, root) = unpacked();
    let home = dir.path();
    let start = fingerprint(&root, home);

    let first = packages(&root, &["install", "addon==1.0"], home);
    assert!(first.status.success(), "{}", text(&first));
    let after_first = fingerprint(&root, home);
    let second = packages(&root, &["install", "addon-friend"], home);
    assert!(second.status.success(), "{}", text(&second));
    assert_ne!(fingerprint(&root, home), after_first);

    let listed = text(&packages(&root, &["list"], home));
    assert!(listed.contains("addon-friend"), "{listed}");
    assert!(listed.contains("States kept for undo: "), "{listed}");
    let history = text(&packages(&root, &["history"], home));
    let newest_first: Vec<&str> = history.lines().filter(|l| l.starts_with('#')).collect();
    assert!(
        newest_first[0].contains("install addon-friend"),
        "{history}"
    );
    assert!(newest_first[1].contains("install addon==1.0"), "{history}");
    assert!(history.contains("upgraded addon 1.0 -> 2.0"), "{history}");

    let one = packages(&root, &["undo"], home);
    assert!(one.status.success(), "{}", text(&one));
    assert_same(&fingerprint(&root, home), &after_first, "the environment");
    // Undo goes back through changes, not undos: the next one takes the first install away.
    let two = packages(&root, &["undo"], home);
    assert!(two.status.success(), "{}", text(&two));
    assert_same(&fingerprint(&root, home), &start, "the environment");

    // Two at once.
    for spec in ["addon==1.0", "addon-friend"] {
        assert!(packages(&root, &["install", spec], home).status.success());
    }
    let both = packages(&root, &["undo", "2"], home);
    assert!(both.status.success(), "{}", text(&both));
    assert_same(&fingerprint(&root, home), &start, "the environment");

    let nothing = packages(&root, &["undo"], home);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(
        text(&nothing).contains("there is nothing to undo"),
        "{}",
        text(&nothing)
    );
}

#[test]
fn undo_works_after_the_folder_was_moved() {
    let (dir, root) = unpacked();
    let home = dir.path();
    let start = fingerprint(&root, home);
    assert!(packages(&root, &["install", "addon-friend"], home)
        .status
        .success());
    let moved_home = dir.path().join("moved here ü");
    std::fs::rename(root.parent().unwrap(), &moved_home).unwrap();
    let root = moved_home.join("anymatix");
    let undone = packages(&root, &["undo"], home);
    assert!(undone.status.success(), "{}", text(&undone));
    assert_same(&fingerprint(&root, home), &start, "the environment");
}

#[cfg(unix)]
#[test]
fn an_install_killed_midway_is_undone_by_the_next_undo() {
    let (dir, root) = unpacked();
    let home = dir.path();
    // One change first, so the state before the killed one is not the first state.
    assert!(packages(&root, &["install", "addon==1.0"], home)
        .status
        .success());
    let before = fingerprint(&root, home);

    let mut cmd = command(&root.join("packages.sh"), &["install", "bulky"], home);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap();
    let bulky = site_packages(&root).join("bulky");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !bulky.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "pip never started writing bulky"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // The helper and its pip, at once, as a closed console kills them.
    let group = child.id() as i32;
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = child.wait();
    assert_ne!(
        fingerprint(&root, home),
        before,
        "the kill came after the change was whole"
    );

    // The next run finds the change it never finished.
    let history = text(&packages(&root, &["history"], home));
    assert!(
        history.contains("install bulky  [interrupted]"),
        "{history}"
    );
    let undone = packages(&root, &["undo"], home);
    assert!(undone.status.success(), "{}", text(&undone));
    assert_same(&fingerprint(&root, home), &before, "the environment");
    let history = text(&packages(&root, &["history"], home));
    assert!(
        history.contains("install bulky  [interrupted, undone by"),
        "{history}"
    );
}

#[test]
fn the_users_own_site_packages_stay_out() {
    let dir = tempfile::tempdir().unwrap();
    let root = unpack(dir.path());
    let home = dir.path().join("home");
    let user_site = home.join(format!(
        ".local/lib/python{}/site-packages",
        world().host.version
    ));
    // The same package as the zip will get, newer, in the user's own site folder.
    support::write_file(
        &user_site,
        "addon/__init__.py",
        "VERSION = 'from the user site'\n",
    );
    support::write_file(
        &user_site,
        "addon-9.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: addon\nVersion: 9.0\n",
    );
    support::write_file(&user_site, "addon-9.0.dist-info/RECORD", "");
    // The host python (no rules of ours) does see it: the test would prove nothing otherwise.
    let host = Command::new(&world().host.executable)
        .args(["-c", "import addon; print(addon.VERSION)"])
        .env("HOME", &home)
        .env_remove("PYTHONNOUSERSITE")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&host.stdout).trim(),
        "from the user site"
    );

    let installed = packages(&root, &["install", "addon==2.0"], &home);
    assert!(installed.status.success(), "{}", text(&installed));
    assert!(
        !text(&installed).contains("already satisfied"),
        "{}",
        text(&installed)
    );
    assert!(site_packages(&root).join("addon/__init__.py").is_file());
    // Without -s, as ComfyUI-Manager's pip and the anymatix application start python.
    let imported = run(
        &python(&root),
        &[
            "-c",
            "import addon, sys; print(addon.VERSION); print(any('.local' in p for p in sys.path))",
        ],
        &home,
    );
    assert_eq!(text(&imported).trim(), "2.0\nFalse", "{}", text(&imported));
}

/// ComfyUI-Manager imports GitPython when it loads, which refuses to import without a git
/// program unless told to stay quiet (most Windows machines have none: the Manager then failed
/// to load in the Windows product under Wine). A `git` module that records what it was told
/// stands in for GitPython here; the `git` found on PATH is a shell script (a Unix host).
#[cfg(unix)]
#[test]
fn gitpython_is_told_to_stay_quiet_only_where_no_git_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let root = unpack(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    support::write_file(
        &site_packages(&root),
        "git/__init__.py",
        "import os\nREFRESH = os.environ.get('GIT_PYTHON_REFRESH')\n",
    );
    let bin_with_git = dir.path().join("bin-with-git");
    support::write_file(&bin_with_git, "git", "#!/bin/sh\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let git = bin_with_git.join("git");
        std::fs::set_permissions(&git, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let told = |path: &Path, set: Option<&str>| {
        let mut cmd = command(
            &python(&root),
            &[
                "-c",
                "import git, os; print(git.REFRESH, os.environ.get('GIT_PYTHON_REFRESH'))",
            ],
            &home,
        );
        cmd.env("PATH", path).env_remove("GIT_PYTHON_REFRESH");
        if let Some(value) = set {
            cmd.env("GIT_PYTHON_REFRESH", value);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let empty = dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    assert_eq!(told(&empty, None), "quiet quiet");
    assert_eq!(told(&bin_with_git, None), "None None");
    // The user's own choice stands.
    assert_eq!(told(&empty, Some("error")), "error error");
    // A python that never imports git is not touched.
    let mut cmd = command(
        &python(&root),
        &[
            "-c",
            "import os; print(os.environ.get('GIT_PYTHON_REFRESH'))",
        ],
        &home,
    );
    cmd.env("PATH", &empty).env_remove("GIT_PYTHON_REFRESH");
    assert_eq!(
        String::from_utf8_lossy(&cmd.output().unwrap().stdout).trim(),
        "None"
    );
}

#[test]
fn bad_input_is_named_and_changes_nothing() {
    let (dir, root) = unpacked();
    let home = dir.path();
    let unknown = packages(&root, &["instal", "addon"], home);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown).contains("unknown command `instal`: the commands are install"));

    assert!(packages(&root, &["install", "addon==1.0"], home)
        .status
        .success());
    let too_many = packages(&root, &["undo", "3"], home);
    assert_eq!(too_many.status.code(), Some(2));
    assert!(
        text(&too_many).contains("cannot undo 3 changes: 1 can be undone"),
        "{}",
        text(&too_many)
    );
    let protected = packages(&root, &["uninstall", "anyfix-native"], home);
    assert_eq!(protected.status.code(), Some(3));
    assert!(
        text(&protected).contains("refused: anyfix-native is protected"),
        "{}",
        text(&protected)
    );
    let before = fingerprint(&root, home);

    // A damaged history: named, with what to do; nothing changes.
    let history = root.join(".packages/history.json");
    let good = std::fs::read(&history).unwrap();
    std::fs::write(&history, b"{\"format\": 1, \"entr").unwrap();
    let damaged = packages(&root, &["install", "addon==2.0"], home);
    assert_eq!(damaged.status.code(), Some(2));
    let said = text(&damaged);
    assert!(said.contains("history.json is damaged"), "{said}");
    assert!(said.contains("Move the folder"), "{said}");
    assert_same(&fingerprint(&root, home), &before, "the environment");
    std::fs::write(&history, &good).unwrap();

    // A .packages folder from another unpack of the same zip.
    let other = tempfile::tempdir().unwrap();
    let other_root = unpack(other.path());
    assert!(packages(&other_root, &["install", "addon==2.0"], home)
        .status
        .success());
    std::fs::remove_dir_all(root.join(".packages")).unwrap();
    support::copy_tree(&other_root.join(".packages"), &root.join(".packages"));
    let foreign = packages(&root, &["undo"], home);
    assert_eq!(foreign.status.code(), Some(2));
    assert!(
        text(&foreign).contains("belongs to another environment"),
        "{}",
        text(&foreign)
    );
    assert_same(&fingerprint(&root, home), &before, "the environment");
}

#[test]
fn one_change_at_a_time() {
    let (dir, root) = unpacked();
    let home = dir.path();
    assert!(packages(&root, &["list"], home).status.success());
    assert!(packages(&root, &["install", "addon==1.0"], home)
        .status
        .success());
    let before = fingerprint(&root, home);
    // Something holds the lock, as a helper mid-change does.
    let (mut holder, _) = hold_the_lock(&root);
    let waiting: Vec<std::process::Child> = [
        command(&root.join("packages.sh"), &["install", "addon==2.0"], home),
        command(
            &python(&root),
            &["-m", "pip", "install", "addon-friend"],
            home,
        ),
    ]
    .into_iter()
    .map(|mut c| {
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    })
    .collect();
    std::thread::sleep(Duration::from_secs(3));
    assert_same(
        &fingerprint(&root, home),
        &before,
        "nothing changes while the lock is held",
    );
    holder.kill().unwrap();
    let _ = holder.wait();
    let outputs: Vec<Output> = waiting
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outputs {
        assert!(out.status.success(), "{}", text(out));
        assert!(
            text(out).contains("Waiting for another change of this environment's packages"),
            "{}",
            text(out)
        );
    }
    // The pip run by hand is noticed at the helper's next run, and can be undone.
    let history = text(&packages(&root, &["history"], home));
    assert!(history.contains("changed outside this tool"), "{history}");
}

/// Requirement lines real custom nodes carry, from PyPI, in an unpacked zip: `numpy<2` (swaps
/// numpy, recorded, undone exactly), a pinned older torch (refused before anything downloads),
/// `opencv-python` and `onnxruntime` (installed, imported, undone).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
#[ignore = "needs PyPI"]
fn custom_nodes_requirements_from_pypi() {
    let (_, zip) = built_with_numpy();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("unpacked é x");
    xtask::stages::archive::extract::extract(zip, &home, 2).unwrap();
    let root = home.join("anymatix");
    let packages = |args: &[&str]| from_pypi(&root.join("packages.sh"), args, dir.path());
    let hashes = |root: &Path| fingerprint(root, dir.path());
    let start = hashes(&root);

    let older = packages(&["install", "numpy<2"]);
    assert!(older.status.success(), "{}", text(&older));
    let history = text(&packages(&["history"]));
    assert!(
        history.contains("downgraded numpy 2.2.6 -> 1."),
        "{history}"
    );
    let checked = packages(&["check"]);
    assert!(checked.status.success(), "{}", text(&checked));

    let torch = packages(&["install", "torch==2.5.1"]);
    let said = text(&torch);
    assert!(!torch.status.success(), "{said}");
    assert!(
        said.contains("torch: `The user requested torch==2.5.1` asks for another version; the environment keeps torch 2.11.0."),
        "{said}"
    );
    assert!(
        !said.contains("Downloading torch"),
        "refused before downloading: {said}"
    );

    let nodes = packages(&["install", "opencv-python", "onnxruntime"]);
    assert!(nodes.status.success(), "{}", text(&nodes));
    let imported = from_pypi(
        &root.join("python/bin/python3"),
        &[
            "-c",
            "import cv2, onnxruntime, numpy; print(numpy.__version__)",
        ],
        dir.path(),
    );
    assert!(imported.status.success(), "{}", text(&imported));

    let undone = packages(&["undo", "2"]);
    assert!(undone.status.success(), "{}", text(&undone));
    assert_same(&hashes(&root), &start, "undo 2");
}

/// Unpacked where its user cannot write (as another account, since root writes anywhere): every
/// change is refused with the folder named and what to do; reading still works; nothing changes.
#[cfg(unix)]
#[test]
fn a_read_only_unpack_folder_is_named() {
    let setpriv = Path::new("/usr/bin/setpriv");
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root || !setpriv.exists() {
        eprintln!("skipped: needs root and setpriv to run as an account that cannot write there");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = unpack(dir.path());
    let home = dir.path().join("nobody's home");
    std::fs::create_dir_all(&home).unwrap();
    let open_up = |mode: &str| {
        let status = Command::new("chmod")
            .args(["-R", mode])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    };
    open_up("a+rX");
    open_up("a-w");
    let status = Command::new("chmod")
        .arg("a+w")
        .arg(&home)
        .status()
        .unwrap();
    assert!(status.success());
    let before = fingerprint(&root, dir.path());
    let as_nobody = |args: &[&str]| {
        let mut cmd = command(setpriv, &[], &home);
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(root.join("packages.sh"))
            .args(args);
        cmd.output().unwrap()
    };
    let refused = as_nobody(&["install", "addon==1.0"]);
    let said = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!("cannot write in {}", root.display()))
            && said.contains("Unpack the zip in a folder of your own"),
        "{said}"
    );
    let listed = as_nobody(&["list"]);
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(text(&listed).contains("anyfix-native"), "{}", text(&listed));
    open_up("u+w");
    assert_same(&fingerprint(&root, dir.path()), &before, "nothing changed");
}

/// A pip run by hand (as ComfyUI-Manager runs one) between two runs of the tool: the next run
/// records it as a change made outside, and undo goes back through it, then past it.
#[test]
fn a_change_made_outside_is_recorded_and_undone() {
    let (dir, root) = unpacked();
    let home = dir.path();
    let start = fingerprint(&root, home);
    assert!(packages(&root, &["install", "addon==1.0"], home)
        .status
        .success());
    let after_helper = fingerprint(&root, home);
    let by_hand = run(
        &python(&root),
        &["-m", "pip", "install", "addon-friend"],
        home,
    );
    assert!(by_hand.status.success(), "{}", text(&by_hand));

    let history = text(&packages(&root, &["history"], home));
    let newest = history.lines().find(|l| l.starts_with('#')).unwrap();
    assert!(newest.contains("changed outside this tool"), "{history}");
    assert!(history.contains("added addon-friend 1.0"), "{history}");
    assert!(history.contains("upgraded addon 1.0 -> 2.0"), "{history}");

    let outside = packages(&root, &["undo"], home);
    assert!(outside.status.success(), "{}", text(&outside));
    assert_same(&fingerprint(&root, home), &after_helper, "the environment");
    let past = packages(&root, &["undo"], home);
    assert!(past.status.success(), "{}", text(&past));
    assert_same(&fingerprint(&root, home), &start, "the environment");
}
