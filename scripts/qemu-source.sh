#!/usr/bin/env bash
# Prepare the QEMU tree rust-vgpu builds into, and print its path.
#
# Default: Debian stable's `qemu` source package (10.0.x), fetched through a
# private apt configuration and unpacked with dpkg-source so Debian's own
# patches apply. QEMU_SRC=/path uses an existing QEMU 10.0 tree instead.
# Then the project's patches/ go on top (re-applied only when they change,
# so QEMU's build stays incremental), and this repository is linked in as
# hw/display/rust-vgpu and tests/qtest/rust-vgpu.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)
: "${RVG_CACHE:?RVG_CACHE must name the cache directory}"

if [ -n "${QEMU_SRC:-}" ]; then
    src=$(cd "$QEMU_SRC" && pwd) || rvg_die "QEMU_SRC=$QEMU_SRC is not a directory"
else
    src=$(ls -d "$RVG_CACHE"/src/qemu-10.0.* 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$src" ] || [ ! -f "$src/.rvg-unpacked" ]; then
        rvg_apt_private
        dl=$RVG_CACHE/src/download
        rm -rf "$dl" && mkdir -p "$dl"
        rvg_log "downloading Debian's qemu source package (trixie)"
        (cd "$dl" && apt-get "${APT_PRIVATE[@]}" source --download-only qemu/trixie >/dev/null) ||
            rvg_die "apt-get source qemu/trixie failed"
        dsc=$(ls "$dl"/qemu_*.dsc)
        upstream=$(sed -n 's/^Version: \([0-9]*:\)\?\([0-9.]*\).*/\2/p' "$dsc")
        src=$RVG_CACHE/src/qemu-$upstream
        rm -rf "$src"
        rvg_log "unpacking $(basename "$dsc") with dpkg-source (Debian patches applied)"
        dpkg-source --no-check -x "$dsc" "$src" >/dev/null
        sed -n 's/^Version: //p' "$dsc" > "$src/.rvg-debian-version"
        touch "$src/.rvg-unpacked"
        rm -rf "$dl"
    fi
fi

version=$(cat "$src/VERSION" 2>/dev/null) || rvg_die "$src has no VERSION file: not a QEMU tree"
case "$version" in
    10.0.*) ;;
    *) rvg_die "QEMU_SRC=$src is QEMU $version; rust-vgpu needs QEMU 10.0.x" ;;
esac

# Re-apply the project's patches only when they differ from what is applied:
# reverse the old series, apply the new one.
applied=$src/.rvg-patches
if ! diff -rq "$repo/patches" "$applied" >/dev/null 2>&1; then
    if [ -d "$applied" ]; then
        for p in $(ls "$applied"/*.patch | sort -r); do
            patch -R -p1 -s -d "$src" < "$p" || rvg_die "could not reverse $(basename "$p") in $src"
        done
    fi
    for p in "$repo"/patches/*.patch; do
        patch -p1 -s -N --dry-run -d "$src" < "$p" >/dev/null ||
            rvg_die "$(basename "$p") does not apply to $src"
        patch -p1 -s -N --no-backup-if-mismatch -d "$src" < "$p"
        rvg_log "applied $(basename "$p")"
    done
    rm -rf "$applied" && cp -r "$repo/patches" "$applied"
fi

ln -sfn "$repo" "$src/hw/display/rust-vgpu"
ln -sfn "$repo/qtest" "$src/tests/qtest/rust-vgpu"
echo "$src"
