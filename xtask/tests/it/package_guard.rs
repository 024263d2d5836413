//! The protected core holds however pip is spelled: a build of the same version with another
//! local label (`1.0.0+cpu`, as PyTorch's CPU index has torch) is refused by every way of
//! installing (`packages.sh`, `-m pip`, `bin/pip`, pip called in-process, `--isolated`, `-I`,
//! `--no-deps`, `--force-reinstall`, `-U`, `-r` files, the user's own `-c`, another index, a wheel
//! file); every way of uninstalling a protected package is refused before anything is removed;
//! markers set by anyone but the package tool lift nothing; nothing is left in the environment
//! of a process that is not pip. The stand-in's pip (the host CPython's ensurepip); the newest
//! pip and a real uv from PyPI in `the_guard_holds_with_the_newest_pip_and_a_real_uv`.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use super::package_zip::*;

/// One way of trying: what it is, and a function that tries it.
type Attempt<'a> = (&'static str, Box<dyn Fn() -> Output + 'a>);

/// Runs each attempt: each must fail, without a traceback, and leave every file as it was
/// (checked after each). Returns what each said.
fn refused_each(root: &Path, home: &Path, attempts: Vec<Attempt>) -> Vec<(&'static str, String)> {
    let before = fingerprint(root, home);
    let mut said = Vec::new();
    for (how, attempt) in attempts {
        let out = attempt();
        assert!(!out.status.success(), "{how} succeeded: {}", text(&out));
        assert!(
            !text(&out).contains("Traceback"),
            "{how} ended in a traceback: {}",
            text(&out)
        );
        assert_same(&fingerprint(root, home), &before, how);
        said.push((how, text(&out)));
    }
    said
}

#[test]
fn a_build_with_another_local_label_is_refused_however_pip_is_spelled() {
    let (dir, root) = unpacked();
    let home = dir.path();
    let b = built();
    let before = fingerprint(&root, home);
    let python = python(&root);
    let cpu_wheel = support::entry_starting_with(&b.other_index, "anyfix_native-1.0.0+cpu");
    let cpu_links = b.other_index.to_str().unwrap();
    let own = dir.path().join("own constraints.txt");
    std::fs::write(&own, "anyfix-native==1.0.0+cpu\n").unwrap();
    let requirements = dir.path().join("node requirements.txt");
    std::fs::write(&requirements, "addon==1.0\nanyfix-native==1.0.0+cpu\n").unwrap();
    let pip = |args: &[&str]| {
        let mut all = vec!["-m", "pip", "install"];
        all.extend_from_slice(args);
        run(&python, &all, home)
    };
    let in_process = format!(
        "import sys; from pip._internal.cli.main import main; \
         sys.exit(main(['install', '--find-links', {cpu_links:?}, 'anyfix-native==1.0.0+cpu']))"
    );
    let attempts: Vec<Attempt> = vec![
        (
            "packages.sh with the label",
            Box::new(|| {
                packages(
                    &root,
                    &[
                        "install",
                        "--find-links",
                        cpu_links,
                        "anyfix-native==1.0.0+cpu",
                    ],
                    home,
                )
            }),
        ),
        (
            "packages.sh install --isolated",
            Box::new(|| {
                packages(
                    &root,
                    &[
                        "install",
                        "--isolated",
                        "--no-index",
                        "--find-links",
                        cpu_links,
                        "anyfix-native==1.0.0+cpu",
                    ],
                    home,
                )
            }),
        ),
        (
            "-m pip --isolated",
            Box::new(|| {
                pip(&[
                    "--isolated",
                    "--no-index",
                    "--find-links",
                    cpu_links,
                    "anyfix-native==1.0.0+cpu",
                ])
            }),
        ),
        (
            "-m pip -I --no-deps",
            Box::new(|| {
                pip(&[
                    "-I",
                    "--no-deps",
                    "--find-links",
                    cpu_links,
                    "anyfix-native==1.0.0+cpu",
                ])
            }),
        ),
        (
            "-m pip a wheel file",
            Box::new(|| pip(&["--no-deps", cpu_wheel.to_str().unwrap()])),
        ),
        (
            "-m pip -r a node's requirements",
            Box::new(|| {
                pip(&[
                    "--find-links",
                    cpu_links,
                    "-r",
                    requirements.to_str().unwrap(),
                ])
            }),
        ),
        (
            "-m pip with the user's own -c",
            Box::new(|| {
                pip(&[
                    "-c",
                    own.to_str().unwrap(),
                    "--find-links",
                    cpu_links,
                    "anyfix-native",
                ])
            }),
        ),
        (
            "pip called in-process",
            Box::new(|| run(&python, &["-c", &in_process], home)),
        ),
    ];
    for (how, said) in refused_each(&root, home, attempts) {
        assert!(
            said.contains("===1.0.0"),
            "{how}: the exact build is named: {said}"
        );
    }
    // packages.sh says it in words, with exit status 3 (refused).
    let said = packages(
        &root,
        &[
            "install",
            "--find-links",
            cpu_links,
            "anyfix-native==1.0.0+cpu",
        ],
        home,
    );
    assert_eq!(said.status.code(), Some(3));
    assert!(
        text(&said).contains("the environment keeps anyfix-native 1.0.0."),
        "{}",
        text(&said)
    );
    assert_same(&fingerprint(&root, home), &before, "the environment");

    let other_index = || {
        let mut cmd = command(
            &python,
            &["-m", "pip", "install", "--force-reinstall"],
            home,
        );
        cmd.env_remove("PIP_NO_INDEX")
            .arg("--index-url")
            .arg(url(&b.other_index.join("simple")))
            .arg("anyfix-native==1.0.0");
        cmd.output().unwrap()
    };
    // Where the label would win without the guard (it sorts above the plain version), a
    // request the plain build satisfies keeps the plain build: an upgrade finds nothing newer,
    // a reinstall of the version (a repair) takes the same build again.
    let kept: Vec<Attempt> = vec![
        (
            "packages.sh install -U",
            Box::new(|| {
                packages(
                    &root,
                    &["install", "-U", "--find-links", cpu_links, "anyfix-native"],
                    home,
                )
            }),
        ),
        (
            "-m pip --force-reinstall of the version",
            Box::new(|| {
                pip(&[
                    "--force-reinstall",
                    "--no-deps",
                    "--find-links",
                    cpu_links,
                    "anyfix-native==1.0.0",
                ])
            }),
        ),
        (
            "bin/pip -U",
            Box::new(|| {
                run(
                    &root.join("python/bin/pip"),
                    &["install", "-U", "--find-links", cpu_links, "anyfix-native"],
                    home,
                )
            }),
        ),
        ("-m pip from another index", Box::new(other_index)),
    ];
    for (how, attempt) in kept {
        let out = attempt();
        assert!(out.status.success(), "{how}: {}", text(&out));
        let (_, freeze) = fingerprint(&root, home);
        assert!(freeze.contains("anyfix-native==1.0.0\n"), "{how}: {freeze}");
    }
    let checked = packages(&root, &["check"], home);
    assert!(checked.status.success(), "{}", text(&checked));
}

