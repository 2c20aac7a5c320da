#!/usr/bin/env python3
"""The kernel VFIO backend end to end, against Linux's vfio-pci in a nested guest.

    guest/vfio/test_nested.py [-v]

One L0 boot (guest/vfio/nested.py): in L1, Debian's kernel binds
rust-vgpu-hw to vfio-pci, and L1 runs this machine's patched QEMU under
-accel qtest. The qtest scenario (qtest/rust-vgpu-scenario-test.c: config
space, registers, GTT shadowing with DMA into the L2 guest's RAM, engine
commands, interrupts, a system reset) runs twice in the same L1, on
-device rust-vgpu (the soft GPU) and on -device rust-vgpu,host=BDF (the
kernel device); both must pass and their transcripts must agree line for
line. A vGPU then migrates between QEMU processes on two kernel devices
(a second rust-vgpu-hw), from the soft GPU to a kernel device and back
(qtest/rust-vgpu-migration-test.c); and the scenario on one kernel device
migrates to the other halfway and goes on there with the same transcript. Then QEMU must refuse each
bad configuration with a message naming the property, the value and the
cause.
"""

import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from boot import default_qemu  # noqa: E402
from nested import GPU_VRAM, NestedCase  # noqa: E402

BUILD = Path(default_qemu()).parent
# A second PCI device for L1 to bind to vfio-pci: QEMU's edu, not a GPU.
EDU_ADDR = "0000:00:04.0"
# A second GPU, where migrations between kernel devices land.
GPU2_ADDR = "0000:00:05.0"
MIGRATION_TESTS = ("whole-state", "busy-engine")

# Run in L1 with the GPU's address as $1, in the work directory.
SCRIPT = r"""
bdf=$1
qemu=@BUILD@/qemu-system-x86_64
scenario=@BUILD@/tests/qtest/rust-vgpu/rust-vgpu-scenario-test
export QTEST_QEMU_BINARY=$qemu

# Each run is bounded: one that hangs fails at once (status 124), with
# its section's output so far.
echo "== scenario soft"
RVG_SCENARIO_TRANSCRIPT=$RVG_WORK/soft.txt timeout 300 $scenario --tap -k
echo "== rc $?"
echo "== scenario vfio host=$bdf"
RVG_SCENARIO_DEVICE=",host=$bdf" RVG_SCENARIO_TRANSCRIPT=$RVG_WORK/vfio.txt \
    timeout 300 $scenario --tap -k
echo "== rc $?"
echo "== scenario vfio sysfsdev, config only"
RVG_SCENARIO_DEVICE=",sysfsdev=/sys/bus/pci/devices/$bdf,vfio-iommu=legacy" \
    RVG_SCENARIO_TRANSCRIPT=$RVG_WORK/sysfsdev.txt timeout 300 $scenario --tap -k \
    -p /x86_64/rust-vgpu/scenario/config
echo "== rc $?"

# Migrations: $3 and $4 are the source's and the destination's GPU.
bdf2=@GPU2@
echo vfio-pci >/sys/bus/pci/devices/$bdf2/driver_override
echo $bdf2 >/sys/bus/pci/drivers_probe
migrate() {
    echo "== migration $1 -> $2"
    RVG_MIGRATION_SOURCE=$3 RVG_MIGRATION_DESTINATION=$4 timeout 300 \
        @BUILD@/tests/qtest/rust-vgpu/rust-vgpu-migration-test --tap -k \
        -p /x86_64/rust-vgpu/migration/whole-state -p /x86_64/rust-vgpu/migration/busy-engine
    echo "== rc $?"
}
migrate host=$bdf host=$bdf2 ",host=$bdf" ",host=$bdf2"
echo "== scenario vfio host=$bdf migrated to host=$bdf2"
RVG_SCENARIO_DEVICE=",host=$bdf" RVG_SCENARIO_MIGRATE_TO=",host=$bdf2" \
    RVG_SCENARIO_TRANSCRIPT=$RVG_WORK/migrated.txt timeout 300 $scenario --tap -k
echo "== rc $?"
migrate soft host=$bdf2 "" ",host=$bdf2"
migrate host=$bdf soft ",host=$bdf" ""

# QEMU must refuse these at realize. If one is wrongly accepted, QEMU
# would sit there: the timeout ends it and the missing message fails.
refuse() {
    name=$1
    shift
    echo "== refuse $name"
    timeout 60 "$@" -machine pc -accel qtest -qtest null -nodefaults -display none -S 2>&1
    echo "== rc $?"
}
edu=@EDU@
echo vfio-pci >/sys/bus/pci/devices/$edu/driver_override
echo $edu >/sys/bus/pci/drivers_probe
virtio=
for d in /sys/bus/pci/devices/*; do
    [ "$(basename "$(readlink $d/driver)")" = virtio-pci ] && { virtio=${d##*/}; break; }
done
group=$(basename "$(readlink /sys/bus/pci/devices/$bdf/iommu_group)")
refuse no-such-device $qemu -device rust-vgpu,host=0000:7f:00.0
refuse bad-address $qemu -device rust-vgpu,host=00:03
refuse both $qemu -device rust-vgpu,host=$bdf,sysfsdev=/sys/bus/pci/devices/$bdf
refuse not-vfio-pci $qemu -device rust-vgpu,host=$virtio
refuse not-rvg1 $qemu -device rust-vgpu,host=$edu
refuse no-iommufd $qemu -device rust-vgpu,host=$bdf,vfio-iommu=iommufd
refuse bad-vfio-iommu $qemu -device rust-vgpu,host=$bdf,vfio-iommu=type1
# Root without the capability to override file permissions, and a group
# node it may not open.
chmod 0 /dev/vfio/$group
refuse permission setpriv --bounding-set=-dac_override,-dac_read_search \
    $qemu -device rust-vgpu,host=$bdf
chmod 600 /dev/vfio/$group
echo "== group $group virtio $virtio"
"""


