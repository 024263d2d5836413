"""Progress of long work: bytes, rate and time left, on one line rewritten in a console, a line
every few seconds otherwise (a log)."""

import sys
import threading
import time

from .zips import human


class Progress:
    def __init__(self, label, total, say, unit="bytes"):
        self.label = label
        self.total = total
        self.say = say
        self.unit = unit
        self.done = 0
        self.started = time.monotonic()
        # The first line after a while: work that ends at once says nothing.
        self.shown = self.started
        self.lock = threading.Lock()
        self.console = sys.stderr.isatty()
        self.every = 0.5 if self.console else 5.0

    def __enter__(self):
        return self

    def add(self, n):
        with self.lock:
            self.done += n
            now = time.monotonic()
            if now - self.shown >= self.every:
                self.shown = now
                self._show(now, end=False)

    def _text(self, now):
        elapsed = max(now - self.started, 1e-6)
        if self.unit == "bytes":
            rate = self.done / elapsed
            text = "%s: %s" % (self.label, human(self.done))
            if self.total:
                text += " of %s (%d%%)" % (human(self.total), 100 * self.done // max(self.total, 1))
            text += ", %s/s" % human(rate)
            if self.total and rate > 0 and self.done < self.total:
                text += ", %ds left" % ((self.total - self.done) / rate)
        else:
            text = "%s: %d of %d %s" % (self.label, self.done, self.total or 0, self.unit)
        return text

    def _show(self, now, end):
        text = self._text(now)
        if self.console:
            sys.stderr.write("\r" + text + ("\n" if end else "\x1b[K"))
            sys.stderr.flush()
        elif not end:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def __exit__(self, kind, *_):
        now = time.monotonic()
        if self.console and self.shown > self.started:
            self._show(now, end=True)
        elif kind is None and now - self.started >= self.every:
            sys.stderr.write("%s: done in %.0f s\n" % (self.label, now - self.started))
            sys.stderr.flush()
