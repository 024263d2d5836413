//! `cargo xtask doctor`: is this machine ready to build? The tools a build runs, the free disk
//! space, the path length Windows' installer and loader tolerate, and whether each source the
//! manifest names answers.

use anyhow::{bail, Result};
use xshell::cmd;

use super::context::{LockFlags, Target};
use crate::model::platform::Platform;
use crate::util::process;
use crate::util::units::human_bytes;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    // --platform: the one to check for; --manifest: whose sources are checked; --out: the build
    // folder, whose disk must have room.
    #[command(flatten)]
    pub target: Target,
    /// Instead, install what the cross route runs on this Linux x86_64 machine for --platform
    /// (uv; Wine, mingw-w64, 7-Zip; qemu-user; a CPython of a macOS zip's python version), then
    /// check only the route: what a CI runner does before a cross build.
    #[arg(long)]
    pub install_cross_tools: bool,
}

/// Room a build takes: the installed environment, its zip, the verify copy and the cache. CUDA
/// builds of PyTorch are several times larger than the others.
fn space_needed(platform: Platform) -> u64 {
    match platform {
        Platform::LinuxX86_64 | Platform::WindowsX86_64 => 30 << 30,
        _ => 10 << 30,
    }
}

/// Beyond this, site-packages' deepest paths under the prefix pass Windows' 260 characters.
const WINDOWS_PREFIX_MAX: usize = 100;

struct Checks {
    failed: usize,
}

impl Checks {
    fn report(&mut self, ok: bool, what: &str, detail: impl AsRef<str>) {
        if !ok {
            self.failed += 1;
        }
        println!(
            "{} {what}: {}",
            if ok { "ok  " } else { "FAIL" },
            detail.as_ref()
        );
    }
}

impl DoctorArgs {
    pub fn run(self) -> Result<()> {
        let ctx = self.target.resolve(&LockFlags::default())?;
        let (platform, manifest, layout) = (ctx.platform, &ctx.distribution, &ctx.layout);
        if self.install_cross_tools {
            // Installs, then checks only that the route has what it runs: a CI runner's disk
            // and sources are the build's to judge.
            super::cross_tools::install(&ctx.tools, manifest, platform)?;
            let route = crate::build::cross::Route::for_target(platform);
            ctx.check_host(route)?;
            println!("ok   route: {route}");
            return Ok(());
        }
        let mut checks = Checks { failed: 0 };

        let mut tools = vec![("git", "install git (https://git-scm.com)")];
        if !platform.is_windows() {
            tools.push((
                "bash",
                "install bash: Miniforge's installer is a bash script",
            ));
        }
        for (tool, hint) in tools {
            match process::require_tool(tool, hint) {
                Ok(path) => checks.report(true, tool, path.display().to_string()),
                Err(e) => checks.report(false, tool, e.to_string()),
            }
        }

        // What this host needs to build the platform on its route (Wine, qemu-user, 7-Zip, uv).
        let route = crate::build::cross::Route::for_target(platform);
        match ctx.check_host(route) {
            Ok(()) => checks.report(true, "route", route.to_string()),
            Err(e) => checks.report(false, "route", format!("{e:#}")),
        }

        let out = &layout.out;
        let existing = out
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(out)
            .to_path_buf();
        let needed = space_needed(platform);
        match fs4::available_space(&existing) {
            Ok(free) => checks.report(
                free >= needed,
                "disk space",
                format!(
                    "{} free at {}, a {platform} build needs about {}",
                    human_bytes(free),
                    existing.display(),
                    human_bytes(needed)
                ),
            ),
            Err(e) => checks.report(
                false,
                "disk space",
                format!("cannot tell for {}: {e}", existing.display()),
            ),
        }
        if platform.is_windows() {
            let prefix = &layout.prefix;
            let length = prefix.as_os_str().len();
            checks.report(
                length <= WINDOWS_PREFIX_MAX,
                "path length",
                format!(
                    "the prefix {} has {length} characters (at most {WINDOWS_PREFIX_MAX}; pass a short --out such as C:\\amx)",
                    prefix.display()
                ),
            );
        }

        let downloader = &ctx.tools.downloader;
        let base = manifest.installer.base_url.trim_end_matches('/');
        let latest = format!("{base}/latest");
        match downloader.probe(&latest) {
            Ok(status) => checks.report(
                status < 500,
                "Miniforge releases",
                format!("{latest} answers {status}"),
            ),
            Err(e) => checks.report(false, "Miniforge releases", format!("{latest}: {e:#}")),
        }
        let mut indexes: Vec<String> = Vec::new();
        if !manifest.pip.no_index {
            indexes.push(
                manifest
                    .pip
                    .index_url
                    .clone()
                    .unwrap_or_else(|| "https://pypi.org/simple".into()),
            );
            indexes.extend(manifest.pip.extra_index_urls.iter().cloned());
        }
        let mut urls: Vec<String> = indexes
            .iter()
            .map(|index| format!("{}/pip/", index.trim_end_matches('/')))
            .collect();
        // The platform's and its variant's own indexes (PyTorch's CUDA lines): their root, since
        // such an index holds only the packages it serves.
        if !manifest.pip.no_index {
            for (_, index) in manifest.carried_indexes(platform) {
                let root = format!("{}/", index.trim_end_matches('/'));
                if !indexes.contains(&index) && !urls.contains(&root) {
                    urls.push(root);
                }
            }
        }
        for url in urls {
            match downloader.probe(&url) {
                Ok(status) => {
                    checks.report(status < 400, "pip index", format!("{url} answers {status}"))
                }
                Err(e) => checks.report(false, "pip index", format!("{url}: {e:#}")),
            }
        }
        for link in &manifest.pip.find_links {
            if link.contains("://") {
                match downloader.probe(link) {
                    Ok(status) => checks.report(
                        status < 400,
                        "find-links",
                        format!("{link} answers {status}"),
                    ),
                    Err(e) => checks.report(false, "find-links", format!("{link}: {e:#}")),
                }
            } else {
                checks.report(
                    std::path::Path::new(link).is_dir(),
                    "find-links",
                    format!("folder {link}"),
                );
            }
        }
        let sh = &ctx.tools.sh;
        let _prompt = sh.push_env("GIT_TERMINAL_PROMPT", "0");
        for repo in &manifest.repos {
            let url = &repo.url;
            let answers = cmd!(sh, "git ls-remote --heads -- {url}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()
                .is_ok();
            checks.report(answers, "repo", format!("{} at {url}", repo.name));
        }

        if checks.failed > 0 {
            bail!("{} check(s) failed: see above", checks.failed);
        }
        println!("ready to build {platform}");
        Ok(())
    }
}
