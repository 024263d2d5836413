//! Runs planned commands through xshell: never through a shell string, so paths with spaces or
//! quotes stay one argument each.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::plan::Command;
use crate::progress::Reporter;

/// Runs `command` with its output streamed to the terminal.
pub fn run(sh: &Shell, reporter: &Reporter, command: &Command) -> Result<()> {
    reporter.detail(command.to_string());
    let program = &command.program;
    let args = &command.args;
    let mut cmd = cmd!(sh, "{program} {args...}").quiet();
    for (key, value) in &command.env {
        cmd = cmd.env(key, value);
    }
    cmd.run()
        .with_context(|| format!("command failed: {command}"))
}

/// Finds `program` on PATH, or says how to get it.
pub fn require_tool(program: &str, hint: &str) -> Result<PathBuf> {
    if let Some(found) = find_on_path(program) {
        return Ok(found);
    }
    bail!("{program} not found on PATH: {hint}")
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let exts: Vec<String> = if cfg!(windows) {
        vec![".exe".into(), ".cmd".into(), ".bat".into(), String::new()]
    } else {
        vec![String::new()]
    };
    std::env::split_paths(&path).find_map(|dir| {
        exts.iter()
            .map(|ext| dir.join(format!("{program}{ext}")))
            .find(|candidate| is_executable(candidate))
    })
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_says_what_to_do() {
        let err = require_tool("surely-not-a-real-tool-xyz", "install it").unwrap_err();
        assert_eq!(
            err.to_string(),
            "surely-not-a-real-tool-xyz not found on PATH: install it"
        );
    }

    #[cfg(unix)]
    #[test]
    fn finds_sh() {
        assert!(require_tool("sh", "").is_ok());
    }
}
