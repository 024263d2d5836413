//! Windows, for real where it runs here: pip's own launcher stubs rewritten to find their python
//! relative to themselves (checked byte by byte on every host, then run under Wine from a folder
//! with a space and an "é"), the package scripts through Wine's cmd, and the tool itself built for
//! Windows running `archive` and `prune` under Wine.

use std::path::{Path, PathBuf};
use std::process::Command;

use support::windows::{self, launcher, recorded_run, stand_in_python, stub, wine, wine_path};
use support::write_file;
use xtask::model::platform::Platform;
use xtask::stages::relocate::{launcher as parse, relocate};

/// Where the environment was installed on the (imagined) Windows build machine.
const BUILD: &str = r"C:\b\stage\windows-x86_64\env\anymatix";

/// A Windows-shaped `anymatix/`: pip's launchers naming the build machine's python (console,
/// GUI, ARM64, and one in a folder with a space), their RECORD, and the other files that hold
/// the build path on Windows.
fn windows_tree(root: &Path) {
    let python = format!(r"{BUILD}\python\python.exe");
    let pythonw = format!(r"{BUILD}\python\pythonw.exe");
    let scripts = [
        ("python/Scripts/tool.exe", "t64.exe", python.clone()),
        ("python/Scripts/tool-gui.exe", "w64.exe", pythonw),
        ("python/Scripts/tool-arm.exe", "t64-arm.exe", python.clone()),
    ];
    let mut record = String::new();
    for (rel, stub_name, interpreter) in scripts {
        let bytes = launcher(
            &stub(stub_name),
            &interpreter,
            "import sys; print(sys.argv)\n",
        );
        record.push_str(&format!(
            "../../Scripts/{},sha256={},{}\n",
            rel.rsplit('/').next().unwrap(),
            xtask::util::digest::record_digest(&bytes),
            bytes.len()
        ));
        write_file(root, rel, &bytes);
    }
    record.push_str("tool/__init__.py,,\n");
    write_file(
        root,
        "python/Lib/site-packages/tool-1.0.dist-info/RECORD",
        record,
    );
    // pip quotes a python whose path has a space.
    write_file(
        root,
        "python/Scripts/spaced.exe",
        launcher(&stub("t64.exe"), &format!("\"{python}\""), "pass\n"),
    );
    // A launcher of someone else's python: not ours to rewrite, and listed.
    write_file(
        root,
        "python/Scripts/foreign.exe",
        launcher(&stub("t64.exe"), r"C:\Python312\python.exe", "pass\n"),
    );
    // conda's own entry points: its launcher finds python by itself; the script beside it.
    write_file(root, "python/Scripts/conda.exe", stub("t64.exe"));
    write_file(
        root,
        "python/Scripts/conda-script.py",
        "import sys\nfrom conda.cli import main\nsys.exit(main())\n",
    );
    write_file(
        root,
        "python/Lib/site-packages/build-path.pth",
        format!("{BUILD}\\ComfyUI\n"),
    );
    write_file(
        root,
        "python/conda-meta/history",
        format!("# cmd: Miniforge3.exe /S /D={BUILD}\\python\n"),
    );
    write_file(
        root,
        "python/etc/conda/activate.d/env.bat",
        format!("@SET \"TOOL_HOME={BUILD}\\python\\tool\"\n"),
    );
}

fn relocate_windows(root: &Path) -> xtask::stages::relocate::Relocated {
    relocate(root, &[BUILD.to_string()], Platform::WindowsX86_64).unwrap()
}

