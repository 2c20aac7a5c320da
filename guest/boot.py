#!/usr/bin/env python3
"""Boot the rust-vgpu demo guest on the vGPU and watch it (standard library only).

    guest/boot.py [--qemu Q] [--kernel K --initrd I | --program P ...]
                  [--screenshot out.png] [--timeout S] [--first-output-timeout S]
                  [--no-vgpu] [-- DEMO-ARGS...]

boots the guest built by guest/image.sh (built on the spot when --kernel
and --initrd are not given), waits for "rvg-guest: ready", saves a
screenshot of the vGPU's console, prints the guest's report lines (the
"rvg-guest:" and "rvg-demo:" ones) and exits non-zero if the guest
reported a failure, timed out, or QEMU failed.

Every wait on the guest has a deadline (Guest.wait_for): the whole wait
(--timeout, $RVG_GUEST_TIMEOUT; by default what the caller asks for, 180 s
here) and, shorter, the guest's first serial output (--first-output-timeout,
$RVG_GUEST_FIRST_OUTPUT_TIMEOUT; 60 s from QEMU's start): a guest that
prints nothing at all, as a KVM guest hung in early boot does, is given up
on then; one QEMU stopped on a KVM internal error at once. QEMU is then
stopped, its serial log and stderr are kept, and the GuestError names
what was awaited, the serial log, the accelerator and, under KVM, the way
to TCG.

As a library:

    with Guest(qemu, kernel, initrd) as g:
        match, seconds = g.wait_ready(timeout=180)   # wait_for(READY, ...)
        g.screendump("/tmp/screen.ppm")
        width, height, rgb = read_ppm("/tmp/screen.ppm")
"""

import argparse
import ctypes
import os
import re
import shlex
import shutil
import signal
import socket
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
# What guest/init prints on its way to READY, in order: a timeout names
# the first one missing as what it was waiting for.
READY_STEPS = (
    (r"^rvg-guest: login prompt on tty1", "the login prompt on the vGPU's console"),
    (r"^rvg-guest: rvg-demo exit", "rvg-demo's result"),
)

# Deadlines. The whole wait: a caller's timeout (wait_for's argument),
# unless the user set one for every wait. TCG boots the demo guest to its
# login prompt in 5-8 s on a slow 2-core machine, so the defaults are
# generous; a guest that printed nothing at all on its serial console
# after FIRST_OUTPUT_TIMEOUT_S (the kernel's first words come after 2-4 s
# under TCG) is not booting.
TIMEOUT_ENV = "RVG_GUEST_TIMEOUT"
FIRST_OUTPUT_TIMEOUT_ENV = "RVG_GUEST_FIRST_OUTPUT_TIMEOUT"
DEFAULT_TIMEOUT_S = 180.0
FIRST_OUTPUT_TIMEOUT_S = 60.0
# Each QMP exchange (connecting, screendump, quit), and how long QEMU gets
# to exit once asked before it is killed.
QMP_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
# What QEMU prints when KVM cannot run the guest; it then stops the guest
# (run state "internal-error") and waits, for ever.
KVM_STOPPED = re.compile(r"^(KVM internal error.*|KVM: entry failed.*|KVM: unknown exit.*)$",
                         re.MULTILINE)


class GuestError(Exception):
    """The guest failed, timed out, or QEMU did; the message says which and shows the logs."""


def positive_seconds(text, name="seconds"):
    """A positive number of seconds from text; ValueError naming `name` otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value > 0 or value == float("inf"):
        raise ValueError(f"{name}: {text!r} is not a positive number of seconds")
    return value


def seconds_from_env(name):
    """$name as seconds, or None when it is unset or empty; GuestError if it is not a number."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        return positive_seconds(text, name)
    except ValueError as e:
        raise GuestError(str(e)) from None


def add_timeout_args(ap, default):
    """--timeout and --first-output-timeout for a script whose guest waits take `default` seconds."""
    ap.add_argument("--timeout", type=positive_seconds, metavar="S",
                    help=f"give up on the guest after S seconds (default: ${TIMEOUT_ENV}, "
                         f"else {default:g})")
    ap.add_argument("--first-output-timeout", type=positive_seconds, metavar="S",
                    help="give up when the guest has printed nothing at all on its serial "
                         "console S seconds after QEMU started, as a KVM guest hung in early "
                         f"boot does (default: ${FIRST_OUTPUT_TIMEOUT_ENV}, else "
                         f"{FIRST_OUTPUT_TIMEOUT_S:g})")


