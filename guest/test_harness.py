#!/usr/bin/env python3
"""guest/boot.py's deadlines, against a fake QEMU: no QEMU build, no KVM, a few seconds.

    guest/test_harness.py [-v]

The fake (written to a temporary directory) takes QEMU's command line,
writes $FAKE_SERIAL to the -serial file, optionally listens on the -qmp
socket without ever answering, optionally ignores SIGTERM, and sleeps: a
guest that hangs. Or it plays QEMU after a KVM internal error: the message
on stderr, the guest stopped, QMP saying so. Every wait on it must end in a GuestError that names
what was awaited, the serial log and the accelerator (with the way to TCG
under KVM), with QEMU gone afterwards.

Also guest/bench.py's arithmetic (per-round ratios, pooled over boots) on
made-up rvg-bench lines.
"""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from pathlib import Path
from unittest import mock

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402
import boot  # noqa: E402
from boot import Guest, GuestError  # noqa: E402

FAKE_QEMU = textwrap.dedent("""\
    #!/usr/bin/env python3
    import json, os, signal, socket, sys, time
    args = sys.argv[1:]
    serial = args[args.index("-serial") + 1].split(":", 1)[1]
    qmp = args[args.index("-qmp") + 1].split(":", 1)[1].split(",")[0]
    if os.environ.get("FAKE_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(serial, "w") as f:
        f.write(os.environ.get("FAKE_SERIAL", ""))
    if os.environ.get("FAKE_MUTE_QMP"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(qmp)
        s.listen(1)
    if os.environ.get("FAKE_KVM_ERROR"):
        # What QEMU does when KVM cannot run the guest: say so, stop the
        # guest, answer QMP.
        print("KVM internal error. Suberror: 1\\nemulation failure", flush=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(qmp)
        s.listen(1)
        while True:
            f = s.accept()[0].makefile("rw")
            f.write('{"QMP": {}}\\n')
            f.flush()
            for line in f:
                cmd = json.loads(line)["execute"]
                ret = {"status": "internal-error", "running": False} if cmd == "query-status" else {}
                f.write(json.dumps({"return": ret}) + "\\n")
                f.flush()
                if cmd == "quit":
                    sys.exit(0)
    time.sleep(600)
""")

# No fake environment variables leak between tests, nor the user's deadlines.
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if not k.startswith("FAKE_") and k not in (boot.TIMEOUT_ENV, boot.FIRST_OUTPUT_TIMEOUT_ENV)}


