#!/usr/bin/env python3
"""The guest boot test: a stock Debian guest on the vGPU, checked as a user would.

    guest/test_boot.py [-v]

Builds the guest program and image (guest/program.sh, guest/image.sh),
boots the guest on -device rust-vgpu under TCG (ACCEL=kvm to change),
gives up after 240 s, or 60 s without a word on the serial console
($RVG_GUEST_TIMEOUT, $RVG_GUEST_FIRST_OUTPUT_TIMEOUT: guest/boot.py),
and checks: Linux's bochs-drm bound the vGPU and put a login prompt on
it; rvg-demo ran its engine work and passed; and a QMP screendump of the
vGPU's console shows exactly the picture rvg-demo says it drew (its
"picture:" manifest) with the console's text beside it. A second boot
runs rvg-bench (guest/bench.py's program) briefly to its end.
"""

import os
import re
import sys
import tempfile
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from boot import Guest, build_demo_image, default_qemu, read_ppm  # noqa: E402

# The fbdev console flushes lazily: give the last text a moment to land.
SETTLE_S = 1.0


def parse_manifest(lines):
    """rvg-demo's "picture:" lines: (screen size, regions in drawing order, end count)."""
    screen, regions, end = None, [], None
    for line in lines:
        m = re.match(r"rvg-demo: picture: (.*)$", line)
        if not m:
            continue
        f = m.group(1).split()
        if f[0] == "screen":
            screen = (int(f[1]), int(f[2]))
        elif f[0] == "end":
            end = int(f[1])
        else:
            regions.append(f)
    return screen, regions, end


