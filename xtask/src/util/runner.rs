//! How this machine runs the target's programs (its python above all): directly, under Wine with
//! its adapters for a Windows zip built on Linux, or, where the target's programs cannot run at
//! all (a macOS zip built on Linux), a CPython of this machine standing in for its python in the
//! pure-Python steps. Chosen once, by the plan, with the route; the steps that run the target's
//! python are given it.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::util::host_python::HostPython;
use crate::util::process::Command;
use crate::util::progress::Reporter;
use crate::util::wine::Wine;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Runner {
    /// The target is this machine's own platform.
    #[default]
    Native,
    Wine(Wine),
    /// The target's programs cannot run here: a CPython of this machine stands in for its
    /// python in the pure-Python steps; the product itself is checked on the target.
    HostPython(HostPython),
}

impl Runner {
    /// Whatever the runner needs before it first runs `python`, the target's (Wine's prefix and
    /// adapters; the CPython that stands in for it).
    pub fn prepare(&self, reporter: &Reporter, python: &Path) -> Result<()> {
        match self {
            Runner::Native => Ok(()),
            Runner::Wine(wine) => wine.prepare(reporter),
            Runner::HostPython(host) => host.prepare(python),
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
            Runner::HostPython(host) => host.command(python, flags),
        }
    }

    /// Any other program of the target (a launcher, `cmd`); with a stand-in python, none runs
    /// here (the command names the program as it is, and fails as it would).
    pub fn program(&self, program: &Path) -> Command {
        match self {
            Runner::Native | Runner::HostPython(_) => Command::new(program),
            Runner::Wine(wine) => wine.command(program),
        }
    }

    /// A path the target's program printed, as a path of this machine.
    pub fn host_path(&self, printed: &str) -> PathBuf {
        match self {
            Runner::Native | Runner::HostPython(_) => PathBuf::from(printed),
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

    /// Whether each program mostly waits on another process (the Wine server).
    pub fn waits_on_a_server(&self) -> bool {
        matches!(self, Runner::Wine(_))
    }

    /// Whether the target's own programs run here: not with a stand-in python, where the
    /// product is checked on its own platform.
    pub fn runs_the_target(&self) -> bool {
        !matches!(self, Runner::HostPython(_))
    }
}