class NestedVfio(NestedCase):
    extra_devices = (f"edu,addr={EDU_ADDR.split(':')[2]}",
                     f"rust-vgpu-hw,addr={GPU2_ADDR.split(':')[2]},vram-size={GPU_VRAM}")

    @classmethod
    def l1_script(cls):
        return (SCRIPT.replace("@BUILD@", str(BUILD)).replace("@EDU@", EDU_ADDR)
                .replace("@GPU2@", GPU2_ADDR))

    def assert_scenario_passed(self, name):
        text, rc = self.section(name)
        self.assertEqual(rc, 0, f"{name} failed:\n{text}")
        self.assertRegex(text, r"(?m)^ok \d+ /x86_64/rust-vgpu/scenario/config")
        self.assertNotRegex(text, r"(?m)^not ok")

    def test_script_ran_to_the_end(self):
        self.assertEqual(self.rc, 0, self.nested.log())
        self.assertRegex(self.nested.log(), r"(?m)^== group \d+ virtio \S+")

    def test_scenario_passes_on_the_soft_gpu(self):
        self.assert_scenario_passed("scenario soft")
        self.assertRegex(self.section("scenario soft")[0], r"(?m)^# backend: soft")

    def test_scenario_passes_on_the_kernel_device(self):
        name = next(n for n in self.out if n.startswith("scenario vfio host="))
        self.assert_scenario_passed(name)
        text, _ = self.out[name]
        # The kernel device, not a soft GPU, was behind the vGPU.
        self.assertRegex(text, r"(?m)^# backend: vfio 0000:00:03\.0 \(legacy container, IOMMU group \d+\)")
        for step in ("registers", "gtt-shadowing", "engine", "reset"):
            self.assertRegex(text, rf"(?m)^ok \d+ /x86_64/rust-vgpu/scenario/{step}$")

    def test_the_backends_agree(self):
        soft = self.nested.path("soft.txt").read_text()
        vfio = self.nested.path("vfio.txt").read_text()
        self.assertGreater(len(soft.splitlines()), 30, soft)
        self.assertEqual(soft.splitlines(), vfio.splitlines())

    def test_sysfsdev_opens_the_same_device(self):
        self.assert_scenario_passed("scenario vfio sysfsdev, config only")
        config = [line for line in self.nested.path("soft.txt").read_text().splitlines()
                  if line.startswith("config:")]
        self.assertEqual(self.nested.path("sysfsdev.txt").read_text().splitlines(), config)

    def assert_migrated(self, name, source, destination):
        text, rc = self.section(f"migration {name}")
        self.assertEqual(rc, 0, f"migration {name} failed:\n{text}")
        for test in MIGRATION_TESTS:
            self.assertRegex(text, rf"(?m)^ok \d+ /x86_64/rust-vgpu/migration/{test}$")
        self.assertNotRegex(text, r"(?m)^not ok")
        for side, backend in (("source", source), ("destination", destination)):
            self.assertRegex(text, rf"(?m)^# {side} backend: {backend}")

    def test_migrates_between_two_kernel_devices(self):
        self.assert_migrated("host=0000:00:03.0 -> host=0000:00:05.0",
                             r"vfio 0000:00:03\.0", r"vfio 0000:00:05\.0")

    def test_migrates_from_the_soft_gpu_to_a_kernel_device(self):
        self.assert_migrated("soft -> host=0000:00:05.0", "soft", r"vfio 0000:00:05\.0")

    def test_migrates_from_a_kernel_device_to_the_soft_gpu(self):
        self.assert_migrated("host=0000:00:03.0 -> soft", r"vfio 0000:00:03\.0", "soft")

    def test_the_scenario_goes_on_after_migrating_between_kernel_devices(self):
        name = "scenario vfio host=0000:00:03.0 migrated to host=0000:00:05.0"
        self.assert_scenario_passed(name)
        text, _ = self.out[name]
        self.assertRegex(text, r"(?m)^ok \d+ /x86_64/rust-vgpu/scenario/migrate$")
        self.assertRegex(text, r"(?m)^# backend: vfio 0000:00:05\.0")
        for step in ("engine", "reset"):
            self.assertRegex(text, rf"(?m)^ok \d+ /x86_64/rust-vgpu/scenario/{step}$")
        soft = self.nested.path("soft.txt").read_text().splitlines()
        self.assertEqual(self.nested.path("migrated.txt").read_text().splitlines(), soft)

    def assert_refused(self, name, *wanted):
        text, rc = self.section(f"refuse {name}")
        self.assertEqual(rc, 1, f"QEMU did not refuse {name} (status {rc}):\n{text}")
        for want in wanted:
            self.assertIn(want, text)

    def test_refuses_a_missing_device(self):
        self.assert_refused("no-such-device", "property 'host' is '0000:7f:00.0': ",
                            "no such")

    def test_refuses_a_bad_address(self):
        self.assert_refused("bad-address", "property 'host' is '00:03': ", "not a PCI address")

    def test_refuses_host_and_sysfsdev_together(self):
        self.assert_refused("both", "properties 'host' (", "and 'sysfsdev' (", "give one")

    def test_refuses_a_device_not_bound_to_vfio_pci(self):
        self.assert_refused("not-vfio-pci", "not bound to vfio-pci (bound to 'virtio-pci')")

    def test_refuses_a_device_that_is_not_rvg1(self):
        self.assert_refused("not-rvg1", f"property 'host' is '{EDU_ADDR}': ",
                            "not an RVG-1 GPU: 1234:11e8")

    def test_refuses_iommufd_where_the_kernel_has_none(self):
        self.assert_refused("no-iommufd", "the kernel offers no iommufd")

    def test_refuses_an_unknown_vfio_iommu(self):
        self.assert_refused("bad-vfio-iommu", "property 'vfio-iommu' is 'type1': ")

    def test_refuses_without_permission(self):
        self.assert_refused("permission", "permission denied opening /dev/vfio/")


if __name__ == "__main__":
    unittest.main()
