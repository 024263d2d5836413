//! Windows' own DLLs: a maintained, complete list per architecture (generated from delvewheel's,
//! with its source and version in the data file's header), so a kept binary that links any of
//! them needs nothing from the zip. The policy's `system_libraries.windows` adds what this list
//! leaves out on purpose: API sets, the C runtime, Direct3D 12, GPU drivers.

use std::collections::HashSet;
use std::sync::OnceLock;

use crate::model::platform::Platform;

/// Of x64 Windows 7 SP1 and every later version.
const X64: &str = include_str!("windows-dlls-x64.txt");

/// Whether `name` (any case) is a DLL that `platform`'s Windows provides itself.
pub fn is_windows_dll(platform: Platform, name: &str) -> bool {
    static X64_NAMES: OnceLock<HashSet<&'static str>> = OnceLock::new();
    let names = match platform {
        Platform::WindowsX86_64 => X64_NAMES.get_or_init(|| names(X64)),
        _ => return false,
    };
    names.contains(name.to_ascii_lowercase().as_str())
}

fn names(data: &'static str) -> HashSet<&'static str> {
    data.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The list's text, for the test that checks it is what its source says.
pub fn x64_list() -> &'static str {
    X64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_own_dlls_are_known_in_any_case_and_only_on_windows() {
        for dll in ["kernel32.dll", "IMAGEHLP.dll", "dbghelp.dll", "ws2_32.dll"] {
            assert!(is_windows_dll(Platform::WindowsX86_64, dll), "{dll}");
        }
        // The C runtime comes with Python or the redistributable, not with Windows 7.
        assert!(!is_windows_dll(Platform::WindowsX86_64, "vcruntime140.dll"));
        assert!(!is_windows_dll(Platform::WindowsX86_64, "zlib.dll"));
        assert!(!is_windows_dll(Platform::LinuxX86_64, "kernel32.dll"));
    }
}
