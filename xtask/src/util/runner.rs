//! How this machine runs the target's programs (its python above all): directly, or, for a
//! Windows zip built on Linux, under Wine with its adapters. Chosen once, by the plan, with the
//! route; the steps that run the target's python are given it.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::util::process::Command;
use crate::util::progress::Reporter;
use crate::util::wine::Wine;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Runner {
    /// The target is this machine's own platform.
    #[default]
    Native,
    Wine(Wine),
}

impl Runner {
    /// Whatever the runner needs before its first program (Wine's prefix and adapters).
    pub fn prepare(&self, reporter: &Reporter) -> Result<()> {
        match self {
            Runner::Native => Ok(()),
            Runner::Wine(wine) => wine.prepare(reporter),
        }
    }

    /// `python <flags>` as it runs here: under Wine, the adapter's `boot.py` follows the flags,
    /// so what comes next (`-c CODE`, `-m MODULE`, a script) runs as python would run it.
    pub fn python(&self, python: &Path, flags: &[&str]) -> Command {
        match self {
            Runner::Native => Command::new(python).args(flags.iter().copied()),
            Runner::Wine(wine) => wine
                .command(python)
                .args(flags.iter().copied())
                .arg(wine.boot_py().to_string_lossy()),
        }
    }

    /// Any other program of the target (a launcher, `cmd`).
    pub fn program(&self, program: &Path) -> Command {
        match self {
            Runner::Native => Command::new(program),
            Runner::Wine(wine) => wine.command(program),
        }
    }

    /// A path the target's program printed, as a path of this machine.
    pub fn host_path(&self, printed: &str) -> PathBuf {
        match self {
            Runner::Native => PathBuf::from(printed),
            Runner::Wine(_) => Wine::host_path(printed),
        }
    }

    /// `command` as a `std::process::Command` (for runs with a timeout).
    pub fn std_command(command: &Command) -> std::process::Command {
        let mut std = std::process::Command::new(&command.program);
        std.args(&command.args);
        for key in &command.env_remove {
            std.env_remove(key);
        }
        for (key, value) in &command.env {
            std.env(key, value);
        }
        std
    }

    pub fn is_native(&self) -> bool {
        matches!(self, Runner::Native)
    }
}
