"""What runs the switch: `.update/switch.py` (a copy of switch.py), `.update/switch.sh` (which
finds a python for it wherever a stopped switch left one), and on Windows a python of
its own in `.update/runner/` (python.exe, its DLLs and the encodings it needs at start, nothing
else): Windows does not rename a folder while a program from it runs, so the switch cannot run
from the python/ it renames."""

import os

from . import layout

HERE = os.path.dirname(os.path.abspath(__file__))


def prepare(root, work):
    os.makedirs(work, exist_ok=True)
    for name in ("switch.py", "switch.sh"):
        copy(os.path.join(HERE, name), os.path.join(work, name))
    if os.name == "nt":
        windows_runner(os.path.join(root, "python"), os.path.join(work, "runner"))


def windows_runner(prefix, runner):
    if os.path.exists(runner):
        layout.remove(runner)
    os.makedirs(runner)
    stem = None
    for name in os.listdir(prefix):
        lower = name.lower()
        if lower == "python.exe" or lower.endswith(".dll"):
            copy(os.path.join(prefix, name), os.path.join(runner, name))
            if lower.startswith("python3") and lower != "python3.dll":
                stem = name[:-4]
    paths = []
    encodings = os.path.join(prefix, "Lib", "encodings")
    if os.path.isdir(encodings):
        target = os.path.join(runner, "Lib", "encodings")
        os.makedirs(target)
        for name in os.listdir(encodings):
            # .py (Miniforge's python), or .pyc alone (python.org's embeddable build).
            if name.endswith((".py", ".pyc")):
                copy(os.path.join(encodings, name), os.path.join(target, name))
        paths.append("Lib")
    if stem and os.path.isfile(os.path.join(prefix, stem + ".zip")):
        copy(os.path.join(prefix, stem + ".zip"), os.path.join(runner, stem + ".zip"))
        paths.append(stem + ".zip")
    # A ._pth file: the runner's python looks nowhere else (no site, no registry, no variables).
    with open(os.path.join(runner, (stem or "python") + "._pth"), "w", encoding="utf-8") as f:
        f.write("\n".join(paths + ["."]) + "\n")


def copy(source, target):
    """Bytes and mode; by hand rather than shutil, whose Windows copy (CopyFile2) Wine 8 lacks."""
    with open(source, "rb") as f, open(target, "wb") as g:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            g.write(chunk)
    os.chmod(target, os.stat(source).st_mode & 0o777)