def region_pixel(region, x, y):
    """The 0xRRGGBB colour a manifest region gives pixel (x, y) of the
    screen, or None outside it."""
    kind = region[0]
    rx, ry, rw, rh = map(int, region[1:5])
    if not (rx <= x < rx + rw and ry <= y < ry + rh):
        return None
    dx, dy = x - rx, y - ry
    if kind == "fill":
        return int(region[5], 16)
    if kind == "copy" and region[5] == "checker":
        cell = int(region[6])
        return int(region[7 if (dx // cell + dy // cell) % 2 == 0 else 8], 16)
    if kind == "copy" and region[5] == "gradient":
        red = 255 * dx // (rw - 1)
        green = 255 * dy // (rh - 1)
        return red << 16 | green << 8 | 0x80
    raise ValueError(f"unknown manifest region {region}")


def check_picture(test, lines, width, height, rgb):
    """The screenshot (width x height, RGB bytes) shows exactly the picture
    rvg-demo's manifest in `lines` describes; returns the pixels checked."""
    screen, regions, end = parse_manifest(lines)
    test.assertEqual(screen, (width, height), "the console has the guest's mode")
    test.assertEqual(end, len(regions))
    kinds = [r[0] if r[0] == "fill" else r[5] for r in regions]
    # A picture worth the name: fills and both kinds of copied tiles.
    test.assertGreaterEqual(kinds.count("fill"), 10)
    test.assertIn("checker", kinds)
    test.assertIn("gradient", kinds)
    # Paint the manifest in drawing order (later regions win), then
    # compare every painted pixel.
    want = {}
    for region in regions:
        rx, ry, rw, rh = map(int, region[1:5])
        for y in range(ry, ry + rh):
            for x in range(rx, rx + rw):
                want[x, y] = region_pixel(region, x, y)
    checked = 0
    for (x, y), colour in sorted(want.items(), key=lambda item: (item[0][1], item[0][0])):
        at = 3 * (y * width + x)
        r, g, b = rgb[at:at + 3]
        got = r << 16 | g << 8 | b
        if got != colour:
            test.fail(f"pixel ({x}, {y}): expected {colour:06x}, screenshot has {got:06x}")
        checked += 1
    test.assertGreater(checked, width * height // 10)
    return checked


class GuestBoot(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        kernel, initrd = build_demo_image()
        cls.tmp = tempfile.TemporaryDirectory(prefix="rvg-boot-test-")
        cls.guest = Guest(default_qemu(), kernel, initrd,
                          accel=os.environ.get("ACCEL", "tcg"))
        cls.guest.start()
        try:
            _, cls.ready_s = cls.guest.wait_ready(timeout=240)
            time.sleep(SETTLE_S)
            shot = os.path.join(cls.tmp.name, "screen.ppm")
            cls.guest.screendump(shot)
            cls.width, cls.height, cls.rgb = read_ppm(shot)
            cls.lines = cls.guest.report_lines()
        except BaseException:
            cls.guest.close()
            cls.tmp.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.guest.close()
        cls.tmp.cleanup()

    def pixel(self, x, y):
        at = 3 * (y * self.width + x)
        r, g, b = self.rgb[at:at + 3]
        return r << 16 | g << 8 | b

    def line(self, pattern):
        """The first report line matching pattern (a regex), or fail."""
        for line in self.lines:
            m = re.match(pattern, line)
            if m:
                return m
        self.fail(f"no line /{pattern}/ in the guest's report:\n" + "\n".join(self.lines))

    def test_bochs_drm_binds_the_vgpu(self):
        bound = self.line(r"rvg-guest: (\S+) bound to (\S+) \(1234:1111 rev 02\)")
        self.assertEqual(bound.group(1), "bochs-drm")
        demo = self.line(r"rvg-demo: device (\S+) 1234:1111 subsystem 1234:5256")
        self.assertEqual(demo.group(1), bound.group(2), "the demo drove the device bochs-drm drives")
        self.line(r"rvg-guest: fb0 bochs-drmdrmfb 1024x768 32 bpp$")

    def test_login_prompt_on_the_vgpu_console(self):
        login = self.line(r"rvg-guest: login prompt on tty1 after ([0-9.]+) s")
        print(f"\n  boot to login prompt: {float(login.group(1)):.2f} s guest uptime, "
              f"ready {self.ready_s:.1f} s after QEMU started", file=sys.stderr)
        self.line(r"rvg-guest: tty1\| rvg-guest login:")

    def test_demo_program_passes(self):
        self.line(r"rvg-demo: PASS$")
        self.line(r"rvg-guest: rvg-demo exit 0$")
        fences = [int(m.group(1)) for m in (re.match(r"rvg-demo: fence (\d+) reached", l)
                                            for l in self.lines) if m]
        self.assertGreater(len(fences), 3)
        self.assertEqual(fences, sorted(fences), "fences complete in order")
        self.line(r"rvg-demo: submitted \d+ commands")

    def test_screenshot_shows_the_picture_exactly(self):
        check_picture(self, self.lines, self.width, self.height, self.rgb)

    def test_console_text_beside_the_picture(self):
        _, regions, _ = parse_manifest(self.lines)
        top = min(int(r[2]) for r in regions)
        # The issue line and the login prompt: light glyph pixels on black,
        # in the text rows above the picture.
        lit = sum(1 for y in range(min(top, 64)) for x in range(self.width)
                  if self.pixel(x, y) >> 16 > 0x80)
        self.assertGreater(lit, 500, "no console text on the screen")


class MigrationWhileDrawingTest(unittest.TestCase):
    """The demo guest migrated live to a second QEMU while rvg-demo clears
    and redraws its picture (--redraw): on the destination rvg-demo goes
    on, passes its own checks of every picture, and the screenshot shows
    exactly the picture a run without migration shows."""

    REDRAW_S = 10

    def test_demo_finishes_on_the_destination_with_the_same_picture(self):
        kernel, initrd = build_demo_image()
        accel = os.environ.get("ACCEL", "tcg")
        args = ["--redraw", str(self.REDRAW_S)]
        with tempfile.TemporaryDirectory(prefix="rvg-mig-test-") as tmp:
            uri = f"unix:{tmp}/migration.sock"
            src = Guest(default_qemu(), kernel, initrd, accel=accel, demo_args=args)
            # Silent until the guest arrives: allow for the source's boot.
            dst = Guest(default_qemu(), kernel, initrd, accel=accel, demo_args=args,
                        extra_args=["-incoming", uri], first_output_timeout=300)
            with src, dst:
                src.wait_for(r"rvg-demo: redraw: clearing", timeout=240)
                info = src.migrate(uri)
                self.assertEqual(info["status"], "completed", info)
                dst.wait_ready(timeout=120)
                time.sleep(SETTLE_S)
                shot = os.path.join(tmp, "screen.ppm")
                dst.screendump(shot)
                width, height, rgb = read_ppm(shot)
                before, after = src.report_lines(), dst.report_lines()
        print(f"\n  migrated while drawing: total {info['total-time']} ms, "
              f"downtime {info['downtime']} ms", file=sys.stderr)
        self.assertIn("rvg-demo: redraw: clearing and drawing the picture again "
                      f"for {self.REDRAW_S:.1f} s", before)
        self.assertFalse(any("redraw: drew" in line for line in before),
                         "the source must not finish drawing before it migrates")
        drew = [line for line in after if "redraw: drew the picture" in line]
        self.assertEqual(len(drew), 1, after)
        self.assertIn("rvg-demo: PASS", after)
        self.assertIn("rvg-guest: rvg-demo exit 0", after)
        check_picture(self, before + after, width, height, rgb)


class BenchmarkProgramTest(unittest.TestCase):
    """rvg-bench, which guest/bench.py runs, gets through a short run: every
    timed loop ends, and its own checks find the devices as it left them
    (SCRATCH written, the GTT entry back at 0, no fault, no engine error)."""

    def test_rvg_bench_times_every_case_and_exits_0(self):
        import argparse
        import bench
        kernel, initrd = build_demo_image("rvg-bench")
        args = argparse.Namespace(rounds=1, accesses=1000, timeout=None,
                                  first_output_timeout=None)
        # A FAIL line, a non-zero exit or a loop that never ends raises.
        rounds = bench.run_boot(kernel, initrd, args)
        self.assertEqual(sorted(r["placement"] for r in rounds), ["inline", "last"])
        for r in rounds:
            self.assertEqual(sorted(r["ns"]), sorted(bench.CASES), r["placement"])
            self.assertTrue(all(ns > 0 for ns in r["ns"].values()), r)


if __name__ == "__main__":
    unittest.main()
