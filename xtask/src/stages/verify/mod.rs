//! Proves the zip works where a user would put it: unpacked into a different folder (with a
//! space and non-ASCII characters in its path) while the build's environment is moved out of
//! reach, its python runs each smoke check there, and the smoke commands start the product.
//! The same imports and checks also run in the installed environment, to fail fast.
//! Where the target's programs cannot run (a macOS zip built on Linux), the zip is verified on
//! its own platform (`cargo xtask verify`, CI's verify job) and here only its signatures.

pub mod signatures;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::model::platform::Platform;
use crate::model::smoke::{smoke_steps, Smoke, SmokeCommand, SMOKE_MARK, SMOKE_RUNNER};
use crate::stages::describe::{Describe, Stage};
use crate::util::inputs::Inputs;
use crate::util::process::{self, Command};
use crate::util::progress::Reporter;
use crate::util::runner::Runner;
use crate::util::tools::Tools;
use crate::util::units::human_duration;

/// Runs the smoke imports and checks in the installed environment, right after pip.
#[derive(Debug, Clone)]
pub struct SmokeInstalled {
    pub python: PathBuf,
    pub runner: Runner,
    pub smoke: Smoke,
    /// Where their bytecode goes, outside the environment, for the zip's recording run too.
    pub bytecode_cache: PathBuf,
}

impl SmokeInstalled {
    pub fn run(&self, tools: &Tools) -> Result<()> {
        self.runner.prepare(&tools.reporter, &self.python)?;
        smoke_installed(
            &tools.sh,
            &tools.reporter,
            &self.runner,
            &self.python,
            &self.smoke,
            &self.bytecode_cache,
        )
    }
}

impl Describe for SmokeInstalled {
    fn title(&self) -> String {
        "Check the installed environment".into()
    }

    fn stage(&self) -> Stage {
        Stage::Env
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "check the installed environment with {}: {}",
            self.python.display(),
            summary(&self.smoke, false)
        )
    }

    /// The checks judge the environment; changing one does not change what is installed.
    fn inputs(&self, _: &mut Inputs) {}
}

/// Unpacks the zip elsewhere and runs every smoke check there, with the installed environment
/// (`env`) moved aside so nothing can reach back into it.
#[derive(Debug, Clone)]
pub struct Verify {
    pub platform: Platform,
    pub runner: Runner,
    pub zip: PathBuf,
    pub unpack: PathBuf,
    pub env: PathBuf,
    pub smoke: Smoke,
}

impl Verify {
    pub fn run(&self, tools: &Tools) -> Result<()> {
        if !self.runner.runs_the_target() {
            tools.reporter.note(format!(
                "NOT VERIFIED HERE: a {} zip runs only on {0}; verify it there with `cargo \
                 xtask verify {}` (CI's verify job does) before it is released",
                self.platform,
                self.zip.display()
            ));
            return Ok(());
        }
        let root = unpack(&self.zip, &self.unpack)?;
        let aside = MovedAside::new(&self.env, &tools.reporter)?;
        tools.reporter.note(format!(
            "{} is moved aside while the unpacked copy runs",
            self.env.display()
        ));
        smoke_unpacked(
            &tools.sh,
            &tools.reporter,
            &self.runner,
            self.platform,
            &root,
            &self.smoke,
        )?;
        aside.restore()
    }
}

impl Describe for Verify {
    fn title(&self) -> String {
        "Verify the unpacked zip".into()
    }

    fn stage(&self) -> Stage {
        Stage::Dist
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.runner.runs_the_target() {
            return write!(
                f,
                "verify: not here, where {} programs cannot run: on {0}, `cargo xtask verify` \
                 of the zip ({})",
                self.platform,
                summary(&self.smoke, true)
            );
        }
        write!(
            f,
            "verify: unpack {} into {}, move {} aside, then {}",
            self.zip.display(),
            self.unpack.display(),
            self.env.display(),
            summary(&self.smoke, true)
        )
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set(
            "smoke checks",
            serde_json::to_string(&self.smoke).unwrap_or_default(),
        );
    }
}

