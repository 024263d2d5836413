//! pip's Windows launchers: every `Scripts\foo.exe` pip writes is a distlib launcher stub
//! (`t64.exe`, `w64.exe` for GUI scripts, `t64-arm.exe`, …), then a `#!` line naming the python
//! to run, then a zip archive holding `__main__.py`. pip writes the build machine's absolute
//! python there, so the launcher fails anywhere else. distlib's launcher (since 0.3.0) resolves
//! `#!<launcher_dir>\…` against its own folder, and `#!<launcher_dir>\"…"` for a path with
//! spaces: rewriting the line to that makes the launcher relocatable. The archive's offsets are
//! relative to its own start, so it stays valid wherever it now begins.

use anyhow::{bail, Result};
use goblin::pe::PE;

/// The launcher reads the `#!` line into buffers of `MAX_PATH` characters.
pub const MAX_PATH: usize = 260;

/// The prefix distlib's launcher replaces with its own folder.
pub const LAUNCHER_DIR: &str = "<launcher_dir>";

/// A launcher, in its three parts.
#[derive(Debug)]
pub struct Launcher<'a> {
    /// The launcher program itself.
    pub stub: &'a [u8],
    /// The interpreter the `#!` line names, as written (quotes included).
    pub interpreter: &'a str,
    /// What ends the `#!` line (pip writes `\n\r\n` on Windows).
    pub line_end: &'a [u8],
    /// The zip with `__main__.py`.
    pub archive: &'a [u8],
    /// A GUI launcher (`w64.exe`), which runs `pythonw.exe`.
    pub gui: bool,
}

/// Reads `bytes` as a launcher: `Ok(None)` when it is not one at all (a PE file with no archive
/// after it, or not a PE file), an error when it looks like one but cannot be taken apart.
pub fn parse(bytes: &[u8]) -> Result<Option<Launcher<'_>>> {
    if !bytes.starts_with(b"MZ") {
        return Ok(None);
    }
    let Some(archive_start) = archive_start(bytes) else {
        return Ok(None);
    };
    let Ok(pe) = PE::parse(bytes) else {
        return Ok(None);
    };
    let stub_end = pe
        .sections
        .iter()
        .map(|s| s.pointer_to_raw_data as usize + s.size_of_raw_data as usize)
        .max()
        .unwrap_or(0);
    if stub_end == 0 || stub_end > archive_start {
        bail!("its program and its archive overlap");
    }
    let line = &bytes[stub_end..archive_start];
    let Some(line) = line.strip_prefix(b"#!") else {
        bail!("no #! line between the launcher program and its archive");
    };
    let text_end = line
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    let (interpreter, line_end) = line.split_at(text_end);
    if line_end.iter().any(|&b| b != b'\r' && b != b'\n') {
        bail!("more than one line between the launcher program and its archive");
    }
    let Ok(interpreter) = std::str::from_utf8(interpreter) else {
        bail!("its #! line is not UTF-8");
    };
    const WINDOWS_GUI: u16 = 2;
    let gui = pe
        .header
        .optional_header
        .is_some_and(|h| h.windows_fields.subsystem == WINDOWS_GUI);
    Ok(Some(Launcher {
        stub: &bytes[..stub_end],
        interpreter: interpreter.trim(),
        line_end: if line_end.is_empty() {
            b"\r\n"
        } else {
            line_end
        },
        archive: &bytes[archive_start..],
        gui,
    }))
}

/// Where an appended zip begins: its end-of-central-directory record gives the central
/// directory's size and offset relative to the zip's own start.
fn archive_start(bytes: &[u8]) -> Option<usize> {
    const EOCD: &[u8] = b"PK\x05\x06";
    let search_from = bytes.len().saturating_sub(22 + 0xffff);
    let at = bytes[search_from..]
        .windows(4)
        .rposition(|w| w == EOCD)
        .map(|i| i + search_from)?;
    let field = |offset: usize, size: usize| -> Option<usize> {
        let b = bytes.get(at + offset..at + offset + size)?;
        Some(
            b.iter()
                .rev()
                .fold(0usize, |n, &byte| (n << 8) | byte as usize),
        )
    };
    let (cd_size, cd_offset, comment) = (field(12, 4)?, field(16, 4)?, field(20, 2)?);
    if at + 22 + comment != bytes.len() {
        return None;
    }
    at.checked_sub(cd_size)?.checked_sub(cd_offset)
}

