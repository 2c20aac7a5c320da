#!/usr/bin/env python3
"""Live migration of the demo guest: downtime and total time.

    guest/migration_bench.py [--rounds R] [--out FILE.json]

Boots the demo guest (64 MiB of VRAM, 1 GiB of RAM, TCG) and a second
QEMU with -incoming, migrates over a unix socket, and reads the figures:
QEMU's total time and downtime (query-migrate), and the vGPU's own part
from `info rust-vgpu` ("migration:" line): the source's wait for its work
in the GPU (quiesce), what the GPU wrote that went into the last pass
over RAM (gpu-writes), the device state's save, and on the destination
its load (checks, pins and shadows). Two cases, R rounds each: "idle" (the
guest at its login prompt, rvg-demo done) and "drawing" (rvg-demo
--redraw clearing and drawing its picture throughout). Prints the median,
min and max of each figure per case. A benchmark: it asserts nothing
about the figures (docs/benchmarks.md, "Live migration").
"""

import argparse
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from boot import Guest, GuestError, build_demo_image, default_qemu  # noqa: E402

MIGRATION_LINE = re.compile(
    r"migration: quiesce=(\d+)us gpu-writes=(\d+)KiB saved=(\d+)B save=(\d+)us load=(\d+)us")
REDRAW_S = 30


def vgpu_migration(guest):
    """The "migration:" figures of `info rust-vgpu`."""
    m = MIGRATION_LINE.search(guest.hmp("info rust-vgpu"))
    if not m:
        raise GuestError("no migration line in info rust-vgpu")
    quiesce, writes, saved, save, load = map(int, m.groups())
    return {"quiesce_us": quiesce, "gpu_writes_kib": writes, "saved_bytes": saved,
            "save_us": save, "load_us": load}


def one_round(kernel, initrd, drawing):
    args = ["--redraw", str(REDRAW_S)] if drawing else []
    with tempfile.TemporaryDirectory(prefix="rvg-mig-bench-") as tmp:
        uri = f"unix:{tmp}/migration.sock"
        src = Guest(default_qemu(), kernel, initrd, demo_args=args)
        dst = Guest(default_qemu(), kernel, initrd, demo_args=args,
                    extra_args=["-incoming", uri], first_output_timeout=300)
        with src, dst:
            if drawing:
                src.wait_for(r"rvg-demo: redraw: clearing", timeout=240)
            else:
                src.wait_ready(timeout=240)
            info = src.migrate(uri)
            if info.get("status") != "completed":
                raise GuestError(f"migration {info.get('status')}: {info.get('error-desc')}")
            out = {"total_ms": info["total-time"], "downtime_ms": info["downtime"],
                   "setup_ms": info.get("setup-time", 0),
                   "ram_mib": info["ram"]["transferred"] / 2**20}
            source, dest = vgpu_migration(src), vgpu_migration(dst)
            out.update({k: source[k] for k in ("quiesce_us", "gpu_writes_kib", "saved_bytes",
                                                "save_us")})
            out["load_us"] = dest["load_us"]
            return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", help="write every round as JSON here")
    args = ap.parse_args()
    kernel, initrd = build_demo_image()
    results = {}
    for case in ("idle", "drawing"):
        results[case] = []
        for r in range(args.rounds):
            fig = one_round(kernel, initrd, case == "drawing")
            print(f"{case} round {r}: " + " ".join(f"{k}={v:g}" for k, v in fig.items()),
                  flush=True)
            results[case].append(fig)
    for case, rounds in results.items():
        print(f"\n{case} ({len(rounds)} rounds): median (min-max)")
        for key in rounds[0]:
            values = [r[key] for r in rounds]
            print(f"  {key:>15}: {statistics.median(values):10.1f} "
                  f"({min(values):g}-{max(values):g})")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
