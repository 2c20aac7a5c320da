#!/usr/bin/env python3
"""Boot the rust-vgpu demo guest on the vGPU and watch it (standard library only).

    guest/boot.py [--qemu Q] [--kernel K --initrd I | --program P ...]
                  [--screenshot out.png] [--timeout S] [--no-vgpu] [-- DEMO-ARGS...]

boots the guest built by guest/image.sh (built on the spot when --kernel
and --initrd are not given), waits for "rvg-guest: ready", saves a
screenshot of the vGPU's console, prints the guest's report lines (the
"rvg-guest:" and "rvg-demo:" ones) and exits non-zero if the guest
reported a failure, timed out, or QEMU failed.

As a library:

    with Guest(qemu, kernel, initrd) as g:
        match, seconds = g.wait_for(r"rvg-guest: ready", timeout=180)
        g.screendump("/tmp/screen.ppm")
        width, height, rgb = read_ppm("/tmp/screen.ppm")
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts"))
from qmp import QMP  # noqa: E402  (the project's QMP client, found via sys.path)

# iomem=relaxed: the guest program maps BAR2 through sysfs while bochs-drm
# holds it. panic=-1 with -no-reboot: a guest panic ends QEMU at once
# instead of waiting out the timeout.
DEFAULT_APPEND = "console=ttyS0 iomem=relaxed consoleblank=0 quiet panic=-1"
READY = r"^rvg-guest: ready$"
FAIL = r"^rvg-guest: FAIL.*$"
REPORT_PREFIXES = ("rvg-guest:", "rvg-demo:")


class GuestError(Exception):
    """The guest failed, timed out, or QEMU did; the message says which and shows the logs."""


def default_qemu():
    """$QEMU_BUILD/qemu-system-x86_64, with the project's defaults for QEMU_BUILD and RVG_CACHE."""
    cache = os.environ.get("RVG_CACHE") or os.path.expanduser("~/.cache/rust-vgpu")
    build = os.environ.get("QEMU_BUILD") or os.path.join(cache, "build")
    return os.path.join(build, "qemu-system-x86_64")


def build_image(programs=(), env=None):
    """Run guest/image.sh (with more environment variables `env`); return (kernel, initrd) paths."""
    out = subprocess.run(
        [str(HERE / "image.sh"), *map(str, programs)],
        check=True, stdout=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    ).stdout
    paths = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return paths["kernel"], paths["initrd"]


