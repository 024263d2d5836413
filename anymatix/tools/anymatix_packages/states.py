"""A state of the environment (everything under python/) kept as hard links, and restored.

Keeping a state links every file into a folder of its own: no bytes are copied, and a state holds
disk only for the files a later change replaces (pip and Python write a new file and rename it over
the old one, or unlink the old one first, so a linked copy keeps the old bytes). Restoring makes
python/ the same tree again: files that differ are replaced by links to the kept ones, files the
state lacks are deleted. Both are walks of about 50,000 entries on the real product, about a
second each. Where the filesystem has no hard links (exFAT, FAT32), files are copied instead and
the person is told what that costs.

A file is compared by what the walk gives for free: its inode, size and modification time (on
Windows, where the inode costs a system call each, its size and modification time).
"""

import os
import shutil
import stat
import sys
import time

from .environment import PackagesError

POSIX = os.name != "nt"


def walk(root):
    """{relative path: entry} for everything below root; an entry is ("d",), ("l", target) or
    ("f", identity, bytes)."""
    found = {}
    pending = [""]
    while pending:
        rel = pending.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as entries:
            for entry in entries:
                path = rel + "/" + entry.name if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    found[path] = ("d",)
                    pending.append(path)
                elif entry.is_symlink():
                    found[path] = ("l", os.readlink(entry.path))
                else:
                    info = entry.stat(follow_symlinks=False)
                    identity = (
                        (entry.inode(), info.st_size, info.st_mtime_ns)
                        if POSIX
                        else (info.st_size, info.st_mtime_ns)
                    )
                    found[path] = ("f", identity, info.st_size)
    return found


def same_tree(a, b):
    return a.keys() == b.keys() and all(a[k][:2] == b[k][:2] for k in a)


def _place(kind, source, target, linking):
    """Puts one entry of the state at target; returns whether it was linked (not copied)."""
    if kind[0] == "d":
        os.mkdir(target)
        return linking
    if kind[0] == "l":
        os.symlink(kind[1], target)
        return linking
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


def keep(tree, into, listing=None, allow_copy=False):
    """Keeps the state of `tree` at `into` (written under a temporary name, renamed when whole).
    Returns the listing of the kept state."""
    listing = listing if listing is not None else walk(tree)
    partial = into + ".partial"
    if os.path.exists(partial):
        shutil.rmtree(partial)
    os.makedirs(partial)
    linking = True
    for rel in sorted(listing):
        kind = listing[rel]
        source = os.path.join(tree, rel)
        target = os.path.join(partial, rel)
        try:
            linked = _place(kind, source, target, linking)
        except FileNotFoundError:
            continue  # removed while walking (bytecode being rewritten): not part of the state
        if linking and not linked:
            if not allow_copy:
                shutil.rmtree(partial, ignore_errors=True)
                raise Copying()
            linking = False
    os.replace(partial, into)
    return walk(into)


def restore(state, tree, progress=None):
    """Makes `tree` the same as the kept `state`, offline: what differs is replaced by links to
    the kept files (copies where the filesystem has no links), what the state lacks is removed."""
    want = walk(state)
    have = walk(tree)
    removing = [rel for rel, kind in have.items() if want.get(rel, (None,))[:2] != kind[:2]]
    # Deepest first, so a folder is empty when its turn comes.
    for rel in sorted(removing, key=lambda r: r.count("/"), reverse=True):
        path = os.path.join(tree, rel)
        try:
            if have[rel][0] == "d":
                _remove_folder(path)
            else:
                _unlink(path)
        except FileNotFoundError:
            pass
    linking = True
    for rel in sorted(want):
        kind = want[rel]
        if have.get(rel, (None,))[:2] == kind[:2]:
            continue
        target = os.path.join(tree, rel)
        if kind[0] == "d" and os.path.isdir(target):
            continue
        linking = _place(kind, os.path.join(state, rel), target, linking)
    if progress:
        progress("restored %d entries" % len(want))
    return linking


def _unlink(path):
    try:
        os.unlink(path)
    except PermissionError:
        if POSIX:
            raise
        # Windows refuses to delete a read-only file.
        os.chmod(path, stat.S_IWRITE)
        os.unlink(path)


def _remove_folder(path):
    # Whatever is left inside is not in the state either (bytecode written since, for example).
    _rmtree(path)


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


def held_bytes(states, current):
    """The bytes the kept states hold beyond the environment itself: files no longer in python/
    (counted once however many states share them)."""
    live = {kind[1] for kind in current.values() if kind[0] == "f"}
    seen = set()
    total = 0
    for state in states:
        for kind in walk(state).values():
            if kind[0] == "f" and kind[1] not in live and kind[1] not in seen:
                seen.add(kind[1])
                total += kind[2]
    return total


def remove(path):
    """Removes a kept state (renamed out of the way first, so a half-removed one is never read).
    On Windows a link to a library some program has loaded (the running python's own DLLs, or
    torch's in a running ComfyUI) cannot be deleted: what is left is removed by a later run."""
    if not os.path.exists(path):
        return
    doomed = "%s.removing-%d" % (path, int(time.time() * 1000))
    os.replace(path, doomed)
    _rmtree(doomed, _skip_busy)


def check_writable(folder):
    probe = os.path.join(folder, ".write-test-%d" % os.getpid())
    try:
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise PackagesError(
            "cannot write in %s (%s): this environment's packages can only change where its "
            "folder is writable. Unpack the zip in a folder of your own (not Program Files or a "
            "read-only drive)" % (folder, e.strerror or e)
        ) from None
