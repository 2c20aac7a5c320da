#!/usr/bin/env python3
"""Benchmark forwarding through the kernel VFIO backend against the soft GPU, in one L1.

    guest/vfio/bench.py

Builds the vfio_forwarding example (rust/rvg-mediator/examples), boots the
nested set-up (guest/vfio/nested.py) and runs it in L1 against the soft
GPU and against rust-vgpu-hw bound to vfio-pci: a trapped register read
and a GTT entry write through the whole mediator path, median ns per
operation, and their ratio. A benchmark: it prints figures and asserts
nothing about them.
"""

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from boot import GuestError  # noqa: E402
from nested import Nested  # noqa: E402

REPO = HERE.parent.parent


def build_example():
    """cargo build the example; return its executable's path."""
    out = subprocess.run(
        ["cargo", "build", "--release", "--locked", "-p", "rvg-mediator",
         "--example", "vfio_forwarding", "--message-format=json"],
        cwd=REPO, check=True, stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and msg["target"]["name"] == "vfio_forwarding":
            return msg["executable"]
    raise SystemExit("bench.py: cargo built no vfio_forwarding executable")


def main():
    example = build_example()
    with Nested(f'{example} --host "$1"\n') as n:
        try:
            rc = n.run(timeout=900)
        except GuestError as e:
            print(f"bench.py: {e}", file=sys.stderr)
            return 1
        sys.stdout.write(n.log())
        return rc


if __name__ == "__main__":
    sys.exit(main())