def _die_with_parent():
    """In QEMU's process before exec: the kernel kills it if this Python process dies.

    A harness killed by a signal (it then runs no cleanup) leaves no QEMU
    behind, least of all one whose vCPUs spin in a hung guest. (Strictly,
    when the thread that started QEMU ends: start guests from a thread
    that outlives them.)
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


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


def build_demo_image(name="rvg-demo"):
    """Build guest program `name` (guest/program.sh) and an image holding it; return (kernel, initrd)."""
    program = subprocess.run([str(HERE / "program.sh"), name], check=True,
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
    serial_log: where QEMU writes the serial console (default: serial.log in
    a temporary work directory, removed by close() unless a wait failed).
    timeout: seconds for every wait_for, over the callers' own (default:
    $RVG_GUEST_TIMEOUT if set). first_output_timeout: seconds from QEMU's
    start within which the guest must print something on its serial
    console (default: $RVG_GUEST_FIRST_OUTPUT_TIMEOUT, else 60).
    """

    def __init__(self, qemu, kernel, initrd, extra_args=(), device_args="", accel="tcg",
                 append="", demo_args=(), vgpu=True, memory="1G", smp=2,
                 firmware_dirs=(), on_line=None, keep_workdir=False, serial_log=None,
                 timeout=None, first_output_timeout=None):
        self.qemu, self.kernel, self.initrd = str(qemu), str(kernel), str(initrd)
        self.extra_args = list(extra_args)
        self.device_args = device_args.lstrip(",")
        self.accel, self.append, self.demo_args = accel, append, list(demo_args)
        self.vgpu, self.memory, self.smp = vgpu, memory, smp
        self.firmware_dirs = list(firmware_dirs)
        self.on_line, self.keep_workdir = on_line, keep_workdir
        self._serial_log = os.path.abspath(serial_log) if serial_log else None
        self.timeout = timeout if timeout is not None else seconds_from_env(TIMEOUT_ENV)
        if first_output_timeout is None:
            first_output_timeout = seconds_from_env(FIRST_OUTPUT_TIMEOUT_ENV)
        self.first_output_timeout = first_output_timeout or FIRST_OUTPUT_TIMEOUT_S
        self.stop_grace = STOP_GRACE_S
        self.failed = False  # a wait gave up: close() keeps the logs its message names
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
        return self._serial_log or os.path.join(self.workdir, "serial.log")

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
        # Empty now: an old log's text must not pass for this guest's.
        open(self.serial_log, "wb").close()
        try:
            with open(self.stderr_log, "wb") as err:
                self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                             stdout=err, stderr=subprocess.STDOUT,
                                             preexec_fn=_die_with_parent)
        except OSError as e:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise GuestError(f"cannot start {self.qemu}: {e}") from None
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

    def _describe(self, what, stderr=None):
        text = self.serial_text().rstrip("\n")
        msg = what
        if text:
            tail = "\n".join(text.split("\n")[-30:])
            msg += f"\n--- serial console (last lines)\n{tail}"
        err = (self.stderr_text() if stderr is None else stderr).strip()
        if err:
            msg += f"\n--- QEMU stderr\n{err}"
        return msg

    def _give_up(self, headline, awaited, knob=None):
        """Stop QEMU (keeping its logs), return the GuestError for a wait that cannot succeed."""
        stderr = self.stderr_text()  # before QEMU's "terminating on signal" lands in it
        self.stop()
        self.failed = True
        empty = " (empty)" if not os.path.getsize(self.serial_log) else ""
        lines = [
            f"gave up on the guest: {headline}",
            f"  awaited:     {awaited}",
            f"  serial log:  {self.serial_log}{empty}",
            f"  QEMU stderr: {self.stderr_log}",
            f"  accelerator: {self.accel}",
        ]
        if self.accel.split(",")[0] == "kvm":
            lines.append("  hint: KVM guests hang in early boot on some hosts (nested "
                         "virtualisation, host kernel): try TCG, `ACCEL=tcg make run` "
                         "(or --accel tcg)")
        if knob:
            lines.append(f"  more time:   {knob}")
        return GuestError(self._describe("\n".join(lines), stderr))

    def _vm_status(self):
        """QMP's run state ("running", "internal-error", ...), or None if QEMU does not say."""
        try:
            return self.execute("query-status").get("status")
        except GuestError:
            return None

    def wait_for(self, pattern, timeout=DEFAULT_TIMEOUT_S, fail=FAIL, what=None, steps=()):
        """Wait until the serial console matches pattern (a regex, multi-line mode).

        Returns (match, seconds since QEMU started). Raises GuestError when
        fail matches first (by default a "rvg-guest: FAIL" line), when QEMU
        exits or stops the guest for good (a KVM internal error), when the
        guest printed nothing at all within self.first_output_timeout
        seconds of QEMU's start, or after timeout seconds (self.timeout
        instead when set: $RVG_GUEST_TIMEOUT or the constructor's). When
        it gives up, QEMU is stopped and the logs kept.

        what: the awaited thing in words for the message (default: the
        pattern). steps: (regex, words) the guest prints on its way to
        pattern, in order; a timeout names the first one missing.
        """
        if self.timeout is not None:
            timeout = self.timeout
        what = what or f"/{pattern}/"
        want = re.compile(pattern, re.MULTILINE)
        bad = re.compile(fail, re.MULTILINE) if fail else None
        steps = [(re.compile(regex, re.MULTILINE), words) for regex, words in steps]
        deadline = time.monotonic() + timeout
        first_output_deadline = self.started + self.first_output_timeout
        stderr_seen = 0

        def awaited(text):
            if not text:
                return f"the guest's first serial output (on the way to {what})"
            step = next((words for regex, words in steps if not regex.search(text)), None)
            return f"{step} (on the way to {what})" if step else what

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
                    f"QEMU exited with status {self.proc.returncode} before {what}"))
            # QEMU stays up, the guest stopped, after KVM fails to run it.
            size = os.path.getsize(self.stderr_log)
            if size != stderr_seen:
                stderr_seen = size
                kvm = KVM_STOPPED.search(self.stderr_text())
                if kvm and self._vm_status() == "internal-error":
                    raise self._give_up(
                        f"QEMU stopped it {self.elapsed():.0f} s after starting, on "
                        f"\"{kvm.group(0)}\" (details in QEMU's stderr)", awaited(text))
            now = time.monotonic()
            if not text and now > min(first_output_deadline, deadline):
                raise self._give_up(
                    f"no output from the guest at all within {self.elapsed():.0f} s of QEMU's "
                    f"start",
                    awaited(text),
                    f"${FIRST_OUTPUT_TIMEOUT_ENV}=SECONDS (now {self.first_output_timeout:g}), "
                    f"--first-output-timeout")
            if now > deadline:
                raise self._give_up(
                    f"timed out after {timeout:g} s", awaited(text),
                    f"${TIMEOUT_ENV}=SECONDS (now {timeout:g}), --timeout")
            time.sleep(0.05)

    def wait_ready(self, timeout=DEFAULT_TIMEOUT_S):
        """wait_for(READY): guest/init is done (login prompt, rvg-demo if the image has it)."""
        return self.wait_for(READY, timeout, what='"rvg-guest: ready"', steps=READY_STEPS)

    @property
    def qmp(self):
        """The QMP connection, opened on first use; every exchange bounded by QMP_TIMEOUT_S."""
        if self._qmp is None:
            if self.proc.poll() is not None:
                raise GuestError(self._describe("QEMU is not running"))
            # qmp.py's socket gets the timeout too: a QEMU whose main loop
            # is stuck accepts the connection but never greets.
            saved = socket.getdefaulttimeout()
            socket.setdefaulttimeout(QMP_TIMEOUT_S)
            qmp = QMP.__new__(QMP)  # so that a failed __init__ leaves its socket to close
            try:
                qmp.__init__(self.qmp_socket, timeout=QMP_TIMEOUT_S)
                self._qmp = qmp
            except (SystemExit, OSError, ValueError) as e:
                if getattr(qmp, "sock", None):
                    qmp.sock.close()
                if isinstance(e, SystemExit):  # qmp.py reports connection trouble that way
                    raise GuestError(self._describe(str(e))) from None
                raise GuestError(self._describe(
                    f"QEMU did not answer on QMP within {QMP_TIMEOUT_S:g} s ({e})")) from None
            finally:
                socket.setdefaulttimeout(saved)
        return self._qmp

    def execute(self, command, **arguments):
        """A QMP command; GuestError if it fails or QEMU does not answer in time."""
        try:
            return self.qmp.execute(command, **arguments)
        except RuntimeError as e:
            raise GuestError(f"{command} failed: {e}") from None
        except (OSError, ValueError, SystemExit) as e:
            raise GuestError(self._describe(
                f"{command}: no answer from QEMU within {QMP_TIMEOUT_S:g} s ({e})")) from None

    def hmp(self, command_line):
        """A monitor command's output."""
        return self.execute("human-monitor-command", **{"command-line": command_line})

    def screendump(self, path, fmt="ppm", device=None):
        """Save the vGPU's console (or QEMU console `device`) as ppm or png."""
        args = {"filename": os.path.abspath(path), "format": fmt}
        if device:
            args["device"] = device
        self.execute("screendump", **args)

    def migrate(self, uri, timeout=120):
        """Migrate to a QEMU started with -incoming `uri`; query-migrate's
        answer once the migration is no longer under way (check "status")."""
        self.execute("migrate", uri=uri)
        deadline = time.monotonic() + timeout
        while True:
            info = self.execute("query-migrate")
            if info.get("status") not in ("setup", "active", "device", "pre-switchover"):
                return info
            if time.monotonic() > deadline:
                raise GuestError(self._describe(
                    f"migration to {uri} still {info.get('status')} after {timeout:g} s"))
            time.sleep(0.05)

    def stop(self, grace=None):
        """End QEMU: quit over an open QMP connection, else SIGTERM; SIGKILL after grace seconds.

        No new QMP connection is opened: a QEMU that hangs may never answer it.
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        grace = self.stop_grace if grace is None else grace
        asked = False
        if self._qmp is not None:
            try:
                self._qmp.sock.settimeout(grace)
                self._qmp.execute("quit")
                asked = True
            except (RuntimeError, OSError, ValueError, SystemExit):
                asked = self.proc.poll() is not None  # QEMU may close the socket before answering
        if not asked:
            self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def close(self, timeout=None):
        """Stop QEMU (killed if it is not gone within timeout seconds), clean up.

        The work directory (QEMU's stderr, the serial log unless it went
        elsewhere) stays when a wait gave up, so that the message's paths hold.
        """
        self.stop(timeout)
        if self._qmp is not None:
            self._qmp.sock.close()
            self._qmp = None
        if self.workdir and not self.keep_workdir:
            if self.failed:
                Path(self.qmp_socket).unlink(missing_ok=True)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(
        description="Boot the rust-vgpu demo guest, wait until it is ready, take a screenshot.",
        epilog="A guest that does not get ready in time is given up on: QEMU is stopped, "
               "the message names what was awaited, the serial log and the accelerator, "
               "and the exit status is 1. $RVG_GUEST_TIMEOUT and "
               "$RVG_GUEST_FIRST_OUTPUT_TIMEOUT (seconds) set the two deadlines for every "
               "script that boots the guest (guest/demo.py, the tests).")
    ap.add_argument("--qemu", default=default_qemu(),
                    help="qemu-system-x86_64 (default: $QEMU_BUILD/qemu-system-x86_64)")
    ap.add_argument("--kernel", help="guest kernel (default: built with guest/image.sh)")
    ap.add_argument("--initrd", help="guest initramfs (default: built with guest/image.sh)")
    ap.add_argument("--program", action="append", default=[],
                    help="static binary to put in the initramfs's /bin when building it (repeatable)")
    ap.add_argument("--screenshot", help="save the console here once ready (.png or .ppm)")
    ap.add_argument("--accel", default=os.environ.get("ACCEL", "tcg"), help="tcg (default) or kvm")
    add_timeout_args(ap, DEFAULT_TIMEOUT_S)
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds between ready and the screenshot (the fbdev console flushes lazily)")
    ap.add_argument("--append", default="", help="more kernel command line")
    ap.add_argument("--device-args", default="", help="more rust-vgpu properties, e.g. vram-size=128M")
    ap.add_argument("--no-vgpu", action="store_true", help="leave out -device rust-vgpu")
    ap.add_argument("--qemu-args", default="", help="more QEMU arguments (one string, shell-quoted)")
    ap.add_argument("-L", dest="firmware_dirs", action="append", default=[],
                    help="firmware directory for QEMU (repeatable)")
    ap.add_argument("--serial-log", help="write the serial console log here (kept)")
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

    status = 0
    try:
        guest = Guest(args.qemu, kernel, initrd, extra_args=shlex.split(args.qemu_args),
                      accel=args.accel, append=args.append,
                      device_args=args.device_args, vgpu=not args.no_vgpu,
                      demo_args=args.demo_args, firmware_dirs=args.firmware_dirs, on_line=show,
                      serial_log=args.serial_log, timeout=args.timeout,
                      first_output_timeout=args.first_output_timeout)
        with guest:
            _, ready_s = guest.wait_ready(DEFAULT_TIMEOUT_S)
            print(f"boot.py: guest ready {ready_s:.2f} s after QEMU started", flush=True)
            if args.screenshot:
                time.sleep(args.settle)
                fmt = "png" if args.screenshot.endswith(".png") else "ppm"
                guest.screendump(args.screenshot, fmt)
                print(f"boot.py: screenshot saved to {args.screenshot}")
    except GuestError as e:
        print(f"boot.py: {e}", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
