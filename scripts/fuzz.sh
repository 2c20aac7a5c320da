#!/usr/bin/env bash
# The fuzz targets of fuzz/ (docs/security.md, "Fuzzing"), on stable Rust:
# cargo fuzz with --sanitizer none needs no nightly (no -Z flags), and
# libFuzzer's coverage instrumentation is stable codegen options.
#
#   scripts/fuzz.sh replay        every target over its seed corpus, once
#   scripts/fuzz.sh brief [SECS]  every target for SECS seconds (default 5)
#   scripts/fuzz.sh long SECS     every target for SECS seconds
#
# Optional target names after the mode restrict it (`fuzz.sh long 60 scan`).
# New inputs go to $RVG_CACHE/fuzz-corpus/<target>, never into the seeds;
# a crash is written under fuzz/artifacts/<target>/ and fails the run. The
# last line is "fuzz: P passed, F failed", one per target and mode.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)
: "${RVG_CACHE:=$HOME/.cache/rust-vgpu}"
# The instrumented build is slow: keep it with the other slow things.
export CARGO_TARGET_DIR=$RVG_CACHE/fuzz-target
flags=(--sanitizer none --debug-assertions)

mode=${1:-}
case "$mode" in
    replay) shift ;;
    brief) shift; secs=${1:-5}; [[ "$secs" =~ ^[0-9]+$ ]] && shift || secs=5 ;;
    long) shift; secs=${1:?usage: fuzz.sh long SECONDS [TARGET...]}; shift ;;
    *) rvg_die "usage: fuzz.sh replay|brief [SECONDS]|long SECONDS [TARGET...]" ;;
esac

cargo fuzz --version >/dev/null 2>&1 || rvg_die "cargo-fuzz not found: run scripts/install-deps.sh"
cd "$repo/fuzz"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)

rvg_log "building the fuzz targets (cargo fuzz build ${flags[*]})"
cargo fuzz build "${flags[@]}"

pass=0 fail=0
for t in "${targets[@]}"; do
    seeds=$repo/fuzz/corpus/$t
    [ -d "$seeds" ] || rvg_die "no seed corpus $seeds"
    if [ "$mode" = replay ]; then
        rvg_log "fuzz $t: replaying $(find "$seeds" -type f | wc -l) seeds"
        args=("$seeds" -- -runs=0)
    else
        work=$RVG_CACHE/fuzz-corpus/$t
        mkdir -p "$work"
        rvg_log "fuzz $t: ${secs}s"
        # The first corpus directory takes what libFuzzer finds.
        args=("$work" "$seeds" -- -max_total_time="$secs" -print_final_stats=1)
    fi
    log=$(mktemp)
    if cargo fuzz run "${flags[@]}" "$t" "${args[@]}" >"$log" 2>&1; then
        pass=$((pass + 1))
        grep -E '^(Done|stat::number_of_executed_units)' "$log" | sed "s/^/  $t: /" >&2 || true
    else
        fail=$((fail + 1))
        tail -n 40 "$log" >&2
        rvg_log "fuzz $t FAILED (inputs under fuzz/artifacts/$t/)"
    fi
    rm -f "$log"
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" = 0 ]
