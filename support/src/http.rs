//! A real HTTP/1.1 server on loopback, serving fixed routes, recording what was asked.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Clone)]
pub enum Route {
    Body(Vec<u8>),
    Redirect(String),
    /// Answers a plain GET with the full Content-Length but drops the connection after
    /// `cut_at` bytes; honours `Range: bytes=N-` with 206 Partial Content.
    DropsHalfway {
        body: Vec<u8>,
        cut_at: usize,
    },
    /// Answers `Range: bytes=A-B` (and `A-`) with 206 and that slice, a plain GET with the whole
    /// body, as GitHub's storage host does. `drop_first`: the first answer longer than 4 KiB is
    /// cut in the middle and the connection dropped. `pace`: bytes a second (0: as fast as it
    /// goes), so a test can stop a client mid-download.
    Ranged {
        body: Arc<Vec<u8>>,
        drop_first: Arc<AtomicBool>,
        pace: usize,
    },
}

impl Route {
    /// A file served with Range support.
    pub fn ranged(body: Vec<u8>) -> Route {
        Route::Ranged {
            body: Arc::new(body),
            drop_first: Arc::new(AtomicBool::new(false)),
            pace: 0,
        }
    }

    /// The same, but the first long answer breaks off half way.
    pub fn ranged_dropping_once(body: Vec<u8>) -> Route {
        Route::Ranged {
            body: Arc::new(body),
            drop_first: Arc::new(AtomicBool::new(true)),
            pace: 0,
        }
    }

    /// The same, at `pace` bytes a second.
    pub fn ranged_slowly(body: Vec<u8>, pace: usize) -> Route {
        Route::Ranged {
            body: Arc::new(body),
            drop_first: Arc::new(AtomicBool::new(false)),
            pace,
        }
    }
}

pub struct Server {
    pub base: String,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, q, s) = (routes.clone(), requests.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (r, q) = (r.clone(), q.clone());
                thread::spawn(move || {
                    let _ = serve(stream, &r, &q);
                });
            }
        });
        Server {
            base: format!("http://{addr}"),
            routes,
            requests,
            stop,
            addr,
        }
    }

    pub fn route(&self, path: &str, route: Route) {
        self.routes.lock().unwrap().insert(path.to_string(), route);
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    stream: TcpStream,
    routes: &Mutex<HashMap<String, Route>>,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range_start: Option<usize> = None;
    let mut range_end: Option<usize> = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("range: bytes=") {
            let (start, end) = value.trim().split_once('-').unwrap_or((value.trim(), ""));
            range_start = start.parse().ok();
            range_end = end.parse().ok();
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let logged = match (range_start, range_end) {
        (Some(start), Some(end)) => format!("{path} [{start}-{end}]"),
        (Some(start), None) => format!("{path} [from {start}]"),
        _ => path.clone(),
    };
    requests.lock().unwrap().push(logged);
    // The first segment names the client (`/<client>/releases/...`), so tests that share this
    // server can tell their own requests apart; routes are looked up without it.
    let route_path = path
        .trim_start_matches('/')
        .split_once('/')
        .map_or(String::new(), |(_, rest)| format!("/{rest}"));
    let route = routes.lock().unwrap().get(&route_path).cloned();
    let mut out = stream;
    match route {
        Some(Route::Body(body)) => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(&body)?;
        }
        Some(Route::DropsHalfway { body, cut_at }) => match range_start {
            Some(start) if start < body.len() => {
                write!(
                    out,
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                    body.len() - start,
                    body.len() - 1,
                    body.len()
                )?;
                out.write_all(&body[start..])?;
            }
            _ => {
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )?;
                out.write_all(&body[..cut_at])?;
                out.flush()?;
                // Gone mid-body, as a flaky network leaves it.
                return Ok(());
            }
        },
        Some(Route::Ranged {
            body,
            drop_first,
            pace,
        }) => {
            let (start, end) = match range_start {
                Some(start) if start < body.len() => {
                    let end = range_end.map_or(body.len(), |e| (e + 1).min(body.len()));
                    write!(
                        out,
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nETag: \"{}\"\r\nConnection: close\r\n\r\n",
                        end - start,
                        end - 1,
                        body.len(),
                        body.len()
                    )?;
                    (start, end)
                }
                _ => {
                    write!(
                        out,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )?;
                    (0, body.len())
                }
            };
            let slice = &body[start..end];
            if slice.len() > 4096 && drop_first.swap(false, Ordering::SeqCst) {
                out.write_all(&slice[..slice.len() / 2])?;
                out.flush()?;
                return Ok(());
            }
            if pace == 0 {
                out.write_all(slice)?;
            } else {
                for piece in slice.chunks((pace / 20).max(1)) {
                    out.write_all(piece)?;
                    out.flush()?;
                    thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
        Some(Route::Redirect(location)) => {
            write!(
                out,
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
        }
        None => {
            let body = b"not found";
            write!(
                out,
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(body)?;
        }
    }
    out.flush()
}
