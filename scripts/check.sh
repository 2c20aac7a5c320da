#!/usr/bin/env bash
# Every test rust-vgpu has: formatting and lints, the crates' unit tests,
# the fuzz targets (their seed corpora replayed, then a few seconds each),
# the qtests inside the patched QEMU (and again inside its ASan/UBSan build,
# where a leak, an invalid access or undefined behaviour fails the run),
# the guest boot test (a Debian guest on the vGPU), the nested VFIO test
# (the kernel backend against Linux's vfio-pci) and the nested SR-IOV test
# (VMs on VFs of one GPU through pci-pf-stub and vfio-pci). Prints each runner's
# summary and a total. Expects `scripts/build-qemu.sh` and
# `scripts/build-qemu.sh asan` to have run (make check does both).
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

rvg_log "fuzz targets (scripts/fuzz.sh: the seed corpora, then each target briefly)"
fuzz_rc=0
# Both steps run whatever the first found; either failing fails the check.
(
    set +e
    scripts/fuzz.sh replay
    rc=$?
    scripts/fuzz.sh brief || rc=1
    exit $rc
) 2>&1 | tee "$logs/fuzz.log" || fuzz_rc=$?

rvg_log "qtests (meson test --suite rust-vgpu)"
qtest_rc=0
"$QEMU_BUILD/pyvenv/bin/meson" test -C "$QEMU_BUILD" --no-rebuild --suite rust-vgpu \
    --print-errorlogs --verbose 2>&1 | tee "$logs/qtest.log" || qtest_rc=$?

rvg_log "sanitizer qtests (the same suite in $QEMU_BUILD-asan: ASan, LeakSanitizer, UBSan)"
asan_rc=0
# Any report ends QEMU (or the test program) with a failure: ASan's and
# UBSan's at once, LeakSanitizer's at exit, which libqtest sees as an exit
# status other than 0. Instrumented QEMU runs a few times slower.
ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1:print_summary=1 \
UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1:print_summary=1 \
    "$QEMU_BUILD-asan/pyvenv/bin/meson" test -C "$QEMU_BUILD-asan" --no-rebuild --suite rust-vgpu \
    --timeout-multiplier 4 --print-errorlogs --verbose 2>&1 | tee "$logs/qtest-asan.log" || asan_rc=$?

rvg_log "guest harness test (guest/test_harness.py: the boot harness's deadlines, on a fake QEMU)"
harness_rc=0
python3 "$repo/guest/test_harness.py" -v 2>&1 | tee "$logs/guest-harness.log" || harness_rc=$?

rvg_log "guest boot test (guest/test_boot.py: Debian guest on the vGPU under TCG)"
boot_rc=0
python3 "$repo/guest/test_boot.py" -v 2>&1 | tee "$logs/guest-boot.log" || boot_rc=$?

rvg_log "nested VFIO test (guest/vfio/test_nested.py: the kernel backend on vfio-pci, TCG in TCG)"
nested_rc=0
RVG_NESTED_LOG=$logs/nested-l1.log python3 "$repo/guest/vfio/test_nested.py" -v 2>&1 |
    tee "$logs/nested.log" || nested_rc=$?

rvg_log "nested SR-IOV test (guest/vfio/test_sriov.py: VMs on VFs of one GPU, TCG in TCG)"
sriov_rc=0
RVG_NESTED_LOG=$logs/sriov-l1.log python3 "$repo/guest/vfio/test_sriov.py" -v 2>&1 |
    tee "$logs/sriov.log" || sriov_rc=$?

# Count what actually ran: cargo's per-binary results and the qtests' TAP.
read -r cargo_pass cargo_fail < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$logs/cargo-test.log")
# meson prints one "▶ i/n <test path> OK|FAIL|ERROR|SKIP" line per TAP subtest.
# fuzz.sh ends each run with "fuzz: P passed, F failed" (one per target);
# a run that failed before its summary (the build) counts as a failure.
read -r fuzz_pass fuzz_fail < <(awk '/^fuzz: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 } END { print p + 0, f + 0 }' "$logs/fuzz.log")
[ "$fuzz_rc" != 0 ] && [ "$fuzz_fail" = 0 ] && fuzz_fail=1
# Prints "PASSED FAILED" for the meson test log $1.
qtest_counts() {
    local pass fail binaries
    pass=$(grep -cE '^▶ +[0-9]+/[0-9]+ .* OK *$' "$1" || true)
    fail=$(grep -cE '^▶ +[0-9]+/[0-9]+ .* (FAIL|ERROR) *$' "$1" || true)
    # A test program that crashes or times out may report no failing
    # subtest: count it from meson's summary.
    binaries=$(awk '/^(Fail|Timeout): / { n += $2 } END { print n + 0 }' "$1")
    echo "$pass $((binaries > fail ? binaries : fail))"
}
read -r qtest_pass qtest_fail < <(qtest_counts "$logs/qtest.log")
read -r asan_pass asan_fail < <(qtest_counts "$logs/qtest-asan.log")
[ "$asan_rc" != 0 ] && [ "$asan_fail" = 0 ] && asan_fail=1