#[test]
fn launchers_find_their_python_beside_them_and_the_rest_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("anymatix");
    windows_tree(&root);
    let before = |rel: &str| std::fs::read(root.join(rel)).unwrap();
    let originals: Vec<Vec<u8>> = ["python/Scripts/tool.exe", "python/Scripts/tool-gui.exe"]
        .iter()
        .map(|r| before(r))
        .collect();
    let report = relocate_windows(&root);

    let mut rewritten = report.rewritten.clone();
    rewritten.sort();
    assert_eq!(
        rewritten,
        [
            "python/Scripts/spaced.exe",
            "python/Scripts/tool-arm.exe",
            "python/Scripts/tool-gui.exe",
            "python/Scripts/tool.exe",
        ]
    );
    for (rel, stub_name, expected) in [
        (
            "python/Scripts/tool.exe",
            "t64.exe",
            r"<launcher_dir>\..\python.exe",
        ),
        (
            "python/Scripts/tool-gui.exe",
            "w64.exe",
            r"<launcher_dir>\..\pythonw.exe",
        ),
        (
            "python/Scripts/tool-arm.exe",
            "t64-arm.exe",
            r"<launcher_dir>\..\python.exe",
        ),
        (
            "python/Scripts/spaced.exe",
            "t64.exe",
            r"<launcher_dir>\..\python.exe",
        ),
    ] {
        let bytes = std::fs::read(root.join(rel)).unwrap();
        let parsed = parse::parse(&bytes).unwrap().expect("still a launcher");
        assert_eq!(parsed.interpreter, expected, "{rel}");
        assert_eq!(
            parsed.stub,
            stub(stub_name).as_slice(),
            "{rel}: the program is untouched"
        );
        assert_eq!(parsed.line_end, b"\n\r\n", "{rel}: pip's line end is kept");
        assert_eq!(parsed.gui, stub_name.starts_with('w'), "{rel}");
        // The archive still opens where it now begins, with Python's own zipfile.
        let read = Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read('__main__.py').decode())",
            ])
            .arg(root.join(rel))
            .output()
            .unwrap();
        assert!(
            read.status.success(),
            "{rel}: {}",
            String::from_utf8_lossy(&read.stderr)
        );
    }
    // pip's RECORD gets the launchers' new digests and sizes.
    let record =
        std::fs::read_to_string(root.join("python/Lib/site-packages/tool-1.0.dist-info/RECORD"))
            .unwrap();
    for name in ["tool.exe", "tool-gui.exe", "tool-arm.exe"] {
        let bytes = std::fs::read(root.join("python/Scripts").join(name)).unwrap();
        let line = format!(
            "../../Scripts/{name},sha256={},{}",
            xtask::util::digest::record_digest(&bytes),
            bytes.len()
        );
        assert!(record.contains(&line), "{record}");
    }
    assert!(!originals.contains(&before("python/Scripts/tool.exe")));

    // Never silently skipped: what is not rewritten is listed, with what it is.
    let remaining: Vec<(String, String)> = report
        .remaining
        .iter()
        .map(|r| (r.path.clone(), r.kind.clone()))
        .collect();
    let kind = |path: &str| {
        remaining
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, k)| k.clone())
            .unwrap_or_else(|| panic!("{path} is not listed: {remaining:?}"))
    };
    assert!(
        kind("python/Scripts/foreign.exe")
            .contains(r"its #! names C:\Python312\python.exe, outside the tree"),
        "{remaining:?}"
    );
    assert_eq!(kind("python/Lib/site-packages/build-path.pth"), ".pth file");
    assert_eq!(kind("python/conda-meta/history"), "conda's install history");
    assert_eq!(kind("python/etc/conda/activate.d/env.bat"), "batch file");
    // conda's launcher and its script hold no build path: left alone.
    assert!(!remaining
        .iter()
        .any(|(p, _)| p.starts_with("python/Scripts/conda")));
}

/// The tree relocated, zipped as a build zips it, and unpacked into a folder whose path has a
/// space and an "é", as a user would; with the build's launcher kept unrewritten for contrast.
fn unpacked_windows_tree(dir: &Path) -> PathBuf {
    let built = dir.join("built/anymatix");
    windows_tree(&built);
    let unrewritten = std::fs::read(built.join("python/Scripts/tool.exe")).unwrap();
    stand_in_python(&built.join("python/python.exe"), false);
    stand_in_python(&built.join("python/pythonw.exe"), true);
    for (name, text) in
        xtask::stages::packages::scripts(Platform::WindowsX86_64, &Default::default())
    {
        write_file(&built, name, text);
    }
    relocate_windows(&built);
    write_file(&built, "python/Scripts/unrewritten.exe", unrewritten);
    let zip = dir.join("anymatix.zip");
    xtask::stages::archive::archive_with(
        &built,
        "anymatix",
        &zip,
        xtask::stages::archive::Settings::default(),
        &mut |_, _| {},
    )
    .unwrap();
    std::fs::remove_dir_all(dir.join("built")).unwrap();
    let home = dir.join("unpacked copy é");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
    archive.extract(&home).unwrap();
    home.join("anymatix")
}

