"""Where an update keeps its work, inside the anymatix folder (the same drive, so its files can be
linked and its trees renamed into place):

  .update/new/          the new release's tree while it is built and checked
  .update/new.ready     written once it passed its checks: the next run goes straight to the switch
  .update/previous/     the release before the last switch (`update --rollback` brings it back)
  .update/download/     the byte ranges downloaded, kept until the update is done
  .update/switch.journal  the renames of a switch in progress (see switch.py)
"""

import os
import shutil
import stat

WORK = ".update"


def tool_root():
    """anymatix/: tools/anymatix_update/ is two levels below."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.dirname(os.path.dirname(here))


class Layout:
    def __init__(self, root):
        self.root = root
        self.work = os.path.join(root, WORK)
        self.new = os.path.join(self.work, "new")
        self.ready = os.path.join(self.work, "new.ready")
        self.previous = os.path.join(self.work, "previous")
        self.downloads = os.path.join(self.work, "download")
        self.journal = os.path.join(self.work, "switch.journal")


def join(root, rel):
    """A path under `root` from a zip's name; on Windows in the form that passes 260 characters."""
    path = os.path.join(root, *rel.split("/"))
    if os.name == "nt":
        path = os.path.abspath(path)
        if not path.startswith("\\\\?\\"):
            path = "\\\\?\\" + path
    return path


def remove(path):
    """Removes a file or a whole tree, read-only files too."""
    if os.name == "nt" and not path.startswith("\\\\?\\"):
        path = "\\\\?\\" + os.path.abspath(path)
    if os.path.islink(path) or os.path.isfile(path):
        os.remove(path)
        return

    def retry(function, failed, _):
        os.chmod(failed, stat.S_IWRITE | stat.S_IREAD | stat.S_IEXEC)
        function(failed)

    if os.path.isdir(path):
        shutil.rmtree(path, onerror=retry)


def safe_name(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def site_packages(entries):
    """site-packages of a release's python, relative to anymatix/ (from its zip's names)."""
    for rel in entries:
        parts = rel.split("/")
        if "site-packages" in parts:
            return "/".join(parts[:parts.index("site-packages") + 1])
    return "python/Lib/site-packages" if os.name == "nt" else "python/lib/site-packages"


def site_packages_of(tree):
    """site-packages of the python in `tree` (an anymatix folder), found on disk."""
    prefix = os.path.join(tree, "python")
    windows = os.path.join(prefix, "Lib", "site-packages")
    if os.path.isdir(windows):
        return windows
    lib = os.path.join(prefix, "lib")
    for name in sorted(os.listdir(lib)) if os.path.isdir(lib) else []:
        candidate = os.path.join(lib, name, "site-packages")
        if name.startswith("python") and os.path.isdir(candidate):
            return candidate
    return None


def python_of(tree):
    """The python program of an anymatix folder."""
    if os.name == "nt":
        return os.path.join(tree, "python", "python.exe")
    return os.path.join(tree, "python", "bin", "python3")


def script(name):
    return name + (".bat" if os.name == "nt" else ".sh")


def disk_usage(path):
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            total += st.st_size
    return total