/// What a smoke run does, in one line: the imports, the checks and (unpacked) the commands.
fn summary(smoke: &Smoke, unpacked: bool) -> String {
    let mut parts = Vec::new();
    if !smoke.imports.is_empty() {
        parts.push(format!("import {}", smoke.imports.join(", ")));
    }
    for check in &smoke.checks {
        parts.push(format!("check that {}", check.name));
    }
    if unpacked {
        for command in &smoke.commands {
            let expected = if command.expected.is_empty() {
                String::new()
            } else {
                format!(", expecting `{}`", command.expected.join("`, `"))
            };
            parts.push(format!(
                "run `{}` ({}{expected})",
                command.run.join(" "),
                command.name
            ));
        }
    }
    if parts.is_empty() {
        "nothing to run".to_string()
    } else {
        parts.join("; ")
    }
}

/// Unpacks `zip`, or all its volumes where it was written as volumes, into `unpack` (replacing
/// what was there) and returns the unpacked `anymatix/`.
pub fn unpack(zip: &Path, unpack: &Path) -> Result<PathBuf> {
    if unpack.exists() {
        fs_err::remove_dir_all(unpack)?;
    }
    fs_err::create_dir_all(unpack)?;
    let zips = crate::stages::archive::zip_or_volumes(zip);
    if zips.is_empty() {
        bail!("{} is missing, and so are its volumes", zip.display());
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for zip in &zips {
        crate::stages::archive::extract(zip, unpack, threads).with_context(|| {
            format!("cannot unpack {} into {}", zip.display(), unpack.display())
        })?;
    }
    let root = unpack.join("anymatix");
    if !root.is_dir() {
        bail!("{} has no anymatix/ folder at its root", zip.display());
    }
    Ok(root)
}

/// Runs the smoke imports and checks with the installed environment's own python, right after
/// pip: a resolve that gives a broken set fails here in seconds. The environment stays as pip
/// left it: bytecode goes to `cache`, outside it.
pub fn smoke_installed(
    sh: &Shell,
    reporter: &Reporter,
    runner: &Runner,
    python: &Path,
    smoke: &Smoke,
    cache: &Path,
) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let cache = BytecodeCache::new(sh, cache);
    let _cwd = sh.push_dir(scratch.path());
    let _user_site = sh.push_env("PYTHONNOUSERSITE", "1");
    imports_and_checks(sh, reporter, runner, python, scratch.path(), smoke)?;
    drop(cache);
    Ok(())
}

/// Bytecode written outside the tree (`PYTHONPYCACHEPREFIX`) for the programs `sh` runs while
/// it lives: the tree stays as it was, and each module is compiled once for every process that
/// imports it (each smoke command, and the checks, import torch: thousands of modules).
pub struct BytecodeCache<'a> {
    pub dir: PathBuf,
    _guards: [xshell::PushEnv<'a>; 2],
}

