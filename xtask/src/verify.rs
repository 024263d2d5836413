//! Proves the zip works where a user would put it: unpacked into a different folder (with a
//! space and non-ASCII characters in its path), its python runs each smoke check there.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};
use zip::ZipArchive;

use crate::platform::Platform;
use crate::progress::Reporter;

/// Saves and reloads a PNG and a JPEG: the imports alone would not load Pillow's codec libraries.
const PILLOW_ROUND_TRIP: &str = r#"
import os, sys
from PIL import Image
folder = sys.argv[1]
image = Image.new("RGB", (64, 48), (200, 30, 90))
for fmt, ext in (("PNG", "png"), ("JPEG", "jpg")):
    path = os.path.join(folder, "smoke." + ext)
    image.save(path, fmt)
    back = Image.open(path)
    back.load()
    assert back.format == fmt and back.size == (64, 48), (fmt, back.format, back.size)
print("PNG and JPEG round trip ok")
"#;

/// Unpacks `zip` into `unpack` (replacing what was there) and returns the unpacked `anymatix/`.
pub fn unpack(zip: &Path, unpack: &Path) -> Result<PathBuf> {
    if unpack.exists() {
        fs_err::remove_dir_all(unpack)?;
    }
    fs_err::create_dir_all(unpack)?;
    let file = fs_err::File::open(zip)?;
    ZipArchive::new(std::io::BufReader::new(file))
        .and_then(|mut archive| archive.extract(unpack))
        .with_context(|| format!("cannot unpack {} into {}", zip.display(), unpack.display()))?;
    let root = unpack.join("anymatix");
    if !root.is_dir() {
        bail!("{} has no anymatix/ folder at its root", zip.display());
    }
    Ok(root)
}

/// Runs the smoke checks with the unpacked environment's own python.
pub fn smoke(
    sh: &Shell,
    reporter: &Reporter,
    platform: Platform,
    root: &Path,
    imports: &[String],
) -> Result<()> {
    let python = root.join("python").join(platform.python_in_prefix());
    // Run from a neutral folder, and keep the build's environment variables out of the way.
    let scratch = tempfile::tempdir()?;
    let _cwd = sh.push_dir(scratch.path());
    let _user_site = sh.push_env("PYTHONNOUSERSITE", "1");
    let _quiet_pip = sh.push_env("PIP_DISABLE_PIP_VERSION_CHECK", "1");

    check(reporter, "python -m pip --version", || {
        cmd!(sh, "{python} -s -m pip --version")
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
    })?;
    for module in imports {
        let code = format!("import {module}");
        check(reporter, &code, || {
            cmd!(sh, "{python} -s -c {code}")
                .env_remove("PYTHONPATH")
                .env_remove("PYTHONHOME")
        })?;
        if module == "PIL" {
            let folder = scratch.path();
            check(
                reporter,
                "Pillow saves and reloads a PNG and a JPEG",
                || {
                    cmd!(sh, "{python} -s -c {PILLOW_ROUND_TRIP} {folder}")
                        .env_remove("PYTHONPATH")
                        .env_remove("PYTHONHOME")
                },
            )?;
        }
    }
    let helper = root.join(platform.helper_script_name());
    // `pip install --help` proves the script finds its python from wherever it is unpacked.
    let name = format!("{} --help", platform.helper_script_name());
    check(reporter, &name, || {
        let cmd = if platform.is_windows() {
            cmd!(sh, "cmd /C {helper} --help")
        } else {
            cmd!(sh, "{helper} --help")
        };
        cmd.ignore_stdout()
    })?;
    Ok(())
}

fn check<'a>(
    reporter: &Reporter,
    name: &str,
    make: impl FnOnce() -> xshell::Cmd<'a>,
) -> Result<()> {
    let output = make()
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("smoke check `{name}` could not start"))?;
    if !output.status.success() {
        bail!(
            "smoke check `{name}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    reporter.note(format!("ok: {name}"));
    Ok(())
}
