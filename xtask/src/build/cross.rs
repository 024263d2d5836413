//! The cross route: how a build makes the environment for a platform this machine is not. The
//! route is chosen once, for the whole plan ([`Route`]); here are the steps it changes: the base
//! linked from the installer's packages (in `plan`), the pip install of the target's wheels, and
//! the runner of the target's python (Wine for a Windows zip built on Linux, qemu-user through
//! binfmt for a Linux ARM one, which then runs as if native; for a macOS one, whose programs
//! cannot run here, a CPython of this machine standing in for its python).

use std::path::PathBuf;

use crate::build::layout::Layout;
use crate::build::step::Step;
use crate::model::distribution::{Distribution, PipSources};
use crate::model::lock::Lock;
use crate::model::platform::Platform;
use crate::stages::pip::cross::{wheel_tags, CrossPipInstall, CrossWanted};
use crate::stages::pip::WriteFile;
use crate::stages::resolve;
use crate::util::host_python::{HostPython, Markers};
use crate::util::process::{path_arg, Command};
use crate::util::runner::Runner;
use crate::util::wine::Wine;

/// How a build makes the environment, chosen once for the whole plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// On the target itself: Miniforge's installer runs, then the base's own pip.
    Native,
    /// From another platform: the installer's conda packages linked for the target, the
    /// target's wheels resolved by uv and installed by this tool, the target's python run under
    /// Wine for a Windows zip built on Linux.
    Cross,
}

impl Route {
    /// Native on the target's own platform; cross where this host builds the target on the
    /// cross route ([`builds_across`]). Elsewhere native, which `check_host` then refuses.
    pub fn for_target(platform: Platform) -> Route {
        match Platform::host() {
            Some(host) if host != platform && builds_across(host, platform) => Route::Cross,
            _ => Route::Native,
        }
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Route::Native => "native (Miniforge's installer and pip run on the target itself)",
            Route::Cross => "cross (the installer's packages linked and the wheels installed for the target by this tool)",
        })
    }
}

/// Whether `host` builds `target` on the cross route: Linux x86_64 builds every other platform:
/// Windows (its python under Wine), Linux ARM (under qemu-user, through binfmt) and macOS
/// (whose python cannot run here: a CPython of this machine stands in for it in the pure-Python
/// steps, and the zip is verified on a Mac).
pub fn builds_across(host: Platform, target: Platform) -> bool {
    host == Platform::LinuxX86_64 && target != host
}

/// The kernel's binfmt entry that runs aarch64 Linux programs under qemu-user (Debian's
/// `qemu-user-static` registers it as `qemu-aarch64`).
const QEMU_AARCH64: &str = "/proc/sys/fs/binfmt_misc/qemu-aarch64";

/// Whether this Linux x86_64 machine runs aarch64 Linux programs (qemu-user through binfmt);
/// an error that says how to make it do so otherwise.
pub fn emulates_aarch64() -> anyhow::Result<()> {
    let entry = std::fs::read_to_string(QEMU_AARCH64).unwrap_or_default();
    if entry.lines().next() != Some("enabled") {
        anyhow::bail!(
            "linux-aarch64 programs run here under qemu-user, and {QEMU_AARCH64} is not enabled: \
             apt-get install qemu-user-static binfmt-support (then, in a container, `mount -t \
             binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable \
             qemu-aarch64`), and the aarch64 C library: dpkg --add-architecture arm64; apt-get \
             update; apt-get install libc6:arm64"
        );
    }
    if !std::path::Path::new("/lib/ld-linux-aarch64.so.1").exists() {
        anyhow::bail!(
            "linux-aarch64 programs need the aarch64 C library here (/lib/ld-linux-aarch64.so.1): \
             dpkg --add-architecture arm64; apt-get update; apt-get install libc6:arm64"
        );
    }
    Ok(())
}

