#!/usr/bin/env bash
# QEMU's own device fuzzer, generic-fuzz (tests/qtest/fuzz in QEMU's tree),
# on the vGPU and on the raw GPU model (docs/security.md, "QEMU's device
# fuzzer"). Needs the fuzzing build: `scripts/build-qemu.sh fuzz` (make
# fuzz-qemu does both).
#
#   scripts/fuzz-qemu.sh SECONDS [DEVICE...]   DEVICE: rust-vgpu rust-vgpu-hw
#
# generic-fuzz turns each input into MMIO and port I/O on the memory regions
# whose names match QEMU_FUZZ_OBJECTS (BAR2's registers and GTT window,
# BAR4's MSI-X table and PBA), config-space reads and writes of the
# matching PCI devices (BARs are mapped and the device enabled first),
# clock steps, and the patterns that fill guest RAM when the device reads
# it through QEMU's address space. Each input ends with a system reset.
# QEMU is built with ASan and UBSan, so a bad access or undefined
# behaviour is a crash.
#
# Corpora grow under $RVG_CACHE/qemu-fuzz/<device>/corpus; a crash is
# written to $RVG_CACHE/qemu-fuzz/<device>/ and fails the run. Replay one
# with the same environment and the file as the only argument, adding
# QTEST_LOG=1 to see it as qtest commands (a reproducer for a qtest).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
: "${RVG_CACHE:=$HOME/.cache/rust-vgpu}" "${QEMU_BUILD:=$RVG_CACHE/build}"

secs=${1:?usage: fuzz-qemu.sh SECONDS [DEVICE...]}
shift
devices=("$@")
[ ${#devices[@]} -gt 0 ] || devices=(rust-vgpu rust-vgpu-hw)
bin=$QEMU_BUILD-fuzz/qemu-fuzz-x86_64
[ -x "$bin" ] || rvg_die "$bin not found: run scripts/build-qemu.sh fuzz"

fail=0
for dev in "${devices[@]}"; do
    case "$dev" in
        # q35 gives the vGPU PCI Express (its capability, FLR) as a guest
        # sees it; the soft GPU behind rust-vgpu is its default one.
        rust-vgpu|rust-vgpu-hw) args="-machine q35 -nodefaults -device $dev" ;;
        *) rvg_die "unknown device '$dev' (rust-vgpu or rust-vgpu-hw)" ;;
    esac
    out=$RVG_CACHE/qemu-fuzz/$dev
    mkdir -p "$out/corpus"
    rvg_log "generic-fuzz on $dev: ${secs}s (QEMU_FUZZ_ARGS='$args')"
    log=$out/last-run.log
    # "rust-vgpu*" matches the PCI function (config space, and every region
    # it owns: BAR2's rust-vgpu.mmio, the MSI-X BAR and its table and PBA,
    # the bus-master address space). generic-fuzz leaves RAM regions
    # alone, BAR0's VRAM and guest RAM among them; the raw model's DMA
    # reads (address_space reads) get its DMA patterns, the vGPU's pinned
    # guest pages do not (docs/security.md says what that leaves). Leaks are
    # the sanitizer qtests' job (LeakSanitizer at QEMU's exit); libFuzzer's
    # per-input leak check would stop at the first leak anywhere in QEMU.
    if QEMU_FUZZ_ARGS="$args" QEMU_FUZZ_OBJECTS='rust-vgpu*' \
        ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$bin" --fuzz-target=generic-fuzz -max_total_time="$secs" -print_final_stats=1 \
            -artifact_prefix="$out/" "$out/corpus" >"$log" 2>&1; then
        grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)|^#[0-9]+[[:space:]]+DONE' "$log" |
            sed "s/^/  $dev: /" >&2 || true
    else
        fail=$((fail + 1))
        tail -n 60 "$log" >&2
        rvg_log "generic-fuzz on $dev FAILED (log $log; crash input under $out/)"
    fi
done
[ "$fail" = 0 ]
