//! `cargo xtask ci`: what CI checks, runnable as is on a developer's machine: formatting, lints,
//! the tests with snapshots checked, and the dry-run plan of every platform and variant.

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::model::platform::Platform;
use crate::util::process;

#[derive(Debug, clap::Args)]
pub struct CiArgs {
    /// On Linux, install what the tests use when it is missing (gcc, mingw-w64's gcc, chromium)
    /// with apt-get; CI runners need this, developers may prefer to install them themselves.
    #[arg(long)]
    pub install_tools: bool,
}

impl CiArgs {
    pub fn run(self) -> Result<()> {
        let sh = Shell::new()?;
        sh.change_dir(crate::project_root());
        if self.install_tools && cfg!(target_os = "linux") {
            let missing: Vec<&str> = [
                ("gcc", "gcc"),
                ("x86_64-w64-mingw32-gcc", "gcc-mingw-w64-x86-64"),
                ("chromium", "chromium"),
                ("wine", "wine"),
                ("makensis", "nsis"),
                ("7zz", "7zip"),
            ]
            .into_iter()
            .filter(|(tool, _)| process::require_tool(tool, "").is_err())
            .map(|(_, package)| package)
            .collect();
            if !missing.is_empty() {
                // GitHub's runners are not root; use sudo there.
                let (program, pre): (&str, &[&str]) = if is_root() {
                    ("apt-get", &[])
                } else {
                    ("sudo", &["apt-get"])
                };
                cmd!(sh, "{program} {pre...} update -qq").run()?;
                cmd!(sh, "{program} {pre...} install -y -qq {missing...}")
                    .run()
                    .context("cannot install the test tools")?;
            }
        }
        step("format");
        cmd!(sh, "cargo fmt --all --check").run()?;
        step("lint");
        cmd!(sh, "cargo clippy --workspace --all-targets -- -D warnings").run()?;
        step("plans: a dry run for every platform and variant");
        for platform in Platform::ALL {
            let name = platform.name();
            cmd!(
                sh,
                "cargo xtask portable --platform {name} --variant all --dry-run"
            )
            .quiet()
            .ignore_stdout()
            .run()?;
            println!("ok: {name}");
        }
        step("tests (snapshots checked: a changed one fails)");
        cmd!(sh, "cargo test --workspace -- --include-ignored")
            .env("CI", "true")
            .env("INSTA_UPDATE", "no")
            .run()?;
        Ok(())
    }
}

fn step(name: &str) {
    println!("\n=== {name}");
}

fn is_root() -> bool {
    std::env::var("USER").is_ok_and(|u| u == "root")
        || std::env::var("HOME").is_ok_and(|h| h == "/root")
}
