//! The native-library check on real binaries: ELF files built by gcc, PE files by mingw-w64's
//! gcc, Mach-O files written byte by byte; resolved as each platform's loader would, missing
//! libraries told apart, and what each binary needs of the system.
use support::binaries::{elf, elf_from, macho, macho_for, pe, pe_for, MachLink};
use xtask::model::platform::Platform;
use xtask::stages::prune::{prune, Policy};
use xtask::util::tree::{listing, normalise};

#[test]
fn paths_normalise_inside_the_tree_only() {
    assert_eq!(normalise("a/b/../c").as_deref(), Some("a/c"));
    assert_eq!(normalise("a/./b//c").as_deref(), Some("a/b/c"));
    assert_eq!(normalise("a/../../etc"), None);
}

/// A policy with one careless rule and the real system-library lists.
fn policy(careless: &str) -> Policy {
    let real = include_str!("../../../anymatix/prune.yml");
    let system = &real[real.find("system_libraries:").unwrap()..];
    Policy::parse(&format!(
        "rules:\n  - {{name: careless, reason: testing, match: any, patterns: ['{careless}']}}\n{system}"
    ))
    .unwrap()
}

const SITE: &str = "python/lib/python3.12/site-packages";

fn linux_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    // As auditwheel lays it out: the extension finds its vendored libraries by RUNPATH.
    elf(t, &format!("{SITE}/pkg.libs/libbar-1a2b.so.2"), &[], None);
    elf(
        t,
        &format!("{SITE}/pkg.libs/libfoo-3c4d.so.1"),
        &[(&format!("{SITE}/pkg.libs"), "libbar-1a2b.so.2")],
        Some("$ORIGIN"),
    );
    elf(
        t,
        &format!("{SITE}/pkg/_ext.so"),
        &[(&format!("{SITE}/pkg.libs"), "libfoo-3c4d.so.1")],
        Some("$ORIGIN/../pkg.libs"),
    );
    dir
}

#[test]
fn linux_vendored_libraries_resolve_by_runpath() {
    let dir = linux_tree();
    let report = prune(
        dir.path(),
        &policy("nothing/matches"),
        Platform::LinuxX86_64,
        true,
    )
    .unwrap();
    assert_eq!(report.linkage.binaries, 3);
    assert_eq!(report.linkage.resolved_in_tree, 2, "{:?}", report.linkage);
    assert!(
        report.linkage.resolved_by_system >= 3,
        "libc for each: {:?}",
        report.linkage
    );
    assert!(report.linkage.missing.is_empty());
}

#[test]
fn removing_a_needed_library_fails_naming_file_library_and_rule() {
    let dir = linux_tree();
    let before = listing(dir.path()).unwrap();
    let err = prune(
        dir.path(),
        &policy("**/libbar-*.so.*"),
        Platform::LinuxX86_64,
        false,
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "{SITE}/pkg.libs/libfoo-3c4d.so.1 needs libbar-1a2b.so.2, which prune rule `careless` removed ({SITE}/pkg.libs/libbar-1a2b.so.2)"
        )),
        "{message}"
    );
    assert_eq!(
        listing(dir.path()).unwrap(),
        before,
        "nothing is deleted when the check fails"
    );
}

#[test]
fn windows_dlls_resolve_in_their_folder_and_conda_dirs_case_insensitively() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    pe(t, "python/Library/bin/zlib.dll", &[]);
    pe(t, "python/Lib/site-packages/pkg/helper.dll", &[]);
    pe(
        t,
        "python/Lib/site-packages/pkg/_ext.pyd",
        &[
            "python/Library/bin/zlib.dll",
            "python/Lib/site-packages/pkg/helper.dll",
        ],
    );
    // Windows file names are case-insensitive: the import may not match the file's case.
    fs_err::rename(
        t.join("python/Library/bin/zlib.dll"),
        t.join("python/Library/bin/ZLIB.dll"),
    )
    .unwrap();
    let ok = prune(t, &policy("nothing/matches"), Platform::WindowsX86_64, true).unwrap();
    assert_eq!(ok.linkage.binaries, 3);
    assert_eq!(ok.linkage.resolved_in_tree, 2, "{:?}", ok.linkage);
    assert!(
        ok.linkage.resolved_by_system > 0,
        "kernel32 and the CRT: {:?}",
        ok.linkage
    );

    let err = prune(
        t,
        &policy("python/Library/bin/*"),
        Platform::WindowsX86_64,
        true,
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("python/Lib/site-packages/pkg/_ext.pyd needs zlib.dll, which prune rule `careless` removed (python/Library/bin/ZLIB.dll)"),
        "{message}"
    );
    // Linux ELF rules do not look at PE files: on Linux nothing here is a binary.
    let linux = prune(
        t,
        &policy("python/Library/bin/*"),
        Platform::LinuxX86_64,
        true,
    )
    .unwrap();
    assert_eq!(linux.linkage.binaries, 0);
}

