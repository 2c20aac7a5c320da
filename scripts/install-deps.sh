#!/usr/bin/env bash
# Install what building and testing rust-vgpu needs, once: Debian packages
# with apt-get, meson with pip, cargo-fuzz with cargo. Quiet and quick when everything is there.
#
#   install-deps.sh            what make run and make check need
#   install-deps.sh qemu-fuzz  also clang and its libFuzzer (make fuzz-qemu)
#   install-deps.sh bench      also valgrind (scripts/mmio-cost.py)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

packages=(
    # QEMU's build
    gcc make ninja-build pkg-config flex bison
    libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev libpng-dev
    # Debian's source package and firmware handling
    dpkg-dev xz-utils
    # bindgen
    libclang-dev
    # libFuzzer, which the fuzz targets (fuzz/) build from C++
    g++
)
if [ "${1:-}" = qemu-fuzz ]; then
    # QEMU's fuzzers build with clang and link clang's libFuzzer runtime.
    packages+=(clang-14 libclang-rt-14-dev)
fi
if [ "${1:-}" = bench ]; then
    # callgrind counts the instructions of a trapped access.
    packages+=(valgrind)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || rvg_die "missing packages (${missing[*]}); run as root or install them"
    rvg_log "installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# QEMU 10.0 wants meson >= 1.5 (Debian 12 ships 1.0); 1.5.0 is the version
# QEMU 10.0 itself pins.
if ! python3 -c 'import mesonbuild.coredata as c, sys; v = tuple(map(int, c.version.split(".")[:2])); sys.exit(v < (1, 5))' 2>/dev/null; then
    rvg_log "installing meson 1.5.0 with pip"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'meson==1.5.0'
fi

command -v cargo >/dev/null || rvg_die "cargo not found: install a Rust toolchain (rustup) first"
for c in clippy fmt; do
    cargo "$c" --version >/dev/null 2>&1 || rustup component add "$( [ "$c" = fmt ] && echo rustfmt || echo clippy )"
done

# The fuzz targets (scripts/fuzz.sh): cargo-fuzz, this version, built with
# its own lock file.
cargo_fuzz_version=0.13.1
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
    rvg_log "installing cargo-fuzz $cargo_fuzz_version"
    cargo install -q --locked --version "$cargo_fuzz_version" cargo-fuzz
fi
