"""A state of the environment (everything under python/) kept for undo, and restored.

Keeping a state links every file into a folder of its own: no bytes are copied, and a state holds
disk only for the files a later change replaces (pip and Python write a new file, or unlink the
old one first, so a linked copy keeps the old bytes). Where the filesystem has no hard links
(exFAT, FAT32), files are copied instead, and the person is told what that costs.

Beside each state folder `N/`, `N.json` records what python/ was when it was kept: each file's
inode, size and modification time. The environment is compared with that record, not with the
state folder: a file edited in place (same inode, other size or time) is shared with the state
through its link, so the folder would look unchanged too; the record shows it. States that are
copies are compared by size and time only (a copy has inodes of its own).

Restoring makes python/ the state's tree again one file at a time: each file that differs is put
beside its place under a temporary name and renamed over it, so every file is whole at every
moment, and a restore killed half way leaves a python that runs, and is finished by the next run.
Files a package wrote into site-packages after it was installed (downloaded weights, caches: no
package's RECORD names them) that the state lacks are moved aside, never deleted.
"""

import json
import os
import shutil
import stat
import sys
import time

from .environment import NotWritable

POSIX = os.name != "nt"
# A file being put in place by restore, beside its final name.
TEMPORARY = ".~anymatix-"


def walk(root):
    """{relative path: entry} for everything below root; an entry is ["d"], ["l", target] or
    ["f", inode, bytes, mtime_ns] (the inode is 0 on Windows, where it costs a call per file)."""
    found = {}
    pending = [""]
    while pending:
        rel = pending.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as entries:
            for entry in entries:
                path = rel + "/" + entry.name if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    found[path] = ["d"]
                    pending.append(path)
                elif entry.is_symlink():
                    found[path] = ["l", os.readlink(entry.path)]
                else:
                    info = entry.stat(follow_symlinks=False)
                    inode = entry.inode() if POSIX else 0
                    found[path] = ["f", inode, info.st_size, info.st_mtime_ns]
    return found


def same_entry(a, b, by_inode):
    if a is None or b is None or a[0] != b[0]:
        return False
    if a[0] != "f":
        return a == b
    return a[2:] == b[2:] and (not by_inode or a[1] == b[1])


def bytecode(rel):
    return "__pycache__" in rel.split("/")


class Differences:
    """What differs between a recorded listing and the tree now (bytecode aside)."""

    def __init__(self, recorded, now, by_inode):
        self.added, self.removed, self.changed, self.in_place = [], [], [], []
        for rel in sorted(set(recorded) | set(now)):
            if bytecode(rel) or TEMPORARY in rel:
                continue
            old, new = recorded.get(rel), now.get(rel)
            if same_entry(old, new, by_inode):
                continue
            if old is None:
                self.added.append(rel)
            elif new is None:
                self.removed.append(rel)
            else:
                self.changed.append(rel)
                if by_inode and old[0] == new[0] == "f" and old[1] == new[1]:
                    self.in_place.append(rel)

    def __bool__(self):
        return bool(self.added or self.removed or self.changed)

    def files(self):
        return sorted(self.added + self.removed + self.changed)


def listing_path(state_dir):
    return state_dir + ".json"


def save_listing(state_dir, listing, linked):
    partial = listing_path(state_dir) + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        json.dump({"linked": linked, "entries": listing}, f, separators=(",", ":"))
    os.replace(partial, listing_path(state_dir))