def gone(pid):
    """True once pid has exited (a zombie counts: nothing runs)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


class Deadlines(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="rvg-harness-test-")
        d = Path(cls.tmp.name)
        cls.qemu = d / "fake-qemu"
        cls.qemu.write_text(FAKE_QEMU)
        cls.qemu.chmod(0o755)
        cls.kernel, cls.initrd = d / "vmlinuz", d / "initrd"
        cls.kernel.touch()
        cls.initrd.touch()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        patcher = mock.patch.dict(os.environ, CLEAN_ENV, clear=True)
        patcher.start()
        self.addCleanup(patcher.stop)

    def guest(self, **kwargs):
        g = Guest(self.qemu, self.kernel, self.initrd, **kwargs)
        g.stop_grace = 2.0

        def cleanup():
            g.close()
            if g.workdir:
                subprocess.run(["rm", "-rf", g.workdir], check=False)
        self.addCleanup(cleanup)
        return g

    def wait_error(self, g, bound, **kwargs):
        """wait_ready's GuestError message; it must come within bound seconds, QEMU gone."""
        start = time.monotonic()
        with self.assertRaises(GuestError) as caught:
            g.wait_ready(**kwargs)
        took = time.monotonic() - start
        self.assertLess(took, bound)
        self.assertTrue(gone(g.proc.pid), "QEMU still runs after the timeout")
        return str(caught.exception), took

    def test_a_silent_kvm_guest_is_given_up_on_early_with_the_tcg_hint(self):
        g = self.guest(accel="kvm", first_output_timeout=0.5).start()
        msg, took = self.wait_error(g, 5, timeout=240)
        self.assertGreaterEqual(took, 0.4)
        self.assertIn("no output from the guest at all", msg)
        self.assertIn("awaited:     the guest's first serial output", msg)
        self.assertIn(f"serial log:  {g.serial_log} (empty)", msg)
        self.assertIn("accelerator: kvm", msg)
        self.assertIn("ACCEL=tcg make run", msg)
        self.assertIn("RVG_GUEST_FIRST_OUTPUT_TIMEOUT", msg)
        g.close()
        self.assertTrue(os.path.exists(g.serial_log), "the serial log the message names is gone")

    def test_no_kvm_hint_under_tcg(self):
        g = self.guest(accel="tcg", first_output_timeout=0.3).start()
        msg, _ = self.wait_error(g, 5)
        self.assertIn("accelerator: tcg", msg)
        self.assertNotIn("ACCEL=tcg", msg)

    def test_the_timeout_names_the_first_missing_step(self):
        with mock.patch.dict(os.environ, FAKE_SERIAL="rvg-guest: init on Debian kernel 6.12\n"):
            g = self.guest(accel="kvm").start()
            msg, _ = self.wait_error(g, 5, timeout=0.5)
        self.assertIn("timed out after 0.5 s", msg)
        self.assertIn("awaited:     the login prompt on the vGPU's console", msg)
        self.assertNotIn("no output", msg)
        self.assertIn("rvg-guest: init on Debian kernel", msg)  # the serial tail
        self.assertIn("ACCEL=tcg make run", msg)
        with mock.patch.dict(os.environ, FAKE_SERIAL="rvg-guest: login prompt on tty1 after 5 s\n"):
            g = self.guest().start()
            msg, _ = self.wait_error(g, 5, timeout=0.5)
        self.assertIn("awaited:     rvg-demo's result", msg)

    def test_the_environment_overrides_a_callers_timeout(self):
        with mock.patch.dict(os.environ, {boot.TIMEOUT_ENV: "0.5", "FAKE_SERIAL": "x\n"}):
            g = self.guest().start()
            msg, _ = self.wait_error(g, 5, timeout=240)
        self.assertIn("timed out after 0.5 s", msg)
        with mock.patch.dict(os.environ, {boot.FIRST_OUTPUT_TIMEOUT_ENV: "0.3"}):
            g = self.guest().start()
            msg, _ = self.wait_error(g, 5, timeout=240)
        self.assertIn("no output from the guest at all", msg)
        with mock.patch.dict(os.environ, {boot.TIMEOUT_ENV: "soon"}):
            with self.assertRaisesRegex(GuestError, "RVG_GUEST_TIMEOUT: 'soon' is not"):
                self.guest()

    def test_a_kvm_internal_error_ends_the_wait_at_once(self):
        with mock.patch.dict(os.environ, FAKE_KVM_ERROR="1"):
            g = self.guest(accel="kvm").start()
            msg, took = self.wait_error(g, 5, timeout=240)
        self.assertIn("gave up on the guest: QEMU stopped it", msg)
        self.assertIn("KVM internal error. Suberror: 1", msg)
        self.assertIn("awaited:     the guest's first serial output", msg)
        self.assertIn("ACCEL=tcg make run", msg)
        self.assertEqual(g.proc.returncode, 0, "asked to quit over QMP")

    def test_a_qemu_ignoring_sigterm_is_killed(self):
        with mock.patch.dict(os.environ, FAKE_IGNORE_TERM="1"):
            g = self.guest(first_output_timeout=0.3)
            g.stop_grace = 0.3
            g.start()
            time.sleep(0.2)  # let it install its handler
            self.wait_error(g, 5)
        self.assertEqual(g.proc.returncode, -signal.SIGKILL)

    def test_a_qmp_that_never_answers_is_an_error_not_a_hang(self):
        with mock.patch.dict(os.environ, FAKE_MUTE_QMP="1"), \
                mock.patch.object(boot, "QMP_TIMEOUT_S", 0.5):
            g = self.guest().start()
            time.sleep(0.3)  # the socket is there
            start = time.monotonic()
            with self.assertRaisesRegex(GuestError, "did not answer on QMP"):
                g.screendump(os.path.join(self.tmp.name, "x.ppm"))
            self.assertLess(time.monotonic() - start, 3)
            g.close()
        self.assertTrue(gone(g.proc.pid))

    def test_boot_py_exits_1_with_the_message(self):
        start = time.monotonic()
        r = subprocess.run(
            [sys.executable, str(HERE / "boot.py"), "--qemu", str(self.qemu),
             "--kernel", str(self.kernel), "--initrd", str(self.initrd),
             "--accel", "kvm", "--first-output-timeout", "0.5"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertLess(time.monotonic() - start, 10)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"^boot.py: gave up on the guest: no output from the guest at all")
        self.assertIn("ACCEL=tcg make run", r.stderr)
        log = next(line.split()[2] for line in r.stderr.splitlines()
                   if line.startswith("  serial log:"))
        subprocess.run(["rm", "-rf", os.path.dirname(log)], check=False)

    def test_qemu_dies_with_a_killed_harness(self):
        code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from boot import Guest\n"
                "g = Guest(*sys.argv[2:5]).start(); print(g.proc.pid, g.workdir, flush=True)\n"
                "time.sleep(600)\n")
        harness = subprocess.Popen(
            [sys.executable, "-c", code, str(HERE), str(self.qemu), str(self.kernel),
             str(self.initrd)], stdout=subprocess.PIPE, text=True)
        pid, workdir = harness.stdout.readline().split()
        harness.kill()
        harness.wait()
        harness.stdout.close()
        deadline = time.monotonic() + 5
        while not gone(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(gone(int(pid)), "QEMU outlived the harness that started it")
        subprocess.run(["rm", "-rf", workdir], check=False)


class BenchFigures(unittest.TestCase):
    """guest/bench.py's arithmetic on rvg-bench's lines: ratios within a round, pooled."""

    SERIAL = ("rvg-guest: login prompt on tty1 after 5.1 s\n"
              "rvg-bench: round 0 last vgpu-read 200.0 edu-read 100.0 vgpu-write 300.0 "
              "edu-write 150.0 doorbell 150.0\n"
              "rvg-bench: round 0 inline vgpu-read 500.0 edu-read 400.0\n"
              "rvg-bench: round 1 last vgpu-read 400.0 edu-read 400.0 vgpu-write 100.0 "
              "edu-write 100.0 doorbell 100.0\n")

    def test_ratios_are_per_round_and_pooled_over_boots(self):
        boot_rounds = bench.parse_rounds(self.SERIAL)
        self.assertEqual([(r["round"], r["placement"]) for r in boot_rounds],
                         [(0, "last"), (0, "inline"), (1, "last")])
        s = bench.summarize([boot_rounds, boot_rounds[:1]])
        last = s["last"]
        self.assertEqual(last["rounds"], 3)
        # Per round 2.0, 1.0, 2.0: the median of ratios, not the ratio of medians (1.0).
        self.assertEqual(last["ratios"]["vGPU read / edu read"], (2.0, 1.0, 2.0))
        self.assertEqual(last["ns"]["vgpu-read"], (200.0, 200.0, 400.0))
        self.assertEqual(last["ratios"]["doorbell / vGPU write"], (0.5, 0.5, 1.0))
        self.assertNotIn("GTT entry write / vGPU write", last["ratios"])
        self.assertEqual(s["inline"]["ratios"], {"vGPU read / edu read": (1.25, 1.25, 1.25)})
        self.assertIn("vGPU read / edu read", bench.table(s))


if __name__ == "__main__":
    unittest.main()
