#!/bin/sh
# Runs switch.py (`finish` or `recover`) for the anymatix folder $2 with whichever of its pythons
# is where a stopped switch left it. update.sh and run_comfyui.sh run this copy, in .update/,
# which no switch renames. (On Windows update.bat runs .update\runner\python.exe instead.)
action=$1
here=$2
for py in "$here/python/bin/python3" "$here/.update/new/python/bin/python3" \
    "$here/.update/previous/python/bin/python3" "$here/.update/previous.swap/python/bin/python3"; do
    if [ -x "$py" ]; then
        exec "$py" -I -S "$here/.update/switch.py" "$action" "$here"
    fi
done
echo "error: no python left in $here to $action the switch between releases with" >&2
exit 2
