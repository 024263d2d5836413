//! The build machine's own pip settings, sorted into those the build keeps and those it drops.
//! pip reads `PIP_*` variables and configuration files (global, user, site, `PIP_CONFIG_FILE`)
//! besides its command line, and merges list options such as `find-links` with the command
//! line's: a folder of wheels named there would feed wheels into the zip and the lock that the
//! distribution never named. So the build's pip reads no configuration file
//! (`PIP_CONFIG_FILE=<null device>`, which pip takes as "load none") and none of the machine's
//! `PIP_*` variables but its transport settings: how to reach an index (certificates, proxies,
//! timeouts, retries, trusted hosts) and where to cache, from the variables or, when they are
//! only in a file, carried over from it as variables. Where packages come from and what is
//! installed is the distribution's alone.

use anyhow::{bail, Result};

use crate::model::platform::Platform;

/// pip options (their long names, as configuration files spell them) that only say how pip
/// reaches an index or talks to the user, never which packages it finds.
pub const TRANSPORT: &[&str] = &[
    "cert",
    "client-cert",
    "proxy",
    "timeout",
    "default-timeout",
    "retries",
    "resume-retries",
    "trusted-host",
    "keyring-provider",
    "cache-dir",
    "no-cache-dir",
    "disable-pip-version-check",
    "no-input",
    "progress-bar",
    "no-color",
];

/// pip's variable for `option`: `PIP_` and the name in capitals, `-` as `_`.
pub fn variable(option: &str) -> String {
    format!("PIP_{}", option.to_ascii_uppercase().replace('-', "_"))
}

/// What `PIP_CONFIG_FILE` is set to so that pip loads no configuration file at all: the null
/// device of the platform the build runs on (pip compares the value with `os.devnull`).
pub fn no_config_file(platform: Platform) -> &'static str {
    if platform.is_windows() {
        "nul"
    } else {
        "/dev/null"
    }
}

/// How the build's pip environment differs from the machine's.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Isolation {
    /// The machine's `PIP_*` variables that are not transport settings.
    pub remove: Vec<String>,
    /// Transport settings found only in the machine's configuration files, as variables.
    pub set: Vec<(String, String)>,
}

/// Sorts the names of the machine's variables (`env`) and what `pip config list` printed for
/// its files (`config_list`, read with no `PIP_*` variable but `PIP_CONFIG_FILE` set).
pub fn isolation<'a>(
    env: impl IntoIterator<Item = &'a str>,
    config_list: &str,
) -> Result<Isolation> {
    let transport: Vec<String> = TRANSPORT.iter().map(|o| variable(o)).collect();
    let mut isolation = Isolation::default();
    let mut kept = Vec::new();
    for key in env {
        if !key.starts_with("PIP_") {
            continue;
        }
        if transport.iter().any(|t| t == key) {
            kept.push(key.to_string());
        } else {
            isolation.remove.push(key.to_string());
        }
    }
    for (key, value) in parse_config_list(config_list)? {
        // `global.cert`, `install.timeout`: any section, the option after the dot.
        let option = key.rsplit_once('.').map_or(key.as_str(), |(_, o)| o);
        let name = variable(option);
        if !TRANSPORT.contains(&option) || kept.contains(&name) {
            continue;
        }
        // pip lets a command's own section win over [global]; `config list` sorts them by name.
        match isolation.set.iter_mut().find(|(k, _)| *k == name) {
            Some(_) if key.starts_with("global.") => {}
            Some(slot) => slot.1 = value,
            None => isolation.set.push((name, value)),
        }
    }
    isolation.remove.sort();
    Ok(isolation)
}

/// `pip config list` prints `section.key='value'`, the value as Python's `repr` of a string.
fn parse_config_list(text: &str) -> Result<Vec<(String, String)>> {
    let mut items = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((key, value)) = line.split_once('=') else {
            bail!("`pip config list` printed a line that is not key=value: {line}");
        };
        let Some(value) = python_string(value.trim()) else {
            bail!("`pip config list` printed a value that is not a Python string: {line}");
        };
        items.push((key.trim().to_string(), value));
    }
    Ok(items)
}

/// A Python string literal as `repr` writes it: single or double quotes, backslash escapes.
fn python_string(literal: &str) -> Option<String> {
    let quote = literal.chars().next().filter(|q| *q == '\'' || *q == '"')?;
    let body = literal.strip_prefix(quote)?.strip_suffix(quote)?;
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'x' => out.push(hex_char(&mut chars, 2)?),
            'u' => out.push(hex_char(&mut chars, 4)?),
            'U' => out.push(hex_char(&mut chars, 8)?),
            other => out.push(other),
        }
    }
    Some(out)
}

fn hex_char(chars: &mut std::str::Chars<'_>, digits: usize) -> Option<char> {
    let hex: String = chars.by_ref().take(digits).collect();
    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_dropped_and_transport_is_kept() {
        let env = [
            "PIP_FIND_LINKS",
            "PIP_INDEX_URL",
            "PIP_NO_INDEX",
            "PIP_CONSTRAINT",
            "PIP_CONFIG_FILE",
            "PIP_CERT",
            "PIP_DEFAULT_TIMEOUT",
            "PATH",
        ];
        let isolation = isolation(env, "").unwrap();
        assert_eq!(
            isolation.remove,
            [
                "PIP_CONFIG_FILE",
                "PIP_CONSTRAINT",
                "PIP_FIND_LINKS",
                "PIP_INDEX_URL",
                "PIP_NO_INDEX"
            ]
        );
        assert!(isolation.set.is_empty());
    }

    #[test]
    fn transport_only_in_a_file_becomes_a_variable_and_the_variable_wins() {
        let listed = "global.cert='/etc/corp-ca.pem'\nglobal.find-links='/opt/wheels'\n\
                      global.index-url='https://mirror.example/simple'\nglobal.proxy='http://proxy:3128'\n\
                      global.timeout='60'\ninstall.timeout='90'\n\
                      global.trusted-host='a.example\\nb.example'\n";
        let isolation = isolation(["PIP_PROXY"], listed).unwrap();
        assert_eq!(
            isolation.set,
            [
                ("PIP_CERT".to_string(), "/etc/corp-ca.pem".to_string()),
                ("PIP_TIMEOUT".to_string(), "90".to_string()),
                (
                    "PIP_TRUSTED_HOST".to_string(),
                    "a.example\nb.example".to_string()
                ),
            ]
        );
        assert!(isolation.remove.is_empty());
    }

    #[test]
    fn python_reprs_are_read_back() {
        assert_eq!(
            python_string("'C:\\\\certs\\\\ca.pem'").unwrap(),
            "C:\\certs\\ca.pem"
        );
        assert_eq!(python_string("\"it's\"").unwrap(), "it's");
        assert_eq!(python_string("'caf\\xe9 \\u20ac'").unwrap(), "café €");
        assert!(python_string("bare").is_none());
        assert!(parse_config_list("no equals sign").is_err());
    }
}