impl<'a> BytecodeCache<'a> {
    pub fn new(sh: &'a Shell, dir: &Path) -> BytecodeCache<'a> {
        BytecodeCache {
            dir: dir.to_path_buf(),
            _guards: [
                sh.push_env("PYTHONPYCACHEPREFIX", dir),
                // Empty is unset to Python: a machine's PYTHONDONTWRITEBYTECODE=1 would make
                // every check compile again.
                sh.push_env("PYTHONDONTWRITEBYTECODE", ""),
            ],
        }
    }
}

/// Runs every smoke check with the unpacked environment's own python: pip, the imports, the
/// checks, the helper script, then the commands (such as ComfyUI's own start-up check).
pub fn smoke_unpacked(
    sh: &Shell,
    reporter: &Reporter,
    runner: &Runner,
    platform: Platform,
    root: &Path,
    smoke: &Smoke,
) -> Result<()> {
    let python = root.join("python").join(platform.python_in_prefix());
    runner.prepare(reporter, &python)?;
    // Run from a neutral folder, and keep the build's environment variables out of the way.
    let scratch = tempfile::tempdir()?;
    let _cwd = sh.push_dir(scratch.path());
    let _user_site = sh.push_env("PYTHONNOUSERSITE", "1");
    let _quiet_pip = sh.push_env("PIP_DISABLE_PIP_VERSION_CHECK", "1");

    let mut pip = runner
        .python(&python, &["-s"])
        .args(["-m", "pip", "--version"]);
    pip.env_remove = vec!["PYTHONPATH".into(), "PYTHONHOME".into()];
    check(reporter, "python -m pip --version", || pip.to_cmd(sh))?;
    imports_and_checks(sh, reporter, runner, &python, scratch.path(), smoke)?;
    let helper = root.join(platform.helper_script_name());
    // `pip install --help` proves the script finds its python from wherever it is unpacked.
    let name = format!("{} --help", platform.helper_script_name());
    let helper = if platform.is_windows() {
        runner
            .program(Path::new("cmd"))
            .arg("/C")
            .arg(process::path_arg(&helper))
    } else {
        runner.program(&helper)
    }
    .arg("--help");
    check(reporter, &name, || helper.to_cmd(sh).ignore_stdout())?;
    for command in &smoke.commands {
        run_command(reporter, runner, command, &python, root, None)?;
    }
    Ok(())
}

/// The smoke imports, checks and commands with `python`, from `root` (the tree they belong to):
/// what the product does when it starts, without the checks of the unpacked copy itself. Their
/// bytecode goes to `cache`, outside the tree. The checks' process runs beside the commands
/// (each mostly waits on imports: together they take the longer one's time, not the sum).
pub fn run_checks_and_commands(
    reporter: &Reporter,
    runner: &Runner,
    python: &Path,
    root: &Path,
    smoke: &Smoke,
    cache: &Path,
) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    std::thread::scope(|scope| {
        let checks = scope.spawn(|| {
            let sh = Shell::new()?;
            sh.change_dir(scratch.path());
            sh.set_var("PYTHONNOUSERSITE", "1");
            sh.set_var("PYTHONPYCACHEPREFIX", cache);
            // Empty is unset to Python: a machine's PYTHONDONTWRITEBYTECODE=1 would make every
            // check compile again.
            sh.set_var("PYTHONDONTWRITEBYTECODE", "");
            imports_and_checks(&sh, reporter, runner, python, scratch.path(), smoke)
        });
        let commands = smoke.commands.iter().try_for_each(|command| {
            run_command(reporter, runner, command, python, root, Some(cache))
        });
        let checks = checks.join().expect("the checks' thread panicked");
        checks.and(commands)
    })
}

