"""The new release's tree, built beside this one (`.update/new/`): the ranges that hold what is
new or changed downloaded (a few at once, each resumed where a broken connection left it, kept
across runs for the same release), every unchanged file hard-linked from this anymatix (copied
where the drive has no links), every new one written from its entry and checked."""

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

from . import layout
from .errors import UpdateError
from .progress import Progress
from .zips import human, inflate

CONNECTIONS = 4


def keep_downloads_for(release, downloads, say):
    """Ranges downloaded for another release (or another build of it) are not used: removed."""
    identity = release.identity()
    marker = os.path.join(downloads, "source.json")
    try:
        with open(marker, encoding="utf-8") as f:
            same = json.load(f) == identity
    except (OSError, ValueError):
        same = False
    if not same and os.path.isdir(downloads):
        kept = [n for n in os.listdir(downloads) if n.startswith("whole-")]
        for name in os.listdir(downloads):
            if name not in kept and name != "source.json":
                layout.remove(os.path.join(downloads, name))
    os.makedirs(downloads, exist_ok=True)
    with open(marker, "w", encoding="utf-8") as f:
        json.dump(identity, f)


def range_path(downloads, volume, start, end):
    return os.path.join(downloads, "%s.%d-%d" % (layout.safe_name(volume.name), start, end))


def download(plan, downloads, say):
    remote = [r for r in plan.ranges if r[0].remote]
    if not remote:
        return
    keep_downloads_for(plan.release, downloads, say)
    total = sum(end - start for _, start, end, _ in remote)
    have = 0
    for volume, start, end, _ in remote:
        path = range_path(downloads, volume, start, end)
        if os.path.exists(path):
            have += end - start
    if have:
        say("%s of it downloaded before" % human(have))
    with Progress("downloading", total, say) as progress:
        progress.add(have)

        def one(r):
            volume, start, end, _ = r
            path = range_path(downloads, volume, start, end)
            if not os.path.exists(path):
                volume.remote.download(start, end, path, progress.add)

        with ThreadPoolExecutor(CONNECTIONS) as pool:
            # Largest first, so a big one does not start last.
            for _ in pool.map(one, sorted(remote, key=lambda r: r[1] - r[2])):
                pass


class Span:
    """A file positioned at an entry: a downloaded range, or the local volume itself."""

    def __init__(self, path, base, offset):
        self.f = open(path, "rb")
        self.f.seek(offset - base)

    def read(self, n):
        return self.f.read(n)

    def close(self):
        self.f.close()


def build_tree(plan, new, downloads, say):
    """Writes `new` whole (under a name only this update uses; the caller marks it ready)."""
    if os.path.exists(new):
        layout.remove(new)
    os.makedirs(new)
    release = plan.release
    dirs = sorted(e.rel for e in release.entries.values() if e.kind == "dir")
    for rel in dirs:
        os.makedirs(layout.join(new, rel), exist_ok=True)
    linking = [True]
    reuse = sorted(plan.reuse.items())
    with Progress("linking unchanged files", len(reuse), say, unit="files") as progress:
        for rel, source in reuse:
            target = layout.join(new, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            entry = release.entries[rel]
            if entry.kind == "link":
                os.symlink(os.readlink(source), target)
            elif "/" not in rel:
                # The files at the top (the scripts) are copies: the switch renames each over
                # this anymatix's own, which a link to that same file would not replace.
                shutil.copy2(source, target) if os.name != "nt" else copy_bytes(source, target)
            else:
                link_or_copy(source, target, linking, say)
            progress.add(1)
    sources = []
    for volume, start, end, entries in plan.ranges:
        path = range_path(downloads, volume, start, end) if volume.remote else volume.path
        base = start if volume.remote else 0
        for entry in entries:
            sources.append((entry, path, base))
    total = sum(e.size for e, _, _ in sources)
    with Progress("writing new and changed files", total, say) as progress:

        def one(item):
            entry, path, base = item
            write_entry(entry, path, base, layout.join(new, entry.rel), progress)

        with ThreadPoolExecutor(2) as pool:
            for _ in pool.map(one, sorted(sources, key=lambda s: -s[0].size)):
                pass
    for rel in reversed(dirs):
        mode = release.entries[rel].mode
        if os.name != "nt":
            os.chmod(layout.join(new, rel), mode)


def write_entry(entry, path, base, target, progress):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    span = Span(path, base, entry.offset)
    try:
        if entry.kind == "link":
            data = bytearray()
            inflate(span, entry, data.extend, path)
            os.symlink(bytes(data).decode("utf-8"), target)
            return
        temporary = target + ".anymatix-part"
        with open(temporary, "wb") as out:
            def sink(data):
                out.write(data)
                progress.add(len(data))

            inflate(span, entry, sink, path)
        if os.name != "nt":
            os.chmod(temporary, entry.mode)
        os.replace(temporary, target)
    finally:
        span.close()


def link_or_copy(source, target, linking, say):
    if linking[0]:
        try:
            os.link(source, target)
            return
        except OSError as e:
            linking[0] = False
            say("this drive does not take hard links (%s): unchanged files are copied" % e.strerror)
    try:
        shutil.copy2(source, target)
    except OSError as e:
        if getattr(e, "errno", None) == 28:
            raise UpdateError("the drive of %s is full: the update needs room for the new release "
                              "beside this one" % target) from None
        raise


def copy_bytes(source, target):
    with open(source, "rb") as f, open(target, "wb") as g:
        g.write(f.read())


def check_digests(plan, new, say):
    """Every downloaded file of a protected package checked against the new release's sha256
    (tools/protected-files.json), beyond its CRC-32."""
    import hashlib

    path = os.path.join(new, "tools", "protected-files.json")
    try:
        with open(path, encoding="utf-8") as f:
            held = json.load(f)
    except (OSError, ValueError):
        return 0
    site = layout.site_packages(plan.release.entries)
    digests = {}
    for files in held.values():
        for rel, _size, digest in files:
            digests[site + "/" + rel] = digest
    checked = 0
    for entry in plan.fetch:
        want = digests.get(entry.rel)
        if want is None or entry.kind != "file":
            continue
        h = hashlib.sha256()
        with open(layout.join(new, entry.rel), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != want:
            raise UpdateError("%s is not what the release's tools/protected-files.json says "
                              "(sha256): the download is damaged, run the update again" % entry.rel)
        checked += 1
    return checked