def load_listing(state_dir):
    """(entries, linked) recorded when the state was kept, or (None, None)."""
    try:
        with open(listing_path(state_dir), encoding="utf-8") as f:
            data = json.load(f)
        return data["entries"], bool(data["linked"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def _link_or_copy(source, target, linking):
    """Puts a file at target; returns whether it was linked (not copied)."""
    if linking:
        try:
            os.link(source, target)
            return True
        except OSError:
            if not os.path.exists(source):
                raise
    shutil.copy2(source, target)
    return False


class Copying(Exception):
    """Raised on the first file that cannot be hard-linked, so the caller can say so."""


def keep(tree, into, listing, allow_copy=False):
    """Keeps the state of `tree` at `into` (built under a temporary name, its record written,
    then renamed into place). Returns whether its files are links."""
    partial = into + ".partial"
    if os.path.lexists(partial):
        _rmtree(partial)
    os.makedirs(partial)
    linking = True
    for rel in sorted(listing):
        kind = listing[rel]
        source = os.path.join(tree, rel)
        target = os.path.join(partial, rel)
        try:
            if kind[0] == "d":
                os.mkdir(target)
            elif kind[0] == "l":
                os.symlink(kind[1], target)
            elif not _link_or_copy(source, target, linking) and linking:
                if not allow_copy:
                    _rmtree(partial)
                    raise Copying()
                linking = False
        except FileNotFoundError:
            continue  # removed while walking (bytecode being rewritten): not part of the state
    save_listing(into, listing, linking)
    if os.path.lexists(into):
        _rmtree(into)  # a state of this id half-removed by a killed run
    os.replace(partial, into)
    return linking


def restore(state, tree, by_inode, set_aside=None, owned=None):
    """Makes `tree` the kept `state` again, offline, one file at a time. Files the state lacks
    are removed, except those under site-packages that no package owns (`owned`: the paths that
    packages' RECORDs name), which are moved into `set_aside`. Returns the paths set aside."""
    want = walk(state)
    have = walk(tree)
    stale = [rel for rel in have if TEMPORARY in os.path.basename(rel)]
    for rel in stale:
        _remove(os.path.join(tree, rel), have.pop(rel))
    # Folders first (parents sort before their children), then every file put in place by a
    # rename, then what the state lacks, deepest first.
    for rel in sorted(want):
        if want[rel][0] != "d":
            continue
        target = os.path.join(tree, rel)
        if have.get(rel, [None])[0] == "d":
            continue
        if rel in have:
            _remove(target, have.pop(rel))
        os.mkdir(target)
    linking = True
    for rel in sorted(want):
        kind = want[rel]
        if kind[0] == "d" or same_entry(have.get(rel), kind, by_inode):
            continue
        target = os.path.join(tree, rel)
        if have.get(rel, [None])[0] == "d":
            _remove(target, have.pop(rel))
        folder, name = os.path.split(target)
        temporary = os.path.join(folder, TEMPORARY + name)
        if os.path.lexists(temporary):
            os.unlink(temporary)
        if kind[0] == "l":
            os.symlink(kind[1], temporary)
        else:
            linking = _link_or_copy(os.path.join(state, rel), temporary, linking)
        _replace(temporary, target)
    moved = []
    for rel in sorted((r for r in have if r not in want), key=lambda r: r.count("/"), reverse=True):
        path = os.path.join(tree, rel)
        if have[rel][0] == "f" and set_aside and not bytecode(rel) and owned is not None:
            if owned.unowned(rel):
                aside = os.path.join(set_aside, rel)
                os.makedirs(os.path.dirname(aside), exist_ok=True)
                os.replace(path, aside)
                moved.append(rel)
                continue
        _remove(path, have[rel])
    return moved


def _replace(source, target):
    try:
        os.replace(source, target)
    except PermissionError:
        if POSIX:
            raise
        # Windows refuses to replace a read-only file.
        os.chmod(target, stat.S_IWRITE)
        os.replace(source, target)


def _remove(path, kind):
    try:
        if kind[0] == "d":
            _rmtree(path)
        else:
            _unlink(path)
    except FileNotFoundError:
        pass


def _unlink(path):
    try:
        os.unlink(path)
    except PermissionError:
        if POSIX:
            raise
        os.chmod(path, stat.S_IWRITE)
        os.unlink(path)


def _rmtree(path, handler=None):
    handler = handler or _retry_writable
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=handler)
    else:
        shutil.rmtree(path, onerror=handler)


def _retry_writable(function, path, _):
    os.chmod(path, stat.S_IWRITE)
    function(path)


def _skip_busy(function, path, error):
    try:
        _retry_writable(function, path, error)
    except OSError:
        pass


def held_bytes(kept, current):
    """The bytes the kept states (`kept`: [(folder, whether its files are links)]) hold beyond
    the environment itself: files no longer in python/ (counted once however many states share
    them). A copied state holds all of its files."""

    def identity(kind):
        return kind[1] if POSIX else (kind[2], kind[3])

    live = {identity(kind) for kind in current.values() if kind[0] == "f"}
    seen = set()
    total = 0
    for state, linked in kept:
        for kind in walk(state).values():
            if kind[0] != "f":
                continue
            if linked and (identity(kind) in live or identity(kind) in seen):
                continue
            seen.add(identity(kind))
            total += kind[2]
    return total


def remove(path):
    """Removes a kept state and its record (renamed out of the way first, so a half-removed one
    is never read). On Windows a link to a library some program has loaded (the running python's
    own DLLs, or torch's in a running ComfyUI) cannot be deleted: a later run removes the rest."""
    for extra in (listing_path(path), listing_path(path) + ".partial"):
        if os.path.exists(extra):
            os.unlink(extra)
    if not os.path.lexists(path):
        return
    doomed = "%s.removing-%d" % (path, int(time.time() * 1000))
    os.replace(path, doomed)
    _rmtree(doomed, _skip_busy)


def remove_leftover(path):
    """Something in the states folder no state owns: a half-made or half-removed state."""
    if os.path.isdir(path) and not os.path.islink(path):
        _rmtree(path, _skip_busy)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def check_writable(folder):
    probe = os.path.join(folder, ".write-test-%d" % os.getpid())
    try:
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise NotWritable(
            "cannot write in %s (%s): this environment's packages can only change where its "
            "folder is writable. Unpack the zip in a folder of your own (not Program Files or a "
            "read-only drive)" % (folder, e.strerror or e)
        ) from None
