//! Real native binaries for tests, made on the spot: ELF shared libraries by gcc, PE DLLs by
//! mingw-w64's gcc, and Mach-O dylibs written byte by byte (no macOS toolchain runs here). Each
//! records the libraries it needs exactly as its platform's linker would.

use std::path::Path;
use std::process::Command;

/// Builds an ELF shared library at `tree/rel` with `soname`, needing each of `needs` (already
/// built, found in `lib_dirs` relative to the tree) and with `runpath` as its RUNPATH.
pub fn elf(tree: &Path, rel: &str, needs: &[(&str, &str)], runpath: Option<&str>) {
    elf_from(
        tree,
        rel,
        "int anymatix_fixture(void) { return 42; }\n",
        needs,
        runpath,
    );
}

/// [`elf`] from C source of the test's own (to call a libc function of a known version).
pub fn elf_from(tree: &Path, rel: &str, code: &str, needs: &[(&str, &str)], runpath: Option<&str>) {
    let out = tree.join(rel);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("lib.c");
    std::fs::write(&source, code).unwrap();
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
    pe_for(tree, rel, needs, None);
}

/// [`pe`] with the Windows version its header declares (`major.minor` subsystem version).
pub fn pe_for(tree: &Path, rel: &str, needs: &[&str], windows: Option<(u32, u32)>) {
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
    if let Some((major, minor)) = windows {
        cmd.arg(format!("-Wl,--major-subsystem-version,{major}"))
            .arg(format!("-Wl,--minor-subsystem-version,{minor}"));
    }
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
/// and load commands that dyld reads, which is all the linkage check looks at. It says it runs on
/// macOS 11.0 and later, as arm64 binaries do.
pub fn macho(tree: &Path, rel: &str, links: &[MachLink], rpaths: &[&str]) {
    macho_for(tree, rel, links, rpaths, (11, 0));
}

/// [`macho`] for macOS `minos` (major, minor) and later (`LC_BUILD_VERSION`).
pub fn macho_for(tree: &Path, rel: &str, links: &[MachLink], rpaths: &[&str], minos: (u32, u32)) {
    const LC_BUILD_VERSION: u32 = 0x32;
    const PLATFORM_MACOS: u32 = 1;
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
    let packed = (minos.0 << 16) | (minos.1 << 8);
    let mut build = Vec::new();
    // cmd, cmdsize, platform, minos, sdk, ntools
    for word in [LC_BUILD_VERSION, 24, PLATFORM_MACOS, packed, packed, 0] {
        build.extend_from_slice(&word.to_le_bytes());
    }
    commands.push(build);
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
    std::fs::write(&out, bytes).unwrap();
    // As on macOS, binaries and dylibs are executable.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A tree modelled on a real `anymatix/` for `platform`: the Miniforge prefix in its platform's
/// layout, pip-installed packages with vendored native libraries that need each other, repos with
/// `.git`, and something for every prune rule to remove and every keep pattern to save.
pub fn platform_tree(platform: xtask::model::platform::Platform, tree: &Path) {
    use xtask::model::platform::Os;
    let os = platform.os();
    let (stdlib, site) = match os {
        Os::Windows => (
            "python/Lib".to_string(),
            "python/Lib/site-packages".to_string(),
        ),
        _ => (
            "python/lib/python3.12".to_string(),
            "python/lib/python3.12/site-packages".to_string(),
        ),
    };

    // Repos and the helper script.
    crate::write_file(tree, "ComfyUI/main.py", "print('ComfyUI')\n");
    crate::write_file(tree, "ComfyUI/.git/HEAD", "ref: refs/heads/master\n");
    crate::write_file(tree, "ComfyUI/tests/test_main.py", "def test(): pass\n");
    crate::write_file(
        tree,
        "ComfyUI/custom_nodes/ComfyUI-Manager/__init__.py",
        "\n",
    );
    crate::write_file(
        tree,
        "ComfyUI/custom_nodes/ComfyUI-Manager/.git/HEAD",
        "ref: refs/heads/main\n",
    );
    crate::write_file(tree, "ComfyUI/web/app.js", "console.log(1)\n");
    crate::write_file(tree, "ComfyUI/web/app.js.map", "{\"version\":3}\n");

    // The stdlib: modules to drop, and unittest, which PyTorch imports.
    crate::write_file(tree, &format!("{stdlib}/os.py"), "# os\n");
    crate::write_file(
        tree,
        &format!("{stdlib}/unittest/__init__.py"),
        "# unittest\n",
    );
    crate::write_file(
        tree,
        &format!("{stdlib}/__pycache__/os.cpython-312.pyc"),
        "bytecode",
    );
    for module in ["idlelib", "turtledemo", "tkinter", "ensurepip", "lib2to3"] {
        crate::write_file(
            tree,
            &format!("{stdlib}/{module}/__init__.py"),
            "# dropped\n",
        );
    }
    crate::write_file(
        tree,
        &format!("{stdlib}/test/test_os.py"),
        "# the stdlib's own tests\n",
    );

    // conda's bookkeeping.
    crate::write_file(tree, "python/conda-meta/history", "==> 2026-01-01 <==\n");
    crate::write_file(tree, "python/conda-meta/python-3.12.0-0.json", "{}\n");
    crate::write_file(tree, "python/pkgs/python-3.12.0-0/info/index.json", "{}\n");
    crate::write_file(tree, "python/pkgs/urls.txt", "\n");
    std::fs::create_dir_all(tree.join("python/envs")).unwrap();
    crate::write_file(tree, "python/envs/.conda_envs_dir_test", "");

    // Packages.
    crate::write_file(tree, &format!("{site}/PIL/__init__.py"), "# Pillow\n");
    crate::write_file(
        tree,
        &format!("{site}/pillow-11.0.0.dist-info/METADATA"),
        "Name: pillow\n",
    );
    crate::write_file(tree, &format!("{site}/numpy/__init__.py"), "# numpy\n");
    crate::write_file(
        tree,
        &format!("{site}/numpy/testing/__init__.py"),
        "# runtime code, kept\n",
    );
    crate::write_file(
        tree,
        &format!("{site}/numpy/_core/tests/test_multiarray.py"),
        "# removed\n",
    );
    crate::write_file(
        tree,
        &format!("{site}/numpy/_core/include/numpy/ndarraytypes.h"),
        "/* header */\n",
    );
    crate::write_file(
        tree,
        &format!("{site}/numpy/__pycache__/__init__.cpython-312.pyc"),
        "bytecode",
    );
    crate::write_file(tree, &format!("{site}/torch/__init__.py"), "# torch\n");
    crate::write_file(
        tree,
        &format!("{site}/torch/include/ATen/ATen.h"),
        "/* kept: cpp_extension */\n",
    );
    crate::write_file(
        tree,
        &format!("{site}/torch/testing/__init__.py"),
        "# runtime code, kept\n",
    );
    crate::write_file(
        tree,
        &format!("{site}/torch/utils/data/examples/readme.txt"),
        "examples\n",
    );
    crate::write_file(
        tree,
        &format!("{site}/transformers/__init__.py"),
        "# transformers\n",
    );
    crate::write_file(
        tree,
        &format!("{site}/transformers-4.50.0.dist-info/METADATA"),
        "Name: transformers\n",
    );

    match os {
        Os::Linux => {
            crate::write_file(
                tree,
                "python/include/python3.12/Python.h",
                "/* kept: Triton compiles against it */\n",
            );
            crate::write_file(tree, "python/share/man/man1/python3.1", ".TH PYTHON\n");
            elf(tree, "python/lib/libz.so.1", &[], None);
            crate::write_file(tree, "python/lib/libz.a", "!<arch>\n");
            elf(
                tree,
                "python/lib/libpython3.12.so.1.0",
                &[("python/lib", "libz.so.1")],
                Some("$ORIGIN"),
            );
            elf(
                tree,
                "python/bin/python3.12",
                &[("python/lib", "libpython3.12.so.1.0")],
                Some("$ORIGIN/../lib"),
            );
            elf(
                tree,
                &format!("{stdlib}/lib-dynload/zlib.cpython-312-x86_64-linux-gnu.so"),
                &[("python/lib", "libz.so.1")],
                Some("$ORIGIN/../.."),
            );
            elf(
                tree,
                &format!("{site}/pillow.libs/libjpeg-45e70d75.so.62.4.0"),
                &[],
                None,
            );
            elf(
                tree,
                &format!("{site}/PIL/_imaging.cpython-312-x86_64-linux-gnu.so"),
                &[(&format!("{site}/pillow.libs"), "libjpeg-45e70d75.so.62.4.0")],
                Some("$ORIGIN/../pillow.libs"),
            );
            elf(
                tree,
                &format!("{site}/numpy.libs/libscipy_openblas64_-ff651d7f.so"),
                &[],
                None,
            );
            elf(
                tree,
                &format!("{site}/numpy/_core/_multiarray_umath.cpython-312-x86_64-linux-gnu.so"),
                &[(
                    &format!("{site}/numpy.libs"),
                    "libscipy_openblas64_-ff651d7f.so",
                )],
                Some("$ORIGIN/../../numpy.libs"),
            );
            elf(tree, &format!("{site}/torch/lib/libc10.so"), &[], None);
            elf(
                tree,
                &format!("{site}/torch/_C.cpython-312-x86_64-linux-gnu.so"),
                &[(&format!("{site}/torch/lib"), "libc10.so")],
                Some("$ORIGIN/lib"),
            );
        }
        Os::Macos => {
            let system = MachLink::Load("/usr/lib/libSystem.B.dylib");
            crate::write_file(
                tree,
                "python/include/python3.12/Python.h",
                "/* kept: Triton compiles against it */\n",
            );
            crate::write_file(tree, "python/share/man/man1/python3.1", ".TH PYTHON\n");
            macho(
                tree,
                "python/lib/libz.1.dylib",
                &[MachLink::Load("/usr/lib/libSystem.B.dylib")],
                &[],
            );
            crate::write_file(tree, "python/lib/libz.a", "!<arch>\n");
            macho(
                tree,
                "python/lib/libpython3.12.dylib",
                &[
                    MachLink::Load("@rpath/libz.1.dylib"),
                    MachLink::Load("/usr/lib/libSystem.B.dylib"),
                ],
                &["@loader_path"],
            );
            macho(
                tree,
                "python/bin/python3.12",
                &[MachLink::Load("@rpath/libpython3.12.dylib"), system],
                &["@loader_path/../lib"],
            );
            macho(
                tree,
                &format!("{stdlib}/lib-dynload/zlib.cpython-312-darwin.so"),
                &[MachLink::Load("@rpath/libz.1.dylib")],
                &["@loader_path/../.."],
            );
            macho(
                tree,
                &format!("{site}/PIL/.dylibs/libjpeg.62.4.0.dylib"),
                &[MachLink::Load("/usr/lib/libSystem.B.dylib")],
                &[],
            );
            macho(
                tree,
                &format!("{site}/PIL/_imaging.cpython-312-darwin.so"),
                &[
                    MachLink::Load("@loader_path/.dylibs/libjpeg.62.4.0.dylib"),
                    MachLink::Load("/usr/lib/libSystem.B.dylib"),
                ],
                &[],
            );
            macho(
                tree,
                &format!("{site}/numpy/.dylibs/libscipy_openblas64_.dylib"),
                &[MachLink::Load("/usr/lib/libSystem.B.dylib")],
                &[],
            );
            macho(
                tree,
                &format!("{site}/numpy/_core/_multiarray_umath.cpython-312-darwin.so"),
                &[
                    MachLink::Load("@loader_path/../.dylibs/libscipy_openblas64_.dylib"),
                    MachLink::Weak("@rpath/libgfortran.5.dylib"),
                ],
                &[],
            );
            macho(
                tree,
                &format!("{site}/torch/lib/libc10.dylib"),
                &[MachLink::Load("/usr/lib/libc++.1.dylib")],
                &[],
            );
            macho(
                tree,
                &format!("{site}/torch/_C.cpython-312-darwin.so"),
                &[MachLink::Load("@rpath/libc10.dylib")],
                &["@loader_path/lib"],
            );
        }
        Os::Windows => {
            crate::write_file(
                tree,
                "python/Include/Python.h",
                "/* kept: Triton compiles against it */\n",
            );
            crate::write_file(
                tree,
                "python/libs/python312.lib",
                "import library, kept: Triton links it\n",
            );
            crate::write_file(
                tree,
                "python/Library/include/openssl/ssl.h",
                "/* removed */\n",
            );
            crate::write_file(tree, "python/Library/share/doc/openssl/README", "docs\n");
            crate::write_file(tree, "python/Library/lib/zlibstatic.a", "!<arch>\n");
            pe(tree, "python/Library/bin/zlib.dll", &[]);
            pe(
                tree,
                "python/python312.dll",
                &["python/Library/bin/zlib.dll"],
            );
            pe(tree, "python/python.exe.dll", &["python/python312.dll"]);
            std::fs::rename(
                tree.join("python/python.exe.dll"),
                tree.join("python/python.exe"),
            )
            .unwrap();
            pe(
                tree,
                "python/DLLs/zlib_ext.pyd",
                &["python/python312.dll", "python/Library/bin/zlib.dll"],
            );
            pe(
                tree,
                &format!("{site}/pillow.libs/jpeg62-45e70d75.dll"),
                &[],
            );
            pe(
                tree,
                &format!("{site}/PIL/_imaging.cp312-win_amd64.pyd"),
                &[
                    "python/python312.dll",
                    &format!("{site}/pillow.libs/jpeg62-45e70d75.dll"),
                ],
            );
            pe(
                tree,
                &format!("{site}/numpy.libs/libscipy_openblas64_-43e11ff0.dll"),
                &[],
            );
            pe(
                tree,
                &format!("{site}/numpy/_core/_multiarray_umath.cp312-win_amd64.pyd"),
                &[&format!(
                    "{site}/numpy.libs/libscipy_openblas64_-43e11ff0.dll"
                )],
            );
            pe(tree, &format!("{site}/torch/lib/c10.dll"), &[]);
            pe(
                tree,
                &format!("{site}/torch/_C.cp312-win_amd64.pyd"),
                &[&format!("{site}/torch/lib/c10.dll")],
            );
        }
    }
    #[cfg(unix)]
    if os != Os::Windows {
        std::os::unix::fs::symlink("python3.12", tree.join("python/bin/python3")).unwrap();
        std::os::unix::fs::symlink("python3.12", tree.join("python/bin/python")).unwrap();
    }
}

/// A `bcryptprimitives.dll` for Wine 8.0, which lacks it while Rust's standard library imports
/// its `ProcessPrng` for random numbers: this one answers with `RtlGenRandom`.
pub fn bcryptprimitives_stand_in(path: &Path) {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("prng.c");
    std::fs::write(
        &source,
        "#include <windows.h>\n\
         #define SystemFunction036 NTAPI SystemFunction036\n\
         #include <ntsecapi.h>\n\
         #undef SystemFunction036\n\
         __declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {\n\
         \x20   return RtlGenRandom(data, (ULONG)len);\n\
         }\n",
    )
    .unwrap();
    let mut cmd = Command::new("x86_64-w64-mingw32-gcc");
    cmd.args(["-shared", "-o"])
        .arg(path)
        .arg(&source)
        .arg("-ladvapi32");
    run(
        &mut cmd,
        "x86_64-w64-mingw32-gcc (Debian: apt-get install gcc-mingw-w64-x86-64)",
    );
}
