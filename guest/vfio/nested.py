#!/usr/bin/env python3
"""Run commands in a nested VFIO host: a guest whose kernel drives rust-vgpu-hw with vfio-pci.

    guest/vfio/nested.py [--timeout S] [--first-output-timeout S] SCRIPT

L0 (this machine's patched QEMU, TCG) runs q35 with an emulated Intel
IOMMU (interrupt remapping, caching mode) and a rust-vgpu-hw at 00:03.0,
and boots Debian's kernel with intel_iommu=on and the initramfs
guest/image.sh builds with guest/vfio/init. That init binds the GPU to
the kernel's vfio-pci and runs SCRIPT (a shell script) chrooted into this
machine's root (shared read-only over 9p), with the PCI address of the
GPU as its first argument and a writable work directory as its current
directory and $RVG_WORK: the same path on both sides, so the script's
results are files the host reads back. The waits on L1 are bounded as
guest/boot.py's are ($RVG_GUEST_TIMEOUT, $RVG_GUEST_FIRST_OUTPUT_TIMEOUT).

As a library (guest/vfio/test_nested.py):

    with Nested(script_text) as n:
        rc = n.run(timeout=600)
        n.log()                 # the script's output
        n.path("soft.txt")      # a file the script wrote
"""

import argparse
import os
import re
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from boot import Guest, GuestError, add_timeout_args, build_image, default_qemu  # noqa: E402

# What the L1 initramfs needs: 9p for the host's root, VFIO for the GPU, and
# pci-pf-stub for an SR-IOV PF whose VFs go to vfio-pci.
L1_MODULES = "9p 9pnet_virtio vfio vfio_iommu_type1 vfio_pci pci-pf-stub"
# VRAM of the nested GPU: the default vGPU's slice (64 MiB) and the
# mediator's reserved VRAM fit, as in the soft GPU a vGPU gets.
GPU_VRAM = "128M"
GPU_ADDR = "0000:00:03.0"
DONE = r"^rvg-l1: done rc=(\d+).*$"
FAIL = r"^rvg-l1: FAIL.*$"
# What guest/vfio/init prints on its way to DONE (a timeout names the first missing).
STEPS = (
    (r"^rvg-l1: init on", "L1's init"),
    (r"^rvg-l1: \S+ bound to vfio-pci", "L1 binding the GPU to vfio-pci"),
    (r"^rvg-l1: running ", "L1 mounting the host's root and the work directory"),
)
RUN_TIMEOUT_S = 600.0


def build_l1_image():
    """The L1 kernel and initramfs: (kernel, initrd)."""
    return build_image(env={"RVG_GUEST_INIT": str(HERE / "init"),
                            "RVG_GUEST_MODULES": L1_MODULES})


class Nested:
    """One L0 QEMU running SCRIPT in L1 once; a context manager."""

    def __init__(self, script, qemu=None, kernel=None, initrd=None, keep=False,
                 extra_devices=(), timeout=None, first_output_timeout=None):
        self.script, self.keep = script, keep
        # Over run()'s timeout when set (Guest's timeout and first_output_timeout).
        self.timeout, self.first_output_timeout = timeout, first_output_timeout
        self.extra_devices = list(extra_devices)
        self.qemu = qemu or default_qemu()
        if kernel is None:
            kernel, initrd = build_l1_image()
        self.kernel, self.initrd = kernel, initrd
        self.work = None
        self.guest = None

    def __enter__(self):
        # Under /tmp: L1 mounts a tmpfs there and the share over it.
        self.work = tempfile.mkdtemp(prefix="rvg-nested-", dir="/tmp")
        Path(self.work, "run.sh").write_text(
            f"cd {self.work} || exit 1\nexport RVG_WORK={self.work}\n{self.script}")
        return self

    def __exit__(self, *exc):
        if self.guest is not None:
            self.guest.close()
        if not self.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    def path(self, name):
        return Path(self.work, name)

    def log(self):
        """What the script printed (stdout and stderr)."""
        p = self.path("run.log")
        return p.read_text(errors="replace") if p.exists() else ""

    def serial(self):
        return self.guest.serial_text() if self.guest else ""

    def run(self, timeout=RUN_TIMEOUT_S):
        """Boot L0, let L1 run the script; return its exit status.

        GuestError (QEMU stopped) if L1 fails, times out or says nothing.
        """
        extra = [
            "-machine", "kernel-irqchip=split",
            # The IOMMU first: devices created after it are translated.
            "-device", "intel-iommu,intremap=on,caching-mode=on",
            "-device", f"rust-vgpu-hw,addr={GPU_ADDR.split(':')[2]},vram-size={GPU_VRAM}",
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on",
            "-virtfs", f"local,path={self.work},mount_tag=work,security_model=none",
        ]
        for device in self.extra_devices:
            extra += ["-device", device]
        self.guest = Guest(self.qemu, self.kernel, self.initrd, extra_args=extra, vgpu=False,
                           memory="2G", append="intel_iommu=on", demo_args=[self.work],
                           timeout=self.timeout, first_output_timeout=self.first_output_timeout)
        self.guest.start()
        try:
            match, _ = self.guest.wait_for(DONE, timeout=timeout, fail=FAIL, steps=STEPS,
                                           what='the L1 script\'s end ("rvg-l1: done rc=N")')
        except BaseException:
            self.guest.close()  # a caller's setUpClass may never reach __exit__
            raise
        return int(match.group(1))


def sections(log):
    """The script's output split at its "== NAME" lines: {NAME: (text, rc)}."""
    out, name, lines = {}, None, []
    for line in log.split("\n"):
        m = re.match(r"== rc (\d+)$", line)
        if m and name is not None:
            out[name] = ("\n".join(lines), int(m.group(1)))
            name, lines = None, []
        elif line.startswith("== "):
            name, lines = line[3:], []
        elif name is not None:
            lines.append(line)
    return out


class NestedCase(unittest.TestCase):
    """One L0 boot for a test class: its l1_script() runs in L1 with L0's
    extra_devices, and its tests read the script's "== NAME" sections."""

    extra_devices = ()
    nested = None
    rc = None
    out = {}

    @classmethod
    def l1_script(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.nested = Nested(cls.l1_script(), extra_devices=list(cls.extra_devices))
        cls.nested.__enter__()
        cls.rc = cls.nested.run(timeout=900)
        cls.out = sections(cls.nested.log())
        if os.environ.get("RVG_NESTED_LOG"):
            Path(os.environ["RVG_NESTED_LOG"]).write_text(cls.nested.log())

    @classmethod
    def tearDownClass(cls):
        if cls.nested is not None:
            cls.nested.__exit__(None, None, None)

    def section(self, name):
        self.assertIn(name, self.out, f"no '{name}' in the L1 log:\n{self.nested.log()}")
        return self.out[name]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("script", help="shell script to run in L1 (chrooted into this machine's root)")
    add_timeout_args(ap, RUN_TIMEOUT_S)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    with Nested(Path(args.script).read_text(), keep=args.keep, timeout=args.timeout,
                first_output_timeout=args.first_output_timeout) as n:
        try:
            rc = n.run()
        except GuestError as e:
            print(f"nested.py: {e}", file=sys.stderr)
            return 1
        sys.stdout.write(n.log())
        if args.keep:
            print(f"nested.py: work directory {n.work}", file=sys.stderr)
        return rc


if __name__ == "__main__":
    sys.exit(main())
