"""The programs running from an anymatix folder (ComfyUI, the package page, a console's python):
an update switches only when none is, since on Windows their files cannot be renamed and
anywhere a running ComfyUI would go on with the files of a release that is gone."""

import os
import subprocess
import sys


def running_from(folder):
    """[(pid, what)] of the processes whose program lies under `folder`, this one aside."""
    folder = os.path.normcase(os.path.realpath(folder)).rstrip(os.sep) + os.sep
    mine = {os.getpid()}
    found = []
    for pid, program, command in processes():
        if pid in mine or not program:
            continue
        try:
            real = os.path.normcase(os.path.realpath(program))
        except (OSError, ValueError):
            continue
        if real.startswith(folder):
            found.append((pid, command or program))
    return found


def processes():
    if sys.platform.startswith("linux"):
        return linux()
    if os.name == "nt":
        return windows()
    return ps()


def linux():
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            program = os.readlink("/proc/%s/exe" % name)
            with open("/proc/%s/cmdline" % name, "rb") as f:
                command = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        out.append((int(name), program, command))
    return out


def ps():
    try:
        text = subprocess.run(["ps", "-axww", "-o", "pid=,comm="], capture_output=True,
                              text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    out = []
    for line in text.splitlines():
        pid, _, program = line.strip().partition(" ")
        if pid.isdigit():
            out.append((int(pid), program.strip(), program.strip()))
    return out


def windows():
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    psapi = ctypes.WinDLL("psapi", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    kernel32.QueryFullProcessImageNameW.argtypes = (
        wintypes.HANDLE, wintypes.DWORD, wintypes.LPWSTR, ctypes.POINTER(wintypes.DWORD))
    kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
    pids = (wintypes.DWORD * 8192)()
    needed = wintypes.DWORD()
    if not psapi.EnumProcesses(pids, ctypes.sizeof(pids), ctypes.byref(needed)):
        return []
    out = []
    query_limited = 0x1000
    for pid in pids[: needed.value // ctypes.sizeof(wintypes.DWORD)]:
        handle = kernel32.OpenProcess(query_limited, False, pid)
        if not handle:
            continue
        try:
            buffer = ctypes.create_unicode_buffer(32768)
            size = wintypes.DWORD(len(buffer))
            if kernel32.QueryFullProcessImageNameW(handle, 0, buffer, ctypes.byref(size)):
                out.append((int(pid), buffer.value, buffer.value))
        finally:
            kernel32.CloseHandle(handle)
    return out
