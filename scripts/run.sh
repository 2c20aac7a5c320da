#!/usr/bin/env bash
# The main job: start the patched QEMU with the vGPU and show what a user
# checks first: the QEMU version, the device's PCI entry as the guest's
# firmware enumerated it, the mediator's report, and the device's properties.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
: "${QEMU_BUILD:?}"
qemu=$QEMU_BUILD/qemu-system-x86_64
accel=${ACCEL:-tcg}

workdir=$(mktemp -d /tmp/rust-vgpu-run.XXXXXX)
sock=$workdir/qmp.sock
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$workdir"' EXIT

echo "== QEMU"
cat "$QEMU_BUILD/rvg-version.txt"

"$qemu" -machine q35 -accel "$accel" -m 512 -nodefaults -display none \
    -device rust-vgpu,id=vgpu0 \
    -qmp "unix:$sock,server=on,wait=off" -serial none > "$workdir/qemu.log" 2>&1 &
pid=$!

# SeaBIOS assigns the BARs within a second or two; wait for BAR2 to have
# an address before printing the entry.
entry=""
for _ in $(seq 100); do
    entry=$("$here/qmp.py" "$sock" hmp info pci |
        awk '/^  Bus/ { block = "" } { block = block $0 "\n" } /id "vgpu0"/ { printf "%s", block; exit }')
    grep -q 'BAR2: 64 bit memory at 0x[0-9a-f]*[^f]' <<< "$entry" && break
    kill -0 "$pid" 2>/dev/null || { cat "$workdir/qemu.log"; rvg_die "QEMU exited"; }
    sleep 0.2
done
[ -n "$entry" ] || rvg_die "the vGPU is missing from 'info pci'"
echo
echo "== the vGPU in 'info pci' (after SeaBIOS assigned its BARs)"
printf '%s' "$entry"
echo
echo "== the mediator's view ('info rust-vgpu')"
"$here/qmp.py" "$sock" hmp info rust-vgpu
"$here/qmp.py" "$sock" quit
wait "$pid" || true

echo
echo "== properties (qemu-system-x86_64 -device rust-vgpu,help)"
"$qemu" -device rust-vgpu,help
