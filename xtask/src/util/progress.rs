//! What the user sees while a build runs: a header per step with its duration, a spinner with
//! the time so far under a step that is still running, and bars for downloads and the zip, on a
//! terminal (indicatif); one plain line per event elsewhere (a CI log, a file). Stages report
//! through this, never by printing themselves, so the output keeps one shape.
// The reporter owns the terminal: the one place that prints while work is under way.
#![allow(clippy::print_stderr)]

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::util::units::{human_bytes, human_duration};

#[derive(Debug, Clone)]
pub struct Reporter {
    /// The live lines, on a terminal only.
    bars: Option<MultiProgress>,
    pub verbose: bool,
    /// Every stage finished so far, in order, with how long it took.
    timings: Arc<Mutex<Vec<(String, Duration)>>>,
}

impl Reporter {
    pub fn new(verbose: bool) -> Reporter {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Reporter {
            bars,
            verbose,
            timings: Arc::default(),
        }
    }

    /// One line, above whatever is live on a terminal.
    fn line(&self, text: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// A line of its own at the level of a stage's header: what a build decided.
    pub fn headline(&self, message: impl AsRef<str>) {
        self.line(&format!("==> {}", message.as_ref()));
    }

    /// Starts a stage: prints its header now (on a terminal, a spinner with the time so far
    /// under it) and its duration when the returned guard is finished.
    pub fn stage(&self, title: impl Into<String>) -> StageTimer {
        let title = title.into();
        self.line(&format!("==> {title}"));
        let spinner = self.bars.as_ref().map(|bars| {
            let spinner = bars.add(ProgressBar::new_spinner());
            spinner.set_style(
                ProgressStyle::with_template("    {spinner} {msg} ({elapsed})")
                    .expect("a valid template"),
            );
            spinner.set_message(title.clone());
            spinner.enable_steady_tick(Duration::from_millis(120));
            spinner
        });
        StageTimer {
            title,
            started: Instant::now(),
            reporter: self.clone(),
            spinner,
        }
    }

    /// The stages finished so far and their durations, in the order they ran.
    pub fn timings(&self) -> Vec<(String, Duration)> {
        self.timings.lock().expect("not poisoned").clone()
    }

    pub fn note(&self, message: impl AsRef<str>) {
        self.line(&format!("    {}", message.as_ref()));
    }

    /// Shown only with `--verbose`: command lines and other detail.
    pub fn detail(&self, message: impl AsRef<str>) {
        if self.verbose {
            self.line(&format!("    $ {}", message.as_ref()));
        }
    }

    /// Runs `f` (a program writing to the terminal itself) with the live lines out of its way.
    pub fn suspended<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.bars {
            Some(bars) => bars.suspend(f),
            None => f(),
        }
    }

    /// Bytes, rate and time left of a long transfer on a terminal; one line when it ends.
    /// `verb` says what happened to the bytes ("downloaded", "zipped").
    pub fn transfer(&self, verb: &'static str, what: &str, total: Option<u64>) -> Transfer {
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(match total {
                Some(total) => ProgressBar::new(total),
                None => ProgressBar::new_spinner(),
            });
            let template = if total.is_some() {
                "    {msg} {bytes} / {total_bytes} ({bytes_per_sec}, {eta} left) {wide_bar}"
            } else {
                "    {spinner} {msg} {bytes} ({bytes_per_sec})"
            };
            bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
            bar.set_message(what.to_string());
            bar
        });
        Transfer {
            reporter: self.clone(),
            bar,
            verb,
            what: what.to_string(),
            done: 0,
            started: Instant::now(),
        }
    }
}

pub struct StageTimer {
    title: String,
    started: Instant,
    reporter: Reporter,
    spinner: Option<ProgressBar>,
}

impl StageTimer {
    pub fn finish(self) {
        let elapsed = self.started.elapsed();
        if let Some(spinner) = &self.spinner {
            spinner.finish_and_clear();
        }
        self.reporter.line(&format!(
            "    {} done in {}",
            self.title,
            human_duration(elapsed)
        ));
        self.reporter
            .timings
            .lock()
            .expect("not poisoned")
            .push((self.title.clone(), elapsed));
    }
}

impl Drop for StageTimer {
    /// A stage that failed leaves no spinner behind.
    fn drop(&mut self) {
        if let Some(spinner) = &self.spinner {
            spinner.finish_and_clear();
        }
    }
}

pub struct Transfer {
    reporter: Reporter,
    bar: Option<ProgressBar>,
    verb: &'static str,
    what: String,
    done: u64,
    started: Instant,
}

impl Transfer {
    pub fn advance(&mut self, bytes: u64) {
        self.advance_to(self.done + bytes);
    }

    pub fn advance_to(&mut self, done: u64) {
        self.done = done;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.reporter.line(&format!(
            "    {} {} ({}) in {}",
            self.verb,
            self.what,
            human_bytes(self.done),
            human_duration(self.started.elapsed())
        ));
    }
}