echo
echo "== rust-vgpu test summary"
echo "cargo test: $cargo_pass passed, $cargo_fail failed"
echo "fuzz: $fuzz_pass passed, $fuzz_fail failed"
echo "qtest: $qtest_pass passed, $qtest_fail failed"
echo "qtest under ASan/UBSan: $asan_pass passed, $asan_fail failed"
# unittest ends with "Ran N tests" and "OK" or "FAILED (failures=F, errors=E)":
# prints "PASSED FAILED" for the log $1 of a run that exited with $2.
unittest_counts() {
    local ran bad
    read -r ran bad < <(awk '
        /^Ran [0-9]+ tests?/ { ran = $2 }
        /^FAILED/ { while (match($0, /(failures|errors)=[0-9]+/)) {
                        split(substr($0, RSTART, RLENGTH), kv, "="); bad += kv[2]
                        $0 = substr($0, RSTART + RLENGTH) } }
        END { print ran + 0, bad + 0 }' "$1")
    # A crash before any test ran (the guest never booted) still fails.
    [ "$2" != 0 ] && [ "$bad" = 0 ] && bad=1
    echo "$((ran > bad ? ran - bad : 0)) $bad"
}
read -r harness_pass harness_fail < <(unittest_counts "$logs/guest-harness.log" "$harness_rc")
echo "guest harness: $harness_pass passed, $harness_fail failed"
read -r boot_pass boot_fail < <(unittest_counts "$logs/guest-boot.log" "$boot_rc")
echo "guest boot: $boot_pass passed, $boot_fail failed"
read -r nested_pass nested_fail < <(unittest_counts "$logs/nested.log" "$nested_rc")
echo "nested VFIO: $nested_pass passed, $nested_fail failed"
read -r sriov_pass sriov_fail < <(unittest_counts "$logs/sriov.log" "$sriov_rc")
echo "nested SR-IOV: $sriov_pass passed, $sriov_fail failed"
[ "$fuzz_pass" -gt 0 ] || { echo "no fuzz target ran"; exit 1; }
[ "$qtest_pass" -gt 0 ] || { echo "no qtest ran"; exit 1; }
[ "$asan_pass" -gt 0 ] || { echo "no sanitizer qtest ran"; exit 1; }
[ "$boot_pass" -gt 0 ] || { echo "no guest boot test ran"; exit 1; }
[ "$nested_pass" -gt 0 ] || { echo "no nested VFIO test ran"; exit 1; }
[ "$sriov_pass" -gt 0 ] || { echo "no nested SR-IOV test ran"; exit 1; }
echo "$((cargo_pass + fuzz_pass + qtest_pass + asan_pass + harness_pass + boot_pass + nested_pass + sriov_pass)) passed," \
    "$((cargo_fail + fuzz_fail + qtest_fail + asan_fail + harness_fail + boot_fail + nested_fail + sriov_fail)) failed"
[ "$fuzz_rc" = 0 ] && [ "$fuzz_fail" = 0 ] && [ "$qtest_rc" = 0 ] && [ "$asan_rc" = 0 ] && [ "$asan_fail" = 0 ] && [ "$harness_rc" = 0 ] && [ "$harness_fail" = 0 ] && [ "$boot_rc" = 0 ] && [ "$nested_rc" = 0 ] && [ "$sriov_rc" = 0 ] && [ "$cargo_fail" = 0 ] &&
    [ "$qtest_fail" = 0 ] && [ "$boot_fail" = 0 ] && [ "$nested_fail" = 0 ] && [ "$sriov_fail" = 0 ]
