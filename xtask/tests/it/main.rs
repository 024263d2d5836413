//! The integration tests, one binary with a module per subject. They run the built `xtask`
//! against hermetic stand-ins (the `test-support` crate: a loopback server with a
//! Miniforge-shaped installer, git repos and wheels made here, real native binaries of every
//! platform), or call the library where no command line is needed. Tests marked ignored need
//! PyPI or uv (`--include-ignored`); `real_product` only builds with `--features real-product`.

// The PyPI and real-product tests print the figures they measured.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[cfg(unix)]
mod aarch64_cross;
mod archive_cli;
mod codesign;
mod linkage;
mod macos_cross;
#[cfg(unix)]
mod package_guard;
mod package_manager;
mod package_page;
#[cfg(unix)]
mod package_undo;
mod package_zip;
mod packages;
mod plans;
mod portable;
mod portable_lock;
mod portable_sources;
mod prune;
mod prune_cli;
mod prune_page;
mod pypi_macos_ceiling;
mod pypi_pillow;
mod pypi_system_needs;
#[cfg(feature = "real-product")]
mod real_product;
mod rebuild;
mod resolve_cli;
#[cfg(unix)]
mod route_comparison;
mod tidy;
#[cfg(unix)]
mod update;
#[cfg(unix)]
mod update_faults;
#[cfg(unix)]
mod update_releases;
mod windows;
mod windows_cross;
mod windows_packages;
mod windows_update;
mod workflows;
