"""The user's world, carried from one release to the next: ComfyUI's models, input, output and
user folders (settings, workflows, its database), an extra_model_paths.yaml, the custom nodes
no release shipped (moved whole at the switch: nothing is copied, however large), and the
packages added since the zip was made, installed again through the new release's package tool
under its protected core."""

import json
import os
import subprocess
import sys
import tempfile

from . import layout

USER_PATHS = (
    "ComfyUI/models",
    "ComfyUI/input",
    "ComfyUI/output",
    "ComfyUI/user",
    "ComfyUI/extra_model_paths.yaml",
)
NODES = "ComfyUI/custom_nodes"


def shipped_nodes(manifest):
    """The custom nodes a release shipped (its repos under custom_nodes/), by folder name."""
    names = set()
    for repo in manifest.get("repos", []):
        path = (repo.get("path") or "").strip("/")
        if path.startswith(NODES + "/"):
            names.add(path[len(NODES) + 1:].split("/")[0])
    return names


def user_items(root, manifest, incoming_names):
    """([rel] of the user's things in `root` to carry, [notes]): `manifest` is the release in
    `root`; `incoming_names` what the incoming release has in custom_nodes/."""
    items = [rel for rel in USER_PATHS if os.path.lexists(os.path.join(root, *rel.split("/")))]
    notes = []
    nodes = os.path.join(root, *NODES.split("/"))
    shipped = shipped_nodes(manifest)
    for name in sorted(os.listdir(nodes)) if os.path.isdir(nodes) else []:
        if name == "__pycache__" or name in shipped:
            continue
        if name in incoming_names:
            if os.path.isdir(os.path.join(nodes, name)):
                notes.append("custom node %s: the new release ships its own, which is used (yours "
                             "stays with the previous release)" % name)
            continue
        items.append(NODES + "/" + name)
    return items, notes


def dropped_nodes(old_manifest, new_manifest):
    return sorted(shipped_nodes(old_manifest) - shipped_nodes(new_manifest))


def describe_items(root, items):
    """[(rel, files, bytes)] for the summary."""
    out = []
    for rel in items:
        path = os.path.join(root, *rel.split("/"))
        if os.path.isdir(path) and not os.path.islink(path):
            files = size = 0
            for folder, _, names in os.walk(path):
                for name in names:
                    files += 1
                    try:
                        size += os.lstat(os.path.join(folder, name)).st_size
                    except OSError:
                        pass
            out.append((rel, files, size))
        else:
            out.append((rel, 1, os.lstat(path).st_size))
    return out


def user_packages(root):
    """[(name, version)] added or changed since this release's zip was made (what `packages.sh
    list` shows), read with this release's package tool; protected ones are not the user's."""
    sys.path.insert(0, os.path.join(root, "tools"))
    from anymatix_packages.environment import Environment
    from anymatix_packages.views import packages_view, read_history

    env = Environment(root)
    view = packages_view(env, read_history(env), differences=[])
    return [(p["name"], p["version"]) for p in view["added"] + view["changed"]]


def conflicts(root, packages, new_setup):
    """[text] for each package of the user's that the new protected core would refuse: one the
    new release protects at another version, or one whose requirements exclude the version of a
    protected package the new release has. Read from the installed packages' metadata."""
    from importlib.metadata import distribution

    try:
        from pip._vendor.packaging.requirements import Requirement
        from pip._vendor.packaging.utils import canonicalize_name
    except ImportError:
        return []
    protected = {canonicalize_name(p["name"]): p["version"] for p in new_setup.get("protected", [])}
    found = []
    for name, version in packages:
        key = canonicalize_name(name)
        if key in protected:
            if protected[key] != version:
                found.append("%s %s: the new release protects %s %s, so yours is not kept"
                             % (name, version, name, protected[key]))
            continue
        try:
            requires = distribution(name).requires or []
        except Exception:
            continue
        for text in requires:
            try:
                requirement = Requirement(text)
            except Exception:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            wanted = protected.get(canonicalize_name(requirement.name))
            if wanted and not requirement.specifier.contains(wanted, prereleases=True):
                found.append("%s %s requires %s; the new release protects %s %s: a version of "
                             "%s that fits is looked for, or it is left out"
                             % (name, version, text, requirement.name, wanted, name))
    return found


def run_tool(tree, args, say):
    """The package tool of `tree` (its own python): (exit status, outcome data)."""
    fd, result = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        command = [layout.python_of(tree), "-s", os.path.join(tree, "tools", "packages.py"),
                   "--result-json", result] + args
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, errors="replace")
        lines = []
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            say("    " + line.rstrip("\n"))
        status = process.wait()
        try:
            with open(result, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
        return status, data, lines
    finally:
        os.remove(result)


def replay(tree, packages, say):
    """Installs the user's packages into the release at `tree` through its package tool: all at
    once at the versions the user had; where that fails, each on its own, at that version, then
    at any version the new core takes. Returns ([(name, version asked)], [(name, why)])."""
    if not packages:
        return [], []
    pinned = ["%s==%s" % (n, v) for n, v in packages]
    say("Installing again the %d packages you added: %s" % (len(pinned), " ".join(pinned)))
    status, _, _ = run_tool(tree, ["install"] + pinned, say)
    if status == 0:
        return [(n, v) for n, v in packages], []
    say("Not all at once: each on its own.")
    done, left = [], []
    for name, version in packages:
        status, data, lines = run_tool(tree, ["install", "%s==%s" % (name, version)], say)
        if status == 0:
            done.append((name, version))
            continue
        status, data, lines = run_tool(tree, ["install", name], say)
        if status == 0:
            done.append((name, "any version"))
            continue
        outcome = (data or {}).get("outcome") or {}
        why = outcome.get("text") or next(
            (l.strip() for l in reversed(lines) if l.strip().lower().startswith("error")), "pip failed")
        left.append((name, why.splitlines()[0] if why else "pip failed"))
    return done, left


def unmet_requirements(tree, node_dirs):
    """[(node, [requirement not met])] of custom nodes whose requirements.txt the python of
    `tree` does not satisfy (read by that python, with pip's own parser)."""
    files = [os.path.join(d, "requirements.txt") for d in node_dirs
             if os.path.isfile(os.path.join(d, "requirements.txt"))]
    if not files:
        return []
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements_met.py")
    out = subprocess.run([layout.python_of(tree), "-s", here] + files, capture_output=True,
                         text=True, errors="replace")
    try:
        found = json.loads(out.stdout)
    except ValueError:
        return [("(requirements check)", [out.stderr.strip()[-300:]])]
    return [(os.path.basename(os.path.dirname(f)), unmet) for f, unmet in found if unmet]
