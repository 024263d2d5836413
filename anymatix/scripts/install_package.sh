#!/bin/sh
# Installs more Python packages into this portable anymatix environment: exactly
# `packages.sh install`, so the protected packages stay and `packages.sh undo` can take it back.
#   ./install_package.sh PACKAGE [PACKAGE ...]     (any `pip install` arguments work)
set -e
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P)
exec "$here/packages.sh" install "$@"
