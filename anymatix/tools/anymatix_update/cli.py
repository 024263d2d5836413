"""The command line of update.sh / update.bat."""

import json
import os
import sys
import time
import traceback

from . import carry, layout, runner, switch
from .build import build_tree, check_digests, download
from .errors import Refused, UpdateError
from .plan import make_plan, package_changes, platform_text, repo_text, variant_name, version_of
from .processes import running_from
from .zips import human, open_release

USAGE = """usage: {script} SOURCE            update this anymatix to the release SOURCE
       {script} --check SOURCE    say what the update would do, changing nothing
       {script} --prepare SOURCE  download, build and check it, without switching yet
       {script} --rollback        go back to the release before the last update
       {script} --forget-previous free the disk the previous release holds

SOURCE is the new release's zip: its address (https://…, the first volume or the only zip), a
zip on this machine, or a folder holding its volumes.

Only what changed is downloaded: the zip's directory is read with range requests, every entry
compared with the file here (size and CRC-32), and only new and changed entries fetched. The new
release is built beside this one (unchanged files hard-linked), your models, input, output, user
folder (settings, workflows), extra_model_paths.yaml and custom nodes are carried over, the
packages you added are installed again through the package tool (any the new release's
protected packages refuse are left out, and named), and the new release is checked. Only then
is it switched in, by renaming; this release is kept as the previous one until you forget it.
Nothing runs while ComfyUI runs from this folder; a stopped update is resumed or undone by the
next run. Downloads use the system's certificates and the usual proxy variables (https_proxy).

exit status: 0 done, 1 a check failed (nothing switched), 2 a usage or input error,
3 refused (another platform or variant, or a program runs from this folder), 4 unexpected
"""

SWITCH = 100  # the script then runs the switch (.update/switch.py) itself
UNEXPECTED = 4


def say(text=""):
    print(text, flush=True)


def main(argv):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")
        except (AttributeError, ValueError):
            pass
    script = layout.script("update")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(script=script))
        return 0 if argv else 2
    root = layout.tool_root()
    paths = layout.Layout(root)
    try:
        if os.path.exists(paths.journal):
            raise UpdateError("a switch between releases was interrupted: run %s (it takes the "
                              "switch back first), not tools/update.py" % script)
        if argv[0] == "--check":
            return check(paths, one_argument(argv, "--check SOURCE"))
        if argv[0] == "--prepare":
            return update(paths, one_argument(argv, "--prepare SOURCE"), switch_now=False)
        if argv[0] == "--rollback":
            no_more(argv)
            return rollback(paths)
        if argv[0] == "--forget-previous":
            no_more(argv)
            return forget_previous(paths)
        if argv[0].startswith("-"):
            raise UpdateError("unknown option %s (see `%s --help`)" % (argv[0], script))
        if len(argv) != 1:
            raise UpdateError("one SOURCE at a time (see `%s --help`)" % script)
        return update(paths, argv[0])
    except Refused as e:
        sys.stderr.write("refused: %s\n" % e)
        return 3
    except UpdateError as e:
        sys.stderr.write("error: %s\n" % e)
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: this anymatix is unchanged; the next run goes on from "
                         "what was downloaded\n")
        return 130
    except Exception as e:
        return unexpected(paths, e)


def one_argument(argv, usage):
    if len(argv) != 2:
        raise UpdateError("usage: %s %s" % (layout.script("update"), usage))
    return argv[1]


def no_more(argv):
    if len(argv) > 1:
        raise UpdateError("unexpected arguments: %s" % " ".join(argv[1:]))


def unexpected(paths, error):
    log = os.path.join(paths.work, "errors.log")
    where = "the details could not be written"
    try:
        os.makedirs(paths.work, exist_ok=True)
        with open(log, "a", encoding="utf-8") as f:
            f.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))
        where = "the details are in %s" % log
    except OSError:
        pass
    sys.stderr.write("error: something unexpected stopped the update (%s: %s); %s. This "
                     "anymatix is unchanged.\n" % (type(error).__name__, error, where))
    return UNEXPECTED


