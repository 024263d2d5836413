"""`packages.sh gui`: a page for the environment's packages, served by this python alone.

It listens on 127.0.0.1 only, at a free port (or --port), and lets in only whoever has the token
it prints in the page's address at start (a fresh 256-bit one each run):
- every request without the token (or the page's session) is refused with 403; the API takes
  the token in the `X-Token` header; it is compared in constant time and never logged;
- the browser never gets the token on its command line: it is opened on a file only this user
  can read, which sends it on to the page with a one-time code; the page exchanges the code (or
  the printed address's token) for a session cookie (HttpOnly, SameSite=Strict) and takes it out
  of the address, so neither stays in the browser's history;
- a `Host` other than the address it listens on is refused (a DNS-rebinding site names its own);
- a POST whose `Origin` is not the page's own is refused, token or not, and changes are POSTs
  with a JSON body of a stated length only (a form on another site can send neither the header
  nor that type without a CORS preflight, which this server never answers: it sends no CORS
  headers);
- an idle connection is closed after a few seconds, and only a few are served at once; on
  Windows the port is this server's alone (no other program may bind it too).
It protects against other websites open in the user's browser. It does not protect against
another program or account on the same machine that can read this process's memory or the
console it prints to: they see the token.

Changes run the command line (`packages.py install …`) in a child process, one at a time, as
packages.sh would; the page reads their output as it comes, and their outcome as data. An update
is checked (`update.py --check SOURCE`) or prepared (`--prepare`: downloaded, built and checked)
the same way; its switch waits for update.sh, since it needs this page closed.
"""

import datetime
import hmac
import json
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .views import history_view, packages_view, read_history, states_view

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "packages.py")
UPDATE = os.path.join(os.path.dirname(TOOL), "update.py")
MAX_BODY = 1 << 20
# Seconds a connection may sit idle, and connections served at once.
IDLE = 10
CONNECTIONS = 32


