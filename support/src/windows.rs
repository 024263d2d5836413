//! Windows, as far as it runs here: pip's own launcher stubs (shipped inside pip on every OS),
//! launchers made from them as pip makes them, stand-in `python.exe`/`pythonw.exe` programs
//! built with mingw-w64 that record how they were started, and Debian's Wine to run them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The folder of pip's vendored distlib, which holds the launcher stubs (`t64.exe`, `w64.exe`,
/// `t64-arm.exe`, …).
pub fn distlib_dir() -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, pip._vendor.distlib as d; print(os.path.dirname(d.__file__))",
        ])
        .output()
        .expect("python3 with pip on PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A launcher stub's bytes, by file name.
pub fn stub(name: &str) -> Vec<u8> {
    std::fs::read(distlib_dir().join(name)).unwrap_or_else(|e| panic!("pip's {name}: {e}"))
}

/// A launcher as pip writes one on Windows: the stub, `#!<interpreter>` ended by `\n\r\n`
/// (distlib's `\n`, then `os.linesep`), and a zip holding `__main__.py`.
pub fn launcher(stub: &[u8], interpreter: &str, main_py: &str) -> Vec<u8> {
    let mut archive = Vec::new();
    {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(&mut archive));
        zip.start_file("__main__.py", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(main_py.as_bytes()).unwrap();
        zip.finish().unwrap();
    }
    let mut bytes = stub.to_vec();
    bytes.extend_from_slice(format!("#!{interpreter}\n\r\n").as_bytes());
    bytes.extend_from_slice(&archive);
    bytes
}

/// Builds a stand-in python at `path` (a console program, or a GUI one for `pythonw.exe`) that
/// writes its own path and its arguments, one a line, to `ran-<its name>.txt` beside itself.
pub fn stand_in_python(path: &Path, gui: bool) {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("python.c");
    std::fs::write(
        &source,
        r#"#include <stdio.h>
#include <string.h>
#include <windows.h>
int run(int argc, wchar_t **argv) {
    wchar_t self[MAX_PATH], log[MAX_PATH + 16];
    GetModuleFileNameW(NULL, self, MAX_PATH);
    wcscpy(log, self);
    wchar_t *slash = wcsrchr(log, L'\\');
    wcscpy(slash + 1, L"ran-");
    wcscat(log, wcsrchr(self, L'\\') + 1);
    wcscat(log, L".txt");
    FILE *f = _wfopen(log, L"w, ccs=UTF-8");
    if (!f) return 3;
    for (int i = 0; i < argc; i++) fwprintf(f, L"%ls\n", argv[i]);
    fclose(f);
    return 0;
}
int wmain(int argc, wchar_t **argv) { return run(argc, argv); }
int WINAPI wWinMain(HINSTANCE a, HINSTANCE b, PWSTR c, int d) {
    int argc; wchar_t **argv = CommandLineToArgvW(GetCommandLineW(), &argc);
    return run(argc, argv);
}
"#,
    )
    .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut cmd = Command::new("x86_64-w64-mingw32-gcc");
    cmd.arg("-municode").arg("-o").arg(path).arg(&source);
    if gui {
        cmd.arg("-mwindows");
    }
    cmd.arg("-lshell32");
    let out = cmd
        .output()
        .expect("x86_64-w64-mingw32-gcc (Debian: apt-get install gcc-mingw-w64-x86-64)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a stand-in python recorded of its last start, one entry a line; `None` if it did not run.
pub fn recorded_run(python: &Path) -> Option<Vec<String>> {
    let name = python.file_name().unwrap().to_string_lossy();
    let log = python.with_file_name(format!("ran-{name}.txt"));
    let text = std::fs::read_to_string(log).ok()?;
    Some(
        text.trim_start_matches('\u{feff}')
            .lines()
            .map(str::to_string)
            .collect(),
    )
}

/// Whether Debian's `wine` is installed.
pub fn wine_available() -> bool {
    Command::new("wine")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `None` where Wine runs here. Where it does not: a test fails in CI (which installs it) and
/// is skipped elsewhere with this reason.
pub fn wine_missing() -> Option<&'static str> {
    if wine_available() {
        return None;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have Debian's wine (.ci/run installs it)"
    );
    Some("skipped: Debian's wine is not installed (apt-get install wine)")
}

/// Runs `program` (a Windows program, or `cmd`) under Wine with a prefix kept beside the test
/// binaries, so it is made once. Returns how it ended and what it printed.
pub fn wine(program: &Path, args: &[&str], cwd: &Path) -> Output {
    let prefix = crate::xtask_binary().parent().unwrap().join("wineprefix");
    Command::new("wine")
        .arg(program)
        .args(args)
        .current_dir(cwd)
        .env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        // No window system here: Wine's explorer must not try to start one.
        .env("DISPLAY", "")
        .output()
        .expect("wine")
}

/// `Z:\…`: how Wine sees a path of this machine.
pub fn wine_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}