#[test]
fn every_spelling_of_uninstalling_a_protected_package_is_refused() {
    let (dir, root) = unpacked();
    let home = dir.path();
    assert!(packages(&root, &["install", "addon==1.0"], home)
        .status
        .success());
    let python = python(&root);
    let direct = dir.path().join("req.txt");
    std::fs::write(
        &direct,
        "# a node's list\naddon\nanyfix-native>=0.1  # the core\n",
    )
    .unwrap();
    let nested = dir.path().join("nested.txt");
    std::fs::write(&nested, "-r req.txt\n").unwrap();
    let uninstall = |args: &[&str]| {
        let mut all = vec!["-m", "pip", "uninstall"];
        all.extend_from_slice(args);
        run(&python, &all, home)
    };
    let attempts: Vec<Attempt> = vec![
        (
            "a pin",
            Box::new(|| uninstall(&["-y", "anyfix-native==1.0.0"])),
        ),
        (
            "a range",
            Box::new(|| uninstall(&["-y", "anyfix-native>=1"])),
        ),
        (
            "another spelling",
            Box::new(|| uninstall(&["-y", "ANYFIX_Native"])),
        ),
        (
            "-r",
            Box::new(|| uninstall(&["-y", "-r", direct.to_str().unwrap()])),
        ),
        (
            "combined short flags",
            Box::new(|| uninstall(&["-yr", direct.to_str().unwrap()])),
        ),
        (
            "a nested -r",
            Box::new(|| uninstall(&["-y", "-r", nested.to_str().unwrap()])),
        ),
        (
            "with an unprotected one first",
            Box::new(|| uninstall(&["-y", "addon", "anyfix-pin"])),
        ),
        (
            "in-process",
            Box::new(|| {
                run(
                    &python,
                    &[
                        "-c",
                        "import sys; from pip._internal.cli.main import main; \
                     sys.exit(main(['uninstall', '-y', 'anyfix-kit[gpu]==1.0.0']))",
                    ],
                    home,
                )
            }),
        ),
        (
            "packages.sh with a pin",
            Box::new(|| packages(&root, &["uninstall", "anyfix-native==1.0.0"], home)),
        ),
    ];
    for (how, said) in refused_each(&root, home, attempts) {
        assert!(
            said.contains("is not uninstalled") || said.contains("is protected"),
            "{how}: {said}"
        );
    }
    // Unprotected ones still go.
    let addon = uninstall(&["-y", "addon"]);
    assert!(addon.status.success(), "{}", text(&addon));
}

