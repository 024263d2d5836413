//! Programs the tool runs: a [`Command`] is data (program, arguments, environment) that plans
//! hold and dry runs print; it runs through xshell, never through a shell string, so paths with
//! spaces or quotes stay one argument each. Also a runner with a timeout, and tool lookup.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::util::progress::Reporter;

/// A program and its arguments, run without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Variables of this process's environment the program must not see.
    pub env_remove: Vec<String>,
}

impl Command {
    pub fn new(program: impl Into<PathBuf>) -> Command {
        Command {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Command {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Command {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Command {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The command as xshell runs it: environment set and removed, never through a shell.
    pub fn to_cmd<'a>(&self, sh: &'a Shell) -> xshell::Cmd<'a> {
        let program = &self.program;
        let args = &self.args;
        let mut cmd = cmd!(sh, "{program} {args...}").quiet();
        for key in &self.env_remove {
            cmd = cmd.env_remove(key);
        }
        for (key, value) in &self.env {
            cmd = cmd.env(key, value);
        }
        cmd
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.env {
            write!(f, "{key}={} ", quote(value))?;
        }
        write!(f, "{}", quote(&self.program.to_string_lossy()))?;
        for arg in &self.args {
            write!(f, " {}", quote(arg))?;
        }
        Ok(())
    }
}

fn quote(s: &str) -> String {
    if !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || "'\"$`\\;&|<>()*?".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A path as one argument.
pub fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Runs `command` with its output streamed to the terminal (the reporter's live lines out of its
/// way meanwhile).
pub fn run(sh: &Shell, reporter: &Reporter, command: &Command) -> Result<()> {
    reporter.detail(command.to_string());
    reporter
        .suspended(|| command.to_cmd(sh).run())
        .with_context(|| format!("command failed: {command}"))
}

/// Runs `command` and returns its standard output, failing with what it printed on both
/// streams. Both are pipes: Windows' python under Wine cannot start with a file as either.
pub fn read(sh: &Shell, command: &Command) -> Result<String> {
    let out = command
        .to_cmd(sh)
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run {}", command.program.display()))?;
    if !out.status.success() {
        bail!(
            "{command} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `command` and returns what it printed and how it ended, whatever that was.
pub fn output(sh: &Shell, reporter: &Reporter, command: &Command) -> Result<std::process::Output> {
    reporter.detail(command.to_string());
    command
        .to_cmd(sh)
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run {}", command.program.display()))
}

/// How a program run by [`run_with_timeout`] ended.
pub struct Finished {
    /// `None` when it was stopped at the timeout.
    pub status: Option<std::process::ExitStatus>,
    /// Its standard output and error, interleaved as they arrived.
    pub output: String,
    pub elapsed: Duration,
}

/// Runs `command` to its end or until `timeout`, then stops it (and, on Unix, whatever it
/// started: it runs in its own process group). Output is collected, not shown.
pub fn run_with_timeout(mut command: std::process::Command, timeout: Duration) -> Result<Finished> {
    use std::process::Stdio;
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    let output = Arc::new(Mutex::new(Vec::new()));
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut stream| {
        let output = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            while let Ok(n) = stream.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                output
                    .lock()
                    .expect("output lock")
                    .extend_from_slice(&buffer[..n]);
            }
        })
    })
    .collect();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() >= timeout {
            stop(&mut child);
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // A reader ends when every holder of the pipe has exited; after a timeout, leftovers of the
    // process group may hold it a moment longer, so do not wait for them forever.
    let deadline = Instant::now() + Duration::from_secs(5);
    for reader in readers {
        while !reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let bytes = output.lock().expect("output lock").clone();
    Ok(Finished {
        status,
        output: String::from_utf8_lossy(&bytes).into_owned(),
        elapsed: started.elapsed(),
    })
}

fn stop(child: &mut std::process::Child) {
    #[cfg(unix)]
    {
        // The whole group: a server it started must not outlive the check.
        let group = format!("-{}", child.id());
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
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
    fn a_program_past_its_timeout_is_stopped_with_what_it_printed() {
        let mut quick = std::process::Command::new("sh");
        quick.args(["-c", "echo out; echo err >&2; exit 3"]);
        let done = run_with_timeout(quick, Duration::from_secs(30)).unwrap();
        assert_eq!(done.status.and_then(|s| s.code()), Some(3));
        assert!(
            done.output.contains("out") && done.output.contains("err"),
            "{}",
            done.output
        );

        // A child that would keep the pipe open: the group is stopped with it.
        let mut slow = std::process::Command::new("sh");
        slow.args(["-c", "echo started; sleep 30 & sleep 30"]);
        let done = run_with_timeout(slow, Duration::from_millis(300)).unwrap();
        assert!(done.status.is_none());
        assert!(done.output.contains("started"), "{}", done.output);
        assert!(done.elapsed < Duration::from_secs(10), "{:?}", done.elapsed);
    }

    #[cfg(unix)]
    #[test]
    fn finds_sh() {
        assert!(require_tool("sh", "").is_ok());
    }
}
