#!/usr/bin/env bash
# Fetch x86 firmware from Debian's binary packages into the cache and print
# the firmware search path: SeaBIOS and the VGA BIOSes from `seabios`, option
# ROMs (linuxboot_dma, kvmvapic) from `qemu-system-data`, network boot ROMs
# (the default NIC's efi-e1000.rom) from `ipxe-qemu`, all from Debian stable
# so they match QEMU 10.0. The packages are unpacked, not installed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
: "${RVG_CACHE:?RVG_CACHE must name the cache directory}"

fw=$RVG_CACHE/firmware
if [ ! -f "$fw/.rvg-done" ]; then
    rvg_apt_private
    dl=$RVG_CACHE/firmware-download
    rm -rf "$dl" "$fw" && mkdir -p "$dl" "$fw"
    rvg_log "downloading seabios, qemu-system-data and ipxe-qemu (trixie)"
    (cd "$dl" && apt-get "${APT_PRIVATE[@]}" download seabios/trixie qemu-system-data/trixie ipxe-qemu/trixie >/dev/null) ||
        rvg_die "apt-get download of the firmware packages failed"
    for deb in "$dl"/*.deb; do
        dpkg-deb -x "$deb" "$fw"
        basename "$deb" >> "$fw/.rvg-packages"
    done
    for f in share/seabios/bios-256k.bin share/seabios/vgabios-stdvga.bin share/qemu/linuxboot_dma.bin share/qemu/kvmvapic.bin share/qemu/efi-e1000.rom; do
        [ -e "$fw/usr/$f" ] || rvg_die "firmware $f missing from the unpacked packages"
    done
    rm -rf "$dl"
    touch "$fw/.rvg-done"
fi
echo "$fw/usr/share/qemu:$fw/usr/share/seabios"
