#!/usr/bin/env bash
# Every test rust-vgpu has: formatting and lints, the crates' unit tests,
# the qtests inside the patched QEMU, and the guest boot test (a Debian
# guest on the vGPU). Prints each runner's summary and
# a total. Expects `scripts/build-qemu.sh` to have run (make check does it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)
: "${QEMU_BUILD:?}"
cd "$repo"

# Share cargo's output with the staticlib QEMU links (same profile and path).
export CARGO_TARGET_DIR=$QEMU_BUILD/hw/display/rust-vgpu/cargo
logs=$QEMU_BUILD/rvg-check
mkdir -p "$logs"

rvg_log "cargo fmt --check"
cargo fmt --all -- --check

rvg_log "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --release --locked --quiet -- -D warnings

rvg_log "cargo test"
cargo test --workspace --release --locked 2>&1 | tee "$logs/cargo-test.log"

rvg_log "qtests (meson test --suite rust-vgpu)"
qtest_rc=0
"$QEMU_BUILD/pyvenv/bin/meson" test -C "$QEMU_BUILD" --no-rebuild --suite rust-vgpu \
    --print-errorlogs --verbose 2>&1 | tee "$logs/qtest.log" || qtest_rc=$?

rvg_log "guest boot test (guest/test_boot.py: Debian guest on the vGPU under TCG)"
boot_rc=0
python3 "$repo/guest/test_boot.py" -v 2>&1 | tee "$logs/guest-boot.log" || boot_rc=$?

# Count what actually ran: cargo's per-binary results and the qtests' TAP.
read -r cargo_pass cargo_fail < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$logs/cargo-test.log")
# meson prints one "▶ i/n <test path> OK|FAIL|ERROR|SKIP" line per TAP subtest.
qtest_pass=$(grep -cE '^▶ [0-9]+/[0-9]+ .* OK *$' "$logs/qtest.log" || true)
qtest_fail=$(grep -cE '^▶ [0-9]+/[0-9]+ .* (FAIL|ERROR) *$' "$logs/qtest.log" || true)
# A test program that crashes or times out may report no failing subtest:
# count it from meson's summary.
binaries_failed=$(awk '/^(Fail|Timeout): / { n += $2 } END { print n + 0 }' "$logs/qtest.log")
[ "$binaries_failed" -gt "$qtest_fail" ] && qtest_fail=$binaries_failed

echo
echo "== rust-vgpu test summary"
echo "cargo test: $cargo_pass passed, $cargo_fail failed"
echo "qtest: $qtest_pass passed, $qtest_fail failed"
# unittest ends with "Ran N tests" and "OK" or "FAILED (failures=F, errors=E)".
read -r boot_ran boot_fail < <(awk '
    /^Ran [0-9]+ tests?/ { ran = $2 }
    /^FAILED/ { while (match($0, /(failures|errors)=[0-9]+/)) {
                    split(substr($0, RSTART, RLENGTH), kv, "="); bad += kv[2]
                    $0 = substr($0, RSTART + RLENGTH) } }
    END { print ran + 0, bad + 0 }' "$logs/guest-boot.log")
boot_pass=$((boot_ran > boot_fail ? boot_ran - boot_fail : 0))
# A crash before any test ran (the guest never booted) still fails.
[ "$boot_rc" != 0 ] && [ "$boot_fail" = 0 ] && boot_fail=1
echo "guest boot: $boot_pass passed, $boot_fail failed"
[ "$qtest_pass" -gt 0 ] || { echo "no qtest ran"; exit 1; }
[ "$boot_pass" -gt 0 ] || { echo "no guest boot test ran"; exit 1; }
echo "$((cargo_pass + qtest_pass + boot_pass)) passed, $((cargo_fail + qtest_fail + boot_fail)) failed"
[ "$qtest_rc" = 0 ] && [ "$boot_rc" = 0 ] && [ "$cargo_fail" = 0 ] && [ "$qtest_fail" = 0 ] && [ "$boot_fail" = 0 ]