#[test]
fn macos_rpath_loader_path_weak_and_system_links() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    macho(
        t,
        &format!("{SITE}/PIL/.dylibs/libjpeg.62.dylib"),
        &[MachLink::Load("/usr/lib/libSystem.B.dylib")],
        &[],
    );
    macho(
        t,
        "python/lib/libz.1.dylib",
        &[MachLink::Load("/usr/lib/libSystem.B.dylib")],
        &[],
    );
    macho(
        t,
        &format!("{SITE}/PIL/_imaging.cpython-312-darwin.so"),
        &[
            MachLink::Load("@loader_path/.dylibs/libjpeg.62.dylib"),
            MachLink::Load("@rpath/libz.1.dylib"),
            MachLink::Load("/usr/lib/libSystem.B.dylib"),
            MachLink::Load("/System/Library/Frameworks/Accelerate.framework/Versions/A/Accelerate"),
            MachLink::Weak("@rpath/libmaybe.dylib"),
        ],
        &["@loader_path/../../.."],
    );
    let ok = prune(t, &policy("nothing/matches"), Platform::MacosArm64, true).unwrap();
    assert_eq!(ok.linkage.binaries, 3);
    assert!(ok.linkage.missing.is_empty(), "{:?}", ok.linkage);
    assert_eq!(ok.linkage.resolved_in_tree, 2, "{:?}", ok.linkage);

    let err = prune(t, &policy("**/.dylibs"), Platform::MacosArm64, true).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "{SITE}/PIL/_imaging.cpython-312-darwin.so needs @loader_path/.dylibs/libjpeg.62.dylib, which prune rule `careless` removed"
        )),
        "{err}"
    );
    // A build machine's absolute path would not exist on a user's machine. Pruning did not
    // cause it, so it is reported, not fatal, unless the policy is strict.
    macho(
        t,
        "python/lib/libbad.dylib",
        &[MachLink::Load("/Users/runner/work/lib/libz.1.dylib")],
        &[],
    );
    let report = prune(t, &policy("nothing/matches"), Platform::MacosArm64, true).unwrap();
    let unexplained: Vec<_> = report.linkage.unexplained().collect();
    assert_eq!(unexplained.len(), 1, "{:?}", report.linkage);
    assert_eq!(
        unexplained[0].library,
        "/Users/runner/work/lib/libz.1.dylib"
    );
    let summary = report.summary().join("\n");
    assert!(
        summary.contains("WARNING: 1 needed library is missing from the environment")
            && summary.contains("python/lib/libbad.dylib needs /Users/runner/work/lib/libz.1.dylib, which is neither in the tree nor a system library"),
        "{summary}"
    );
    let err = prune(
        t,
        &strict(policy("nothing/matches")),
        Platform::MacosArm64,
        true,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("sets strict_linkage")
            && err
                .to_string()
                .contains("python/lib/libbad.dylib needs /Users/runner/work/lib/libz.1.dylib"),
        "{err}"
    );
}

fn strict(mut policy: Policy) -> Policy {
    policy.strict_linkage = true;
    policy
}

/// A policy whose optional_libraries explain the MPI bootstrap plugin's missing library.
fn policy_with_optional() -> Policy {
    let real = include_str!("../../../anymatix/prune.yml");
    let system =
        &real[real.find("system_libraries:").unwrap()..real.find("optional_libraries:").unwrap()];
    Policy::parse(&format!(
        "rules: []\n{system}\noptional_libraries:\n  - name: mpi-plugin\n    reason: loaded only for MPI jobs\n    binaries: ['**/nvshmem/lib/nvshmem_bootstrap_*.so*']\n    libraries: ['libmpi.so.*']\n"
    ))
    .unwrap()
}

