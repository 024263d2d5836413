#!/bin/sh
# Adds, removes, lists, checks and undoes the Python packages of this portable anymatix
# environment; `./packages.sh --help` says how. It runs the python that sits beside this script,
# so it works from any current directory and wherever the folder was unpacked or moved.
set -e
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P)
exec "$here/python/bin/python3" -s "$here/tools/packages.py" "$@"
