"""What an update changes: every entry of the new release compared with this anymatix's file at
the same place (size and CRC-32 of its bytes, so a file the user's packages replaced counts as
changed), the byte ranges of the volumes that hold what is new or changed (neighbours merged),
and what the release changes in words (ComfyUI, torch, packages)."""

import os
import stat
import zlib
from concurrent.futures import ThreadPoolExecutor

from .progress import Progress

# Two entries to fetch this close together are fetched in one range (the bytes between them
# come along): fewer requests for the price of a few kilobytes.
GAP = 64 * 1024
CHUNK = 1 << 20


class Plan:
    def __init__(self, release, reuse, fetch, ranges):
        self.release = release
        self.reuse = reuse  # {rel: path in this anymatix} for files and links whose bytes match
        self.fetch = fetch  # [Entry] new or changed
        self.ranges = ranges  # [(volume, start, end, [Entry])]

    @property
    def download_bytes(self):
        return sum(end - start for volume, start, end, _ in self.ranges if volume.remote)

    @property
    def fetch_bytes(self):
        return sum(e.size for e in self.fetch)


def crc_of(path, size):
    crc = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
    return crc


def matches(entry, local):
    """Whether the file at `local` holds exactly what `entry` holds (and runs alike)."""
    try:
        st = os.lstat(local)
    except OSError:
        return False
    if entry.kind == "link":
        if not stat.S_ISLNK(st.st_mode):
            return False
        target = os.readlink(local).encode("utf-8", "surrogateescape")
        return len(target) == entry.size and zlib.crc32(target) == entry.crc
    if entry.kind != "file" or not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
        return False
    if os.name != "nt" and bool(st.st_mode & 0o111) != bool(entry.mode & 0o111):
        return False
    try:
        return crc_of(local, st.st_size) == entry.crc
    except OSError:
        return False


def make_plan(release, root, say):
    files = [e for e in release.entries.values() if e.kind != "dir"]
    total = sum(e.size for e in files)
    reuse, fetch = {}, []
    with Progress("comparing with this anymatix", total, say) as progress:

        def one(entry):
            local = os.path.join(root, *entry.rel.split("/"))
            ok = matches(entry, local)
            progress.add(entry.size)
            return entry, local, ok

        workers = min(4, (os.cpu_count() or 1) + 1)
        with ThreadPoolExecutor(workers) as pool:
            for entry, local, ok in pool.map(one, files):
                if ok:
                    reuse[entry.rel] = local
                else:
                    fetch.append(entry)
    return Plan(release, reuse, fetch, merge_ranges(fetch))


def merge_ranges(entries):
    """[(volume, start, end, [entries])]: each entry's span (local header to the next entry),
    neighbours in the same volume merged."""
    ranges = []
    for entry in sorted(entries, key=lambda e: (e.volume.name, e.offset)):
        last = ranges[-1] if ranges else None
        if last and last[0] is entry.volume and entry.offset - last[2] <= GAP:
            last[2] = max(last[2], entry.end)
            last[3].append(entry)
        else:
            ranges.append([entry.volume, entry.offset, entry.end, [entry]])
    return [tuple(r) for r in ranges]


def package_changes(old, new):
    """(added, removed, changed) between two manifests' package lists."""
    def by_name(manifest):
        return {p["name"].lower().replace("_", "-"): (p["name"], p["version"])
                for p in manifest.get("packages", [])}

    a, b = by_name(old), by_name(new)
    added = [b[k] for k in sorted(b) if k not in a]
    removed = [a[k] for k in sorted(a) if k not in b]
    changed = [(b[k][0], a[k][1], b[k][1]) for k in sorted(b) if k in a and a[k][1] != b[k][1]]
    return added, removed, changed


def repo_text(manifest, name):
    for repo in manifest.get("repos", []):
        if repo.get("name") == name:
            rev, commit = repo.get("rev") or "", (repo.get("commit") or "")[:10]
            if not commit or rev.startswith(commit):
                return commit or rev
            return "%s (%s)" % (rev, commit)
    return None


def version_of(manifest, name):
    for p in manifest.get("packages", []):
        if p["name"].lower() == name:
            return p["version"]
    return None


def variant_name(manifest):
    variant = manifest.get("variant") or {}
    return variant.get("name") if isinstance(variant, dict) else variant


def platform_text(manifest):
    variant = variant_name(manifest)
    return "%s, %s" % (manifest.get("platform"), variant) if variant else manifest.get("platform")
