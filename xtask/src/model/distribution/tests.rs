//! Unit tests of distribution.yml: parsing, merging per platform, and the errors that name
//! their key.
use super::*;

fn parse(text: &str) -> Result<Distribution> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("distribution.yml");
    fs_err::write(&path, text).unwrap();
    Distribution::load(&path)
}

#[test]
fn minimal_manifest_takes_defaults() {
    let m = parse("python_packages: [pillow]\n").unwrap();
    assert_eq!(m.installer.release, Release::Latest);
    assert_eq!(m.installer.base_url, DEFAULT_MINIFORGE_BASE_URL);
    assert_eq!(m.installer.channel, DEFAULT_CONDA_CHANNEL);
    assert_eq!(m.python_packages_for(Platform::LinuxX86_64), ["pillow"]);
}

#[test]
fn unknown_key_names_file_and_line() {
    let err = parse("python_packages: [pillow]\nrepos: []\npip:\n  index: x\n").unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("distribution.yml"), "{msg}");
    assert!(msg.contains("unknown field `index`"), "{msg}");
    assert!(msg.contains("line 4"), "{msg}");
}

#[test]
fn unknown_platform_key_names_line_and_lists_valid_ones() {
    let err = parse("platforms:\n  linux-x86_64: {}\n  beos-x86: {}\n").unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("beos-x86"), "{msg}");
    assert!(msg.contains("windows-x86_64"), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");
}

#[test]
fn bad_yaml_names_the_line() {
    let err = parse("python_packages: [pillow\nrepos: []\n").unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("distribution.yml") && msg.contains("line"),
        "{msg}"
    );
}

#[test]
fn missing_file_is_named() {
    let err = Distribution::load(Path::new("/nonexistent/distribution.yml")).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("manifest not found: /nonexistent/distribution.yml"),
        "{msg}"
    );
}

#[test]
fn repo_paths_must_stay_inside() {
    let text = "repos:\n  - {name: a, url: u, rev: main, path: ../evil}\n";
    let msg = format!("{:#}", parse(text).unwrap_err());
    assert!(msg.contains("repo `a`: bad path `../evil`"), "{msg}");
}

#[test]
fn platform_sections_add_to_shared_lists() {
    let m = parse(
        "python_packages: [pillow]\nconda_packages: [zlib]\nplatforms:\n  macos-x86_64:\n    python_packages: [torch==2.2.2]\n    conda_packages: [python=3.12]\n    pip_args: [--prefer-binary]\n",
    )
    .unwrap();
    assert_eq!(
        m.python_packages_for(Platform::MacosX86_64),
        ["pillow", "torch==2.2.2"]
    );
    assert_eq!(
        m.conda_packages_for(Platform::MacosX86_64),
        ["zlib", "python=3.12"]
    );
    assert_eq!(m.pip_args_for(Platform::MacosX86_64), ["--prefer-binary"]);
    assert_eq!(m.python_packages_for(Platform::LinuxX86_64), ["pillow"]);
}

#[test]
fn relative_find_links_resolve_beside_the_manifest() {
    let m = parse("pip:\n  find_links: [wheels, 'https://example.invalid/w']\n").unwrap();
    assert!(
        m.pip.find_links[0].ends_with("/wheels"),
        "{:?}",
        m.pip.find_links
    );
    assert!(Path::new(&m.pip.find_links[0]).is_absolute());
    assert_eq!(m.pip.find_links[1], "https://example.invalid/w");
}

#[test]
fn release_is_latest_or_a_tag() {
    let m = parse("installer:\n  release: 26.3.2-3\n").unwrap();
    assert_eq!(m.installer.release, Release::Tag("26.3.2-3".into()));
    assert!(parse("installer:\n  release: 'a b'\n").is_err());
}

