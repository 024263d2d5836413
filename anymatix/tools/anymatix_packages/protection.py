"""The protected packages' files, compared by content with what the zip shipped.

The build wrote every file of each protected package with its size and sha256
(tools/protected-files.json). A protected package at the zip's version whose files differ (a
wheel that overwrote one, a uv from outside this environment, a file edited in place) is named
here, whatever changed it: pip's constraints can only refuse what goes through pip.

Hashing torch and its CUDA libraries takes seconds, so what was hashed is remembered in
`.packages/verified.json` (by path in site-packages) with inode, size and modification time: a file is hashed again only when
one of them changed. A file whose content is not the zip's while its inode is the one that held
the zip's content was edited in place: the states kept for undo share it, so only a reinstall
brings it back.
"""

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

from .environment import canonical

CACHE = "verified.json"
# Below this much to hash, nothing is said.
QUIET_BYTES = 200 * 1000 * 1000


class Difference:
    """A protected package at the zip's version whose files are not the zip's."""

    def __init__(self, name, version):
        self.name = name
        self.version = version
        self.changed = []
        self.missing = []
        self.in_place = []

    def files(self):
        return sorted(self.changed + self.missing)

    def as_data(self):
        return {
            "name": self.name,
            "version": self.version,
            "changed": self.changed,
            "missing": self.missing,
            "in_place": self.in_place,
        }

    def describe(self, limit=3):
        parts = ["%s (changed)" % f for f in self.changed[:limit]]
        parts += ["%s (missing)" % f for f in self.missing[: max(0, limit - len(parts))]]
        more = len(self.changed) + len(self.missing) - len(parts)
        return ", ".join(parts) + (" and %d more" % more if more > 0 else "")


def shipped(env):
    """{name: [(path relative to site-packages, bytes, sha256)]} as the build wrote it."""
    path = os.path.join(env.tools, "protected-files.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def verify(env, say=None):
    """[Difference] of every protected package installed at the zip's version whose files are
    not the zip's. Raises OSError or ValueError when tools/protected-files.json is unreadable."""
    held = shipped(env)
    versions = {canonical(n): v for n, v, _ in env.protected()}
    installed = env.installed()
    cache_path = os.path.join(env.state_dir, CACHE)
    try:
        with open(cache_path, encoding="utf-8") as f:
            cache = json.load(f)
    except (OSError, ValueError):
        cache = {}
    fresh = {}
    todo = []
    found = {}
    for name, files in sorted(held.items()):
        now = installed.get(canonical(name))
        if now is None or now[1] != versions.get(canonical(name)):
            continue  # another version (or none): named as such by whoever asks
        difference = Difference(name, now[1])
        for rel, size, digest in files:
            path = os.path.normpath(os.path.join(env.purelib, rel))
            try:
                info = os.stat(path)
            except OSError:
                difference.missing.append(rel)
                continue
            key = [info.st_ino, info.st_size, info.st_mtime_ns]
            known = cache.get(rel)
            # Edited in place: the inode that held the zip's content holds another now (or
            # was found so before: the cache keeps saying it).
            was_right = bool(known) and known[0] == info.st_ino and (
                known[3] == digest or (len(known) > 4 and known[4]))
            if known and known[:3] == key:
                fresh[rel] = known
                if known[3] != digest:
                    difference.changed.append(rel)
                    if len(known) > 4 and known[4]:
                        difference.in_place.append(rel)
            elif info.st_size != size:
                fresh[rel] = key + [None, was_right]
                difference.changed.append(rel)
                if was_right:
                    difference.in_place.append(rel)
            else:
                todo.append((difference, rel, path, key, was_right, digest))
        found[name] = difference
    if todo:
        total = sum(item[3][1] for item in todo)
        if say and total > QUIET_BYTES:
            say("Checking the protected packages' files against the zip's (%d files, %.1f GB)..."
                % (len(todo), total / 1e9))
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            digests = list(pool.map(lambda item: _hash_or_none(item[2]), todo))
        for (difference, rel, path, key, was_right, digest), got in zip(todo, digests):
            if got is None:
                difference.missing.append(rel)
                continue
            edited = got != digest and was_right
            fresh[rel] = key + [got, edited]
            if got != digest:
                difference.changed.append(rel)
                if edited:
                    difference.in_place.append(rel)
    if fresh != cache:
        _save(cache_path, fresh)
    return [d for d in found.values() if d.changed or d.missing]


def _hash_or_none(path):
    try:
        return sha256(path)
    except OSError:
        return None


def _save(path, cache):
    """Remembers what was hashed, where the folder can be written (a read-only unpack hashes
    every time)."""
    try:
        partial = "%s.%d" % (path, os.getpid())
        with open(partial, "w", encoding="utf-8") as f:
            json.dump(cache, f, separators=(",", ":"))
        os.replace(partial, path)
    except OSError:
        pass


def owners(env, paths, skip):
    """{path: "name version" of another package (not in `skip`) whose RECORD also names it},
    for files of protected packages (`paths`, relative to site-packages)."""
    named = env.file_owners()
    found = {}
    for path in paths:
        rel = env.relative(os.path.normpath(os.path.join(env.purelib, path)))
        for name, version in named.get(rel, []):
            if canonical(name) not in skip:
                found[path] = "%s %s" % (name, version)
    return found
