#!/usr/bin/env bash
# Build the patched QEMU with rust-vgpu, in one of three flavours, each in
# its own build tree of the one patched source tree:
#
#   build-qemu.sh [plain]  qemu-system-x86_64 and the qtests   in $QEMU_BUILD
#   build-qemu.sh asan     the same with AddressSanitizer and
#                          UndefinedBehaviorSanitizer            in $QEMU_BUILD-asan
#   build-qemu.sh fuzz     qemu-fuzz-x86_64 (clang, libFuzzer,
#                          ASan, UBSan; the Rust staticlib with
#                          libFuzzer's coverage)                 in $QEMU_BUILD-fuzz
#
# The trees live in $RVG_CACHE, outside the clone, so a warm build only
# recompiles what changed (cargo decides for the Rust side; ninja for the
# shim and tests). Prints the QEMU version built.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
here=$(dirname "$0")
: "${RVG_CACHE:?}" "${QEMU_BUILD:?}"

flavour=${1:-plain}
configure_args=(
    --target-list=x86_64-softmmu
    --disable-rust          # the project's own Rust std is linked in; one copy only
    --disable-docs --disable-user --disable-werror
    --disable-download      # no network but the package registries: fail fast
    --disable-install-blobs # Debian's +ds source carries no firmware blobs
    --enable-trace-backends=log
)
targets=(qemu-system-x86_64 rust-vgpu-qtests)
case "$flavour" in
    plain) ;;
    asan)
        QEMU_BUILD=$QEMU_BUILD-asan
        configure_args+=(--enable-asan --enable-ubsan) ;;
    fuzz)
        QEMU_BUILD=$QEMU_BUILD-fuzz
        # QEMU's fuzzers need clang's libFuzzer (docs/devel/testing/fuzzing.rst).
        command -v clang-14 >/dev/null || rvg_die "clang-14 not found: run scripts/install-deps.sh qemu-fuzz"
        configure_args+=(--cc=clang-14 --cxx=clang++-14 --objcc=clang-14
                         --enable-fuzzing --enable-asan --enable-ubsan)
        targets=(qemu-fuzz-x86_64) ;;
    *) rvg_die "unknown flavour '$flavour' (plain, asan or fuzz)" ;;
esac

src=$("$here/qemu-source.sh")
fwpath=$("$here/firmware.sh")
stamp="$src ${configure_args[*]}"
if [ ! -f "$QEMU_BUILD/build.ninja" ] || [ "$(cat "$QEMU_BUILD/.rvg-configured" 2>/dev/null)" != "$stamp" ]; then
    rvg_log "configuring QEMU in $QEMU_BUILD"
    rm -rf "$QEMU_BUILD" && mkdir -p "$QEMU_BUILD"
    (cd "$QEMU_BUILD" && "$src/configure" "${configure_args[@]}") > "$QEMU_BUILD/rvg-configure.log" 2>&1 ||
        { tail -20 "$QEMU_BUILD/rvg-configure.log"; rvg_die "QEMU configure failed (log: $QEMU_BUILD/rvg-configure.log)"; }
    echo "$stamp" > "$QEMU_BUILD/.rvg-configured"
fi

# The source tree links this checkout in (qemu-source.sh). If another
# checkout built here last, ninja's timestamps and cargo's dep-info speak of
# that one's files, whatever this one's ages: drop what was built from it
# (the staticlib, the shim's and qtests' objects, and cargo's fingerprints
# of the project's own crates: cargo names sources relative to the package,
# so an artefact built later from the other checkout looks fresh here even
# when this checkout's sources differ). Meson regenerates (a rebuild of
# much of QEMU) only if this checkout's meson files differ.
checkout=$(cd "$here/.." && pwd -P)
meson_files=$(cat "$checkout/meson.build" "$checkout/qtest/meson.build" | sha256sum | cut -c1-16)
read -r built_checkout built_meson 2>/dev/null < "$QEMU_BUILD/.rvg-checkout" || true
if [ "${built_checkout:-}" != "$checkout" ]; then
    rm -f "$QEMU_BUILD/hw/display/rust-vgpu/librust_vgpu.a"
    find "$QEMU_BUILD" -path '*rust-vgpu*' -name '*.o' -delete
    rm -rf "$QEMU_BUILD"/hw/display/rust-vgpu/cargo/*/.fingerprint/rvg-*
    [ "${built_meson:-}" = "$meson_files" ] || touch "$src/meson.build"
fi
echo "$checkout $meson_files" > "$QEMU_BUILD/.rvg-checkout"

rvg_log "building ${targets[*]} (ninja -C $QEMU_BUILD)"
# Keep cargo's and the compilers' messages, drop ninja's per-file progress.
ninja -C "$QEMU_BUILD" "${targets[@]}" |
    awk '!/^\[[0-9]+\/[0-9]+\] (Compiling|Linking|Generating)/' ||
    rvg_die "QEMU build failed"

# Firmware: the built QEMU looks in its build tree's data directory
# (qemu-bundle/<datadir>) first; link Debian's SeaBIOS and option ROMs there.
datadir=$QEMU_BUILD/qemu-bundle$(sed -n 's/^#define CONFIG_QEMU_DATADIR "\(.*\)"/\1/p' "$QEMU_BUILD/config-host.h")
mkdir -p "$datadir"
IFS=: read -ra fwdirs <<< "$fwpath"
for dir in "${fwdirs[@]}"; do
    for f in "$dir"/*; do
        [ -e "$datadir/$(basename "$f")" ] || ln -s "$f" "$datadir/"
    done
done

debian=$(cat "$src/.rvg-debian-version" 2>/dev/null || echo "none: QEMU_SRC tree")
version=$(sed -n 's/^#define QEMU_VERSION "\(.*\)"/\1/p' "$QEMU_BUILD/config-host.h" 2>/dev/null || true)
echo "QEMU emulator version ${version:-unknown} (rust-vgpu, $flavour build); Debian source package: $debian; tree: $src" \
    > "$QEMU_BUILD/rvg-version.txt"
rvg_log "built $(cat "$QEMU_BUILD/rvg-version.txt")"