#[test]
fn anything_that_would_reach_a_program_as_an_option_is_refused() {
    for (text, key) in [
        (
            "python_packages: ['--index-url=https://evil.example/simple']\n",
            "python_packages",
        ),
        (
            "platforms: {macos-arm64: {python_packages: [' -e.']}}\n",
            "platforms.macos-arm64.python_packages",
        ),
        ("conda_packages: [--override-channels]\n", "conda_packages"),
        (
            "pip: {extra_index_urls: ['--trusted-host=x']}\n",
            "pip.extra_index_urls",
        ),
        (
            "repos: [{name: a, url: '--upload-pack=touch /tmp/x', rev: main, path: a}]\n",
            "repos `a`: url",
        ),
        (
            "repos: [{name: a, url: 'file:///r', rev: '--output=x', path: a}]\n",
            "repos `a`: rev",
        ),
    ] {
        let msg = format!("{:#}", parse(text).unwrap_err());
        assert!(
            msg.contains(key) && msg.contains("starts with `-`"),
            "{text}: {msg}"
        );
    }
    // pip_args are options on purpose.
    assert!(parse("platforms: {linux-x86_64: {pip_args: [--prefer-binary]}}\n").is_ok());
}

#[test]
fn smoke_checks_and_commands_are_read_and_checked() {
    let m = parse(
        "smoke:\n  imports: [torch]\n  checks:\n    - {name: sees torch, code: 'assert True'}\n  commands:\n    - name: starts\n      run: ['{python}', '-s', main.py, --quick-test-for-ci]\n      cwd: ComfyUI\n      fail_on: [IMPORT FAILED]\n",
    )
    .unwrap();
    assert_eq!(m.smoke.checks[0].name, "sees torch");
    let command = &m.smoke.commands[0];
    assert_eq!(command.run[0], "{python}");
    assert_eq!(
        command.timeout, 600,
        "a default that a slow first start fits in"
    );
    assert_eq!(command.fail_on, ["IMPORT FAILED"]);
    for bad in [
        "smoke: {commands: [{name: x, run: []}]}\n",
        "smoke: {commands: [{name: x, run: [a], cwd: ../out}]}\n",
        "smoke: {commands: [{name: x, run: [a], timeout: 0}]}\n",
        "smoke: {checks: [{name: x, code: ''}]}\n",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_ceiling_names_only_what_its_platform_has() {
    let m = parse("platforms: {linux-x86_64: {requires_at_most: {glibc: '2.28'}}}\n").unwrap();
    assert_eq!(
        m.requires_at_most(Platform::LinuxX86_64).glibc,
        Some("2.28".parse().unwrap())
    );
    assert!(m.requires_at_most(Platform::MacosArm64).glibc.is_none());
    let msg = format!(
        "{:#}",
        parse("platforms: {macos-arm64: {requires_at_most: {glibc: '2.28'}}}\n").unwrap_err()
    );
    assert!(
        msg.contains("`glibc` does not apply to macos-arm64"),
        "{msg}"
    );
}

#[test]
fn leave_out_takes_names_or_names_with_reasons_per_platform() {
    let m = parse(
        "leave_out:\n  - Foo_Bar\n  - {name: baz.media, reason: 'only previews'}\n\
         platforms:\n  linux-x86_64:\n    leave_out: [qux]\n",
    )
    .unwrap();
    let linux = m.leave_out_for(Platform::LinuxX86_64);
    let names: Vec<(&str, &str, Option<&str>)> = linux
        .iter()
        .map(|l| {
            (
                l.key.as_str(),
                l.entry.name.as_str(),
                l.entry.reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("leave_out", "Foo_Bar", None),
            ("leave_out", "baz.media", Some("only previews")),
            ("platforms.linux-x86_64.leave_out", "qux", None),
        ]
    );
    assert_eq!(m.leave_out_for(Platform::MacosArm64).len(), 2);
    assert_eq!(normalise_package_name("Foo__Bar.baz"), "foo-bar-baz");

    for (bad, says) in [
        (
            "leave_out: ['torch==2.0']\n",
            "leave_out: `torch==2.0` is not a package name",
        ),
        (
            "leave_out: [{name: a, why: b}]\n",
            "a package name, or {name: NAME",
        ),
        (
            "leave_out: [foo]\nplatforms: {macos-arm64: {leave_out: [FOO]}}\n",
            "platforms.macos-arm64.leave_out: `FOO` is already left out under leave_out",
        ),
    ] {
        let msg = format!("{:#}", parse(bad).unwrap_err());
        assert!(msg.contains(says), "{bad}: {msg}");
    }
}

#[test]
fn versions_must_be_file_name_safe() {
    assert!(check_version("0.1.0").is_ok());
    assert!(check_version("1.0.0-rc.1+build5").is_ok());
    assert!(check_version("1.0/evil").is_err());
    assert!(check_version("").is_err());
}

#[test]
fn protected_merges_the_shared_names_with_the_platforms() {
    let m = parse(
        "protected: [torch, torchvision]\nplatforms:\n  windows-x86_64:\n    protected: [Triton_Windows]\n",
    )
    .unwrap();
    assert_eq!(
        m.protected_for(Platform::WindowsX86_64),
        [
            ("protected".to_string(), "torch".to_string()),
            ("protected".to_string(), "torchvision".to_string()),
            (
                "platforms.windows-x86_64.protected".to_string(),
                "Triton_Windows".to_string()
            ),
        ]
    );
    assert_eq!(m.protected_for(Platform::LinuxAarch64).len(), 2);

    for (bad, says) in [
        (
            "protected: ['torch==2.11.0']\n",
            "protected: `torch==2.11.0` is not a package name",
        ),
        (
            "protected: [torch]\nplatforms: {macos-arm64: {protected: [Torch]}}\n",
            "platforms.macos-arm64.protected: `Torch` is already protected under protected",
        ),
        (
            "protected: [torch]\nplatforms: {linux-x86_64: {leave_out: [torch]}}\n",
            "protected: `torch` is protected, yet platforms.linux-x86_64.leave_out leaves it out",
        ),
    ] {
        let error = format!("{:#}", parse(bad).unwrap_err());
        assert!(error.contains(says), "{bad}: {error}");
    }
}

const VARIANTS: &str = "\
python_packages: [pillow]
protected: [torch]
platforms:
  linux-x86_64:
    python_packages: [shared-linux]
    pip_args: [--prefer-binary]
    requires_at_most: {glibc: '2.28', glibcxx: '3.4.25'}
    variants:
      nvidia:
        default: true
        about: current NVIDIA GPUs
        python_packages: [torch==2.11.0]
        cuda: '13.0'
        cuda_architectures: [sm_75, sm_120]
      cpu:
        python_packages: [torch==2.11.0+cpu]
        pip_args: [--extra-index-url, https://download.pytorch.org/whl/cpu]
        requires_at_most: {glibc: '2.17'}
        protected: [numpy]
        leave_out: [triton]
        checks: [{name: cpu only, code: 'import torch'}]
        cuda: none
";

#[test]
fn a_variant_adds_to_its_platform_and_the_default_is_chosen_without_asking() {
    let m = parse(VARIANTS).unwrap();
    let linux = Platform::LinuxX86_64;
    // Loaded, the distribution is its default variants'.
    assert_eq!(
        m.python_packages_for(linux),
        ["pillow", "shared-linux", "torch==2.11.0"]
    );
    assert_eq!(m.pip_args_for(linux), ["--prefer-binary"]);

    let cpu = m.variant(linux, Some("cpu")).unwrap();
    assert_eq!((cpu.id(), cpu.default), ("linux-x86_64-cpu".into(), false));
    let v = m.for_variant(&cpu);
    assert_eq!(
        v.python_packages_for(linux),
        ["pillow", "shared-linux", "torch==2.11.0+cpu"]
    );
    assert_eq!(
        v.pip_args_for(linux),
        [
            "--prefer-binary",
            "--extra-index-url",
            "https://download.pytorch.org/whl/cpu"
        ]
    );
    // The variant's glibc limit replaces the platform's; the platform's other limits stay.
    let ceiling = v.requires_at_most(linux);
    assert_eq!(ceiling.glibc.unwrap().to_string(), "2.17");
    assert_eq!(ceiling.glibcxx.unwrap().to_string(), "3.4.25");
    assert_eq!(
        v.protected_for(linux),
        [
            ("protected".to_string(), "torch".to_string()),
            (
                "platforms.linux-x86_64.variants.cpu.protected".to_string(),
                "numpy".to_string()
            )
        ]
    );
    let left = v.leave_out_for(linux);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key, "platforms.linux-x86_64.variants.cpu.leave_out");
    let checks: Vec<String> = v
        .smoke_for(linux)
        .checks
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(checks, ["cpu only", "PyTorch is the `cpu` build: no CUDA"]);
    // Other platforms are untouched by a variant of this one.
    assert_eq!(v.python_packages_for(Platform::MacosArm64), ["pillow"]);
}

#[test]
fn the_cuda_check_reads_the_line_and_the_architectures() {
    let m = parse(VARIANTS).unwrap();
    let smoke = m.smoke_for(Platform::LinuxX86_64);
    let check = smoke.checks.last().unwrap();
    assert_eq!(
        check.name,
        "PyTorch is the `nvidia` build: CUDA 13.0 for sm_75 sm_120"
    );
    // The real file, with the variant's values in place of its example ones.
    assert!(
        check.code.contains(
            "\nVARIANT, CUDA, ARCHITECTURES = \"nvidia\", \"13.0\", [\"sm_75\", \"sm_120\"]\n"
        ),
        "{}",
        check.code
    );
    assert!(!check.code.contains("\"example\""), "{}", check.code);
}

#[test]
fn variants_are_listed_default_first_and_named_by_id() {
    let m = parse(VARIANTS).unwrap();
    let ids: Vec<String> = m
        .variants_of(Platform::LinuxX86_64)
        .iter()
        .map(Variant::id)
        .collect();
    assert_eq!(ids, ["linux-x86_64", "linux-x86_64-cpu"]);
    let plain = m.variants_of(Platform::MacosArm64);
    assert_eq!(plain, [Variant::plain(Platform::MacosArm64)]);
    assert_eq!(plain[0].id(), "macos-arm64");
    assert_eq!(m.all_variants().len(), 6);
    let info = m
        .variant_info(&m.variant(Platform::LinuxX86_64, None).unwrap())
        .unwrap();
    assert_eq!(
        (info.name.as_str(), info.default, info.cuda.as_deref()),
        ("nvidia", true, Some("13.0"))
    );
}

#[test]
fn an_unknown_variant_lists_the_platforms_variants() {
    let m = parse(VARIANTS).unwrap();
    let err = m
        .variant(Platform::LinuxX86_64, Some("rocm"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "linux-x86_64 has no variant `rocm`; its variants are `nvidia` (the default): current \
         NVIDIA GPUs; `cpu`"
    );
    let err = m
        .variant(Platform::MacosArm64, Some("cpu"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("macos-arm64 has no variants"), "{err}");
}

#[test]
fn bad_variants_are_named_by_their_key() {
    let cases = [
        (
            VARIANTS.replace("        default: true\n", ""),
            "platforms.linux-x86_64.variants: no variant is the default",
        ),
        (
            VARIANTS.replace("      cpu:\n", "      cpu:\n        default: true\n"),
            "`cpu`, `nvidia` are all marked `default: true`",
        ),
        (
            VARIANTS.replace("      cpu:\n", "      CPU_only:\n"),
            "platforms.linux-x86_64.variants.CPU_only: `CPU_only` is not a variant name",
        ),
        (
            VARIANTS.replace("cuda: '13.0'", "cuda: cu130"),
            "platforms.linux-x86_64.variants.nvidia.cuda: `cu130` is not a CUDA line",
        ),
        (
            VARIANTS.replace("[sm_75, sm_120]", "[sm_75, '8.6']"),
            "variants.nvidia.cuda_architectures: `8.6` is not a GPU architecture",
        ),
        (
            VARIANTS.replace("        cuda: none\n", "        cuda: none\n        cuda_architectures: [sm_61]\n"),
            "variants.cpu.cuda_architectures: a build without CUDA has no GPU architectures",
        ),
        (
            VARIANTS.replace("protected: [numpy]", "protected: [triton]"),
            "platforms.linux-x86_64.variants.cpu.protected: `triton` is protected, yet \
             platforms.linux-x86_64.variants.cpu.leave_out leaves it out",
        ),
        (
            VARIANTS.replace("protected: [numpy]", "protected: [Torch]"),
            "variants.cpu.protected: `Torch` is already protected under protected",
        ),
        (
            VARIANTS.replace("requires_at_most: {glibc: '2.17'}", "requires_at_most: {macos: '14.0'}"),
            "platforms.linux-x86_64.variants.cpu.requires_at_most: `macos` does not apply",
        ),
        (
            VARIANTS.replace("[torch==2.11.0+cpu]", "['--index-url=http://evil']"),
            "platforms.linux-x86_64.variants.cpu.python_packages: `--index-url=http://evil` starts with `-`",
        ),
    ];
    for (text, wanted) in cases {
        let err = format!("{:#}", parse(&text).unwrap_err());
        assert!(err.contains(wanted), "wanted `{wanted}` in: {err}");
    }
}

/// The generated checks run as they will in a build, against a stand-in `torch` that reports a
/// CUDA line and architectures as the real one does.
#[test]
fn the_cuda_checks_pass_and_fail_as_python_runs_them() {
    let m = parse(VARIANTS).unwrap();
    let linux = Platform::LinuxX86_64;
    let nvidia = m.smoke_for(linux).checks.pop().unwrap();
    let cpu = m
        .for_variant(&m.variant(linux, Some("cpu")).unwrap())
        .smoke_for(linux)
        .checks
        .pop()
        .unwrap();
    let run = |check: &SmokeCheck, cuda: &str, arches: &str| {
        let dir = tempfile::tempdir().unwrap();
        let torch = dir.path().join("torch");
        fs_err::create_dir_all(torch.join("_C")).unwrap();
        fs_err::write(
            torch.join("__init__.py"),
            "__version__ = '2.11.0+test'\nfrom . import version, _C\n",
        )
        .unwrap();
        fs_err::write(torch.join("version.py"), format!("cuda = {cuda}\n")).unwrap();
        fs_err::write(
            torch.join("_C/__init__.py"),
            format!("def _cuda_getArchFlags():\n    return {arches:?}\n"),
        )
        .unwrap();
        let out = std::process::Command::new("python3")
            .args(["-s", "-c", &check.code])
            .env("PYTHONPATH", dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        run(&nvidia, "'13.0'", "sm_75 sm_80 sm_120"),
        (true, String::new())
    );
    let (ok, err) = run(&nvidia, "'13.0'", "sm_80 sm_90");
    assert!(
        !ok && err.contains("has no kernels for sm_75 sm_120 (it has sm_80 sm_90)"),
        "{err}"
    );
    let (ok, err) = run(&nvidia, "'12.6'", "sm_75 sm_120");
    assert!(
        !ok && err.contains("is built for CUDA 12.6; the `nvidia` variant promises 13.0"),
        "{err}"
    );
    assert!(run(&cpu, "None", "").0);
    let (ok, err) = run(&cpu, "'13.0'", "sm_75");
    assert!(
        !ok && err.contains("is built for CUDA 13.0; the `cpu` variant has none"),
        "{err}"
    );
}

#[test]
fn skipped_requirements_are_the_platforms_and_their_import_failures_are_expected() {
    let m = parse(
        "smoke:\n  commands:\n    - {name: starts, run: ['{python}', main.py], fail_on: [IMPORT FAILED]}\n\
         platforms:\n  macos-x86_64:\n    skip_requirements:\n      - {name: comfy-angle, reason: no wheel, import_failures: [nodes_glsl.py]}\n",
    )
    .unwrap();
    assert_eq!(
        m.skip_requirements_for(Platform::MacosX86_64)[0].name,
        "comfy-angle"
    );
    assert!(m.skip_requirements_for(Platform::MacosArm64).is_empty());
    let smoke = m.smoke_for(Platform::MacosX86_64);
    assert_eq!(smoke.commands[0].expected, ["IMPORT FAILED: nodes_glsl.py"]);
    assert!(m.smoke_for(Platform::LinuxX86_64).commands[0]
        .expected
        .is_empty());
    let err =
        parse("platforms:\n  macos-x86_64:\n    skip_requirements: [comfy-angle]\n").unwrap_err();
    assert!(format!("{err:#}").contains("skip_requirements"), "{err:#}");
}
