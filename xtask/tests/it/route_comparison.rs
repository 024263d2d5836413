//! The two routes side by side on this Linux machine: the world's distribution built natively
//! (the script stand-in runs, then the base's pip) and by the cross route forced on the host's
//! own platform (`--route cross`: a constructor `.sh` holding exactly what the script installed,
//! read and linked by the tool, the wheels installed by the tool). The zips hold the same files
//! with the same bytes, except what the README's "How their results differ" lists: each
//! difference must be one of those.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use support::{installer, shell_installer, world, TAG};
use xtask::model::platform::Platform;

/// Name → (mode, size, CRC-32) of every entry.
fn entries(zip: &Path) -> BTreeMap<String, (u32, u64, u32)> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    (0..archive.len())
        .map(|i| {
            let entry = archive.by_index(i).unwrap();
            (
                entry.name().unwrap().to_string(),
                (
                    entry.unix_mode().unwrap_or(0) & 0o7777,
                    entry.size(),
                    entry.crc32(),
                ),
            )
        })
        .collect()
}

/// The world's manifest for `release`, without conda packages: the native route's stand-in mamba
/// only records them, and the cross route's solve has its own test (`macos_cross`).
fn manifest(dir: &Path, release: &str) -> PathBuf {
    let path = world().manifest(dir, release, "");
    let text = std::fs::read_to_string(&path).unwrap();
    let without = text.replace("  linux-x86_64:\n    conda_packages: [zlib=1.3.1]\n", "");
    assert_ne!(
        text, without,
        "the world's manifest changed: adapt this test"
    );
    std::fs::write(&path, without.replace("platforms:\n", "platforms: {}\n")).unwrap();
    path
}

/// Why a path may differ between the routes, or None.
fn explained(name: &str) -> Option<&'static str> {
    if name == "anymatix/manifest.json" {
        return Some(
            "manifest.json: the installer each read (its tag and digest), the bases' prune figures",
        );
    }
    let base = "anymatix/python/";
    let rel = name.strip_prefix(base)?;
    if rel.starts_with("conda-meta/") || rel == ".condarc" {
        return Some("conda's own records: how each route laid the base out");
    }
    if rel == "_conda" {
        return Some("conda-standalone, which only the .sh carries");
    }
    if rel == "bin/mamba" || rel == "etc/" {
        return Some("the script stand-in's own mamba and empty etc/");
    }
    if rel == "pkgs/" {
        return Some("conda's package cache, emptied by the prune rule: the folder stays on the native route");
    }
    if rel.starts_with("bin/pip") {
        return Some("pip's console scripts: ensurepip's (the script stand-in) or conda's");
    }
    let site = rel.split_once("/site-packages/").map(|(_, s)| s)?;
    let top = site.split('/').next().unwrap_or_default();
    if [
        "pip",
        "setuptools",
        "_distutils_hack",
        "distutils-precedence.pth",
        "pkg_resources",
    ]
    .iter()
    .any(|p| top == *p || top.starts_with(&format!("{p}-")))
    {
        return Some(
            "pip and setuptools: installed by ensurepip (the script stand-in) or linked by conda",
        );
    }
    if top.ends_with(".dist-info")
        && ["REQUESTED", "direct_url.json", "RECORD"]
            .iter()
            .any(|f| site.ends_with(f))
    {
        return Some("what pip writes about an install (REQUESTED; RECORD lists it)");
    }
    None
}

#[test]
#[ignore = "needs patchelf and uv (.ci/run installs them)"]
fn the_routes_give_the_same_zip_but_for_what_conda_and_pip_write_about_themselves() {
    let w = world();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();

    // Native: the world's script stand-in runs, then the base's pip.
    let native_dir = dir.join("native");
    std::fs::create_dir_all(&native_dir).unwrap();
    let native_out = native_dir.join("out");
    let done = support::portable(&manifest(&native_dir, TAG), &native_out, "1.0.0", &[]);
    assert!(done.status.success(), "{}", support::stderr(&done));

    // Cross: what that script installs, as constructor's .sh of conda packages.
    let script = dir.join("installer.sh");
    std::fs::write(&script, installer::installer_script(&w.host, TAG)).unwrap();
    let installed = dir.join("installed");
    let ran = std::process::Command::new("bash")
        .arg(&script)
        .args(["-b", "-p"])
        .arg(&installed)
        .output()
        .unwrap();
    assert!(ran.status.success(), "{}", support::stderr(&ran));
    let bundled_dir = w
        .host
        .prefix
        .join(format!("lib/python{}/ensurepip/_bundled", w.host.version));
    let bundled: Vec<PathBuf> = std::fs::read_dir(&bundled_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    let packages = shell_installer::linux_x86_64_packages(&installed, &bundled);
    let tag = "26.3.2-7";
    let sh = shell_installer::shell_installer(
        shell_installer::READ_ONLY_BODY,
        &packages,
        "linux-64",
        tag,
        b"\x7fELF conda-standalone stand-in\n",
    );
    support::serve_installer(Platform::LinuxX86_64, tag, &sh);
    let cross_dir = dir.join("cross");
    std::fs::create_dir_all(&cross_dir).unwrap();
    let cross_out = cross_dir.join("out");
    let done = support::portable(
        &manifest(&cross_dir, tag),
        &cross_out,
        "1.0.0",
        &["--route", "cross"],
    );
    let log = support::stderr(&done);
    assert!(done.status.success(), "{log}");
    assert!(log.contains("Link the Miniforge base done"), "{log}");

    let zip = "anymatix-1.0.0-linux-x86_64.zip";
    let native = entries(&native_out.join(zip));
    let cross = entries(&cross_out.join(zip));
    let mut unexplained = Vec::new();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    let names: std::collections::BTreeSet<&String> = native.keys().chain(cross.keys()).collect();
    for name in names {
        let (a, b) = (native.get(name), cross.get(name));
        if a == b {
            continue;
        }
        match explained(name) {
            Some(why) => *reasons.entry(why).or_default() += 1,
            None => unexplained.push(format!("{name}: native {a:?}, cross {b:?}")),
        }
    }
    println!("differences by reason: {reasons:#?}");
    assert!(
        unexplained.is_empty(),
        "{} differences nothing explains:\n{}",
        unexplained.len(),
        unexplained.join("\n")
    );
    // The same wheels' files, scripts and bytecode on both routes.
    let same = native
        .iter()
        .filter(|(name, value)| cross.get(*name) == Some(value))
        .count();
    assert!(
        same * 10 > native.len() * 9,
        "{same} of {} the same",
        native.len()
    );
}