def build_demo_image():
    """Build rvg-demo (guest/program.sh) and an image holding it; return (kernel, initrd)."""
    program = subprocess.run([str(HERE / "program.sh")], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.strip()
    return build_image([program])


def read_ppm(path):
    """Read a binary PPM (P6, maxval 255, as QEMU's screendump writes it).

    Returns (width, height, data): data is width * height * 3 bytes, RGB, rows top down.
    """
    raw = Path(path).read_bytes()
    fields, pos = [], 0
    # Header: magic, width, height, maxval, separated by whitespace and
    # comments, then exactly one whitespace byte before the pixels.
    while len(fields) < 4:
        while raw[pos:pos + 1].isspace():
            pos += 1
        if raw[pos:pos + 1] == b"#":
            pos = raw.index(b"\n", pos) + 1
            continue
        start = pos
        while pos < len(raw) and not raw[pos:pos + 1].isspace():
            pos += 1
        fields.append(raw[start:pos])
    magic, width, height, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    if magic != b"P6" or maxval != 255:
        raise ValueError(f"{path}: not a P6 PPM with maxval 255 ({magic!r}, maxval {maxval})")
    data = raw[pos + 1:pos + 1 + width * height * 3]
    if len(data) != width * height * 3:
        raise ValueError(f"{path}: {len(data)} bytes of pixels, expected {width * height * 3}")
    return width, height, data


class Guest:
    """One QEMU running the demo guest on a rust-vgpu; a context manager.

    qemu, kernel, initrd: paths. extra_args: more QEMU arguments.
    device_args: appended to "-device rust-vgpu,id=vgpu0" (e.g. "vram-size=128M").
    vgpu=False leaves the device out. append: more kernel arguments.
    demo_args: passed to /bin/rvg-demo (after "--" on the kernel command line).
    firmware_dirs: extra -L directories, for a QEMU binary moved out of its build tree.
    on_line: called with each complete serial line as it is read.
    """

    def __init__(self, qemu, kernel, initrd, extra_args=(), device_args="", accel="tcg",
                 append="", demo_args=(), vgpu=True, memory="1G", smp=2,
                 firmware_dirs=(), on_line=None, keep_workdir=False):
        self.qemu, self.kernel, self.initrd = str(qemu), str(kernel), str(initrd)
        self.extra_args = list(extra_args)
        self.device_args = device_args.lstrip(",")
        self.accel, self.append, self.demo_args = accel, append, list(demo_args)
        self.vgpu, self.memory, self.smp = vgpu, memory, smp
        self.firmware_dirs = list(firmware_dirs)
        self.on_line, self.keep_workdir = on_line, keep_workdir
        self.workdir = None
        self.proc = None
        self.started = None
        self._qmp = None
        self._lines_seen = 0

    def command(self):
        """The QEMU command line (paths inside self.workdir)."""
        cmdline = " ".join(filter(None, [DEFAULT_APPEND, self.append]))
        if self.demo_args:
            cmdline += " -- " + " ".join(self.demo_args)
        args = [self.qemu]
        for d in self.firmware_dirs:
            args += ["-L", str(d)]
        args += [
            "-machine", "q35", "-accel", self.accel, "-m", str(self.memory), "-smp", str(self.smp),
            "-nodefaults", "-vga", "none", "-display", "none",
        ]
        if self.vgpu:
            device = "rust-vgpu,id=vgpu0"
            if self.device_args:
                device += "," + self.device_args
            args += ["-device", device]
        args += [
            "-kernel", self.kernel, "-initrd", self.initrd, "-append", cmdline,
            "-serial", f"file:{self.serial_log}",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
            "-no-reboot",
        ]
        return args + self.extra_args

    @property
    def serial_log(self):
        return os.path.join(self.workdir, "serial.log")

    @property
    def qmp_socket(self):
        return os.path.join(self.workdir, "qmp.sock")

    @property
    def stderr_log(self):
        return os.path.join(self.workdir, "qemu.stderr")

    def start(self):
        for path in (self.qemu, self.kernel, self.initrd):
            if not os.path.isfile(path):
                raise GuestError(f"no such file: {path}")
        # Short: a unix socket path must fit in 108 bytes.
        self.workdir = tempfile.mkdtemp(prefix="rvg-guest-")
        Path(self.serial_log).touch()
        with open(self.stderr_log, "wb") as err:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=subprocess.STDOUT)
        self.started = time.monotonic()
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def elapsed(self):
        """Seconds since QEMU was started."""
        return time.monotonic() - self.started

    def serial_text(self):
        """Everything the guest wrote on its serial console so far (newlines as \\n)."""
        with open(self.serial_log, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "")

    def stderr_text(self):
        """QEMU's stderr and stdout so far."""
        with open(self.stderr_log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def report_lines(self):
        """The serial lines the guest's init and the demo program report with."""
        return [line for line in self.serial_text().split("\n") if line.startswith(REPORT_PREFIXES)]

    def _feed_lines(self, text):
        if self.on_line is None:
            return
        lines = text.split("\n")[:-1]  # the last one may be incomplete
        for line in lines[self._lines_seen:]:
            self.on_line(line)
        self._lines_seen = max(self._lines_seen, len(lines))

    def _describe(self, what):
        tail = "\n".join(self.serial_text().rstrip("\n").split("\n")[-30:])
        msg = f"{what}\n--- serial console (last lines)\n{tail}"
        err = self.stderr_text().strip()
        if err:
            msg += f"\n--- QEMU stderr\n{err}"
        return msg

    def wait_for(self, pattern, timeout=180.0, fail=FAIL):
        """Wait until the serial console matches pattern (a regex, multi-line mode).

        Returns (match, seconds since QEMU started). Raises GuestError when
        fail matches first (by default a "rvg-guest: FAIL" line), when QEMU
        exits, or after timeout seconds.
        """
        want = re.compile(pattern, re.MULTILINE)
        bad = re.compile(fail, re.MULTILINE) if fail else None
        deadline = time.monotonic() + timeout
        while True:
            # Read before checking QEMU's exit, so the last words are seen.
            exited = self.proc.poll() is not None
            text = self.serial_text()
            self._feed_lines(text)
            match = want.search(text)
            if match:
                return match, self.elapsed()
            failed = bad.search(text) if bad else None
            if failed:
                raise GuestError(self._describe(f"guest reported: {failed.group(0)}"))
            if exited:
                raise GuestError(self._describe(
                    f"QEMU exited with status {self.proc.returncode} before /{pattern}/"))
            if time.monotonic() > deadline:
                raise GuestError(self._describe(f"timed out after {timeout:g} s waiting for /{pattern}/"))
            time.sleep(0.05)

    @property
    def qmp(self):
        """The QMP connection, opened on first use."""
        if self._qmp is None:
            if self.proc.poll() is not None:
                raise GuestError(self._describe("QEMU is not running"))
            try:
                self._qmp = QMP(self.qmp_socket, timeout=10.0)
            except SystemExit as e:  # qmp.py reports connection trouble that way
                raise GuestError(self._describe(str(e))) from None
        return self._qmp

    def screendump(self, path, fmt="ppm", device=None):
        """Save the vGPU's console (or QEMU console `device`) as ppm or png."""
        args = {"filename": os.path.abspath(path), "format": fmt}
        if device:
            args["device"] = device
        try:
            self.qmp.execute("screendump", **args)
        except RuntimeError as e:
            raise GuestError(f"screendump failed: {e}") from None

    def close(self, timeout=10.0):
        """Ask QEMU to quit, kill it if it does not within timeout, clean up."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.qmp.execute("quit")
            except (GuestError, RuntimeError, OSError, SystemExit):
                pass  # QEMU may close the socket before answering
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._qmp is not None:
            self._qmp.sock.close()
            self._qmp = None
        if self.workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(
        description="Boot the rust-vgpu demo guest, wait until it is ready, take a screenshot.")
    ap.add_argument("--qemu", default=default_qemu(),
                    help="qemu-system-x86_64 (default: $QEMU_BUILD/qemu-system-x86_64)")
    ap.add_argument("--kernel", help="guest kernel (default: built with guest/image.sh)")
    ap.add_argument("--initrd", help="guest initramfs (default: built with guest/image.sh)")
    ap.add_argument("--program", action="append", default=[],
                    help="static binary to put in the initramfs's /bin when building it (repeatable)")
    ap.add_argument("--screenshot", help="save the console here once ready (.png or .ppm)")
    ap.add_argument("--accel", default=os.environ.get("ACCEL", "tcg"), help="tcg (default) or kvm")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the guest")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds between ready and the screenshot (the fbdev console flushes lazily)")
    ap.add_argument("--append", default="", help="more kernel command line")
    ap.add_argument("--device-args", default="", help="more rust-vgpu properties, e.g. vram-size=128M")
    ap.add_argument("--no-vgpu", action="store_true", help="leave out -device rust-vgpu")
    ap.add_argument("--qemu-args", default="", help="more QEMU arguments (one string, shell-quoted)")
    ap.add_argument("-L", dest="firmware_dirs", action="append", default=[],
                    help="firmware directory for QEMU (repeatable)")
    ap.add_argument("--serial-log", help="copy the whole serial console log here")
    ap.add_argument("demo_args", nargs="*", help="arguments for rvg-demo (after --)")
    args = ap.parse_args()

    if bool(args.kernel) != bool(args.initrd):
        ap.error("give both --kernel and --initrd, or neither")
    if args.kernel and args.program:
        ap.error("--program builds an image; it does not go with --kernel/--initrd")
    if args.kernel:
        kernel, initrd = args.kernel, args.initrd
    else:
        try:
            kernel, initrd = build_image(args.program)
        except subprocess.CalledProcessError as e:
            print(f"boot.py: guest/image.sh failed (status {e.returncode})", file=sys.stderr)
            return 1

    def show(line):
        if line.startswith(REPORT_PREFIXES):
            print(line, flush=True)

    guest = Guest(args.qemu, kernel, initrd, extra_args=shlex.split(args.qemu_args),
                  accel=args.accel, append=args.append,
                  device_args=args.device_args, vgpu=not args.no_vgpu,
                  demo_args=args.demo_args, firmware_dirs=args.firmware_dirs, on_line=show)
    status = 0
    try:
        with guest:
            try:
                _, seconds = guest.wait_for(READY, timeout=args.timeout)
                print(f"boot.py: guest ready {seconds:.2f} s after QEMU started", flush=True)
                if args.screenshot:
                    time.sleep(args.settle)
                    fmt = "png" if args.screenshot.endswith(".png") else "ppm"
                    guest.screendump(args.screenshot, fmt)
                    print(f"boot.py: screenshot saved to {args.screenshot}")
            finally:
                if args.serial_log:
                    shutil.copyfile(guest.serial_log, args.serial_log)
    except GuestError as e:
        print(f"boot.py: {e}", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
