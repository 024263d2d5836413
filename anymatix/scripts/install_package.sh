#!/bin/sh
# Installs more Python packages into this portable anymatix environment.
#   ./install_package.sh PACKAGE [PACKAGE ...]     (any `pip install` arguments work)
# It runs the python that sits beside this script, so it works from any current directory and
# wherever the folder was unpacked. `-s` keeps the user's own site-packages out.
set -e
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P)
exec "$here/python/bin/python3" -s -m pip install "$@"
