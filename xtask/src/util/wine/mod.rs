//! Windows programs on Linux, through Debian's Wine 8.0, with the test-only adapters its gaps need
//! (the files beside this one; none is ever put in a zip, and a real Windows needs none):
//! `wine8fix.dll` redirects the functions Wine only stubs (C99 complex math of ucrtbase, which
//! numpy and torch import; `propsys.VariantToString`, which CPython's `_wmi` calls;
//! `GetNumaNodeProcessorMaskEx`, on which torch's OpenMP aborts), loaded by `boot.py` before
//! python runs what it was asked; `bcryptprimitives.dll` gives Rust-built modules (pydantic_core,
//! safetensors, tokenizers, blake3) the `ProcessPrng` Wine 8.0 lacks, from the Wine prefix's
//! `system32`. Also: python's standard streams must be pipes ("init_sys_streams: Invalid handle"
//! on a plain file), and `KMP_AFFINITY=disabled`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::util::digest;
use crate::util::process::{self, Command};
use crate::util::progress::Reporter;

const WINE8FIX_C: &str = include_str!("wine8fix.c");
const BCRYPT_C: &str = include_str!("bcryptprimitives.c");
const BCRYPT_DEF: &str = include_str!("bcryptprimitives.def");
const BOOT_PY: &str = include_str!("boot.py");

/// Wine with its own prefix and the adapters, under `dir` (kept across builds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wine {
    pub dir: PathBuf,
}

impl Wine {
    pub fn prefix(&self) -> PathBuf {
        self.dir.join("prefix")
    }

    /// The adapter's folder, named by the digest of its sources (a changed adapter is rebuilt).
    pub fn adapter(&self) -> PathBuf {
        let sources = [WINE8FIX_C, BCRYPT_C, BCRYPT_DEF, BOOT_PY].concat();
        let digest = digest::sha256_hex(sources.as_bytes());
        self.dir.join(format!("adapter-{}", &digest[..12]))
    }

    pub fn boot_py(&self) -> PathBuf {
        self.adapter().join("boot.py")
    }

    /// The variables every program under this Wine gets.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "WINEPREFIX".into(),
                self.prefix().to_string_lossy().into_owned(),
            ),
            ("WINEDEBUG".into(), "-all".into()),
            // No window system: Wine's explorer must not try to start one.
            ("DISPLAY".into(), String::new()),
            ("WAYLAND_DISPLAY".into(), String::new()),
            // torch's OpenMP asks for processor affinity through NUMA calls Wine lacks.
            ("KMP_AFFINITY".into(), "disabled".into()),
        ]
    }

    /// Builds the adapters (mingw-w64) and makes the Wine prefix, once per machine and adapter.
    pub fn prepare(&self, reporter: &Reporter) -> Result<()> {
        static PREPARED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
        let mut prepared = PREPARED.lock().expect("wine lock");
        if prepared.contains(&self.dir) {
            return Ok(());
        }
        process::require_tool(
            "wine",
            "a Windows build made on Linux runs its python under Wine: apt-get install wine",
        )?;
        let adapter = self.adapter();
        if !adapter.join("done").is_file() {
            build_adapter(&adapter)?;
        }
        let system32 = self.prefix().join("drive_c/windows/system32");
        if !system32.join("kernel32.dll").is_file() {
            reporter.note(format!(
                "making a Wine prefix in {}",
                self.prefix().display()
            ));
            let mut boot = std::process::Command::new("wine");
            boot.args(["wineboot", "--init"]);
            for (key, value) in self.env() {
                boot.env(key, value);
            }
            let out = boot.output().context("cannot run wineboot")?;
            if !out.status.success() || !system32.join("kernel32.dll").is_file() {
                bail!(
                    "wineboot could not make the Wine prefix {}: {}",
                    self.prefix().display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let bcrypt = system32.join("bcryptprimitives.dll");
        let built = adapter.join("bcryptprimitives.dll");
        if fs_err::read(&bcrypt).ok() != Some(fs_err::read(&built)?) {
            fs_err::copy(&built, &bcrypt)?;
        }
        prepared.push(self.dir.clone());
        Ok(())
    }

    /// `wine <program>`, with this Wine's variables.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("wine").arg(program.to_string_lossy());
        cmd.env.extend(self.env());
        cmd
    }

    /// Test-only, for an unpacked copy whose pythons are started by its own programs (a `.bat`,
    /// a launcher, ComfyUI-Manager's pip), not through `boot.py`: `python/sitecustomize.py`
    /// loads the adapter at every start. Outside site-packages, so no package tool counts it;
    /// never in a zip.
    pub fn adapt_copy(&self, root: &Path) -> Result<()> {
        let dll = self.adapter().join("wine8fix.dll");
        let windows_path = format!("Z:{}", dll.display()).replace('/', "\\");
        let text = format!(
            "# Test-only Wine adapter (see xtask/src/util/wine): never in a zip.\n\
             import ctypes\nctypes.WinDLL(r\"{windows_path}\").wine8fix_apply()\n"
        );
        fs_err::write(root.join("python/sitecustomize.py"), text)?;
        Ok(())
    }

    /// A path as a Windows program here prints it (`Z:\work\x`) on this machine (`/work/x`).
    pub fn host_path(printed: &str) -> PathBuf {
        let unix = printed.replace('\\', "/");
        match unix.get(..2) {
            Some(drive) if drive.eq_ignore_ascii_case("z:") => PathBuf::from(&unix[2..]),
            _ => PathBuf::from(unix),
        }
    }
}

fn build_adapter(adapter: &Path) -> Result<()> {
    let gcc = "x86_64-w64-mingw32-gcc";
    process::require_tool(
        gcc,
        "the Wine adapters are built with mingw-w64: apt-get install gcc-mingw-w64-x86-64",
    )?;
    let partial = adapter.with_extension("partial");
    if partial.exists() {
        fs_err::remove_dir_all(&partial)?;
    }
    fs_err::create_dir_all(&partial)?;
    for (name, text) in [
        ("wine8fix.c", WINE8FIX_C),
        ("bcryptprimitives.c", BCRYPT_C),
        ("bcryptprimitives.def", BCRYPT_DEF),
        ("boot.py", BOOT_PY),
    ] {
        fs_err::write(partial.join(name), text)?;
    }
    let builds: [&[&str]; 2] = [
        &[
            "-O2",
            "-shared",
            "-static-libgcc",
            "-o",
            "wine8fix.dll",
            "wine8fix.c",
            "-loleaut32",
        ],
        &[
            "-O2",
            "-shared",
            "-nostdlib",
            "-Wl,--entry,DllMain",
            "-o",
            "bcryptprimitives.dll",
            "bcryptprimitives.c",
            "bcryptprimitives.def",
            "-ladvapi32",
            "-lkernel32",
        ],
    ];
    for args in builds {
        let out = std::process::Command::new(gcc)
            .args(args)
            .current_dir(&partial)
            .output()
            .with_context(|| format!("cannot run {gcc}"))?;
        if !out.status.success() {
            bail!(
                "{gcc} {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    fs_err::write(partial.join("done"), "")?;
    if adapter.exists() {
        fs_err::remove_dir_all(adapter)?;
    }
    fs_err::rename(&partial, adapter)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_windows_paths_map_back_to_this_machine() {
        assert_eq!(
            Wine::host_path(r"Z:\work\a b\x.py"),
            Path::new("/work/a b/x.py")
        );
        assert_eq!(Wine::host_path("z:/w/x"), Path::new("/w/x"));
    }
}
