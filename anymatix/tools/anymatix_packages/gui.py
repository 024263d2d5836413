"""`packages.sh gui`: a page for the environment's packages, served by this python alone.

It listens on 127.0.0.1 only, at a free port (or --port), and lets in only whoever has the token
it prints in the page's address at start (a fresh 256-bit one each run):
- every request without the token is refused with 403: the page takes it as `?token=`, the API
  as the `X-Token` header; it is compared in constant time and never logged;
- a `Host` other than the address it listens on is refused (a DNS-rebinding site names its own);
- a POST whose `Origin` is not the page's own is refused, token or not, and changes are POSTs
  with a JSON body only (a form on another site can send neither the header nor that type
  without a CORS preflight, which this server never answers: it sends no CORS headers).
It protects against other websites open in the user's browser. It does not protect against
another program or account on the same machine that can read this process's command line or
memory, or the console it prints to: they see the token.

Changes run the command line (`packages.py install …`) in a child process, one at a time, as
packages.sh would; the page reads their output as it comes.
"""

import datetime
import hmac
import json
import os
import secrets
import subprocess
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .views import history_view, packages_view, read_history, states_view

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "packages.py")
MAX_BODY = 1 << 20


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
                   "output": [], "exit": None, "refused": None}
            self.current = job
        threading.Thread(target=self._run, args=(app, job), daemon=True).start()
        return job

    def _run(self, app, job):
        env = dict(os.environ)
        env["PYTHONIOENCODING"] = "utf-8"
        try:
            process = subprocess.Popen(
                [app.env.python, "-s", TOOL, job["kind"]] + job["args"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
            )
            for raw in process.stdout:
                job["output"].append(raw.decode("utf-8", "replace").rstrip("\r\n"))
            job["exit"] = process.wait()
        except OSError as e:
            job["output"].append("cannot run %s: %s" % (TOOL, e))
            job["exit"] = 2
        text = "\n".join(job["output"])
        if "Refused:" in text or "refused:" in text:
            start = text.find("Refused:") if "Refused:" in text else text.find("refused:")
            job["refused"] = text[start:].strip()
        if job["kind"] == "check":
            self.last_check = {
                "ok": job["exit"] == 0,
                "output": text,
                "when": datetime.datetime.now().isoformat(timespec="seconds"),
            }
        job["running"] = False

    def view(self):
        job = self.current
        if job is None:
            return None
        return {k: ("\n".join(v) if k == "output" else v) for k, v in job.items()}


class App:
    def __init__(self, env, port):
        self.env = env
        self.token = secrets.token_urlsafe(32)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.app = self
        self.port = self.server.server_address[1]
        self.host = "127.0.0.1:%d" % self.port
        self.origin = "http://" + self.host
        self.url = "%s/?token=%s" % (self.origin, self.token)
        self.jobs = Jobs()

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

    def log_message(self, *args):
        pass  # the request line holds the token: nothing is logged

    @property
    def app(self):
        return self.server.app

    def send(self, status, body, kind="application/json", nonce=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", kind + "; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
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

    def allowed(self, api):
        """Host, then the token: everything else is answered 403 without a word of the page."""
        if self.headers.get("Host", "") != self.app.host:
            self.refuse(403, "this server answers only to %s" % self.app.host)
            return False
        if api:
            given = self.headers.get("X-Token", "")
        else:
            given = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
        if not hmac.compare_digest(given.encode("utf-8"), self.app.token.encode("utf-8")):
            self.refuse(403, "the token is missing or wrong: open the address packages.sh gui printed")
            return False
        return True

    def do_GET(self):
        path = urlsplit(self.path).path
        api = path.startswith("/api/")
        if not self.allowed(api):
            return
        if path == "/":
            nonce = secrets.token_urlsafe(16)
            self.send(200, page(nonce), "text/html", nonce)
        elif path == "/api/state":
            self.send(200, self.app.state())
        elif path == "/api/job":
            self.send(200, {"job": self.app.jobs.view()})
        else:
            self.refuse(404, "no such page")

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
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if length > MAX_BODY:
                raise ValueError("the body is too large")
            body = json.loads(self.rfile.read(length) or b"{}")
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


def page(nonce):
    """The page, its style and its script in one answer (so the token guards all of it)."""
    parts = {}
    for name in ("index.html", "page.css", "page.js"):
        with open(os.path.join(PAGE, name), encoding="utf-8") as f:
            parts[name] = f.read()
    html = parts["index.html"]
    html = html.replace("<!--STYLE-->", '<style nonce="%s">\n%s</style>' % (nonce, parts["page.css"]))
    html = html.replace("<!--SCRIPT-->", '<script nonce="%s">\n%s</script>' % (nonce, parts["page.js"]))
    return html.encode("utf-8")


def serve(env, port, open_browser):
    try:
        app = App(env, port)
    except OSError as e:
        from .environment import PackagesError

        raise PackagesError("cannot listen on 127.0.0.1:%d: %s (pick another with --port N, "
                            "or leave --port out for a free one)" % (port, e.strerror or e))
    print(app.url, flush=True)
    print("Serving the page for this environment's packages; Ctrl-C stops it.", flush=True)
    if open_browser:
        threading.Thread(target=webbrowser.open, args=(app.url,), daemon=True).start()
    try:
        app.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.server.server_close()
    return 0