/// The tool's own markers, set by anyone else (a forged run file, the lock-held variable, the
/// old ANYMATIX_CONSTRAINT pointing at an empty file), lift no protection and skip no wait.
#[cfg(unix)]
#[test]
fn markers_set_by_anyone_but_the_tool_lift_nothing() {
    let (dir, root) = unpacked();
    let home = dir.path();
    assert!(packages(&root, &["list"], home).status.success());
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    // A run file as the tool writes it, naming a process that is not the pip's parent (as for a
    // node's process that inherited the variable from the tool's pip).
    std::fs::write(
        root.join(".packages/run.json"),
        format!(
            r#"{{"token": "forged", "pid": 1, "constraints": {:?}, "unprotect": ["anyfix-native"]}}"#,
            empty.to_str().unwrap()
        ),
    )
    .unwrap();
    let forged = |args: &[&str]| {
        let mut cmd = command(&python(&root), args, home);
        cmd.env("ANYMATIX_PACKAGES_RUN", "forged")
            .env("ANYMATIX_PACKAGES_LOCK_HELD", "1")
            .env("ANYMATIX_CONSTRAINT", &empty);
        cmd
    };
    let attempts: Vec<Attempt> = vec![
        (
            "uninstall",
            Box::new(|| {
                forged(&["-m", "pip", "uninstall", "-y", "anyfix-native"])
                    .output()
                    .unwrap()
            }),
        ),
        (
            "install",
            Box::new(|| {
                forged(&["-m", "pip", "install", "anyfix-native==0.9.0"])
                    .output()
                    .unwrap()
            }),
        ),
    ];
    refused_each(&root, home, attempts);

    // A process holds the lock: a pip carrying its pid as the lock-held marker still waits, as
    // the holder never said it started that pip.
    let (holder, pid) = hold_the_lock(&root);
    let mut waiting = forged(&["-m", "pip", "install", "addon==1.0"]);
    waiting.env("ANYMATIX_PACKAGES_LOCK_HELD", pid.to_string());
    let out = waits_for(holder, waiting, &root, "a forged marker skipped the wait");
    assert!(text(&out).contains("Waiting for another change"));
}

/// Starts `waiting` while `holder` holds the lock: it must not install addon while the lock is
/// held, and must once the holder is gone. Returns what it said.
fn waits_for(
    mut holder: std::process::Child,
    mut waiting: std::process::Command,
    root: &Path,
    what: &str,
) -> Output {
    let waiting = waiting
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(!site_packages(root).join("addon").exists(), "{what}");
    holder.kill().unwrap();
    let _ = holder.wait();
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(site_packages(root).join("addon").exists());
    out
}

/// A pip started by the lock's holder (a build backend's pip under packages.sh) does not wait
/// for its own parent.
#[test]
fn a_pip_started_by_the_locks_holder_does_not_wait() {
    let (dir, root) = unpacked();
    let home = dir.path();
    let nested = "import subprocess, sys, _anymatix_guard; h = _anymatix_guard.hold_lock(); \
        sys.exit(subprocess.run([sys.executable, '-m', 'pip', 'install', 'addon==1.0'], \
        timeout=120).returncode)";
    let out = run(&python(&root), &["-c", nested], home);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("Waiting"), "{}", text(&out));
}

/// Importing pip (as ComfyUI or a node may) puts nothing into that process's environment, which
/// its children would inherit; a pip run in-process leaves the lock free and the environment
/// as it was.
#[test]
fn nothing_is_left_in_the_environment_of_a_process_that_is_not_pip() {
    let (dir, root) = unpacked();
    let home = dir.path();
    assert!(packages(&root, &["list"], home).status.success());
    let probe = "import os, subprocess, sys\n\
        import pip, pip._internal.commands.install, pip._internal.commands.uninstall\n\
        from pip._internal.cli.main import main\n\
        status = main(['install', 'anyfix-native==0.9.0'])\n\
        mine = sorted(k for k in os.environ if 'ANYMATIX' in k or k.endswith('_CONSTRAINT'))\n\
        free = subprocess.run([sys.executable, '-c', 'import sys, _anymatix_guard as g; \
        sys.exit(0 if g.lock(open(g.LOCK, \"a+b\"), False) else 1)']).returncode == 0\n\
        print('RESULT', status, mine, free)\n";
    let out = run(&python(&root), &["-c", probe], home);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("RESULT 1 [] True"), "{said}\n{}", text(&out));
}

