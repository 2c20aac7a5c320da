#!/usr/bin/env python3
"""The rust-vgpu demo: a Debian guest on the vGPU, drawing through its engine.

    guest/demo.py [--out DIR] [--interactive] [--accel kvm] [--timeout S]
                  [--first-output-timeout S]

Builds what is missing (the guest program, the guest image), boots the
guest on -device rust-vgpu, lets Linux's bochs-drm bind it and put a login
prompt on its console, runs rvg-demo (engine work and a picture), saves a
PNG screenshot of the vGPU's console and prints a short summary.

--interactive keeps the guest running afterwards with a display you can
look at: a window when $DISPLAY is set, else VNC on 127.0.0.1:5900
(`vncviewer 127.0.0.1:0`). The serial console stays in the log; stop with
Ctrl-C.

A guest that is not ready within 240 s, that prints nothing at all on its
serial console within 60 s (a KVM guest hung in early boot), or that
QEMU stops on a KVM internal error, is given up on: QEMU is stopped, the
message says what was awaited, where the serial log is and which
accelerator ran, and the exit status is 1. $RVG_GUEST_TIMEOUT and
$RVG_GUEST_FIRST_OUTPUT_TIMEOUT change the two deadlines (docs/guest.md).
"""

import argparse
import os
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from boot import Guest, GuestError, add_timeout_args, build_demo_image, default_qemu  # noqa: E402

# Seconds until the guest is ready (login prompt, rvg-demo's result): it
# takes 5-10 s under TCG.
READY_TIMEOUT_S = 240.0


def first(lines, pattern, default="(not reported)"):
    for line in lines:
        m = re.match(pattern, line)
        if m:
            return m
    return default


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="A guest not ready in time is given up on (exit status 1); "
               "$RVG_GUEST_TIMEOUT and $RVG_GUEST_FIRST_OUTPUT_TIMEOUT set the deadlines "
               "for `make run` as the flags do here.")
    ap.add_argument("--out", default=str(HERE.parent / "out"),
                    help="where the screenshot and logs go (default: out/ in the checkout)")
    ap.add_argument("--accel", default=os.environ.get("ACCEL", "tcg"), help="tcg (default) or kvm")
    ap.add_argument("--interactive", action="store_true",
                    help="keep the guest running with a window or VNC display")
    add_timeout_args(ap, READY_TIMEOUT_S)
    args = ap.parse_args()

    kernel, initrd = build_demo_image()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shot = out / "rust-vgpu-demo.png"
    serial = out / "rust-vgpu-demo-serial.log"

    extra = []
    if args.interactive:
        extra = ["-display", "gtk" if os.environ.get("DISPLAY") else "vnc=127.0.0.1:0"]
    print(f"== booting a Debian guest on -device rust-vgpu ({args.accel})", flush=True)
    try:
        guest = Guest(default_qemu(), kernel, initrd, accel=args.accel, extra_args=extra,
                      serial_log=serial, timeout=args.timeout,
                      first_output_timeout=args.first_output_timeout)
        with guest:
            _, ready_s = guest.wait_ready(READY_TIMEOUT_S)
            time.sleep(1.0)  # the console's last text lands lazily
            guest.screendump(str(shot), "png")
            info = guest.hmp("info rust-vgpu")
            lines = guest.report_lines()
            if args.interactive:
                where = "a window" if "gtk" in extra[1] else "VNC at 127.0.0.1:5900"
                print(f"== the guest keeps running on {where}; Ctrl-C stops it", flush=True)
                try:
                    guest.proc.wait()
                except KeyboardInterrupt:
                    pass
    except GuestError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1

    bound = first(lines, r"rvg-guest: (.*bound to .*)$")
    login = first(lines, r"rvg-guest: login prompt on tty1 after (.*)$")
    submitted = first(lines, r"rvg-demo: (submitted .*)$")
    fences = [l for l in lines if re.match(r"rvg-demo: fence \d+ reached", l)]
    verdict = first(lines, r"rvg-demo: (PASS|FAIL.*)$")
    text = lambda m: m if isinstance(m, str) else m.group(1)  # noqa: E731
    print()
    print("== summary")
    print(f"driver:   {text(bound)}")
    print(f"console:  login prompt on the vGPU after {text(login)} (guest uptime); "
          f"guest ready {ready_s:.1f} s after QEMU started")
    print(f"engine:   {text(submitted)}")
    print(f"fence:    {fences[-1][len('rvg-demo: '):] if fences else 'none reached'}")
    print(f"rvg-demo: {text(verdict)}")
    print()
    print("== the mediator's view ('info rust-vgpu')")
    print(info.rstrip())
    print()
    print(f"screenshot: {shot}")
    print(f"serial log: {serial}")
    return 0 if text(verdict) == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
