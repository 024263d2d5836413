//! `packages.sh gui` on the unpacked stand-in zip: the first line is the page's loopback address
//! with its token; the page renders in real headless Chromium with the packages on it; install,
//! a refused install, undo and check through the JSON API change the environment as packages.sh
//! would; no token, a foreign `Host` or a foreign `Origin` are refused and change nothing; a
//! second change while one runs gets 409.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::package_zip::{assert_same, fingerprint, packages, unpacked};
use support::http_exchange;
use support::package_page::Page;

fn serve(root: &Path, home: &Path) -> Page {
    Page::serve(super::package_zip::command(
        &root.join("packages.sh"),
        &["gui", "--no-browser"],
        home,
    ))
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

#[test]
fn the_page_is_only_for_whoever_has_its_token() {
    let (dir, root) = unpacked();
    let home = dir.path();
    let page = serve(&root, home);
    assert!(page.token.len() >= 22, "at least 128 bits: {}", page.url);
    let before = fingerprint(&root, home);
    let install = r#"{"args": ["addon==1.0"]}"#;
    let port = page.port;
    let origin = format!("http://127.0.0.1:{port}");
    for (what, path) in [
        ("the page without a token", "/"),
        ("another path without a token", "/favicon.ico"),
        ("the API without a token", "/api/state"),
    ] {
        let (status, _) = http_exchange(port, "GET", path, &[], "").unwrap();
        assert_eq!(status, 403, "{what} ({path})");
    }
    // A CORS preflight, as another site's script would send first: refused (no answer of this
    // server carries a CORS header).
    let (status, _) = http_exchange(
        port,
        "OPTIONS",
        "/api/install",
        &[
            ("Origin", "https://attacker.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "x-token"),
        ],
        "",
    )
    .unwrap();
    assert_eq!(status, 403, "a preflight");
    let wrong = http_exchange(port, "GET", "/?token=AAAA", &[], "").unwrap();
    assert_eq!(wrong.0, 403);
    let rebinding = http_exchange(
        port,
        "GET",
        &format!("/?token={}", page.token),
        &[("Host", &format!("attacker.example:{port}"))],
        "",
    )
    .unwrap();
    assert_eq!(rebinding.0, 403, "a foreign Host");
    for (what, headers) in [
        ("no token", vec![("Origin", origin.as_str())]),
        (
            "a foreign Origin",
            vec![
                ("X-Token", page.token.as_str()),
                ("Origin", "https://attacker.example"),
            ],
        ),
        (
            "a foreign Host",
            vec![
                ("X-Token", page.token.as_str()),
                ("Host", "attacker.example"),
            ],
        ),
    ] {
        let (status, _) = http_exchange(port, "POST", "/api/install", &headers, install).unwrap();
        assert_eq!(status, 403, "a POST with {what}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_same(
        &fingerprint(&root, home),
        &before,
        "a refused request changed the environment",
    );
    // The page itself, with its token: exchanged for a session cookie, the address left
    // without it, and then served whole.
    let (status, html) = page.open();
    assert_eq!(status, 200);
    assert!(html.contains("<title>anymatix · packages</title>"));
}

#[test]
fn changes_through_the_api_are_those_of_packages_sh() {
    let (dir, root) = unpacked();
    let home = dir.path();
    let start = fingerprint(&root, home);
    let page = serve(&root, home);

    let (status, state) = page.api("GET", "/api/state", "");
    assert_eq!(status, 200);
    let protected: Vec<&str> = state["packages"]["protected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(protected.contains(&"anyfix-native"), "{state}");

    // One change at a time: a second, while the first runs, gets 409.
    let (status, first) = page.api("POST", "/api/install", r#"{"args": ["bulky"]}"#);
    assert_eq!(status, 202, "{first}");
    let (second, body) = page.api("POST", "/api/check", "{}");
    assert_eq!(second, 409, "{body}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while page.api("GET", "/api/job", "").1["job"]["running"] == true {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = page.api("GET", "/api/job", "").1;
    assert_eq!(done["job"]["exit"], 0, "{done}");
    assert!(done["job"]["output"]
        .as_str()
        .unwrap()
        .contains("Successfully installed bulky-1.0"));

    let refused = page.change("/api/install", r#"{"args": ["needs-old"]}"#);
    assert_eq!(refused["exit"], 3, "{refused}");
    assert_eq!(refused["outcome"]["kind"], "refused", "{refused}");
    assert_eq!(
        refused["outcome"]["packages"][0]["name"], "anyfix-native",
        "{refused}"
    );
    assert!(
        refused["refused"].as_str().unwrap_or_default().contains(
            "anyfix-native: `needs-old 1.0 depends on anyfix-native<1` asks for another version"
        ),
        "{refused}"
    );
    // Other spellings through the API: an uninstall with a specifier, an install that would
    // have pip ignore its configuration.
    let pinned = page.change("/api/uninstall", r#"{"names": ["anyfix-native==1.0.0"]}"#);
    assert_eq!(pinned["exit"], 3, "{pinned}");
    assert_eq!(pinned["outcome"]["kind"], "refused", "{pinned}");
    let isolated = page.change(
        "/api/install",
        &serde_json::json!({"args": [
            "--isolated", "--no-index", "--find-links",
            super::package_zip::built().other_index, "anyfix-native==1.0.0+cpu"
        ]})
        .to_string(),
    );
    assert_eq!(isolated["exit"], 3, "{isolated}");
    let checked = page.change("/api/check", "{}");
    assert_eq!(checked["exit"], 0, "{checked}");
    let (_, state) = page.api("GET", "/api/state", "");
    assert_eq!(state["last_check"]["ok"], true, "{state}");
    let added: Vec<&str> = state["packages"]["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["bulky"]);
    // The same history packages.sh shows.
    let history = super::package_zip::text(&packages(&root, &["history"], home));
    assert!(history.contains("install bulky"), "{history}");
    assert!(
        history.contains("install needs-old  [refused]"),
        "{history}"
    );

    let undone = page.change("/api/undo", r#"{"steps": 1}"#);
    assert_eq!(undone["exit"], 0, "{undone}");
    assert_same(&fingerprint(&root, home), &start, "the environment");
    let (status, bad) = page.api("POST", "/api/undo", r#"{"steps": 0}"#);
    assert_eq!(status, 400, "{bad}");
}

/// The page in real headless Chromium: after its scripts ran, the packages are on it; with
/// ANYMATIX_PAGE_SHOTS=DIR, screenshots at 1280x800 and in a narrow window are kept there.
#[test]
fn the_page_renders_in_chromium_with_the_packages() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have chromium (.ci/run installs it)"
        );
        eprintln!("skipped: no chromium (apt-get install chromium)");
        return;
    };
    let (dir, root) = unpacked();
    let home = dir.path();
    assert!(packages(&root, &["install", "addon==1.0"], home)
        .status
        .success());
    let page = serve(&root, home);
    // Each run of the browser with a profile of its own, at `url`.
    let browse = |url: &str, profile: &str, args: &[&str]| {
        Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join(profile).display()
            ))
            .args(["--virtual-time-budget=5000"])
            .args(args)
            .arg(url)
            .output()
            .unwrap()
    };
    let headless = |args: &[&str]| browse(&page.url, "chromium", args);
    // Without the token, a browser gets the refusal and nothing of the page.
    let bare = format!("http://127.0.0.1:{}/", page.port);
    let refused = browse(&bare, "no token", &["--dump-dom"]);
    let refused = String::from_utf8_lossy(&refused.stdout);
    assert!(
        refused.contains("the token is missing or wrong") && !refused.contains("anyfix-native"),
        "{refused}"
    );
    let dom = headless(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let address = format!(
        "<span id=\"address\">http://127.0.0.1:{}/</span>",
        page.port
    );
    for shown in [
        "<td>anyfix-native</td>",
        "<td>addon</td>",
        "install addon==1.0",
        ">protected<",
        // The address the browser shows and keeps in its history: without the token.
        address.as_str(),
    ] {
        assert!(dom.contains(shown), "{shown} is not on the page: {dom}");
    }
    if let Some(shots) = std::env::var_os("ANYMATIX_PAGE_SHOTS") {
        let shots = PathBuf::from(shots);
        std::fs::create_dir_all(&shots).unwrap();
        for (name, size) in [
            ("page-1280x800.png", "1280,800"),
            ("page-narrow.png", "420,900"),
        ] {
            let out = headless(&[
                &format!("--window-size={size}"),
                &format!("--screenshot={}", shots.join(name).display()),
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = browse(
            &bare,
            "no token",
            &[
                "--window-size=1280,800",
                &format!(
                    "--screenshot={}",
                    shots.join("page-without-token.png").display()
                ),
            ],
        );
        assert!(out.status.success());
    }
}

/// The browser is opened on a file only this user can read (its path is all a command line
/// shows), which sends it to the page with a one-time code: the code gives a session cookie
/// once, and never again.
#[cfg(unix)]
#[test]
fn the_browser_is_opened_without_the_token_on_its_command_line() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, root) = unpacked();
    let home = dir.path();
    let record = dir.path().join("browser-args.txt");
    let browser = dir.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = super::package_zip::command(&root.join("packages.sh"), &["gui"], home);
    cmd.env("BROWSER", &browser);
    let page = Page::serve(cmd);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !record.exists() {
        assert!(Instant::now() < deadline, "the browser was never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let args = std::fs::read_to_string(&record).unwrap();
    assert!(
        !args.contains(&page.token),
        "the token is on the browser's command line: {args}"
    );
    assert!(!args.contains("code="), "{args}");
    let opened = args
        .trim()
        .strip_prefix("file://")
        .unwrap_or_else(|| panic!("{args}"));
    let opened = PathBuf::from(opened.replace("%20", " "));
    let mode = std::fs::metadata(&opened).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only its user may read {}", opened.display());
    let html = std::fs::read_to_string(&opened).unwrap();
    let code = html
        .split("?code=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("{html}"))
        .to_string();
    let (status, head, _) =
        support::http_exchange_with_head(page.port, "GET", &format!("/?code={code}"), &[], "")
            .unwrap();
    assert_eq!(status, 303, "{head}");
    let cookie = support::package_page::session_cookie(&head);
    let (status, html) = http_exchange(page.port, "GET", "/", &[("Cookie", &cookie)], "").unwrap();
    assert_eq!(status, 200);
    assert!(html.contains("<title>anymatix · packages</title>"));
    let again = http_exchange(page.port, "GET", &format!("/?code={code}"), &[], "").unwrap();
    assert_eq!(again.0, 403, "a code works once");
    let (status, _) = http_exchange(
        page.port,
        "GET",
        "/",
        &[("Cookie", "anymatix-packages-1=forged")],
        "",
    )
    .unwrap();
    assert_eq!(status, 403, "a cookie it never gave");
}

/// One raw request: (status, what came back); "" when the server closed without a word.
fn raw(port: u16, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A body's length must be stated and whole; an idle connection is closed after a few seconds,
/// and only so many are served at once; the page answers again once they are gone.
#[test]
fn the_pages_connections_are_bounded() {
    use std::io::Read;
    let (dir, root) = unpacked();
    let home = dir.path();
    let before = fingerprint(&root, home);
    let page = serve(&root, home);
    let host = format!("127.0.0.1:{}", page.port);
    let post = |length: Option<&str>| {
        let length = length.map_or(String::new(), |l| format!("Content-Length: {l}\r\n"));
        format!(
            "POST /api/install HTTP/1.1\r\nHost: {host}\r\nX-Token: {}\r\n\
             Content-Type: application/json\r\n{length}Connection: close\r\n\r\n\
             {{\"args\": [\"addon==1.0\"]}}",
            page.token
        )
    };
    assert_eq!(
        raw(page.port, &post(Some("-1"))).0,
        400,
        "a negative length"
    );
    assert_eq!(
        raw(page.port, &post(Some("ten"))).0,
        400,
        "a length that is not a number"
    );
    assert_eq!(raw(page.port, &post(None)).0, 411, "no length");
    assert_same(&fingerprint(&root, home), &before, "nothing was installed");

    // Idle connections: more than the server serves at once, none sending a byte. Each says
    // how long it stayed open after it was accepted.
    let port = page.port;
    let idle: Vec<std::thread::JoinHandle<Duration>> = (0..40)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                let connected = Instant::now();
                stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                let mut byte = [0u8; 1];
                let read = stream.read(&mut byte);
                assert!(matches!(read, Ok(0)), "{read:?}");
                connected.elapsed()
            })
        })
        .collect();
    let open_for: Vec<Duration> = idle.into_iter().map(|t| t.join().unwrap()).collect();
    let at_once = open_for
        .iter()
        .filter(|t| **t < Duration::from_secs(2))
        .count();
    assert!(
        at_once >= 8,
        "connections beyond the limit are closed at once: {open_for:?}"
    );
    let longest = open_for.iter().max().unwrap();
    assert!(
        *longest >= Duration::from_secs(5) && *longest < Duration::from_secs(20),
        "idle ones are closed after a few seconds: {open_for:?}"
    );
    let (status, _) = page.api("GET", "/api/state", "");
    assert_eq!(status, 200);
}