#[test]
fn rewritten_launchers_run_under_wine_wherever_the_zip_is_unpacked() {
    if let Some(reason) = windows::wine_missing() {
        eprintln!("{reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = unpacked_windows_tree(dir.path());
    let python = root.join("python/python.exe");
    let pythonw = root.join("python/pythonw.exe");
    for (name, runs) in [
        ("tool.exe", &python),
        ("tool-gui.exe", &pythonw),
        ("spaced.exe", &python),
    ] {
        let launcher = root.join("python/Scripts").join(name);
        let _ = std::fs::remove_file(runs.with_file_name(format!(
            "ran-{}.txt",
            runs.file_name().unwrap().to_string_lossy()
        )));
        let out = wine(&launcher, &["first", "second arg é"], dir.path());
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ran = recorded_run(runs).unwrap_or_else(|| panic!("{name} did not start python"));
        assert_eq!(
            ran[1..],
            [wine_path(&launcher), "first".into(), "second arg é".into()],
            "{name}: the python beside it ran the launcher's own archive with the arguments"
        );
    }
    // The same launcher as pip wrote it, naming the build machine's python, fails here.
    let out = wine(
        &root.join("python/Scripts/unrewritten.exe"),
        &["x"],
        dir.path(),
    );
    assert!(
        !out.status.success(),
        "an unrewritten launcher must not find a python here"
    );
}

#[test]
fn the_package_scripts_run_through_wines_cmd() {
    if let Some(reason) = windows::wine_missing() {
        eprintln!("{reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = unpacked_windows_tree(dir.path());
    let tool = wine_path(&root.join("tools/packages.py"));
    // From another folder, as a user would run them, with an argument that holds a space and
    // an "é" (quoted on the command line).
    for (script, args, expected) in [
        (
            "packages.bat",
            vec!["list"],
            vec!["-s", tool.as_str(), "list"],
        ),
        (
            "install_package.bat",
            vec!["numpy~=1.26", "-r", "C:\\my nodes é\\requirements.txt"],
            vec![
                "-s",
                tool.as_str(),
                "install",
                "numpy~=1.26",
                "-r",
                "C:\\my nodes é\\requirements.txt",
            ],
        ),
    ] {
        let python = root.join("python/python.exe");
        let _ = std::fs::remove_file(python.with_file_name("ran-python.exe.txt"));
        let path = wine_path(&root.join(script));
        // `call` first: cmd /c drops the first and last quote of a line that starts with one.
        let mut cmd_args = vec!["/c", "call", path.as_str()];
        cmd_args.extend(args.iter().copied());
        let out = wine(Path::new("cmd"), &cmd_args, dir.path());
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ran = recorded_run(&python).unwrap_or_else(|| {
            panic!(
                "{script} did not start python: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(ran[1..], expected, "{script}");
    }
}

/// The tool itself, built for Windows (`cargo build --target x86_64-pc-windows-gnu`, as .ci/run
/// does), run under Wine on a Windows-shaped tree with Windows paths.
#[test]
fn the_tool_built_for_windows_archives_and_prunes_under_wine() {
    if let Some(reason) = windows::wine_missing() {
        eprintln!("{reason}");
        return;
    }
    let exe = xtask::project_root().join("target/x86_64-pc-windows-gnu/debug/xtask.exe");
    if !exe.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI builds {} first",
            exe.display()
        );
        eprintln!(
            "skipped: {} is not built (cargo build --target x86_64-pc-windows-gnu --bin xtask)",
            exe.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Wine 8.0 lacks bcryptprimitives.dll, which Rust's standard library imports for its random
    // numbers: a stand-in beside the program, built with mingw, answers with RtlGenRandom.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(&exe, bin.join("xtask.exe")).unwrap();
    support::binaries::bcryptprimitives_stand_in(&bin.join("bcryptprimitives.dll"));
    let tree = dir.path().join("Tree Ä/anymatix");
    windows_tree(&tree);
    support::binaries::pe(&tree, "python/Library/bin/zlib.dll", &[]);
    support::binaries::pe(
        &tree,
        "python/DLLs/_zlib.pyd",
        &["python/Library/bin/zlib.dll"],
    );
    // Windows names are case-insensitive: the file is ZLIB.DLL, the import says zlib.dll.
    std::fs::rename(
        tree.join("python/Library/bin/zlib.dll"),
        tree.join("python/Library/bin/ZLIB.DLL"),
    )
    .unwrap();
    write_file(
        &tree,
        "python/Lib/site-packages/pkg/__pycache__/m.pyc",
        "0123",
    );

    let xtask_exe = bin.join("xtask.exe");
    let zip = dir.path().join("out/anymatix.zip");
    std::fs::create_dir_all(zip.parent().unwrap()).unwrap();
    let out = wine(
        &xtask_exe,
        &["archive", &wine_path(&tree), &wine_path(&zip)],
        dir.path(),
    );
    let text = support::stderr(&out);
    assert!(out.status.success(), "{text}");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
    assert!(archive.by_name("anymatix/python/Scripts/tool.exe").is_ok());
    assert!(archive
        .by_name("anymatix/python/Library/bin/ZLIB.DLL")
        .is_ok());
    let sidecar = std::fs::read_to_string(dir.path().join("out/anymatix.zip.sha256")).unwrap();
    assert!(sidecar.ends_with("  anymatix.zip\n"), "{sidecar}");

    let policy = wine_path(&xtask::project_root().join("anymatix/prune.yml"));
    let out = wine(
        &xtask_exe,
        &[
            "prune",
            &wine_path(&tree),
            "--platform",
            "windows-x86_64",
            "--policy",
            &policy,
        ],
        dir.path(),
    );
    let text = support::stderr(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("bytecode-caches"), "{text}");
    assert!(
        !tree
            .join("python/Lib/site-packages/pkg/__pycache__")
            .exists(),
        "pruned through Windows paths"
    );
    assert!(
        text.contains("needed libraries found: 1 in the tree"),
        "zlib.dll found case-insensitively: {text}"
    );
}

/// delvewheel's list of Windows' own DLLs, the source of the one the tool ships.
const DELVEWHEEL: &str = "1.13.2";

/// The shipped list is delvewheel's, as its header says: downloaded from PyPI and compared;
/// `ANYMATIX_UPDATE_DATA=1` writes it anew (then review the diff and commit it).
#[test]
#[ignore = "needs PyPI; run with `cargo test -- --include-ignored` (.ci/run does)"]
fn windows_dll_lists_are_delvewheels() {
    let dir = tempfile::tempdir().unwrap();
    let mut download = Command::new("python3");
    download
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .arg("--dest")
        .arg(dir.path())
        .arg(format!("delvewheel=={DELVEWHEEL}"));
    support::pypi_env(&mut download);
    let out = download.output().unwrap();
    assert!(out.status.success(), "{}", support::stderr(&out));
    let wheel = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .unwrap();
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
    let mut source = String::new();
    std::io::Read::read_to_string(
        &mut archive.by_name("delvewheel/_dll_list.py").unwrap(),
        &mut source,
    )
    .unwrap();
    let module = dir.path().join("dll_list.py");
    std::fs::write(&module, source).unwrap();
    // The module needs only the standard library: load it alone and print the x64 names.
    let names = Command::new("python3")
        .args([
            "-c",
            "import importlib.util, sys\n\
             spec = importlib.util.spec_from_file_location('dll_list', sys.argv[1])\n\
             m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n\
             print('\\n'.join(sorted(m.ignore_names_x64)))",
        ])
        .arg(&module)
        .output()
        .unwrap();
    assert!(names.status.success(), "{}", support::stderr(&names));
    let names = String::from_utf8(names.stdout).unwrap();

    let shipped = xtask::stages::prune::windows_dlls::x64_list();
    let header: String = shipped
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        header.contains(&format!("delvewheel {DELVEWHEEL}")),
        "the header names the source's version: {header}"
    );
    let expected = format!("{header}{names}");
    if shipped != expected {
        let path = xtask::project_root().join("xtask/src/prune/windows-dlls-x64.txt");
        if std::env::var_os("ANYMATIX_UPDATE_DATA").is_some() {
            std::fs::write(&path, &expected).unwrap();
            panic!(
                "{} was written anew from delvewheel {DELVEWHEEL}: review and commit it",
                path.display()
            );
        }
        let ours: std::collections::BTreeSet<&str> = shipped.lines().collect();
        let theirs: std::collections::BTreeSet<&str> = expected.lines().collect();
        panic!(
            "{} differs from delvewheel {DELVEWHEEL}'s list: only ours {:?}, only theirs {:?}; \
             ANYMATIX_UPDATE_DATA=1 rewrites it",
            path.display(),
            ours.difference(&theirs).take(10).collect::<Vec<_>>(),
            theirs.difference(&ours).take(10).collect::<Vec<_>>()
        );
    }
}

/// Downloads one wheel of `spec` for 64-bit Windows and CPython 3.12.
fn windows_wheel(dir: &Path, spec: &str) -> PathBuf {
    let dest = dir.join(spec.replace("==", "-"));
    support::pip_download(&dest, &[spec], &["win_amd64"], "3.12")
        .into_iter()
        .next()
        .unwrap()
}

/// Real Windows wheels from PyPI (Pillow, numpy, torch's CPU build) installed, as pip installs
/// them, into a Windows Miniforge-shaped prefix: pruned by the real policy with the linkage
/// check, relocated, zipped, and what reviewers read of it snapshotted.
#[test]
#[ignore = "needs PyPI (about 135 MB); run with `cargo test -- --include-ignored` (.ci/run does)"]
fn a_windows_prefix_of_real_wheels_prunes_relocates_and_zips() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("anymatix");
    let python = root.join("python");
    let site = python.join("Lib/site-packages");
    stand_in_python(&python.join("python.exe"), false);
    stand_in_python(&python.join("pythonw.exe"), true);
    // The extension modules import python312.dll, which sits beside python.exe.
    support::binaries::pe(&root, "python/python312.dll", &[]);
    write_file(&python, "Lib/os.py", "# os\n");
    write_file(
        &python,
        "conda-meta/history",
        format!("# cmd: Miniforge3.exe /S /D={BUILD}\\python\n"),
    );
    for (name, text) in
        xtask::stages::packages::scripts(Platform::WindowsX86_64, &Default::default())
    {
        write_file(&root, name, text);
    }
    let mut scripts = 0;
    for spec in ["pillow==13.0.0", "numpy==2.4.6", "torch==2.11.0"] {
        let wheel = windows_wheel(dir.path(), spec);
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
        archive.extract(&site).unwrap();
        // Its console scripts, as pip writes them on Windows: launchers naming the build's python.
        let info = std::fs::read_dir(&site)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_lowercase();
                name.starts_with(spec.split("==").next().unwrap()) && name.ends_with(".dist-info")
            })
            .unwrap();
        let entry_points =
            std::fs::read_to_string(info.join("entry_points.txt")).unwrap_or_default();
        let mut record = String::new();
        for line in entry_points
            .split("[console_scripts]")
            .nth(1)
            .unwrap_or("")
            .lines()
            .take_while(|l| !l.starts_with('['))
            .filter(|l| l.contains('='))
        {
            let (name, target) = line.split_once('=').unwrap();
            let (module, func) = target.trim().split_once(':').unwrap();
            let main = format!("import sys\nfrom {module} import {func}\nsys.exit({func}())\n");
            let bytes = launcher(
                &stub("t64.exe"),
                &format!(r"{BUILD}\python\python.exe"),
                &main,
            );
            let name = format!("{}.exe", name.trim());
            record.push_str(&format!(
                "../../Scripts/{name},sha256={},{}\n",
                xtask::util::digest::record_digest(&bytes),
                bytes.len()
            ));
            write_file(&python, &format!("Scripts/{name}"), &bytes);
            scripts += 1;
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(info.join("RECORD"))
            .unwrap();
        std::io::Write::write_all(&mut file, record.as_bytes()).unwrap();
    }
    assert_eq!(scripts, 4, "torchrun, torchfrtrace, f2py, numpy-config");

    let policy =
        xtask::stages::prune::Policy::load(&xtask::project_root().join("anymatix/prune.yml"))
            .unwrap();
    let report =
        xtask::stages::prune::prune(&root, &policy, Platform::WindowsX86_64, false).unwrap();
    let linkage = &report.linkage;
    let unexplained: Vec<String> = linkage
        .unexplained()
        .map(|m| format!("{} needs {}", m.file, m.library))
        .collect();
    assert!(
        unexplained.is_empty(),
        "every DLL is in the tree or Windows' own: {unexplained:#?}"
    );
    // Every kept program and library was read as one.
    let pe_files = report
        .kept_files
        .iter()
        .filter(|k| {
            let lower = k.path.to_lowercase();
            [".dll", ".pyd", ".exe"].iter().any(|e| lower.ends_with(e))
        })
        .count();
    assert_eq!(linkage.binaries, pe_files);
    let relocation = relocate_windows(&root);
    assert_eq!(relocation.rewritten.len(), scripts);
    let zip = dir.path().join("anymatix-windows.zip");
    let summary = xtask::stages::archive::archive_with(
        &root,
        "anymatix",
        &zip,
        xtask::stages::archive::Settings::default(),
        &mut |_, _| {},
    )
    .unwrap();

    // What reviewers read: the rules' figures, the linkage check, what it needs of Windows,
    // the relocation, and the kept tree: per package its files and bytes, every native binary.
    let mut lines = vec!["# removed by each rule (files, bytes)".to_string()];
    for rule in &report.rules {
        lines.push(format!(
            "{} {} {}",
            rule.rule, rule.removed.files, rule.removed.bytes
        ));
    }
    lines.push(format!(
        "# native libraries: {} binaries; found {} in the tree, {} from the system, {} by name; {} missing",
        linkage.binaries,
        linkage.resolved_in_tree,
        linkage.resolved_by_system,
        linkage.resolved_by_name,
        linkage.missing.len()
    ));
    for line in linkage.requirement_lines() {
        // The stand-ins' own headers vary with the compiler; the wheels' do not.
        if !line.contains("python/python") {
            lines.push(format!("# needs {line}"));
        }
    }
    lines.push("# relocated".to_string());
    let mut rewritten = relocation.rewritten.clone();
    rewritten.sort();
    lines.extend(rewritten.into_iter().map(|r| format!("rewritten {r}")));
    for r in &relocation.remaining {
        lines.push(format!("listed {} ({})", r.path, r.kind));
    }
    lines.push(format!("# zipped: {} entries", summary.entries));
    lines.push("# kept: files and bytes per package; each native binary".to_string());
    let site_prefix = "python/Lib/site-packages/";
    let mut packages: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut natives = Vec::new();
    for kept in &report.kept_files {
        if let Some(rest) = kept.path.strip_prefix(site_prefix) {
            let package = rest.split('/').next().unwrap().to_string();
            let entry = packages.entry(package).or_default();
            entry.0 += 1;
            entry.1 += kept.size;
            let lower = kept.path.to_lowercase();
            if lower.ends_with(".dll") || lower.ends_with(".pyd") {
                natives.push(kept.path.clone());
            }
        }
    }
    for (package, (files, bytes)) in packages {
        lines.push(format!("package {package}: {files} files, {bytes} bytes"));
    }
    natives.sort();
    lines.extend(natives.into_iter().map(|n| format!("native {n}")));
    insta::with_settings!({
        snapshot_path => "../../../snapshots",
        prepend_module_to_snapshot => false,
        snapshot_suffix => "windows-x86_64",
        omit_expression => true,
    }, {
        insta::assert_snapshot!("real_wheels_tree", lines.join("\n") + "\n");
    });
}
