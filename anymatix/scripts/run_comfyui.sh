#!/bin/sh
# Starts ComfyUI with this folder's python and opens it in the browser when it answers; any
# arguments go to ComfyUI (`--listen`, `--port 8189`, `--disable-auto-launch`, …). A switch
# between releases that was stopped (see update.sh) is taken back first.
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P)
if [ -e "$here/.update/switch.journal" ]; then
    sh "$here/.update/switch.sh" recover "$here" || exit 2
fi
exec "$here/python/bin/python3" -s "$here/ComfyUI/main.py" --auto-launch @VARIANT_ARGS@"$@"
