#!/usr/bin/env bash
# The main job: boot a Debian guest on the vGPU (bochs-drm drives its
# display, rvg-demo its engine) and save a screenshot of its console.
# See guest/demo.py; ACCEL=kvm to try KVM, guest/demo.py --interactive to
# look at it live.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${QEMU_BUILD:?}"

echo "== QEMU"
cat "$QEMU_BUILD/rvg-version.txt"
exec python3 "$here/../guest/demo.py" "$@"