#[test]
fn missing_libraries_are_optional_unexplained_or_broken() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let nvshmem = format!("{SITE}/nvidia/nvshmem/lib");
    // Real ELF files that need libraries no wheel ships: build those, link, then delete them.
    elf(t, "absent/libmpi.so.40", &[], None);
    elf(t, "absent/libfabric.so.1", &[], None);
    elf(
        t,
        &format!("{nvshmem}/nvshmem_bootstrap_mpi.so.3"),
        &[("absent", "libmpi.so.40")],
        Some("$ORIGIN"),
    );
    elf(
        t,
        &format!("{nvshmem}/nvshmem_transport_new.so.3"),
        &[("absent", "libfabric.so.1")],
        Some("$ORIGIN"),
    );
    fs_err::remove_dir_all(t.join("absent")).unwrap();

    let report = prune(t, &policy_with_optional(), Platform::LinuxX86_64, true).unwrap();
    let optional: Vec<_> = report.linkage.optional().collect();
    assert_eq!(optional.len(), 1, "{:?}", report.linkage);
    assert_eq!(optional[0].optional.as_deref(), Some("mpi-plugin"));
    assert_eq!(optional[0].library, "libmpi.so.40");
    let unexplained: Vec<_> = report.linkage.unexplained().collect();
    assert_eq!(unexplained.len(), 1);
    assert_eq!(unexplained[0].library, "libfabric.so.1");
    let summary = report.summary().join("\n");
    assert!(
        summary
            .contains("absent as the policy expects (mpi-plugin): 1 link(s) of 1 plugin file(s)"),
        "{summary}"
    );
    assert!(
        summary.contains("WARNING")
            && summary.contains("nvshmem_transport_new.so.3 needs libfabric.so.1"),
        "{summary}"
    );
    assert!(
        !summary.contains("nvshmem_bootstrap_mpi.so.3 needs"),
        "optional ones are counted quietly: {summary}"
    );
    // manifest.json says which is which.
    let json = serde_json::to_value(&report.linkage).unwrap();
    assert_eq!(json["missing"][0]["optional"], "mpi-plugin");
    assert!(json["missing"][1].get("optional").is_none());

    // Strict: any missing library fails, optional or not, and nothing is deleted.
    let err = prune(
        t,
        &strict(policy_with_optional()),
        Platform::LinuxX86_64,
        false,
    )
    .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("2 native library link(s) are missing"),
        "{message}"
    );
    assert!(message.contains("(optional: `mpi-plugin`)"), "{message}");

    // A library that is there until a rule removes it: the prune's fault, always fatal.
    elf(t, &format!("{nvshmem}/libnvshmem_host.so.3"), &[], None);
    elf(
        t,
        &format!("{SITE}/torch/lib/libtorch_nvshmem.so"),
        &[(&nvshmem, "libnvshmem_host.so.3")],
        Some("$ORIGIN/../../nvidia/nvshmem/lib"),
    );
    let mut careless = policy_with_optional();
    careless.rules = policy("**/libnvshmem_host.so.*").rules;
    let err = prune(t, &careless, Platform::LinuxX86_64, false).unwrap_err();
    assert!(
        err.to_string().contains("would be broken by pruning")
            && err
                .to_string()
                .contains("needs libnvshmem_host.so.3, which prune rule `careless` removed"),
        "{err}"
    );
    assert!(t.join(&nvshmem).join("libnvshmem_host.so.3").is_file());
}

#[test]
fn what_binaries_need_of_the_system_and_a_ceiling_over_it() {
    use xtask::model::system::{Ceiling, Requirement, Version};
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    // getrandom is versioned GLIBC_2.25; the plain fixture needs at most what every glibc has.
    elf(t, &format!("{SITE}/old/_old.so"), &[], None);
    elf_from(
        t,
        &format!("{SITE}/new/_new.so"),
        "#include <sys/random.h>\nint f(char *b) { return (int)getrandom(b, 4, 0); }\n",
        &[],
        None,
    );
    let report = prune(t, &policy("nothing/matches"), Platform::LinuxX86_64, true).unwrap();
    let glibc = &report.linkage.requires[&Requirement::Glibc];
    assert!(
        glibc.version >= "2.25".parse::<Version>().unwrap(),
        "{glibc:?}"
    );
    assert_eq!(glibc.binaries, [format!("{SITE}/new/_new.so")]);
    let ceiling = Ceiling {
        glibc: Some("2.24".parse().unwrap()),
        ..Ceiling::default()
    };
    let over = report.linkage.over(&ceiling);
    assert_eq!(over.len(), 1, "{over:?}");
    assert_eq!(over[0].0, format!("{SITE}/new/_new.so"));
    let roomy = Ceiling {
        glibc: Some(glibc.version.clone()),
        ..Ceiling::default()
    };
    assert!(report.linkage.over(&roomy).is_empty());

    // macOS: LC_BUILD_VERSION's minos; the highest wins.
    let mac = tempfile::tempdir().unwrap();
    macho_for(
        mac.path(),
        "python/lib/liba.dylib",
        &[MachLink::Load("/usr/lib/libSystem.B.dylib")],
        &[],
        (11, 0),
    );
    macho_for(
        mac.path(),
        "python/lib/libb.dylib",
        &[MachLink::Load("/usr/lib/libSystem.B.dylib")],
        &[],
        (14, 2),
    );
    let report = prune(
        mac.path(),
        &policy("nothing/matches"),
        Platform::MacosArm64,
        true,
    )
    .unwrap();
    let macos = &report.linkage.requires[&Requirement::Macos];
    assert_eq!(macos.version.to_string(), "14.2");
    assert_eq!(macos.binaries, ["python/lib/libb.dylib"]);

    // Windows: the subsystem version of the PE header.
    let win = tempfile::tempdir().unwrap();
    pe_for(win.path(), "python/DLLs/_old.pyd", &[], Some((6, 1)));
    pe_for(win.path(), "python/DLLs/_new.pyd", &[], Some((10, 0)));
    let report = prune(
        win.path(),
        &policy("nothing/matches"),
        Platform::WindowsX86_64,
        true,
    )
    .unwrap();
    let windows = &report.linkage.requires[&Requirement::Windows];
    assert_eq!(windows.version.to_string(), "10.0");
    assert_eq!(windows.binaries, ["python/DLLs/_new.pyd"]);
    assert!(report
        .summary()
        .join("\n")
        .contains("needs of the system: Windows 10.0 (1 binary, e.g. python/DLLs/_new.pyd)"));
}
