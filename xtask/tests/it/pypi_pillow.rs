//! The one test that needs the network: real Pillow from PyPI, whose vendored native libraries
//! (`pillow.libs/` on Linux) must survive pruning for the PNG and JPEG round trip in verify.
//! Miniforge is still the loopback stand-in; only pip reaches PyPI.

use std::process::Command;

use support::{stderr, world, TAG};

#[test]
#[ignore = "needs PyPI; run with `cargo test -- --include-ignored` (.ci/run does)"]
fn real_pillow_keeps_its_native_libraries() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("distribution.yml");
    std::fs::write(
        &manifest,
        format!(
            "installer:\n  release: {TAG}\n  base_url: {}\npython_packages: [pillow]\nsmoke:\n  imports: [PIL]\n",
            w.base_url(&support::client_name(dir.path()))
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut cmd = Command::new(support::xtask_binary());
    cmd.args([
        "portable",
        "--manifest",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .args(["--version", "0.0.0-pypi"]);
    support::pypi_env(&mut cmd);
    let result = cmd.output().unwrap();
    let text = stderr(&result);
    assert!(result.status.success(), "{text}");
    // The build's own log (stage durations, prune figures), shown with --nocapture.
    eprintln!("{text}");
    assert!(
        text.contains("ok: Pillow saves and reloads a PNG and a JPEG"),
        "{text}"
    );

    let zip = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "zip"))
        .expect("a zip");
    let archive = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .collect();
    let vendored: Vec<&String> = names
        .iter()
        .filter(|n| {
            (n.contains("/site-packages/pillow.libs/") || n.contains("/PIL/.dylibs/"))
                && (n.contains(".so") || n.ends_with(".dylib"))
        })
        .collect();
    if cfg!(target_os = "linux") {
        assert!(
            vendored.iter().any(|n| n.contains("libjpeg")),
            "pillow.libs must keep libjpeg: {vendored:?}"
        );
    }
    assert!(
        names.iter().any(|n| n.contains("/PIL/_imaging.")),
        "Pillow's extension module"
    );
    assert!(
        names
            .iter()
            .any(|n| n.contains("/site-packages/pillow-") && n.contains(".dist-info/METADATA")),
        "dist-info is kept"
    );
}
