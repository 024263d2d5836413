"""The switch between two releases of an anymatix folder: a journal of renames, written whole
before the first one, then done one by one. It runs on its own (`python -I -S switch.py finish
ANYMATIX` or `recover ANYMATIX`) with nothing but built-in modules, from a copy outside the
folders it renames: on Windows a folder holding a running program cannot be renamed, so
update.bat runs it with a copy of the python made for it (`.update/runner/`), after update.py
has ended.

Journal (`.update/switch.journal`, paths relative to the anymatix folder, tab-separated):
    anymatix-switch 1
    say      TEXT           printed when the switch is done
    mkdir    PATH
    move     FROM  TO
    swap     FILE  OUT  IN  a file at the top (a script): OUT/FILE gets a link to it, then
                            IN/FILE replaces it in one rename, so it is never missing
    rmdir    PATH           (must be empty)
    after    PATH           removed once every rename is done
    end

`finish` does every step not done yet (a step that finds itself done is skipped), then removes
the journal, then the `after` paths. `recover` takes back the steps done, newest first, and
removes the journal: the folder is as it was before the switch began. The scripts recover an
interrupted switch before they start anything (ComfyUI starts from the release it had)."""

import os
import sys
import time

JOURNAL = os.path.join(".update", "switch.journal")
HEADER = "anymatix-switch 1"


def read_journal(root):
    with open(os.path.join(root, JOURNAL), encoding="utf-8") as f:
        lines = f.read().split("\n")
    if not lines or lines[0] != HEADER or "end" not in lines:
        raise SystemExit("error: %s is not a whole switch journal: remove it only if %s works"
                         % (os.path.join(root, JOURNAL), root))
    steps = []
    for line in lines[1:lines.index("end")]:
        parts = line.split("\t")
        steps.append(parts)
    return steps


def write_journal(root, steps):
    """Writes the journal whole (a temporary name, flushed, renamed): a switch starts only from
    a complete one."""
    path = os.path.join(root, JOURNAL)
    temporary = path + ".part"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(HEADER + "\n")
        for step in steps:
            f.write("\t".join(step) + "\n")
        f.write("end\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def at(root, rel):
    path = os.path.join(root, *rel.split("/"))
    if os.name == "nt":
        path = "\\\\?\\" + os.path.abspath(path)
    return path


def exists(path):
    return os.path.lexists(path)


def rename(source, target, root):
    for attempt in range(5):
        try:
            os.rename(source, target)
            return
        except PermissionError:
            # Windows: an antivirus scanning a new file holds it for a moment.
            if attempt == 4:
                raise SystemExit(
                    "error: %s cannot be renamed: a program still uses a file in it (close "
                    "ComfyUI, the package page and any console whose folder is inside %s, then "
                    "run update again)" % (source, root))
            time.sleep(0.5 * (attempt + 1))


def do(root, step):
    kind = step[0]
    if kind == "mkdir":
        os.makedirs(at(root, step[1]), exist_ok=True)
    elif kind == "move":
        source, target = at(root, step[1]), at(root, step[2])
        if exists(source) and not exists(target):
            rename(source, target, root)
        elif not (exists(target) and not exists(source)):
            raise SystemExit("error: cannot move %s to %s: %s" % (
                step[1], step[2], "both exist" if exists(source) else "neither exists"))
    elif kind == "swap":
        here, out, incoming = (at(root, step[1]), at(root, step[2] + "/" + step[1]),
                               at(root, step[3] + "/" + step[1]))
        if exists(here) and not exists(out) and exists(incoming):
            link_or_copy(here, out)
        if exists(incoming):
            if exists(here) and os.path.samefile(incoming, here):
                # The same file (an unchanged one is linked into the new release): rename(2)
                # between two links of one file does nothing, so the extra name goes.
                os.remove(incoming)
            else:
                os.replace(incoming, here)
    elif kind == "rmdir":
        path = at(root, step[1])
        if exists(path):
            left = os.listdir(path)
            if left:
                raise SystemExit("error: %s should be empty now and holds %s"
                                 % (step[1], ", ".join(sorted(left)[:10])))
            os.rmdir(path)


def link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:
        with open(source, "rb") as f, open(target + ".part", "wb") as g:
            g.write(f.read())
        os.replace(target + ".part", target)


def undo(root, step):
    kind = step[0]
    if kind == "mkdir":
        path = at(root, step[1])
        if exists(path) and not os.listdir(path):
            os.rmdir(path)
    elif kind == "move":
        source, target = at(root, step[1]), at(root, step[2])
        if exists(target) and not exists(source):
            rename(target, source, root)
    elif kind == "swap":
        here, out, incoming = (at(root, step[1]), at(root, step[2] + "/" + step[1]),
                               at(root, step[3] + "/" + step[1]))
        if not exists(out):
            return
        if exists(incoming) or os.path.samefile(out, here):
            # Not replaced yet: the link made for the outgoing release goes.
            if not exists(incoming):
                link_or_copy(here, incoming)
            os.remove(out)
            return
        link_or_copy(here, incoming)
        os.replace(out, here)
    elif kind == "rmdir":
        os.makedirs(at(root, step[1]), exist_ok=True)


def remove_tree(path):
    if not exists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        for name in os.listdir(path):
            remove_tree(os.path.join(path, name))
        os.rmdir(path)
    else:
        try:
            os.remove(path)
        except PermissionError:
            os.chmod(path, 0o666)
            os.remove(path)


def finish(root):
    steps = read_journal(root)
    try:
        for step in steps:
            do(root, step)
    except (SystemExit, OSError) as e:
        # Back to the release it had: a folder half one release and half another starts nothing.
        for step in reversed(steps):
            undo(root, step)
        os.remove(os.path.join(root, JOURNAL))
        message = e.code if isinstance(e, SystemExit) else "error: %s" % e
        raise SystemExit("%s\nNothing was changed: %s is the release it was." % (message, root))
    os.remove(os.path.join(root, JOURNAL))
    for step in steps:
        if step[0] == "after":
            try:
                remove_tree(at(root, step[1]))
            except OSError as e:
                sys.stderr.write("note: %s could not be removed (%s)\n" % (step[1], e))
    for step in steps:
        if step[0] == "say":
            print(step[1])


def recover(root):
    steps = read_journal(root)
    for step in reversed(steps):
        undo(root, step)
    os.remove(os.path.join(root, JOURNAL))
    print("An interrupted switch between releases was taken back: %s is as it was before it."
          % root)


def main(argv):
    if len(argv) != 2 or argv[0] not in ("finish", "recover"):
        sys.stderr.write("usage: switch.py finish|recover ANYMATIX-FOLDER\n")
        return 2
    root = os.path.abspath(argv[1])
    if not exists(os.path.join(root, JOURNAL)):
        return 0
    (finish if argv[0] == "finish" else recover)(root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
