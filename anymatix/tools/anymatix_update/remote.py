"""A release's zip on a web server, read by byte ranges: the standard library's http.client, one
kept-alive connection per thread, redirects followed (GitHub sends release assets to its storage
host; the address it gives is used for every later range, and asked again when it expires), the
usual proxy variables, and the system's certificates (through pip's truststore when this pip has
it, as pip itself does)."""

import base64
import http.client
import os
import ssl
import threading
import time
import urllib.parse
import urllib.request

from .errors import UpdateError

TIMEOUT = 60
REDIRECTS = 10
TRIES = 8
CHUNK = 1 << 20


class NoRanges(Exception):
    """The server answered a range request with the whole body (200)."""


def ssl_context():
    try:
        from pip._vendor import truststore

        return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    except Exception:
        return ssl.create_default_context()


class Connections(threading.local):
    """One kept-alive connection per (thread, scheme, host, port)."""

    def __init__(self):
        self.open = {}


class Remote:
    """One file on a server: its size, and its bytes by range."""

    def __init__(self, url, say):
        self.url = url
        self.say = say
        self._final = None
        self._lock = threading.Lock()
        self._connections = Connections()
        self._context = None
        self.size = None
        self.tag = None
        self.ranged = True

    # -- requests ------------------------------------------------------------------------------

    def _connection(self, parts):
        key = (parts.scheme, parts.hostname, parts.port)
        conn = self._connections.open.get(key)
        if conn is not None:
            return conn, False
        proxy = proxy_for(parts)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.scheme == "https":
            if self._context is None:
                self._context = ssl_context()
            if proxy:
                conn = http.client.HTTPSConnection(
                    proxy.hostname, proxy.port or 8080, timeout=TIMEOUT, context=self._context
                )
                conn.set_tunnel(parts.hostname, port, headers=proxy_headers(proxy))
            else:
                conn = http.client.HTTPSConnection(
                    parts.hostname, port, timeout=TIMEOUT, context=self._context
                )
        elif parts.scheme == "http":
            if proxy:
                conn = http.client.HTTPConnection(proxy.hostname, proxy.port or 8080, timeout=TIMEOUT)
                conn.anymatix_absolute = True
            else:
                conn = http.client.HTTPConnection(parts.hostname, port, timeout=TIMEOUT)
        else:
            raise UpdateError("%s: only http:// and https:// addresses can be read" % self.url)
        self._connections.open[key] = conn
        return conn, True

    def _drop(self, parts):
        conn = self._connections.open.pop((parts.scheme, parts.hostname, parts.port), None)
        if conn is not None:
            conn.close()

    def _get(self, url, headers):
        """GET `url` with redirects followed: (the address that answered, the response)."""
        for _ in range(REDIRECTS):
            parts = urllib.parse.urlsplit(url)
            target = url if getattr(self._connection(parts)[0], "anymatix_absolute", False) else (
                (parts.path or "/") + ("?" + parts.query if parts.query else "")
            )
            for attempt in (0, 1):
                conn, fresh = self._connection(parts)
                try:
                    conn.request("GET", target, headers=dict(headers, **{"User-Agent": "anymatix-update"}))
                    response = conn.getresponse()
                    break
                except (OSError, http.client.HTTPException):
                    self._drop(parts)
                    # A kept-alive connection the server closed meanwhile: once more, fresh.
                    if fresh or attempt:
                        raise
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                response.read()
                if response.will_close:
                    self._drop(parts)
                if not location:
                    raise UpdateError("%s answered %d without a Location" % (url, response.status))
                url = urllib.parse.urljoin(url, location)
                continue
            if response.will_close:
                # Read by the caller; the next request opens another.
                self._connections.open.pop((parts.scheme, parts.hostname, parts.port), None)
            return url, response
        raise UpdateError("%s: more than %d redirects" % (self.url, REDIRECTS))

    def _ranged_get(self, start, end):
        """A response for bytes [start, end) (206), from the storage host once it is known."""
        url = self._final or self.url
        final, response = self._get(url, {"Range": "bytes=%d-%d" % (start, end - 1)})
        if response.status in (401, 403, 404, 410) and self._final is not None:
            # The storage host's signed address expired: ask the release's address again.
            response.read()
            self._final = None
            final, response = self._get(self.url, {"Range": "bytes=%d-%d" % (start, end - 1)})
        if response.status == 200:
            raise_no_ranges(response)
        if response.status != 206:
            body = response.read(300).decode("utf-8", "replace").strip()
            raise UpdateError(
                "%s answered %d %s%s" % (self.url, response.status, response.reason,
                                         (": " + body) if body else "")
            )
        self._final = final
        return response

    # -- what callers use ----------------------------------------------------------------------

    def probe(self):
        """Learns the size: the first byte, asked for alone. Raises NoRanges (with the length the
        server said) when the server sends the whole file instead."""
        try:
            response = self._ranged_get(0, 1)
        except NoRanges as e:
            self.ranged = False
            self.size = e.length
            raise
        total = (response.getheader("Content-Range") or "").rpartition("/")[2]
        response.read()
        if not total.isdigit():
            raise UpdateError("%s: its answer does not say the file's size (Content-Range)" % self.url)
        self.size = int(total)
        self.tag = response.getheader("ETag") or response.getheader("Last-Modified")

    def read(self, start, end):
        """Bytes [start, end), in memory (small reads: the zip's directory, its manifest)."""
        out = bytearray()
        self._fetch(start, end, out.extend)
        return bytes(out)

    def download(self, start, end, path, progress=None):
        """Bytes [start, end) into `path`, resumed from what `path + '.part'` already holds."""
        part = path + ".part"
        with open(part, "ab") as f:
            have = f.tell()

            def write(chunk):
                f.write(chunk)
                if progress:
                    progress(len(chunk))

            if progress and have:
                progress(have)
            self._fetch(start + have, end, write)
        os.replace(part, path)

    def _fetch(self, start, end, sink):
        done = 0
        tries = 0
        while start + done < end:
            try:
                response = self._ranged_get(start + done, end)
                got = content_range_start(response)
                if got != start + done:
                    raise UpdateError("%s answered range %s for bytes from %d"
                                      % (self.url, response.getheader("Content-Range"), start + done))
                while start + done < end:
                    chunk = response.read(min(CHUNK, end - start - done))
                    if not chunk:
                        raise http.client.IncompleteRead(b"")
                    sink(chunk)
                    done += len(chunk)
                response.read()
            except NoRanges:
                raise
            except (OSError, http.client.HTTPException) as e:
                self._drop(urllib.parse.urlsplit(self._final or self.url))
                tries += 1
                if tries >= TRIES:
                    raise UpdateError("%s: the download broke off %d times (%s)" % (self.url, tries, e)) from None
                time.sleep(min(0.2 * 2 ** tries, 10))

    def download_whole(self, path, progress=None):
        """The whole file (a server without ranges): started again when the connection breaks."""
        part = path + ".part"
        for tries in range(1, TRIES + 1):
            done = 0
            try:
                _, response = self._get(self.url, {})
                if response.status != 200:
                    raise UpdateError("%s answered %d %s" % (self.url, response.status, response.reason))
                length = response.getheader("Content-Length")
                with open(part, "wb") as f:
                    while True:
                        chunk = response.read(CHUNK)
                        if not chunk:
                            break
                        f.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(len(chunk))
                if length is not None and done != int(length):
                    raise http.client.IncompleteRead(b"", int(length) - done)
                os.replace(part, path)
                self.size = done
                return
            except (OSError, http.client.HTTPException) as e:
                if progress:
                    progress(-done)
                self._drop(urllib.parse.urlsplit(self.url))
                if tries == TRIES:
                    raise UpdateError("%s: the download broke off %d times (%s)" % (self.url, tries, e)) from None
                time.sleep(min(0.2 * 2 ** tries, 10))


def raise_no_ranges(response):
    length = response.getheader("Content-Length")
    response.close()
    error = NoRanges()
    error.length = int(length) if length and length.isdigit() else None
    raise error


def content_range_start(response):
    value = response.getheader("Content-Range") or ""
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        raise UpdateError("a range answer without a readable Content-Range (%r)" % value) from None


def proxy_for(parts):
    """The proxy the usual variables (http_proxy, https_proxy, no_proxy) name for this address."""
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy:
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    return urllib.parse.urlsplit(proxy)


def proxy_headers(proxy):
    if proxy.username is None:
        return {}
    user = urllib.parse.unquote(proxy.username) + ":" + urllib.parse.unquote(proxy.password or "")
    return {"Proxy-Authorization": "Basic " + base64.b64encode(user.encode()).decode()}
