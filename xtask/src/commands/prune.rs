//! `cargo xtask prune DIR`: applies the prune policy to any folder laid out like `anymatix/`,
//! prints what each rule removes and where the size goes, and checks every native library.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::model::platform::Platform;
use crate::model::system::{self, Ceiling};
use crate::project_root;
use crate::stages::prune::{self, page, Policy};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  cargo xtask prune target/portable/stage/linux-x86_64/anymatix --dry-run
  cargo xtask prune ~/unpacked/anymatix --platform windows-x86_64 --dry-run --policy my-prune.yml
  cargo xtask prune ~/unpacked/anymatix --dry-run --requires-at-most glibc=2.28")]
pub struct PruneArgs {
    /// The folder to prune, laid out like the zip's `anymatix/` (the Miniforge prefix in `python/`).
    pub dir: PathBuf,
    /// Whose rules and native-library format apply [default: this host's]
    #[arg(long)]
    pub platform: Option<Platform>,
    /// The prune policy.
    #[arg(long, value_name = "FILE", default_value_os_t = project_root().join("anymatix/prune.yml"))]
    pub policy: PathBuf,
    /// Decide, check and count, but remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write a self-contained HTML page: a treemap of the kept tree and the bytes each
    /// rule removed.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Fail, naming them, when kept binaries need a newer system than this: glibc=2.28,
    /// glibcxx=3.4.25, macos=12.0 or windows=10.0 (repeat for several). `portable` takes these
    /// from the manifest's requires_at_most.
    #[arg(long = "requires-at-most", value_name = "KIND=VERSION", value_parser = system::parse_limit)]
    pub requires_at_most: Vec<(system::Requirement, system::Version)>,
}

impl PruneArgs {
    pub fn run(self) -> Result<()> {
        let policy = Policy::load(&self.policy)?;
        let platform = Platform::chosen_or_host(self.platform)?;
        if !self.dir.is_dir() {
            bail!("{} is not a folder", self.dir.display());
        }
        let report = prune::prune(&self.dir, &policy, platform, self.dry_run)
            .with_context(|| format!("cannot prune {}", self.dir.display()))?;
        println!(
            "{} {} for {platform}{}",
            if self.dry_run {
                "Would prune"
            } else {
                "Pruned"
            },
            self.dir.display(),
            if self.dry_run {
                " (dry run: nothing removed)"
            } else {
                ""
            }
        );
        for line in report.summary() {
            println!("{line}");
        }
        if let Some(html) = &self.report {
            let name = self.dir.file_name().map_or_else(
                || self.dir.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            page::write(
                html,
                &page::page_data(&name, platform, None, &report, &policy),
            )?;
            println!("size report: {}", html.display());
        }
        report.linkage.check_ceiling(
            &Ceiling::from_limits(&self.requires_at_most),
            "--requires-at-most",
        )?;
        Ok(())
    }
}
