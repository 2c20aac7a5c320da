#!/usr/bin/env python3
"""Trapped register access from the guest: the vGPU against QEMU's edu device.

    guest/bench.py [--boots B] [--rounds R] [--accesses N] [--out FILE.json]
                   [--timeout S] [--first-output-timeout S]

Builds rvg-bench (rust/rvg-guest) and a demo guest image holding it, boots
the guest B times under TCG with -device rust-vgpu -device edu, and lets
rvg-bench time R rounds of N accesses per case (docs/benchmarks.md,
"Trapped register access from the guest"). Prints, per loop placement,
each case's median ns per access and the ratios vGPU read / edu read, vGPU
write / edu write, GTT entry write / vGPU write and doorbell / vGPU write:
the median, min and max of the per-round ratios, pooled over the boots. A
benchmark: it asserts nothing about the figures.
"""

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from boot import Guest, GuestError, add_timeout_args, build_demo_image, default_qemu  # noqa: E402

ROUND = re.compile(r"^rvg-bench: round (\d+) (\w+) (.*)$", re.MULTILINE)
EXIT = r"^rvg-guest: rvg-bench exit (\d+)$"
STEPS = ((r"^rvg-guest: login prompt on tty1", "the login prompt on the vGPU's console"),
         (r"^rvg-bench: round 0 ", "rvg-bench's first round"))
CASES = ("vgpu-read", "vgpu-write", "gtt-write", "doorbell", "edu-read", "edu-write", "ram-read")
# (name, numerator, denominator)
RATIOS = (
    ("vGPU read / edu read", "vgpu-read", "edu-read"),
    ("vGPU write / edu write", "vgpu-write", "edu-write"),
    ("GTT entry write / vGPU write", "gtt-write", "vgpu-write"),
    ("doorbell / vGPU write", "doorbell", "vgpu-write"),
)
# Boot to the program: about 10 s under TCG; each access about 0.2-0.5 us.
BOOT_S = 180.0
ACCESS_BUDGET_S = 2e-6


def parse_rounds(text):
    """rvg-bench's round lines: [{"round": R, "placement": P, "ns": {case: ns}}, ...]."""
    rounds = []
    for m in ROUND.finditer(text):
        words = m.group(3).split()
        ns = {name: float(value) for name, value in zip(words[::2], words[1::2])}
        rounds.append({"round": int(m.group(1)), "placement": m.group(2), "ns": ns})
    return rounds


def spread(values):
    """(median, min, max) of a non-empty list."""
    return statistics.median(values), min(values), max(values)


def summarize(boots):
    """Per placement: each case's ns and each ratio, as (median, min, max).

    boots: a list of parse_rounds() results. A ratio is taken within each
    round (both cases ran in it, interleaved) and the per-round ratios of
    all boots are pooled.
    """
    summary = {}
    rounds = [r for boot in boots for r in boot]
    for placement in dict.fromkeys(r["placement"] for r in rounds):
        mine = [r["ns"] for r in rounds if r["placement"] == placement]
        cases = {c: spread([ns[c] for ns in mine]) for c in CASES if all(c in ns for ns in mine)}
        ratios = {}
        for name, a, b in RATIOS:
            if a in cases and b in cases:
                ratios[name] = spread([ns[a] / ns[b] for ns in mine])
        summary[placement] = {"rounds": len(mine), "ns": cases, "ratios": ratios}
    return summary


def table(summary):
    """The summary as text."""
    out = []
    for placement, s in summary.items():
        out.append(f"== access {placement} in its block ({s['rounds']} rounds)")
        out.append(f"{'case':<30} {'median':>8} {'min':>8} {'max':>8}  (ns per access)")
        for case, (med, lo, hi) in s["ns"].items():
            out.append(f"{case:<30} {med:8.1f} {lo:8.1f} {hi:8.1f}")
        out.append(f"{'ratio (per round)':<30} {'median':>8} {'min':>8} {'max':>8}")
        for name, (med, lo, hi) in s["ratios"].items():
            out.append(f"{name:<30} {med:8.2f} {lo:8.2f} {hi:8.2f}")
        out.append("")
    return "\n".join(out)


def run_boot(kernel, initrd, args):
    """One boot: rvg-bench's round lines."""
    bench_args = ["--rounds", str(args.rounds), "--accesses", str(args.accesses)]
    timeout = BOOT_S + args.rounds * args.accesses * len(CASES) * 2 * ACCESS_BUDGET_S
    guest = Guest(default_qemu(), kernel, initrd, extra_args=["-device", "edu"],
                  demo_args=bench_args, timeout=args.timeout,
                  first_output_timeout=args.first_output_timeout)
    with guest:
        match, _ = guest.wait_for(EXIT, timeout, what="rvg-bench's exit", steps=STEPS)
        text = guest.serial_text()
        if match.group(1) != "0":
            fail = re.search(r"^rvg-bench: FAIL.*$", text, re.MULTILINE)
            raise GuestError(f"rvg-bench failed: {fail.group(0) if fail else match.group(0)}")
    return parse_rounds(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--boots", type=int, default=3, help="guest boots (default 3)")
    ap.add_argument("--rounds", type=int, default=11, help="rounds per boot (default 11)")
    ap.add_argument("--accesses", type=int, default=200000,
                    help="accesses per case and round (default 200000)")
    ap.add_argument("--out", help="write every figure here (JSON)")
    add_timeout_args(ap, BOOT_S)
    args = ap.parse_args()
    if min(args.boots, args.rounds, args.accesses) < 1:
        ap.error("--boots, --rounds and --accesses must be positive")

    kernel, initrd = build_demo_image("rvg-bench")
    boots = []
    for i in range(args.boots):
        print(f"== boot {i + 1} of {args.boots}: {args.rounds} rounds of {args.accesses} "
              f"accesses", flush=True)
        try:
            boots.append(run_boot(kernel, initrd, args))
        except GuestError as e:
            print(f"bench: {e}", file=sys.stderr)
            return 1
    summary = summarize(boots)
    print()
    print(table(summary))
    if args.out:
        Path(args.out).write_text(json.dumps({
            "command": sys.argv, "rounds": args.rounds, "accesses": args.accesses,
            "boots": boots, "summary": summary, "qemu": default_qemu(),
            "host_cpus": os.cpu_count(),
        }, indent=1) + "\n")
        print(f"figures: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
