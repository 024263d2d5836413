"""Test-only Wine adapter, never in a zip: a real Windows needs none of it.

Loads wine8fix.dll (beside this file), which redirects the functions Wine 8.0 only stubs, then
runs what python was asked to run, as python would:

    python.exe -s boot.py -c CODE ARGS...
    python.exe -s boot.py -m MODULE ARGS...
    python.exe -s boot.py SCRIPT ARGS...
"""
import ctypes
import os
import runpy
import sys

_here = os.path.dirname(os.path.abspath(__file__))
ctypes.WinDLL(os.path.join(_here, "wine8fix.dll")).wine8fix_apply()
# The adapter's own folder is not the product's: python would not have it on sys.path.
if sys.path and os.path.abspath(sys.path[0] or ".") == _here:
    del sys.path[0]

_args = sys.argv[1:]
if not _args:
    sys.exit("boot.py: nothing to run (give -c CODE, -m MODULE or a script)")
if _args[0] == "-c":
    sys.argv = ["-c"] + _args[2:]
    sys.path.insert(0, "")
    _globals = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(_args[1], "<string>", "exec"), _globals)
elif _args[0] == "-m":
    sys.argv = _args[1:]
    sys.path.insert(0, os.getcwd())
    runpy.run_module(_args[1], run_name="__main__", alter_sys=True)
else:
    sys.argv = _args
    sys.path.insert(0, os.path.dirname(os.path.abspath(_args[0])))
    runpy.run_path(_args[0], run_name="__main__")