/// How the target's python runs here on `route`.
pub fn runner_for(route: Route, platform: Platform, layout: &Layout) -> Runner {
    match route {
        Route::Cross if platform.is_windows() => Runner::Wine(Wine {
            dir: layout.cache.join("wine"),
        }),
        Route::Cross if platform.is_macos() => Runner::HostPython(HostPython::new(Markers {
            sys_platform: "darwin",
            platform_system: "Darwin",
            platform_machine: match platform {
                Platform::MacosArm64 => "arm64",
                _ => "x86_64",
            },
        })),
        _ => Runner::Native,
    }
}

/// Who compiles the bytecode of a target whose python runs here only emulated (Linux ARM under
/// qemu, five times slower): this machine's CPython of the same `X.Y`, where it has one.
pub fn host_compiler(route: Route, platform: Platform) -> Option<Runner> {
    (route == Route::Cross && platform == Platform::LinuxAarch64).then(|| {
        Runner::HostPython(HostPython::new(Markers {
            sys_platform: "linux",
            platform_system: "Linux",
            platform_machine: "aarch64",
        }))
    })
}

/// The cross route's pip: the set uv resolves for the target (or the lock's), its wheels
/// downloaded by this machine's pip and installed by the tool.
pub fn cross_pip_steps(
    distribution: &Distribution,
    platform: Platform,
    layout: &Layout,
    locked: Option<&Lock>,
    offline: bool,
    requirement_files: Vec<PathBuf>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let resolved = layout.env.join("cross-resolved.txt");
    let wanted = match locked {
        Some(lock) => {
            steps.push(Step::WriteFile(WriteFile {
                title: "Write the locked requirements".into(),
                path: layout.locked_requirements.clone(),
                contents: lock.requirements(),
            }));
            CrossWanted::Locked(layout.locked_requirements.clone())
        }
        None => {
            let packages_file = layout.env.join("cross-packages.txt");
            let python = resolve::python_version(distribution, platform, resolve::DEFAULT_PYTHON);
            // Offline, uv resolves from the wheelhouse alone, as the download then takes it.
            let mut sources = distribution.clone();
            if offline {
                sources.pip = PipSources {
                    find_links: vec![path_arg(&layout.wheelhouse)],
                    no_index: true,
                    ..PipSources::default()
                };
            }
            let compile = resolve::compile_command(
                &sources,
                platform,
                &python,
                &packages_file,
                &requirement_files,
                &resolved,
            )
            .map(|c| c.arg("--generate-hashes"))
            .unwrap_or_else(|e| Command::new("false").arg(format!("{e:#}")));
            CrossWanted::Resolve {
                compile,
                packages: distribution.python_packages_for(platform),
                packages_file,
            }
        }
    };
    let mut sources = if offline {
        vec!["--no-index".to_string()]
    } else {
        distribution.pip.args()
    };
    if !offline {
        sources.extend(distribution.pip_args_for(platform));
    }
    steps.push(Step::CrossPipInstall(CrossPipInstall {
        platform,
        prefix: layout.prefix.clone(),
        wanted,
        resolved,
        sources,
        wheelhouse: layout.wheelhouse.clone(),
        downloads: layout.env.join("wheels"),
        wheel_tags: wheel_tags(platform, &distribution.requires_at_most(platform)),
    }));
    steps
}

/// How this machine runs a zip of `platform` (`verify`): directly on its own platform, under
/// Wine (prefix and adapters kept in `cache`) for a Windows zip on Linux x86_64.
pub fn runner_here(platform: Platform, cache: &std::path::Path) -> anyhow::Result<Runner> {
    let host = Platform::host();
    if host == Some(platform) {
        return Ok(Runner::Native);
    }
    if platform.is_windows() && host == Some(Platform::LinuxX86_64) {
        return Ok(Runner::Wine(Wine {
            dir: cache.join("wine"),
        }));
    }
    if platform == Platform::LinuxAarch64 && host == Some(Platform::LinuxX86_64) {
        // binfmt hands each aarch64 program (and each it starts) to qemu-user.
        emulates_aarch64()?;
        return Ok(Runner::Native);
    }
    anyhow::bail!(
        "a {platform} zip cannot run on this {} machine: verify it on {platform}",
        host.map_or("unknown", |p| p.name())
    )
}
