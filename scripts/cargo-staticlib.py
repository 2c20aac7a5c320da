#!/usr/bin/env python3
"""Build the rust-vgpu staticlib for QEMU's meson and hand ninja a depfile.

Runs `cargo build --release` for one package, copies the library to the
output meson expects, and rewrites cargo's dep-info so ninja tracks every Rust source.
"""

import argparse
import os
import shutil
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cargo", required=True)
    ap.add_argument("--manifest-path", required=True)
    ap.add_argument("--target-dir", required=True)
    ap.add_argument("--package", required=True)
    ap.add_argument("--lib-name", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--depfile", required=True)
    ap.add_argument("--libfuzzer-coverage", action="store_true",
                    help="instrument the crates for libFuzzer (QEMU's --enable-fuzzing)")
    args = ap.parse_args()

    # QEMU's tree reaches this repository through a symlink; give cargo the
    # real path so its fingerprints match `cargo test` run in the checkout.
    cmd = [args.cargo, "build", "--release", "--locked",
           "--manifest-path", os.path.realpath(args.manifest_path),
           "--target-dir", args.target_dir,
           "--package", args.package]
    env = dict(os.environ)
    out_dir = os.path.join(args.target_dir, "release")
    if args.libfuzzer_coverage:
        # With an explicit --target, RUSTFLAGS reach the crates only, not
        # build scripts and proc macros, which run without libFuzzer.
        host = subprocess.run(["rustc", "-vV"], capture_output=True, text=True,
                              check=True).stdout
        triple = next(l.split()[1] for l in host.splitlines() if l.startswith("host:"))
        cmd += ["--target", triple]
        out_dir = os.path.join(args.target_dir, triple, "release")
        # The SanitizerCoverage passes cargo-fuzz uses, all stable codegen
        # options; the fuzzing QEMU's libFuzzer collects the counters.
        env["RUSTFLAGS"] = " ".join([
            "-Cpasses=sancov-module",
            "-Cllvm-args=-sanitizer-coverage-level=4",
            "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
            "-Cllvm-args=-sanitizer-coverage-pc-table",
            "-Cllvm-args=-sanitizer-coverage-trace-compares",
        ])
    if not args.libfuzzer_coverage:
        # Every function on a 64-byte boundary: the register path's speed
        # then does not move with unrelated code (docs/benchmarks.md,
        # "the register write's ratio moved with code layout").
        env["RUSTFLAGS"] = "-C llvm-args=-align-all-functions=6"
    result = subprocess.run(cmd, env=env)
    if result.returncode != 0:
        sys.exit(f"cargo-staticlib: '{' '.join(cmd)}' failed ({result.returncode})")

    built = os.path.join(out_dir, f"lib{args.lib_name}.a")
    shutil.copyfile(built, args.output + ".tmp")
    os.replace(args.output + ".tmp", args.output)

    # cargo writes "<lib>: <sources...>"; ninja wants the output as target.
    with open(os.path.join(out_dir, f"lib{args.lib_name}.d")) as f:
        deps = f.read().split(":", 1)[1].strip()
    with open(args.depfile, "w") as f:
        f.write(f"{args.output}: {deps}\n")


if __name__ == "__main__":
    main()
