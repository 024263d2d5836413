//! What the user sees while a build runs: a header per stage with its duration, and download
//! progress on a terminal. Stages report through this, never by printing themselves, so the
//! output stays one consistent shape (and plain, one line per event, when it is not a terminal).
// The reporter owns the terminal: the one place that prints while work is under way.
#![allow(clippy::print_stderr)]

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::units::{human_bytes, human_duration};

#[derive(Debug, Clone)]
pub struct Reporter {
    tty: bool,
    pub verbose: bool,
    /// Every stage finished so far, in order, with how long it took.
    timings: Arc<Mutex<Vec<(String, Duration)>>>,
}

impl Reporter {
    pub fn new(verbose: bool) -> Reporter {
        Reporter {
            tty: std::io::stderr().is_terminal(),
            verbose,
            timings: Arc::default(),
        }
    }

    /// Starts a stage: prints its header now and its duration when the returned guard is finished.
    pub fn stage(&self, title: impl Into<String>) -> StageTimer {
        let title = title.into();
        eprintln!("==> {title}");
        StageTimer {
            title,
            started: Instant::now(),
            timings: Arc::clone(&self.timings),
        }
    }

    /// The stages finished so far and their durations, in the order they ran.
    pub fn timings(&self) -> Vec<(String, Duration)> {
        self.timings.lock().expect("not poisoned").clone()
    }

    pub fn note(&self, message: impl AsRef<str>) {
        eprintln!("    {}", message.as_ref());
    }

    /// Shown only with `--verbose`: command lines and other detail.
    pub fn detail(&self, message: impl AsRef<str>) {
        if self.verbose {
            eprintln!("    $ {}", message.as_ref());
        }
    }

    /// Bytes, rate and ETA of a long transfer on a terminal; one line when it ends. `verb` says
    /// what happened to the bytes ("downloaded", "zipped").
    pub fn transfer(&self, verb: &'static str, what: &str, total: Option<u64>) -> Transfer {
        Transfer {
            tty: self.tty,
            verb,
            what: what.to_string(),
            total,
            done: 0,
            started: Instant::now(),
            last_draw: None,
        }
    }
}

pub struct StageTimer {
    title: String,
    started: Instant,
    timings: Arc<Mutex<Vec<(String, Duration)>>>,
}

impl StageTimer {
    pub fn finish(self) {
        let elapsed = self.started.elapsed();
        eprintln!("    {} done in {}", self.title, human_duration(elapsed));
        self.timings
            .lock()
            .expect("not poisoned")
            .push((self.title, elapsed));
    }
}

pub struct Transfer {
    tty: bool,
    verb: &'static str,
    what: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_draw: Option<Instant>,
}

impl Transfer {
    pub fn advance(&mut self, bytes: u64) {
        self.advance_to(self.done + bytes);
    }

    pub fn advance_to(&mut self, done: u64) {
        self.done = done;
        if !self.tty {
            return;
        }
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|t| now - t < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(now);
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done as f64 / elapsed;
        let line = match self.total {
            Some(total) if total > 0 => {
                let eta = (total.saturating_sub(self.done)) as f64 / rate.max(1.0);
                format!(
                    "{} {} / {} ({}/s, ETA {})",
                    self.what,
                    human_bytes(self.done),
                    human_bytes(total),
                    human_bytes(rate as u64),
                    human_duration(Duration::from_secs_f64(eta))
                )
            }
            _ => format!(
                "{} {} ({}/s)",
                self.what,
                human_bytes(self.done),
                human_bytes(rate as u64)
            ),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K    {line}");
        let _ = err.flush();
    }

    pub fn finish(self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!(
            "    {} {} ({}) in {}",
            self.verb,
            self.what,
            human_bytes(self.done),
            human_duration(self.started.elapsed())
        );
    }
}