/// The smoke imports and checks with `python`, in one process: torch (and whatever else they
/// share) is imported once. The first that fails is named, with its traceback and what the
/// process printed.
fn imports_and_checks(
    sh: &Shell,
    reporter: &Reporter,
    runner: &Runner,
    python: &Path,
    scratch: &Path,
    smoke: &Smoke,
) -> Result<()> {
    let steps = smoke_steps(smoke, scratch);
    if steps.is_empty() {
        return Ok(());
    }
    let steps_json = serde_json::to_string(&steps)?;
    let mut command = runner
        .python(python, &["-s"])
        .args(["-c", SMOKE_RUNNER, &steps_json]);
    command.env_remove = vec!["PYTHONPATH".into(), "PYTHONHOME".into()];
    let output = command
        .to_cmd(sh)
        .ignore_status()
        .output()
        .context("the smoke checks could not start")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let printed: String = stdout
        .lines()
        .filter(|l| !l.starts_with(SMOKE_MARK))
        .map(|l| format!("{l}\n"))
        .chain(std::iter::once(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
        .collect();
    let mut started = None;
    for line in stdout.lines() {
        let Some(event) = line.strip_prefix(SMOKE_MARK) else {
            continue;
        };
        let event: serde_json::Value = serde_json::from_str(event.trim())?;
        let name = event["name"].as_str().unwrap_or_default().to_string();
        match event["event"].as_str() {
            Some("start") => started = Some(name),
            Some("ok") => {
                reporter.note(format!("ok: {name}"));
                started = None;
            }
            _ => bail!(
                "smoke check `{name}` failed:\n{}{}",
                event["error"].as_str().unwrap_or_default(),
                printed.trim_end()
            ),
        }
    }
    if let Some(name) = started {
        bail!(
            "smoke check `{name}` ended the python running the checks ({}):\n{}",
            output.status,
            printed.trim_end()
        );
    }
    if !output.status.success() {
        bail!(
            "the smoke checks failed ({}):\n{}",
            output.status,
            printed.trim_end()
        );
    }
    Ok(())
}

/// A smoke command as the runner runs it: `{python}` with its flags through the runner's python
/// (under Wine, its adapter follows the flags), any other program through the runner.
fn target_command(
    runner: &Runner,
    command: &SmokeCommand,
    python: &Path,
    args: &[String],
) -> Command {
    if command.run.first().map(String::as_str) == Some("{python}") {
        let flags = args[1..]
            .iter()
            .take_while(|a| a.starts_with('-') && !matches!(a.as_str(), "-c" | "-m"))
            .count();
        let flag_args: Vec<&str> = args[1..1 + flags].iter().map(String::as_str).collect();
        return runner
            .python(python, &flag_args)
            .args(args[1 + flags..].iter().cloned());
    }
    runner
        .program(Path::new(&args[0]))
        .args(args[1..].iter().cloned())
}

/// `{python}` and `{root}` in a smoke command's arguments.
fn substitute(arg: &str, python: &Path, root: &Path) -> String {
    arg.replace("{python}", &python.to_string_lossy())
        .replace("{root}", &root.to_string_lossy())
}

/// The lines of `output` holding a `fail_on` text: (those `expected` also names, the others).
fn flagged_lines<'a>(command: &SmokeCommand, output: &'a str) -> (Vec<&'a str>, Vec<&'a str>) {
    output
        .lines()
        .filter(|line| command.fail_on.iter().any(|t| line.contains(t.as_str())))
        .partition(|line| command.expected.iter().any(|t| line.contains(t.as_str())))
}

/// Runs one smoke command from the unpacked copy, within its timeout; fails on a non-zero exit
/// or on a line of output that holds one of its `fail_on` texts, showing what it printed.
fn run_command(
    reporter: &Reporter,
    runner: &Runner,
    command: &SmokeCommand,
    python: &Path,
    root: &Path,
    bytecode_cache: Option<&Path>,
) -> Result<()> {
    let args: Vec<String> = command
        .run
        .iter()
        .map(|a| substitute(a, python, root))
        .collect();
    let cwd = match &command.cwd {
        Some(cwd) => root.join(cwd),
        None => root.to_path_buf(),
    };
    if !cwd.is_dir() {
        bail!(
            "smoke command `{}`: its folder {} is not in the zip",
            command.name,
            cwd.display()
        );
    }
    let mut process = Runner::std_command(&target_command(runner, command, python, &args));
    process
        .current_dir(&cwd)
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env("PYTHONNOUSERSITE", "1");
    if let Some(cache) = bytecode_cache {
        process
            .env("PYTHONPYCACHEPREFIX", cache)
            .env_remove("PYTHONDONTWRITEBYTECODE");
    }
    reporter.detail(format!("(in {}) {}", cwd.display(), args.join(" ")));
    let finished = process::run_with_timeout(process, Duration::from_secs(command.timeout))
        .with_context(|| format!("smoke command `{}` could not start", command.name))?;
    let tail = || last_lines(&finished.output, 60);
    let Some(status) = finished.status else {
        bail!(
            "smoke command `{}` did not finish within {} s and was stopped; its last output:\n{}",
            command.name,
            command.timeout,
            tail()
        );
    };
    if !status.success() {
        bail!(
            "smoke command `{}` failed ({status}); its last output:\n{}",
            command.name,
            tail()
        );
    }
    let (expected, flagged) = flagged_lines(command, &finished.output);
    for line in expected {
        reporter.note(format!(
            "expected, not a failure (the command's `expected`, or the platform's skip_requirements): {}",
            line.trim()
        ));
    }
    if !flagged.is_empty() {
        bail!(
            "smoke command `{}` exited 0, but {} line(s) of its output contain {}:\n{}",
            command.name,
            flagged.len(),
            command
                .fail_on
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(" or "),
            flagged
                .iter()
                .map(|l| format!("  {}", l.trim()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    reporter.note(format!(
        "ok: {} ({})",
        command.name,
        human_duration(finished.elapsed)
    ));
    Ok(())
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| format!("  {l}\n")).collect()
}

/// The installed environment moved out of reach while the unpacked copy is checked, so nothing
/// there can quietly load from the build's folders; put back when dropped. A build killed
/// meanwhile leaves it moved: [`restore_moved_aside`] puts it back at the next start.
pub struct MovedAside {
    from: PathBuf,
    to: PathBuf,
    restored: bool,
    reporter: Reporter,
}

/// Where [`MovedAside`] keeps `env`.
pub fn aside_path(env: &Path) -> PathBuf {
    let mut name = env.file_name().unwrap_or_default().to_os_string();
    name.push(".moved-aside-by-verify");
    env.with_file_name(name)
}

impl MovedAside {
    pub fn new(env: &Path, reporter: &Reporter) -> Result<MovedAside> {
        let to = aside_path(env);
        fs_err::rename(env, &to).with_context(|| {
            format!(
                "cannot move the installed environment aside while the unpacked zip is checked \
                 (is a program still running from {}?)",
                env.display()
            )
        })?;
        Ok(MovedAside {
            from: env.to_path_buf(),
            to,
            restored: false,
            reporter: reporter.clone(),
        })
    }

    pub fn restore(mut self) -> Result<()> {
        self.restored = true;
        fs_err::rename(&self.to, &self.from)
            .with_context(|| format!("cannot put {} back", self.from.display()))?;
        Ok(())
    }
}

impl Drop for MovedAside {
    fn drop(&mut self) {
        if !self.restored {
            if let Err(e) = std::fs::rename(&self.to, &self.from) {
                // The next build puts it back anyway.
                self.reporter.note(format!(
                    "cannot put {} back from {}: {e}",
                    self.from.display(),
                    self.to.display()
                ));
            }
        }
    }
}

/// Puts back an environment that an interrupted verify left moved aside. Returns whether it did.
pub fn restore_moved_aside(env: &Path) -> Result<bool> {
    let aside = aside_path(env);
    if !aside.exists() {
        return Ok(false);
    }
    if env.exists() {
        // An environment was installed since; the one moved aside is out of date.
        fs_err::remove_dir_all(&aside)?;
        return Ok(false);
    }
    fs_err::rename(&aside, env)?;
    Ok(true)
}

fn check<'a>(
    reporter: &Reporter,
    name: &str,
    make: impl FnOnce() -> xshell::Cmd<'a>,
) -> Result<()> {
    let output = make()
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("smoke check `{name}` could not start"))?;
    if !output.status.success() {
        bail!(
            "smoke check `{name}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    reporter.note(format!("ok: {name}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expected_import_failure_is_told_apart_from_another() {
        let command = SmokeCommand {
            name: "ComfyUI starts".into(),
            run: vec![],
            cwd: None,
            timeout: 1,
            fail_on: vec!["IMPORT FAILED".into()],
            expected: vec!["IMPORT FAILED: nodes_glsl.py".into()],
        };
        let output =
            "Starting server\nIMPORT FAILED: nodes_glsl.py\nIMPORT FAILED: nodes_audio.py\n\
                      0.1 seconds (IMPORT FAILED): custom_nodes/x\n";
        let (expected, flagged) = flagged_lines(&command, output);
        assert_eq!(expected, ["IMPORT FAILED: nodes_glsl.py"]);
        assert_eq!(
            flagged,
            [
                "IMPORT FAILED: nodes_audio.py",
                "0.1 seconds (IMPORT FAILED): custom_nodes/x"
            ]
        );
    }

    #[test]
    fn an_environment_moved_aside_comes_back_even_after_an_interruption() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("env");
        fs_err::create_dir_all(env.join("anymatix")).unwrap();
        let aside = MovedAside::new(&env, &Reporter::new(false)).unwrap();
        assert!(!env.exists() && aside_path(&env).is_dir());
        drop(aside);
        assert!(env.join("anymatix").is_dir() && !aside_path(&env).exists());

        // As a killed build leaves it: moved, never restored.
        std::mem::forget(MovedAside::new(&env, &Reporter::new(false)).unwrap());
        assert!(!env.exists());
        assert!(restore_moved_aside(&env).unwrap());
        assert!(env.join("anymatix").is_dir());
        assert!(!restore_moved_aside(&env).unwrap());

        // Both there (installed anew since): the stale copy goes.
        fs_err::create_dir_all(aside_path(&env)).unwrap();
        assert!(!restore_moved_aside(&env).unwrap());
        assert!(env.is_dir() && !aside_path(&env).exists());
    }

    fn smoke(imports: &[&str], checks: &[(&str, &str)]) -> Smoke {
        Smoke {
            imports: imports.iter().map(|s| s.to_string()).collect(),
            checks: checks
                .iter()
                .map(|(name, code)| crate::model::smoke::SmokeCheck {
                    name: name.to_string(),
                    code: code.to_string(),
                })
                .collect(),
            commands: vec![],
        }
    }

    /// The host's own python runs them: one process, each step named, the first failure (or
    /// crash) named with what it printed.
    #[test]
    fn smoke_checks_run_in_one_process_and_name_what_fails() {
        let sh = Shell::new().unwrap();
        let reporter = Reporter::new(false);
        let python = Path::new("python3");
        let scratch = tempfile::tempdir().unwrap();
        let run = |s: &Smoke| {
            imports_and_checks(&sh, &reporter, &Runner::Native, python, scratch.path(), s)
                .map_err(|e| format!("{e:#}"))
        };
        // One process: what the first check sets up, the next sees.
        run(&smoke(
            &["json", "os.path"],
            &[
                (
                    "leaves a mark",
                    "import sys; sys.smoke_mark = 1; print('hello')",
                ),
                (
                    "sees it",
                    "import sys; assert sys.smoke_mark == 1; sys.exit(0)",
                ),
            ],
        ))
        .unwrap();

        let err = run(&smoke(
            &["json", "no_such_module_here"],
            &[("never runs", "pass")],
        ))
        .unwrap_err();
        assert!(
            err.contains("smoke check `import no_such_module_here` failed"),
            "{err}"
        );
        assert!(err.contains("ModuleNotFoundError"), "{err}");

        let err = run(&smoke(
            &[],
            &[(
                "says why",
                "print('about to fail'); assert 1 == 2, 'one is not two'",
            )],
        ))
        .unwrap_err();
        assert!(err.contains("smoke check `says why` failed"), "{err}");
        assert!(
            err.contains("one is not two") && err.contains("about to fail"),
            "{err}"
        );

        let err = run(&smoke(&[], &[("dies", "import os; os._exit(3)")])).unwrap_err();
        assert!(err.contains("smoke check `dies` ended the python"), "{err}");
        let err = run(&smoke(&[], &[("exits", "raise SystemExit(2)")])).unwrap_err();
        assert!(err.contains("it exited with 2"), "{err}");
    }

    #[test]
    fn placeholders_become_the_unpacked_paths() {
        let python = Path::new("/u/anymatix/python/bin/python3");
        let root = Path::new("/u/anymatix");
        assert_eq!(
            substitute("{python}", python, root),
            "/u/anymatix/python/bin/python3"
        );
        assert_eq!(
            substitute("--base={root}/ComfyUI", python, root),
            "--base=/u/anymatix/ComfyUI"
        );
    }
}