/// A damaged protected core (tools/protected.txt emptied or gone) lets nothing change, rather
/// than protecting nothing.
#[test]
fn a_damaged_protected_core_lets_nothing_change() {
    let (dir, root) = unpacked();
    let home = dir.path();
    let file = root.join("tools/protected.txt");
    for damage in ["emptied", "removed"] {
        if damage == "emptied" {
            std::fs::write(&file, "").unwrap();
        } else {
            std::fs::remove_file(&file).unwrap();
        }
        let out = run(
            &python(&root),
            &["-m", "pip", "install", "anyfix-native==0.9.0"],
            home,
        );
        assert!(!out.status.success(), "{damage}: {}", text(&out));
        assert!(
            text(&out).contains("no package may change"),
            "{damage}: {}",
            text(&out)
        );
        assert!(!text(&out).contains("Traceback"), "{}", text(&out));
    }
}

/// pip as PyPI has it today (the zip's pip upgraded through the tool) and uv run as
/// ComfyUI-Manager runs it (`python -m uv`): the same spellings refused, uv's own `-c` no way
/// around, `uv pip sync` refused, and `python -m uv` waits for the lock.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
#[ignore = "needs PyPI"]
fn the_guard_holds_with_the_newest_pip_and_a_real_uv() {
    let (dir, root) = unpacked();
    let home = dir.path();
    let upgraded = from_pypi(
        &root.join("packages.sh"),
        &["install", "-U", "pip", "uv"],
        home,
    );
    assert!(upgraded.status.success(), "{}", text(&upgraded));
    let b = built();
    let cpu_links = b.other_index.to_str().unwrap();
    let links = [cpu_links, b.wheels.to_str().unwrap()];
    let python = python(&root);
    let version = run(&python, &["-m", "pip", "--version"], home);
    println!("pip: {}", String::from_utf8_lossy(&version.stdout).trim());
    let own = dir.path().join("own.txt");
    std::fs::write(&own, "").unwrap();
    let uv = |args: &[&str]| {
        let mut all = vec!["-m", "uv"];
        all.extend_from_slice(args);
        all.extend([
            "--no-index",
            "--find-links",
            links[0],
            "--find-links",
            links[1],
        ]);
        run(&python, &all, home)
    };
    let uv_uninstall = |args: &[&str]| {
        let mut all = vec!["-m", "uv", "pip", "uninstall"];
        all.extend_from_slice(args);
        run(&python, &all, home)
    };
    let requirements = dir.path().join("req.txt");
    std::fs::write(&requirements, "anyfix-pin\n").unwrap();
    let attempts: Vec<Attempt> = vec![
        (
            "newest pip --isolated",
            Box::new(|| {
                run(
                    &python,
                    &[
                        "-m",
                        "pip",
                        "install",
                        "--isolated",
                        "--no-index",
                        "--find-links",
                        cpu_links,
                        "anyfix-native==1.0.0+cpu",
                    ],
                    home,
                )
            }),
        ),
        (
            "newest pip uninstall -yr",
            Box::new(|| {
                run(
                    &python,
                    &[
                        "-m",
                        "pip",
                        "uninstall",
                        "-yr",
                        requirements.to_str().unwrap(),
                    ],
                    home,
                )
            }),
        ),
        (
            "uv with the label",
            Box::new(|| uv(&["pip", "install", "anyfix-native==1.0.0+cpu"])),
        ),
        (
            "uv with its own -c",
            Box::new(|| {
                uv(&[
                    "pip",
                    "install",
                    "-c",
                    own.to_str().unwrap(),
                    "anyfix-native==1.0.0+cpu",
                ])
            }),
        ),
        (
            "uv --reinstall",
            Box::new(|| {
                uv(&[
                    "-q",
                    "pip",
                    "install",
                    "--reinstall",
                    "--upgrade",
                    "anyfix-native",
                ])
            }),
        ),
        (
            "uv uninstall",
            Box::new(|| uv_uninstall(&["anyfix-native"])),
        ),
        (
            "uv uninstall a pin",
            Box::new(|| uv_uninstall(&["anyfix-native==1.0.0"])),
        ),
        (
            "uv uninstall -r",
            Box::new(|| uv_uninstall(&["-r", requirements.to_str().unwrap()])),
        ),
        (
            "uv pip sync",
            Box::new(|| uv(&["pip", "sync", requirements.to_str().unwrap()])),
        ),
    ];
    refused_each(&root, home, attempts);

    // `python -m uv` waits for the lock, and holds it while the uv program runs.
    let (holder, _) = hold_the_lock(&root);
    let waiting = command(
        &python,
        &[
            "-m",
            "uv",
            "pip",
            "install",
            "--no-index",
            "--find-links",
            links[1],
            "addon==1.0",
        ],
        home,
    );
    waits_for(holder, waiting, &root, "uv did not wait");
}
