# rust-vgpu: two commands.
#   make run    build what is missing, start QEMU with the vGPU, show the result
#   make check  build what is missing, run every test
#   make soak   the lifecycle soak for RVG_SOAK_SECONDS (default 300)
#   make fuzz   every fuzz target for FUZZ_SECONDS each (default 600)
#   make fuzz-qemu  QEMU's generic-fuzz on rust-vgpu and rust-vgpu-hw for
#               FUZZ_SECONDS each (default 1800), in a clang build of QEMU
#
# RVG_CACHE (default ~/.cache/rust-vgpu) holds everything slow to make: the
# QEMU source and build trees (plain, ASan/UBSan, fuzzing), the firmware,
# apt downloads.
# QEMU_SRC=/path builds into an existing QEMU 10.0 tree instead of Debian's.

SHELL := /bin/bash
export RVG_CACHE ?= $(HOME)/.cache/rust-vgpu
ifdef QEMU_SRC
export QEMU_SRC
QEMU_BUILD ?= $(RVG_CACHE)/build-$(shell printf %s "$(abspath $(QEMU_SRC))" | sha256sum | cut -c1-12)
else
QEMU_BUILD ?= $(RVG_CACHE)/build
endif
export QEMU_BUILD

.PHONY: run check soak fuzz fuzz-qemu qemu qemu-asan deps

run: qemu
	scripts/run.sh

check: qemu qemu-asan
	scripts/check.sh

# The soak qtest of make check (10 s there), run long; RVG_SOAK_SEED
# replays a run.
soak: qemu
	cd "$(QEMU_BUILD)" && RVG_SOAK_SECONDS=$${RVG_SOAK_SECONDS:-300} \
	    QTEST_QEMU_BINARY=./qemu-system-x86_64 \
	    tests/qtest/rust-vgpu/rust-vgpu-lifecycle-test --tap -k \
	    -p /x86_64/rust-vgpu/lifecycle/soak

# Every fuzz target (fuzz/) for FUZZ_SECONDS each; needs no QEMU.
fuzz: deps
	scripts/fuzz.sh long $${FUZZ_SECONDS:-600}

# QEMU's generic-fuzz (tests/qtest/fuzz) on the vGPU's BARs, config space
# and DMA; scripts/fuzz-qemu.sh says how to replay what it finds.
fuzz-qemu:
	scripts/install-deps.sh qemu-fuzz
	scripts/build-qemu.sh fuzz
	scripts/fuzz-qemu.sh $${FUZZ_SECONDS:-1800}

qemu: deps
	scripts/build-qemu.sh

# The same QEMU with ASan and UBSan, for the sanitizer qtests of make check.
qemu-asan: deps
	scripts/build-qemu.sh asan

deps:
	scripts/install-deps.sh
