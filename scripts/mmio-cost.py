#!/usr/bin/env python3
"""Instructions per trapped register access, the vGPU's against QEMU's edu.

    scripts/mmio-cost.py [--accesses N]

Runs the plain QEMU build under valgrind's callgrind with -accel qtest,
maps the vGPU's BAR2 and edu's BAR0 through config space, and makes N
accesses of each kind through qtest (docs/benchmarks.md, "The mediator's
own cost of a register access"). Prints the instructions each device's
MMIO handler ran per access, counted from the handler QEMU's memory core
calls (for the vGPU the shim's, so the FFI entry and the Rust model are
in it). Instruction counts do not depend on how busy the machine is,
unlike the guest benchmark's nanoseconds. A benchmark: it asserts nothing
about the figures. Needs valgrind (scripts/install-deps.sh bench).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VGPU_BAR2 = 0xE000_0000
EDU_BAR0 = 0xF000_0000
SCRATCH = VGPU_BAR2 + 0x1000 + 0x20
GTT_ENTRIES_REG = VGPU_BAR2 + 0x1000 + 0x18
GTT_WINDOW = VGPU_BAR2 + 0x10_0000
# The vGPU's default GTT has 32768 entries: the last one is free, as
# rvg-bench's gtt-write case expects.
LAST_GTT_ENTRY = GTT_WINDOW + 8 * (32768 - 1)


def config_write(dev, reg, value):
    """Port I/O to config space through 0xcf8/0xcfc (bus 0)."""
    return [f"outl 0xcf8 {0x8000_0000 | dev << 11 | reg:#x}", f"outl 0xcfc {value:#x}"]


def setup():
    # rust-vgpu at 04.0 (BAR2: 64-bit at 0x18), edu at 05.0 (BAR0 at 0x10);
    # memory space on.
    return (config_write(4, 0x18, VGPU_BAR2) + config_write(4, 0x1C, 0) + config_write(4, 0x04, 6)
            + config_write(5, 0x10, EDU_BAR0) + config_write(5, 0x04, 6))


def run(qemu, commands, out_file):
    """QEMU under callgrind, fed `commands`; stopped once it has answered."""
    args = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", qemu,
            "-machine", "pc", "-accel", "qtest", "-qtest", "stdio", "-display", "none",
            "-nodefaults", "-monitor", "none", "-serial", "none",
            "-device", "rust-vgpu,addr=04.0", "-device", "edu,addr=05.0"]
    # From a file: written to a pipe, the commands would fill it while
    # QEMU's answers fill the other one.
    script = Path(out_file).with_suffix(".qtest")
    script.write_text("\n".join(commands) + "\n")
    proc = subprocess.Popen(args, stdin=script.open(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    answered = 0
    for line in proc.stdout:
        if line.startswith("OK"):
            answered += 1
        elif line.startswith("FAIL") or line.startswith("ERR"):
            proc.kill()
            sys.exit(f"mmio-cost: qtest refused a command: {line.strip()}")
        if answered == len(commands):
            break
    proc.terminate()  # QEMU exits on SIGTERM; callgrind writes its counts then
    proc.wait(timeout=120)


def per_call(out_file, function, calls):
    """Inclusive instructions of `function` in a callgrind output, per call."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out_file],
                          capture_output=True, text=True, check=True).stdout
    for line in text.splitlines():
        m = re.match(r"^\s*([\d,]+) \([^)]*\)\s+\S*:" + re.escape(function) + r" \[", line)
        if m:
            return int(m.group(1).replace(",", "")) / calls
    sys.exit(f"mmio-cost: {function} not found in {out_file}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accesses", type=int, default=20000, metavar="N")
    args = parser.parse_args()
    cache = Path(os.environ.get("RVG_CACHE", Path.home() / ".cache/rust-vgpu"))
    qemu = str(Path(os.environ.get("QEMU_BUILD", cache / "build")) / "qemu-system-x86_64")
    n = args.accesses
    # Each run times one kind of vGPU write, so the shim's write handler
    # counts only that kind; reads and edu's accesses come with the first.
    cases = {
        "registers": [f"readl {SCRATCH:#x}", f"readl {EDU_BAR0:#x}",
                      f"writel {SCRATCH:#x} 0x5", f"writel {EDU_BAR0 + 4:#x} 0x5"],
        # As rvg-bench's gtt-write: every write changes the entry (the first
        # page of VRAM, LOCAL | VALID, then 0), so the shadow path runs whole.
        "gtt-update": [f"writeq {LAST_GTT_ENTRY:#x} 0x3", f"writeq {LAST_GTT_ENTRY:#x} 0x0"],
        # A rewrite with the same meaning: the physical entry is left alone.
        "gtt-same": [f"writeq {LAST_GTT_ENTRY:#x} 0x0"],
    }
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, accesses in cases.items():
            out = f"{tmp}/{name}.out"
            started = time.monotonic()
            repeat = n // len(accesses) if name.startswith("gtt") else n
            run(qemu, setup() + accesses * repeat, out)
            print(f"mmio-cost: {name}: {n} rounds under callgrind in {time.monotonic() - started:.0f} s",
                  file=sys.stderr)
            if name == "registers":
                for fn in ("rust_vgpu_mmio_read", "rust_vgpu_mmio_write", "edu_mmio_read",
                           "edu_mmio_write"):
                    counts[fn] = per_call(out, fn, n)
            else:
                counts[name] = per_call(out, "rust_vgpu_mmio_write", repeat * len(accesses))
    print("instructions per access (callgrind, the handler QEMU's memory core calls):")
    print(f"  vGPU 4-byte SCRATCH read       {counts['rust_vgpu_mmio_read']:6.0f}"
          f"   edu read  {counts['edu_mmio_read']:4.0f}")
    print(f"  vGPU 4-byte SCRATCH write      {counts['rust_vgpu_mmio_write']:6.0f}"
          f"   edu write {counts['edu_mmio_write']:4.0f}")
    print(f"  vGPU 8-byte GTT entry write    {counts['gtt-update']:6.0f}"
          "   (each write changes the entry)")
    print(f"  vGPU 8-byte GTT entry rewrite  {counts['gtt-same']:6.0f}   (0 over 0)")


if __name__ == "__main__":
    main()