/// The `#!` interpreter that runs `target` from a launcher, both given relative to the tree with
/// `/` separators: `<launcher_dir>\..\python.exe`, quoted after the prefix when the path has a
/// space. A GUI launcher runs `pythonw.exe` where its target is `python.exe`.
pub fn relative_interpreter(launcher: &str, target: &str, gui: bool) -> Result<String> {
    let mut target = target.to_string();
    if gui {
        if let Some(dir) = target.strip_suffix("python.exe") {
            if dir.is_empty() || dir.ends_with('/') {
                target = format!("{dir}pythonw.exe");
            }
        }
    }
    let relative = super::relative_path(launcher, &target).replace('/', "\\");
    let shebang = if relative.contains(' ') {
        format!("{LAUNCHER_DIR}\\\"{relative}\"")
    } else {
        format!("{LAUNCHER_DIR}\\{relative}")
    };
    // The launcher swaps the prefix for its folder, then needs the whole path within MAX_PATH.
    if shebang.len() + 2 > MAX_PATH {
        bail!(
            "its python would be {} characters away, past Windows' MAX_PATH ({MAX_PATH}) that the launcher reads",
            shebang.len()
        );
    }
    Ok(shebang)
}

/// The launcher with `interpreter` in its `#!` line, its program and archive unchanged.
pub fn with_interpreter(launcher: &Launcher, interpreter: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(launcher.stub.len() + launcher.archive.len() + 64);
    out.extend_from_slice(launcher.stub);
    out.extend_from_slice(b"#!");
    out.extend_from_slice(interpreter.as_bytes());
    out.extend_from_slice(launcher.line_end);
    out.extend_from_slice(launcher.archive);
    out
}

/// A new console (or GUI) script launcher, as pip's distlib writes one on Windows: the stub,
/// `#!<interpreter>` ended by `\n\r\n`, and a zip holding `__main__.py`, here stored with a fixed
/// time so the same script gives the same bytes.
pub fn new_launcher(stub: &[u8], interpreter: &str, main_py: &str) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut archive = Vec::new();
    {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(&mut archive));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default());
        zip.start_file("__main__.py", options)?;
        zip.write_all(main_py.as_bytes())?;
        zip.finish()?;
    }
    let mut bytes = stub.to_vec();
    bytes.extend_from_slice(format!("#!{interpreter}\n\r\n").as_bytes());
    bytes.extend_from_slice(&archive);
    Ok(bytes)
}

/// The `__main__.py` pip writes for an entry point `module:attr` (`attr` may be dotted).
pub fn entry_point_main(module: &str, attr: &str) -> String {
    let import_name = attr.split('.').next().unwrap_or(attr);
    format!(
        "# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import {import_name}\n\
         if __name__ == '__main__':\n    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n    \
         sys.exit({attr}())\n"
    )
}

/// The interpreter as a path: quotes removed, `\` as `/`.
pub fn interpreter_path(interpreter: &str) -> String {
    interpreter.trim().trim_matches('"').replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interpreter_is_relative_to_the_launcher_and_quoted_after_the_prefix() {
        assert_eq!(
            relative_interpreter("python/Scripts/pip.exe", "python/python.exe", false).unwrap(),
            "<launcher_dir>\\..\\python.exe"
        );
        assert_eq!(
            relative_interpreter("python/Scripts/idle.exe", "python/python.exe", true).unwrap(),
            "<launcher_dir>\\..\\pythonw.exe"
        );
        assert_eq!(
            relative_interpreter("my tools/Scripts/x.exe", "py dir/python.exe", false).unwrap(),
            "<launcher_dir>\\\"..\\..\\py dir\\python.exe\""
        );
        let deep = format!("python/{}/python.exe", "d/".repeat(130));
        let err = relative_interpreter("python/Scripts/x.exe", &deep, false).unwrap_err();
        assert!(err.to_string().contains("MAX_PATH"), "{err}");
    }

    #[test]
    fn what_is_not_a_launcher_is_told_apart() {
        assert!(parse(b"#!/usr/bin/env python\n").unwrap().is_none());
        assert!(parse(b"MZ not really a program").unwrap().is_none());
        assert_eq!(
            interpreter_path("\"C:\\b c\\python.exe\""),
            "C:/b c/python.exe"
        );
    }
}
