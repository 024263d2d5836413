//! `packages.sh gui` driven from a test: started with the caller's command (its environment
//! decides where packages come from), its first line read as the page's address, its API called
//! with the token as the page calls it, its changes waited for. Stopped when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Page {
    child: Child,
    pub port: u16,
    pub token: String,
    /// The first line it printed.
    pub url: String,
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Page {
    /// Starts `cmd` (`packages.sh gui --no-browser`) and reads the page's address.
    pub fn serve(mut cmd: Command) -> Page {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first.trim().to_string();
        let rest = url
            .strip_prefix("http://127.0.0.1:")
            .unwrap_or_else(|| panic!("the first line is not a loopback address: {url:?}"));
        let (port, token) = rest.split_once("/?token=").unwrap();
        Page {
            port: port.parse().unwrap(),
            token: token.to_string(),
            child,
            url,
        }
    }

    /// One request as the page makes it: the token in `X-Token`, the page's own `Origin`.
    pub fn api(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let origin = format!("http://127.0.0.1:{}", self.port);
        let (status, text) = crate::http_exchange(
            self.port,
            method,
            path,
            &[("X-Token", &self.token), ("Origin", &origin)],
            body,
        )
        .unwrap();
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    /// Opens the page as a browser does with the printed address: the token is exchanged for a
    /// session cookie and a redirect to `/` (nothing secret left in the address), whose answer
    /// is returned.
    pub fn open(&self) -> (u16, String) {
        let (status, head, _) = crate::http_exchange_with_head(
            self.port,
            "GET",
            &format!("/?token={}", self.token),
            &[],
            "",
        )
        .unwrap();
        assert_eq!(status, 303, "{head}");
        assert!(head.contains("\r\nLocation: /\r\n"), "{head}");
        let cookie = session_cookie(&head);
        crate::http_exchange(self.port, "GET", "/", &[("Cookie", &cookie)], "").unwrap()
    }

    /// Starts a change and waits for it: its job as the API tells it at the end.
    pub fn change(&self, path: &str, body: &str) -> serde_json::Value {
        let (status, started) = self.api("POST", path, body);
        assert_eq!(status, 202, "{path}: {started}");
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let (_, job) = self.api("GET", "/api/job", "");
            let job = &job["job"];
            if job["id"] == started["job"] && job["running"] == false {
                return job.clone();
            }
            assert!(Instant::now() < deadline, "{path} did not finish: {job}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The `name=value` of the session cookie an answer's head sets, checked to be HttpOnly and
/// SameSite=Strict.
pub fn session_cookie(head: &str) -> String {
    let line = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .unwrap_or_else(|| panic!("no cookie: {head}"));
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Strict"),
        "{line}"
    );
    line.split(';').next().unwrap().to_string()
}
