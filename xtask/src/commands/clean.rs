//! `cargo xtask clean`: removes the build's working folders, and with `--cache` the downloads.

use std::path::PathBuf;

use anyhow::Result;

use crate::project_root;
use crate::util::units::human_bytes;

#[derive(Debug, clap::Args)]
pub struct CleanArgs {
    /// The build folder, as given to `portable --out`.
    #[arg(long, value_name = "DIR", default_value_os_t = project_root().join("target/portable"))]
    pub out: PathBuf,
    /// Also remove the download cache (the Miniforge installers, and what `fetch` gathered: git
    /// mirrors, wheels, conda packages): the next build downloads again.
    #[arg(long)]
    pub cache: bool,
}

impl CleanArgs {
    pub fn run(self) -> Result<()> {
        let mut folders = vec!["stage", "verify"];
        if self.cache {
            folders.push("cache");
        }
        let mut freed = 0;
        for name in folders {
            let path = self.out.join(name);
            if path.exists() {
                let bytes = crate::util::tree::stats(&path).map_or(0, |(_, bytes)| bytes);
                fs_err::remove_dir_all(&path)?;
                println!("removed {} ({})", path.display(), human_bytes(bytes));
                freed += bytes;
            }
        }
        println!(
            "freed {}; the published zips in {} stay",
            human_bytes(freed),
            self.out.display()
        );
        Ok(())
    }
}
