//! What steps act on the world with: a shell for the programs they run, the reporter for all they
//! tell, and the HTTP client. Made once per command and lent to every step.

use anyhow::Result;
use xshell::Shell;

use crate::util::http::Downloader;
use crate::util::progress::Reporter;

pub struct Tools {
    pub sh: Shell,
    pub reporter: Reporter,
    pub downloader: Downloader,
}

impl Tools {
    pub fn new(verbose: bool) -> Result<Tools> {
        let reporter = Reporter::new(verbose);
        Ok(Tools {
            sh: Shell::new()?,
            downloader: Downloader::new(reporter.clone())?,
            reporter,
        })
    }
}
