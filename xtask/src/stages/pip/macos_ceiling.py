"""pip's view of macOS, capped at the zip's oldest supported release.

Written by cargo xtask as `sitecustomize.py` into a folder on PYTHONPATH of the build's pip
only. pip's tags for macOS (packaging's `mac_platforms`) start at the running release, so on a
newer build machine pip would take wheels built for it (`macosx_15_0_arm64`) that fail on the
release the zip promises (`requires_at_most: {macos: ...}` in distribution.yml). With the
release capped, pip takes the newest wheel built for the ceiling or older. Nothing else reads
this folder: the zip's python never sees it.
"""

import platform
import subprocess
import sys

CEILING = (0, 0)  # replaced by the build: requires_at_most's macos

_mac_ver = platform.mac_ver


def _release(text):
    try:
        return tuple(int(part) for part in text.split(".")[:2])
    except ValueError:
        return None


def _capped_mac_ver(release="", versioninfo=("", "", ""), machine=""):
    release, versioninfo, machine = _mac_ver(release, versioninfo, machine)
    version = _release(release)
    if version == (10, 16):
        # A python built against an old SDK is told 10.16; ask as packaging itself does.
        asked = subprocess.run(
            [sys.executable, "-sS", "-c", "import platform; print(platform.mac_ver()[0])"],
            env={"SYSTEM_VERSION_COMPAT": "0"},
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        ).stdout.strip()
        if _release(asked):
            release, version = asked, _release(asked)
    if version and version > CEILING:
        release = "%d.%d" % CEILING
    return release, versioninfo, machine


platform.mac_ver = _capped_mac_ver
