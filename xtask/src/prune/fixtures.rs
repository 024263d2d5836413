//! Real native binaries for tests, made on the spot: ELF shared libraries by gcc, PE DLLs by
//! mingw-w64's gcc, and Mach-O dylibs written byte by byte (no macOS toolchain runs here). Each
//! records the libraries it needs exactly as its platform's linker would.

use std::path::Path;
use std::process::Command;

/// Builds an ELF shared library at `tree/rel` with `soname`, needing each of `needs` (already
/// built, found in `lib_dirs` relative to the tree) and with `runpath` as its RUNPATH.
pub fn elf(tree: &Path, rel: &str, needs: &[(&str, &str)], runpath: Option<&str>) {
    let out = tree.join(rel);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("lib.c");
    std::fs::write(&source, "int anymatix_fixture(void) { return 42; }\n").unwrap();
    let soname = out.file_name().unwrap().to_str().unwrap();
    let mut cmd = Command::new("gcc");
    cmd.args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&source)
        .arg(format!("-Wl,-soname,{soname}"))
        .arg("-Wl,--no-as-needed");
    for (dir, lib) in needs {
        cmd.arg(format!("-L{}", tree.join(dir).display()))
            .arg(format!("-l:{lib}"));
    }
    if let Some(runpath) = runpath {
        cmd.arg(format!("-Wl,-rpath,{runpath}"))
            .arg("-Wl,--enable-new-dtags");
    }
    run(&mut cmd, "gcc (Debian: apt-get install gcc)");
}

/// Builds a PE DLL at `tree/rel` importing each of `needs` (already built DLLs, by tree path).
pub fn pe(tree: &Path, rel: &str, needs: &[&str]) {
    let out = tree.join(rel);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("lib.c");
    // The PE linker records an import only for a DLL whose symbols are used: call one of each.
    let symbol = |rel: &str| format!("fixture_{}", stem(rel));
    let mut code = String::new();
    for dll in needs {
        code.push_str(&format!(
            "__declspec(dllimport) int {}(void);\n",
            symbol(dll)
        ));
    }
    let calls: Vec<String> = needs
        .iter()
        .map(|dll| format!("{}()", symbol(dll)))
        .chain(["0".into()])
        .collect();
    code.push_str(&format!(
        "__declspec(dllexport) int {}(void) {{ return {}; }}\n",
        symbol(rel),
        calls.join(" + ")
    ));
    std::fs::write(&source, code).unwrap();
    let mut cmd = Command::new("x86_64-w64-mingw32-gcc");
    cmd.args(["-shared", "-o"]).arg(&out).arg(&source);
    for dll in needs {
        // mingw links against a DLL directly, recording its file name as the import.
        cmd.arg(tree.join(dll));
    }
    run(
        &mut cmd,
        "x86_64-w64-mingw32-gcc (Debian: apt-get install gcc-mingw-w64-x86-64)",
    );
}

fn stem(rel: &str) -> String {
    let name = rel.rsplit('/').next().unwrap();
    let stem = name.split('.').next().unwrap();
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn run(cmd: &mut Command, tool: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("these tests build real binaries with {tool}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How a Mach-O binary refers to a library.
pub enum MachLink<'a> {
    Load(&'a str),
    Weak(&'a str),
}

/// Writes a Mach-O (arm64) dylib at `tree/rel` with the given links and LC_RPATHs: the header
/// and load commands that dyld reads, which is all the linkage check looks at.
pub fn macho(tree: &Path, rel: &str, links: &[MachLink], rpaths: &[&str]) {
    const LC_ID_DYLIB: u32 = 0xd;
    const LC_LOAD_DYLIB: u32 = 0xc;
    const LC_LOAD_WEAK_DYLIB: u32 = 0x18 | 0x8000_0000;
    const LC_RPATH: u32 = 0x1c | 0x8000_0000;
    fn padded(s: &str) -> Vec<u8> {
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        while bytes.len() % 8 != 0 {
            bytes.push(0);
        }
        bytes
    }
    fn dylib_command(cmd: u32, name: &str) -> Vec<u8> {
        let name = padded(name);
        let size = 24 + name.len() as u32;
        let mut c = Vec::new();
        for word in [cmd, size, 24, 2, 0x1_0000, 0x1_0000] {
            c.extend_from_slice(&word.to_le_bytes());
        }
        c.extend_from_slice(&name);
        c
    }
    let id = format!("@rpath/{}", rel.rsplit('/').next().unwrap());
    let mut commands = vec![dylib_command(LC_ID_DYLIB, &id)];
    for link in links {
        commands.push(match link {
            MachLink::Load(name) => dylib_command(LC_LOAD_DYLIB, name),
            MachLink::Weak(name) => dylib_command(LC_LOAD_WEAK_DYLIB, name),
        });
    }
    for rpath in rpaths {
        let path = padded(rpath);
        let mut c = Vec::new();
        for word in [LC_RPATH, 12 + path.len() as u32, 12] {
            c.extend_from_slice(&word.to_le_bytes());
        }
        c.extend_from_slice(&path);
        while c.len() % 8 != 0 {
            c.push(0);
        }
        let size = c.len() as u32;
        c[4..8].copy_from_slice(&size.to_le_bytes());
        commands.push(c);
    }
    let sizeofcmds: usize = commands.iter().map(Vec::len).sum();
    let mut bytes = Vec::new();
    // mach_header_64: magic, cputype arm64, cpusubtype, MH_DYLIB, ncmds, sizeofcmds, flags, reserved
    for word in [
        0xfeed_facf_u32,
        0x0100_000c,
        0,
        6,
        commands.len() as u32,
        sizeofcmds as u32,
        0,
        0,
    ] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    for c in commands {
        bytes.extend_from_slice(&c);
    }
    let out = tree.join(rel);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(out, bytes).unwrap();
}
