#!/usr/bin/env bash
# Build the guest program rvg-demo (rust/rvg-guest) as a static binary for
# the demo guest's initramfs and print its path. Cargo's output is cached
# under $RVG_CACHE/guest/cargo, so an unchanged program builds in a moment.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/lib.sh"
: "${RVG_CACHE:=$HOME/.cache/rust-vgpu}"

target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=$RVG_CACHE/guest/cargo
# glibc's static libraries come with libc6-dev; --target keeps the flags
# away from build scripts and proc macros.
RUSTFLAGS="-C target-feature=+crt-static -C strip=debuginfo" \
    cargo build --quiet --release --locked -p rvg-guest --target "$target" \
        --manifest-path "$here/../Cargo.toml" ||
    rvg_die "building the guest program (rust/rvg-guest) failed"
echo "$CARGO_TARGET_DIR/$target/release/rvg-demo"
