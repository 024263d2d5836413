//! The real Linux ARM product, built on this x86_64 machine by the cross route and proven under
//! qemu-user (opt-in, with the real-product test: it downloads about 3 GB of aarch64 wheels).
//! The default distribution's linux-aarch64 `nvidia` variant: PyPI's aarch64 torch 2.11.0 (the
//! default `cpu` variant's torch is on download.pytorch.org, which this workplace cannot
//! reach), ComfyUI 0.33.0 and ComfyUI-Manager from `../shared/product/`, with the Miniforge
//! stand-in in constructor's `.sh` format (Debian's arm64 CPython 3.11). The build verifies the
//! zip under qemu; then, unpacked elsewhere with the build's folders gone: torch computes on the
//! CPU, ComfyUI's start-up check passes (timed, emulated), and `packages.sh` refuses another
//! torch, installs a package and undoes it to the exact files.
//!
//! ```sh
//! cargo test --features real-product --test it real_product::aarch64 -- --nocapture
//! ```
//! `ANYMATIX_REAL_PRODUCT_DIR=/some/dir` keeps the build in `/some/dir/aarch64` (and its wheels).

use std::path::Path;
use std::process::Command;

use serde_yaml_ng::Value;
use support::{shell_installer, TAG};
use xtask::build::cross;
use xtask::model::platform::Platform;

fn packages_sh(root: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(root.join("packages.sh"));
    cmd.args(args).current_dir(root.parent().unwrap());
    support::pypi_env(&mut cmd);
    cmd.output().unwrap()
}

#[test]
fn the_linux_arm_product_is_built_here_and_comfyui_starts_under_qemu() {
    if let Err(why) = cross::emulates_aarch64() {
        panic!("{why:#}");
    }
    // The stand-in's python is Debian 12's, built for its glibc 2.36 (a real Miniforge's is
    // built for 2.17): the limit is raised to it for that reason only.
    let product = super::cross_product("aarch64", |doc| {
        doc["platforms"]["linux-aarch64"]["requires_at_most"]["glibc"] = Value::from("2.36");
    });
    let downloads = product.dir.join("standin-downloads");
    let debs = shell_installer::aarch64_python_debs(&downloads.join("debian-arm64"));
    let pip = support::pip_download(&downloads.join("pip"), &["pip==26.3"], &[], "3.11");
    let installer = shell_installer::shell_installer(
        shell_installer::READ_ONLY_BODY,
        &shell_installer::linux_aarch64_packages(&debs, &pip[0]),
        "linux-aarch64",
        TAG,
        b"\x7fELF conda-standalone stand-in\n",
    );
    support::serve_installer(Platform::LinuxAarch64, TAG, &installer);

    let id = "linux-aarch64-nvidia";
    let (build_time, _) =
        product.build(&["--platform", "linux-aarch64", "--variant", "nvidia"], &[]);
    let steps = product.steps(id);
    let (zips, zip_bytes) =
        super::zip_volumes(&product.out.join(format!("anymatix-0.0.0-real-{id}.zip")));
    let files: usize = zips
        .iter()
        .map(|z| {
            zip::ZipArchive::new(std::fs::File::open(z).unwrap())
                .unwrap()
                .len()
        })
        .sum();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    let shape: String = zips.iter().map(|z| super::tree_shape(z, "3.11")).collect();
    settings.bind(|| insta::assert_snapshot!("real_product_tree@linux-aarch64", shape));
    let root = product.unpack(id);
    let python = root.join("python/bin/python3");

    // An aarch64 program, run here by qemu-user through binfmt.
    let computed = Command::new(&python)
        .args([
            "-s",
            "-c",
            "import platform, torch; x = torch.arange(6.0).reshape(2, 3); \
             print(platform.machine(), torch.__version__, (x @ x.T).tolist())",
        ])
        .output()
        .unwrap();
    assert!(computed.status.success(), "{}", support::stderr(&computed));
    let computed = String::from_utf8_lossy(&computed.stdout).trim().to_string();
    // PyPI's aarch64 torch is the CUDA 13.0 build; on a CPU it computes all the same.
    assert_eq!(computed, "aarch64 2.11.0+cu130 [[5.0, 14.0], [14.0, 50.0]]");

    let (first, said) = super::quick_test(&python, &root.join("ComfyUI"));
    assert!(said.contains("ComfyUI-Manager"), "the custom node: {said}");

    // The package tool: another torch refused with nothing changed; a package installed, then
    // undone to the exact files.
    let before = support::file_hashes(&root.join("python"));
    let refused = packages_sh(&root, &["install", "torch==2.10.0"]);
    let text = support::stderr(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("asks for another version; the environment keeps torch 2.11.0"),
        "{text}"
    );
    assert_eq!(support::file_hashes(&root.join("python")), before);
    let installed = packages_sh(&root, &["install", "piexif"]);
    assert!(
        installed.status.success(),
        "{}",
        support::stderr(&installed)
    );
    assert_ne!(support::file_hashes(&root.join("python")), before);
    let undone = packages_sh(&root, &["undo"]);
    assert!(undone.status.success(), "{}", support::stderr(&undone));
    assert_eq!(
        support::file_hashes(&root.join("python")),
        before,
        "undo did not give back every file"
    );

    println!(
        "\nLinux ARM real product (nvidia variant), built here on the cross route:\n  build {:.0?} \
         ({})\n  zip {:.2} GiB in {} volume(s), {files} files\n  under qemu: ComfyUI's \
         --quick-test-for-ci --cpu in {:.0?}",
        build_time,
        steps.join(", "),
        zip_bytes as f64 / (1u64 << 30) as f64,
        zips.len(),
        first,
    );
}