def current_manifest(root):
    try:
        with open(os.path.join(root, "manifest.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UpdateError("%s cannot be read (%s): is this an unpacked anymatix?"
                          % (os.path.join(root, "manifest.json"), e)) from None


def refuse_foreign(old, new, source):
    if old.get("platform") != new.get("platform"):
        raise Refused("%s is for %s; this anymatix is %s. Download the %s zip of that release."
                      % (source, new.get("platform"), old.get("platform"), old.get("platform")))
    if variant_name(old) != variant_name(new):
        raise Refused("%s is the %s variant; this anymatix is %s. Download the %s zip of that "
                      "release (or unpack the other variant on its own)."
                      % (source, variant_name(new), variant_name(old), variant_name(old)))


def refuse_running(root):
    found = running_from(root)
    if found:
        raise Refused("programs run from this anymatix; close them first (ComfyUI, the package "
                      "page), then run the update again:\n%s"
                      % "\n".join("  process %d: %s" % (pid, what[:200]) for pid, what in found))


def describe(release, root, plan, old):
    new = release.manifest
    say("This anymatix: %s (%s); the new release: %s (%s), from %s"
        % (old.get("version"), platform_text(old), new.get("version"), platform_text(new),
           release.source))
    for name in ("ComfyUI",):
        before, after = repo_text(old, name), repo_text(new, name)
        say("  %s: %s%s" % (name, after, "" if before == after else " (this one has %s)" % before))
    for repo in new.get("repos", [])[1:]:
        before, after = repo_text(old, repo["name"]), repo_text(new, repo["name"])
        if before != after:
            say("  %s: %s (this one has %s)" % (repo["name"], after, before or "none"))
    torch_old, torch_new = version_of(old, "torch"), version_of(new, "torch")
    if torch_new or torch_old:
        say("  torch: %s%s" % (torch_new, "" if torch_old == torch_new else " (this one has %s)" % torch_old))
    added, removed, changed = package_changes(old, new)
    say("  packages: %d added, %d removed, %d changed" % (len(added), len(removed), len(changed)))
    for name, version in added:
        say("    + %s %s" % (name, version))
    for name, version in removed:
        say("    - %s %s" % (name, version))
    for name, before, after in changed:
        say("    ~ %s %s -> %s" % (name, before, after))
    files = [e for e in release.entries.values() if e.kind != "dir"]
    say("  files: %d, of which %d new or changed (%s); %d the same as here"
        % (len(files), len(plan.fetch), human(plan.fetch_bytes), len(plan.reuse)))
    remote = any(v.remote for v in release.volumes)
    if remote:
        say("Download: %s of the zip's %s (%.2f%%), in %d ranges"
            % (human(plan.download_bytes), human(release.size),
               100.0 * plan.download_bytes / max(release.size, 1), len(plan.ranges)))


def describe_kept(root, old, new_manifest, incoming_names, packages, conflicts):
    items, notes = carry.user_items(root, old, incoming_names)
    say("Kept (moved into the new release at the switch, never copied):")
    for rel, files, size in carry.describe_items(root, items):
        say("  %s (%d file%s, %s)" % (rel, files, "" if files == 1 else "s", human(size)))
    if not items:
        say("  (nothing yet)")
    for note in notes:
        say("  note: " + note)
    for name in carry.dropped_nodes(old, new_manifest):
        say("  note: custom node %s came with this release and not with the new one: it stays "
            "with the previous release" % name)
    if packages:
        say("Packages you added, installed again through the package tool: %s"
            % ", ".join("%s %s" % p for p in packages))
    if conflicts:
        say("Conflicts with the new release's protected packages:")
        for text in conflicts:
            say("  " + text)


def nodes_in(tree):
    """The custom nodes' folder names in an anymatix tree on disk."""
    folder = os.path.join(tree, *carry.NODES.split("/"))
    return set(os.listdir(folder)) if os.path.isdir(folder) else set()


def incoming_from_release(release):
    prefix = carry.NODES + "/"
    return {rel[len(prefix):].split("/")[0] for rel in release.entries if rel.startswith(prefix)}


def check(paths, source):
    old = current_manifest(paths.root)
    release = open_release(source, paths.downloads, say)
    refuse_foreign(old, release.manifest, source)
    plan = make_plan(release, paths.root, say)
    describe(release, paths.root, plan, old)
    packages = carry.user_packages(paths.root)
    describe_kept(paths.root, old, release.manifest, incoming_from_release(release), packages,
                  carry.conflicts(paths.root, packages, release.setup))
    say("Nothing was changed. `%s %s` updates." % (layout.script("update"), source))
    return 0


def update(paths, source, switch_now=True):
    root = paths.root
    started = time.monotonic()
    steps = []

    def step(name, since):
        steps.append((name, time.monotonic() - since))
        return time.monotonic()

    if switch_now:
        refuse_running(root)
    old = current_manifest(root)
    t = time.monotonic()
    release = open_release(source, paths.downloads, say)
    refuse_foreign(old, release.manifest, source)
    packages = carry.user_packages(root)
    # What was built and checked before is used only for the same release and the same
    # packages of yours (an install since then is replayed by building again).
    identity = json.loads(json.dumps({"release": release.identity(), "packages": packages}))
    if ready_for(paths, identity):
        if not switch_now:
            say("The new release was built and checked already: `%s %s` switches to it."
                % (layout.script("update"), source))
            return 0
        say("The new release was built and checked by an earlier run: switching.")
        return prepare_switch(paths, old, release.manifest)
    plan = make_plan(release, root, say)
    t = step("reading the zip and comparing", t)
    describe(release, root, plan, old)
    describe_kept(root, old, release.manifest, incoming_from_release(release), packages,
                  carry.conflicts(root, packages, release.setup))
    download(plan, paths.downloads, say)
    t = step("download", t)
    build_tree(plan, paths.new, paths.downloads, say)
    checked = check_digests(plan, paths.new, say)
    say("Built the new release in %s (%d files linked, %d written; %d checked against the "
        "release's sha256 besides their CRC-32)"
        % (os.path.relpath(paths.new, root), len(plan.reuse), len(plan.fetch), checked))
    t = step("building the new tree", t)
    done, left = carry.replay(paths.new, packages, say)
    t = step("installing your packages again", t)
    items, _ = carry.user_items(root, old, nodes_in(paths.new))
    nodes = [os.path.join(root, *r.split("/")) for r in items if r.startswith(carry.NODES + "/")]
    unmet = carry.unmet_requirements(paths.new, [n for n in nodes if os.path.isdir(n)])
    for name, why in left:
        say("Left out: %s (%s)" % (name, why))
    for node, missing in unmet:
        say("Custom node %s: its requirements are not met in the new release: %s"
            % (node, "; ".join(missing)))
    say("Checking the new release (its package tool's `check`):")
    status, _, _ = carry.run_tool(paths.new, ["check"], say)
    t = step("checks", t)
    if status != 0:
        say("The new release did not pass its checks (above): nothing was switched, this "
            "anymatix is unchanged. Its tree stays in %s for a look; the next run builds it "
            "again." % paths.new)
        return 1
    with open(paths.ready, "w", encoding="utf-8") as f:
        json.dump({"identity": identity, "left_out": left, "unmet": unmet}, f)
    for name, seconds in steps:
        say("  %-32s %6.1f s" % (name, seconds))
    say("  %-32s %6.1f s" % ("in all, before the switch", time.monotonic() - started))
    if not switch_now:
        say("Ready: close ComfyUI (and the package page), then `%s %s` switches to it at once."
            % (layout.script("update"), source))
        return 0
    return prepare_switch(paths, old, release.manifest)


def ready_for(paths, identity):
    try:
        with open(paths.ready, encoding="utf-8") as f:
            return json.load(f).get("identity") == identity and os.path.isdir(paths.new)
    except (OSError, ValueError):
        return False


def rel(paths, path):
    return os.path.relpath(path, paths.root).replace(os.sep, "/")


def swap_steps(paths, incoming, outgoing, manifest_here):
    """The journal's renames that put the release in `incoming` in place, the one here into
    `outgoing`, and the user's things into the incoming release."""
    items, _ = carry.user_items(paths.root, manifest_here, nodes_in(incoming))
    aside = os.path.join(paths.work, "aside")
    steps = [("mkdir", rel(paths, outgoing))]
    for item in items:
        target = os.path.join(incoming, *item.split("/"))
        steps.append(("mkdir", rel(paths, os.path.dirname(target))))
        if os.path.lexists(target):
            steps.append(("mkdir", rel(paths, os.path.dirname(os.path.join(aside, *item.split("/"))))))
            steps.append(("move", rel(paths, target), rel(paths, os.path.join(aside, *item.split("/")))))
        steps.append(("move", item, rel(paths, target)))
    names_in = sorted(os.listdir(incoming))
    release_names = set(names_in) | {".packages", "python", "ComfyUI", "tools", "manifest.json"}
    here = [n for n in sorted(os.listdir(paths.root)) if n != layout.WORK and n in release_names]

    def is_file(path):
        return os.path.isfile(path) and not os.path.islink(path)

    # Files at the top (the scripts a user starts) are swapped in one rename each, last, so a
    # script is there at every moment and takes back a switch that was stopped; one the same in
    # both releases stays as it is (the running update.bat is not renamed over).
    both = [n for n in here if is_file(os.path.join(paths.root, n))
            and is_file(os.path.join(incoming, n))]
    same = [n for n in both if same_bytes(os.path.join(paths.root, n), os.path.join(incoming, n))]
    for name in here:
        if name not in both:
            steps.append(("move", name, rel(paths, os.path.join(outgoing, name))))
    for name in names_in:
        if name not in both:
            steps.append(("move", rel(paths, os.path.join(incoming, name)), name))
    if same:
        steps.append(("mkdir", rel(paths, os.path.join(aside, "top"))))
    for name in both:
        if name in same:
            steps.append(("move", rel(paths, os.path.join(incoming, name)),
                          rel(paths, os.path.join(aside, "top", name))))
        else:
            steps.append(("swap", name, rel(paths, outgoing), rel(paths, incoming)))
    steps.append(("rmdir", rel(paths, incoming)))
    steps.append(("after", rel(paths, aside)))
    return steps


def same_bytes(a, b):
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as f, open(b, "rb") as g:
        return f.read() == g.read()


def prepare_switch(paths, old, new_manifest):
    refuse_running(paths.root)
    steps = []
    # An older release than the previous one goes; one a switch could not remove before (a file
    # of it was in use) is tried again.
    leftovers = [os.path.join(paths.work, n) for n in os.listdir(paths.work)
                 if n.startswith("discarded")]
    discarded = os.path.join(paths.work, "discarded-%d" % len(leftovers))
    while os.path.lexists(discarded):
        discarded += "x"
    if os.path.exists(paths.previous):
        steps.append(("move", rel(paths, paths.previous), rel(paths, discarded)))
    steps += swap_steps(paths, paths.new, paths.previous, old)
    for leftover in leftovers + [discarded, paths.ready, paths.downloads]:
        steps.append(("after", rel(paths, leftover)))
    script = layout.script("update")
    steps.append(("say", "Updated: this anymatix is %s now. The release before (%s) is kept in %s: "
                         "`%s --rollback` brings it back, `%s --forget-previous` frees its disk."
                  % (new_manifest.get("version"), old.get("version"),
                     rel(paths, paths.previous), script, script)))
    return write_and_switch(paths, steps)


def write_and_switch(paths, steps):
    runner.prepare(paths.root, paths.work)
    switch.write_journal(paths.root, steps)
    return SWITCH


def rollback(paths):
    if not os.path.isdir(paths.previous):
        raise UpdateError("there is no previous release here (%s): nothing to go back to"
                          % paths.previous)
    refuse_running(paths.root)
    here = current_manifest(paths.root)
    try:
        with open(os.path.join(paths.previous, "manifest.json"), encoding="utf-8") as f:
            back = json.load(f)
    except (OSError, ValueError):
        back = {}
    swap = paths.previous + ".swap"
    if os.path.lexists(swap):
        layout.remove(swap)
    steps = swap_steps(paths, paths.previous, swap, here)
    steps.append(("move", rel(paths, swap), rel(paths, paths.previous)))
    script = layout.script("update")
    steps.append(("say", "Rolled back: this anymatix is %s again. The release you left (%s) is "
                         "kept as the previous one: `%s --rollback` returns to it, `%s "
                         "--forget-previous` frees its disk."
                  % (back.get("version"), here.get("version"), script, script)))
    return write_and_switch(paths, steps)


def forget_previous(paths):
    if not os.path.isdir(paths.previous):
        say("There is no previous release to forget.")
        return 0
    refuse_running(paths.root)
    size = layout.disk_usage(paths.previous)
    # Removed by the switch's runner once this python has ended: on Windows a file cannot be
    # deleted while a program has it loaded, and the previous release shares its files (as hard
    # links) with this one's python.
    return write_and_switch(paths, [
        ("after", rel(paths, paths.previous)),
        ("say", "The previous release is gone: up to %s freed (less what it shared with this one "
                "as hard links)." % human(size)),
    ])