class Jobs:
    """The change running (or the last one): one at a time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.current = None
        self.last_check = None
        self.count = 0

    def start(self, app, kind, args):
        with self.lock:
            if self.current and self.current["running"]:
                return None
            self.count += 1
            job = {"id": self.count, "kind": kind, "args": args, "running": True,
                   "output": [], "exit": None, "refused": None, "outcome": None}
            self.current = job
        threading.Thread(target=self._run, args=(app, job), daemon=True).start()
        return job

    def _run(self, app, job):
        env = dict(os.environ)
        env["PYTHONIOENCODING"] = "utf-8"
        handle, result = tempfile.mkstemp(prefix="anymatix-job-", suffix=".json")
        os.close(handle)
        try:
            if job["kind"] == "update":
                # `update --check` or `--prepare`: the switch itself needs this page closed.
                command = [app.env.python, "-s", UPDATE] + job["args"]
            else:
                command = [app.env.python, "-s", TOOL, "--result-json", result, job["kind"]]
                command += job["args"]
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
            )
            for raw in process.stdout:
                job["output"].append(raw.decode("utf-8", "replace").rstrip("\r\n"))
            job["exit"] = process.wait()
            with open(result, encoding="utf-8") as f:
                outcome = (json.load(f) if os.path.getsize(result) else {}).get("outcome")
        except (OSError, ValueError) as e:
            job["output"].append("cannot run %s: %s" % (TOOL, e))
            job["exit"] = job["exit"] if job["exit"] is not None else 2
            outcome = None
        finally:
            os.unlink(result)
        job["outcome"] = outcome
        if outcome and outcome.get("kind") in ("refused", "rolled back", "not rolled back"):
            job["refused"] = outcome.get("text")
        if job["kind"] == "check":
            self.last_check = {
                "ok": job["exit"] == 0,
                "output": "\n".join(job["output"]),
                "when": datetime.datetime.now().isoformat(timespec="seconds"),
            }
        job["running"] = False

    def view(self):
        job = self.current
        if job is None:
            return None
        return {k: ("\n".join(v) if k == "output" else v) for k, v in job.items()}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # A burst of connections waits in the listen queue to be accepted (and closed at once when
    # CONNECTIONS are open), not in the kernel's retries of a full queue.
    request_queue_size = 64
    # On Windows SO_REUSEADDR lets another program bind the same port; there the port is taken
    # with SO_EXCLUSIVEADDRUSE instead.
    allow_reuse_address = os.name != "nt"

    def __init__(self, address, handler):
        self.slots = threading.BoundedSemaphore(CONNECTIONS)
        super().__init__(address, handler)

    def server_bind(self):
        exclusive = getattr(socket, "SO_EXCLUSIVEADDRUSE", None)
        if os.name == "nt" and exclusive is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, exclusive, 1)
        super().server_bind()

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class App:
    def __init__(self, env, port):
        self.env = env
        self.token = secrets.token_urlsafe(32)
        self.server = Server(("127.0.0.1", port), Handler)
        self.server.app = self
        self.port = self.server.server_address[1]
        self.host = "127.0.0.1:%d" % self.port
        self.origin = "http://" + self.host
        self.url = "%s/?token=%s" % (self.origin, self.token)
        self.cookie = "anymatix-packages-%d" % self.port
        self.sessions = set()
        self.codes = set()
        self.guard = threading.Lock()
        self.jobs = Jobs()

    def one_time_code(self):
        code = secrets.token_urlsafe(32)
        with self.guard:
            self.codes.add(code)
        return code

    def spend(self, code):
        """Whether `code` is a one-time code not used yet (it is used now)."""
        with self.guard:
            for known in list(self.codes):
                if hmac.compare_digest(known.encode("utf-8"), code.encode("utf-8")):
                    self.codes.discard(known)
                    return True
        return False

    def new_session(self):
        session = secrets.token_urlsafe(32)
        with self.guard:
            self.sessions.add(session)
        return session

    def has_session(self, value):
        with self.guard:
            return any(hmac.compare_digest(s.encode("utf-8"), value.encode("utf-8"))
                       for s in self.sessions)

    def state(self):
        history = read_history(self.env)
        return {
            "script": self.env.script(),
            "platform": self.env.platform,
            "packages": packages_view(self.env, history),
            "history": history_view(self.env, history),
            "states": states_view(self.env, history),
            "last_check": self.jobs.last_check,
            "job": self.jobs.view(),
        }


def strings(value, what):
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError("%s must be a non-empty list of strings" % what)
    return value


class Handler(BaseHTTPRequestHandler):
    server_version = "anymatix-packages"
    sys_version = ""
    timeout = IDLE

    def log_message(self, *args):
        pass  # the request line may hold the token: nothing is logged

    @property
    def app(self):
        return self.server.app

    def send(self, status, body, kind="application/json", nonce=None, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", kind + "; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        for name, value in headers:
            self.send_header(name, value)
        if nonce:
            self.send_header(
                "Content-Security-Policy",
                "default-src 'none'; script-src 'nonce-%s'; style-src 'nonce-%s'; "
                "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                "frame-ancestors 'none'" % (nonce, nonce),
            )
        self.end_headers()
        self.wfile.write(data)

    def refuse(self, status, why):
        self.send(status, {"error": why})

    def refuse_token(self):
        self.refuse(403, "the token is missing or wrong: open the address `%s gui` printed"
                    % self.app.env.script())

    def right_host(self):
        if self.headers.get("Host", "") != self.app.host:
            self.refuse(403, "this server answers only to %s" % self.app.host)
            return False
        return True

    def has_token(self):
        given = self.headers.get("X-Token", "")
        return hmac.compare_digest(given.encode("utf-8"), self.app.token.encode("utf-8"))

    def session(self):
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.app.cookie and self.app.has_session(value):
                return True
        return False

    def allowed(self, api):
        """Host, then the token (the API) or the session (the page): everything else is
        answered 403 without a word of the page."""
        if not self.right_host():
            return False
        if (self.has_token() if api else self.session()):
            return True
        self.refuse_token()
        return False

    def do_GET(self):
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        if path == "/" and ("token" in query or "code" in query):
            return self.enter(query)
        api = path.startswith("/api/")
        if not self.allowed(api):
            return
        if path == "/":
            nonce = secrets.token_urlsafe(16)
            self.send(200, page(nonce, self.app.token), "text/html", nonce)
        elif path == "/api/state":
            self.send(200, self.app.state())
        elif path == "/api/job":
            self.send(200, {"job": self.app.jobs.view()})
        else:
            self.refuse(404, "no such page")

    def enter(self, query):
        """The printed address's token, or the one-time code of the file the browser was
        opened on, exchanged for a session: the page itself is then at `/`, with nothing secret
        in its address or the browser's history."""
        if not self.right_host():
            return
        token = query.get("token", [""])[0]
        code = query.get("code", [""])[0]
        good = (hmac.compare_digest(token.encode("utf-8"), self.app.token.encode("utf-8"))
                if token else bool(code) and self.app.spend(code))
        if not good:
            self.refuse_token()
            return
        cookie = "%s=%s; HttpOnly; SameSite=Strict; Path=/" % (self.app.cookie, self.app.new_session())
        self.send(303, b"", "text/plain", headers=(("Location", "/"), ("Set-Cookie", cookie)))

    def do_POST(self):
        path = urlsplit(self.path).path
        if not self.allowed(True):
            return
        origin = self.headers.get("Origin")
        if origin is not None and origin != self.app.origin:
            self.refuse(403, "a change may come only from this page")
            return
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            self.refuse(415, "changes take a JSON body (Content-Type: application/json)")
            return
        stated = self.headers.get("Content-Length")
        if stated is None:
            self.refuse(411, "changes state their length (Content-Length)")
            return
        if not stated.isdigit():
            self.refuse(400, "Content-Length must be a whole number of bytes")
            return
        if int(stated) > MAX_BODY:
            self.refuse(413, "the body is too large")
            return
        try:
            body = json.loads(self.rfile.read(int(stated)) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            if path == "/api/install":
                kind, args = "install", strings(body.get("args"), "args")
            elif path == "/api/uninstall":
                kind, args = "uninstall", strings(body.get("names"), "names")
            elif path == "/api/undo":
                steps = body.get("steps", 1)
                if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
                    raise ValueError("steps must be a whole number from 1")
                kind, args = "undo", [str(steps)]
            elif path == "/api/check":
                kind, args = "check", []
            elif path == "/api/update":
                source = body.get("source")
                if not isinstance(source, str) or not source.strip() or source.startswith("-"):
                    raise ValueError("source must be the new release's zip: an address or a path")
                kind = "update"
                args = ["--prepare" if body.get("prepare") is True else "--check", source.strip()]
            else:
                self.refuse(404, "no such action")
                return
        except ValueError as e:
            self.refuse(400, str(e))
            return
        job = self.app.jobs.start(self.app, kind, args)
        if job is None:
            self.refuse(409, "another change is running: wait for it to finish")
            return
        self.send(202, {"job": job["id"]})

    def other_method(self):
        """HEAD, PUT, DELETE, OPTIONS (a CORS preflight) …: 403 without the token, 405 with it,
        and never a CORS header."""
        if self.allowed(urlsplit(self.path).path.startswith("/api/")):
            self.refuse(405, "the page reads with GET and changes with POST")

    do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = other_method


def page(nonce, token):
    """The page, its style and its script in one answer (so the session guards all of it); the
    token its script sends with every API call is in the page, never in its address."""
    parts = {}
    for name in ("index.html", "page.css", "page.js"):
        with open(os.path.join(PAGE, name), encoding="utf-8") as f:
            parts[name] = f.read()
    html = parts["index.html"]
    html = html.replace("<!--TOKEN-->", '<meta name="anymatix-token" content="%s">' % token)
    html = html.replace("<!--STYLE-->", '<style nonce="%s">\n%s</style>' % (nonce, parts["page.css"]))
    html = html.replace("<!--SCRIPT-->", '<script nonce="%s">\n%s</script>' % (nonce, parts["page.js"]))
    return html.encode("utf-8")


def opener(app):
    """A file only this user can read that sends the browser on to the page with a one-time
    code: the browser is started with this file's path, so no secret is on its command line."""
    handle, path = tempfile.mkstemp(prefix="anymatix-packages-", suffix=".html")
    target = "%s/?code=%s" % (app.origin, app.one_time_code())
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write(
            '<!doctype html><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
            '<title>anymatix packages</title>'
            '<script>location.replace(%s)</script>'
            '<p>Opening the page for this environment\'s packages...</p>' % json.dumps(target)
        )
    return path


def serve(env, port, open_browser):
    try:
        app = App(env, port)
    except OSError as e:
        from .environment import PackagesError

        raise PackagesError("cannot listen on 127.0.0.1:%d: %s (pick another with --port N, "
                            "or leave --port out for a free one)" % (port, e.strerror or e))
    print(app.url, flush=True)
    print("Serving the page for this environment's packages; Ctrl-C stops it.", flush=True)
    redirect = None
    if open_browser:
        redirect = opener(app)
        from pathlib import Path

        threading.Thread(target=webbrowser.open, args=(Path(redirect).as_uri(),), daemon=True).start()
    try:
        app.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.server.server_close()
        if redirect:
            try:
                os.unlink(redirect)
            except OSError:
                pass
    return 0
