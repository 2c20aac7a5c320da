#!/usr/bin/env bash
# Build the guest programs (rust/rvg-guest: rvg-demo, rvg-bench) as static
# binaries for the demo guest's initramfs and print the path of one:
#
#     guest/program.sh [NAME]     # NAME: rvg-demo (default) or rvg-bench
#
# Cargo's output is cached under $RVG_CACHE/guest/cargo, so an unchanged
# program builds in a moment.
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
name=${1:-rvg-demo}
[ -x "$CARGO_TARGET_DIR/$target/release/$name" ] || rvg_die "rust/rvg-guest has no program $name"
echo "$CARGO_TARGET_DIR/$target/release/$name"
