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

# Bring the applied series in line with patches/: keep the common prefix,
# reverse what follows it, apply the rest. Untouched files keep their
# timestamps, so QEMU's build stays incremental.
applied=$src/.rvg-patches
mkdir -p "$applied"
mapfile -t old < <(cd "$applied" && ls *.patch 2>/dev/null | sort)
mapfile -t new < <(cd "$repo/patches" && ls *.patch | sort)
keep=0
while [ "$keep" -lt "${#old[@]}" ] && [ "$keep" -lt "${#new[@]}" ] &&
      [ "${old[$keep]}" = "${new[$keep]}" ] && cmp -s "$applied/${old[$keep]}" "$repo/patches/${new[$keep]}"; do
    keep=$((keep + 1))
done
for ((i = ${#old[@]} - 1; i >= keep; i--)); do
    patch -R -p1 -s -d "$src" < "$applied/${old[$i]}" || rvg_die "could not reverse ${old[$i]} in $src"
    rm "$applied/${old[$i]}"
done
for ((i = keep; i < ${#new[@]}; i++)); do
    p=$repo/patches/${new[$i]}
    patch -p1 -s -N --dry-run -d "$src" < "$p" >/dev/null || rvg_die "${new[$i]} does not apply to $src"
    patch -p1 -s -N --no-backup-if-mismatch -d "$src" < "$p"
    cp "$p" "$applied/"
    rvg_log "applied ${new[$i]}"
done

ln -sfn "$repo" "$src/hw/display/rust-vgpu"
ln -sfn "$repo/qtest" "$src/tests/qtest/rust-vgpu"
echo "$src"
