#!/usr/bin/env python3
"""Many VMs on one GPU: SR-IOV VFs through stock vfio-pci, in a nested guest.

    guest/vfio/test_sriov.py [-v]

One L0 boot (guest/vfio/nested.py) with a rust-vgpu-hw,vfs=4 at 00:06.0.
In L1, Debian's kernel binds the PF to pci-pf-stub, creates the VFs with
sriov_numvfs and binds each to vfio-pci, each in an IOMMU group of its
own; the host sets VF 1's engine quantum and the preemption timeout in
the PF's SR-IOV block through sysfs. Then several L1 QEMU processes run at once, one VF each, as
separate VMs (-device rust-vgpu,host=VF,gfx-size=64M):

- the qtest scenario on all four VFs at once; each transcript matches a
  soft-GPU run with the same properties line for line;
- tenants (qtest/rust-vgpu-tenant-test.c): an attacker on VF 0 aims GTT
  entries and commands at every address it can express, two victims on
  VFs 1 and 2 keep canaries in VRAM and RAM and fill without a break, and
  a runaway on VF 3 keeps the engine busy until its QEMU is killed with
  SIGKILL. A new VM then gets VF 3 while the others run: it works, and
  finds nothing of the runaway's canaries. Every victim finishes with its
  canaries intact and reports its fills (the fairness figures).
"""

import re
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from boot import default_qemu  # noqa: E402
from nested import NestedCase  # noqa: E402

BUILD = Path(default_qemu()).parent
PF_ADDR = "0000:00:06.0"
# 512 MiB for 4 VFs: 128 MiB partitions of 32768 GTT entries each, which
# hold the mediator's reserved MiB and a 64 MiB vGPU of 64 MiB graphics
# space (16384 entries).
PF_DEVICE = f"rust-vgpu-hw,addr={PF_ADDR.split(':')[2]},vfs=4,vram-size=512M"
VFS = 4
VF_PROPS = ",gfx-size=64M"
VF_GTT_ENTRIES = 16384
# How long the victims fill: long enough to span the runaway's kill and
# its successor's whole run.
VICTIM_SECONDS = 40

# Run in L1 in the work directory.
SCRIPT = r"""
qemu=@BUILD@/qemu-system-x86_64
export QTEST_QEMU_BINARY=$qemu
scenario=@BUILD@/tests/qtest/rust-vgpu/rust-vgpu-scenario-test
tenant=@BUILD@/tests/qtest/rust-vgpu/rust-vgpu-tenant-test
pf=@PF@
pfdev=/sys/bus/pci/devices/$pf
group() { basename "$(readlink /sys/bus/pci/devices/$1/iommu_group)"; }
driver() { basename "$(readlink /sys/bus/pci/devices/$1/driver)"; }

echo "== sriov"
echo pci-pf-stub >$pfdev/driver_override
echo $pf >/sys/bus/pci/drivers_probe
echo "pf $pf driver $(driver $pf) group $(group $pf) totalvfs $(cat $pfdev/sriov_totalvfs)"
echo @VFS@ >$pfdev/sriov_numvfs
rc=$?
vfs=
for link in $pfdev/virtfn*; do
    vf=$(basename "$(readlink $link)")
    vfs="$vfs $vf"
    echo vfio-pci >/sys/bus/pci/devices/$vf/driver_override
    echo $vf >/sys/bus/pci/drivers_probe
    echo "vf $vf id $(cat /sys/bus/pci/devices/$vf/vendor):$(cat /sys/bus/pci/devices/$vf/device)" \
        "driver $(driver $vf) group $(group $vf)"
done
echo "== rc $rc"
set -- $vfs

# The host sets VF 1's engine quantum and the preemption timeout in the
# PF's SR-IOV block (BAR2 0x4000: QUANTUM_VF1 at 0x18, PREEMPT_TIMEOUT_US
# at 0x54) through sysfs, as docs/sriov.md shows.
echo "== quantum"
python3 - $pf <<'PY'
import mmap, os, struct, sys
dev = "/sys/bus/pci/devices/" + sys.argv[1]
with open(dev + "/config", "r+b") as c:  # Memory Space on
    c.seek(4)
    cmd = struct.unpack("<H", c.read(2))[0]
    c.seek(4)
    c.write(struct.pack("<H", cmd | 2))
fd = os.open(dev + "/resource2", os.O_RDWR | os.O_SYNC)
regs = memoryview(mmap.mmap(fd, 2 << 20)).cast("I")
before = regs[0x4018 // 4], regs[0x4054 // 4]
regs[0x4018 // 4] = 4000
regs[0x4054 // 4] = 50000
print("total_vfs", regs[0x4000 // 4], "quantum_vf1", before[0], "->", regs[0x4018 // 4],
      "preempt_timeout_us", before[1], "->", regs[0x4054 // 4])
PY
echo "== rc $?"

echo "== scenario soft@PROPS@"
RVG_SCENARIO_DEVICE="@PROPS@" RVG_SCENARIO_GTT_ENTRIES=@GTT@ \
    RVG_SCENARIO_TRANSCRIPT=$RVG_WORK/soft.txt timeout 300 $scenario --tap -k
echo "== rc $?"

# One VM per VF, all at once. Each run is bounded: a hang fails (124).
i=0
for vf; do
    (RVG_SCENARIO_DEVICE=",host=$vf@PROPS@" RVG_SCENARIO_GTT_ENTRIES=@GTT@ \
        RVG_SCENARIO_TRANSCRIPT=$RVG_WORK/vf$i.txt timeout 300 $scenario --tap -k \
        >$RVG_WORK/scenario$i.log 2>&1; echo $? >$RVG_WORK/scenario$i.rc) &
    i=$((i + 1))
done
wait
i=0
for vf; do
    echo "== scenario vf$i host=$vf"
    cat $RVG_WORK/scenario$i.log
    echo "== rc $(cat $RVG_WORK/scenario$i.rc)"
    i=$((i + 1))
done

# A VF by its sysfs path, as by its address.
echo "== scenario vf0 sysfsdev, config only"
RVG_SCENARIO_DEVICE=",sysfsdev=/sys/bus/pci/devices/$1,vfio-iommu=legacy@PROPS@" \
    RVG_SCENARIO_GTT_ENTRIES=@GTT@ timeout 300 $scenario --tap -k \
    -p /x86_64/rust-vgpu/scenario/config
echo "== rc $?"

# Tenants: $1 attacker, $2 and $3 victims, $4 a runaway killed mid-work,
# then a new VM on $4.
tenant() {
    name=$1 vf=$2 role=$3 secs=$4
    (RVG_TENANT_DEVICE=",host=$vf@PROPS@" RVG_TENANT_ROLE=$role RVG_TENANT_SECONDS=$secs \
        timeout 400 $tenant --tap -k >$RVG_WORK/$name.log 2>&1; echo $? >$RVG_WORK/$name.rc) &
}
tenant runaway $4 runaway 0
tries=1200
until grep -q "tenant runaway busy" $RVG_WORK/runaway.log 2>/dev/null; do
    tries=$((tries - 1))
    [ $tries -gt 0 ] || break
    sleep 0.1
done
tenant attacker $1 attacker @SECONDS@
tenant victim1 $2 victim @SECONDS@
tenant victim2 $3 victim @SECONDS@
# Let the victims get going, then kill the runaway's VM with its work in
# flight, and give its VF to a new VM while the others run.
sleep 8
echo "== kill"
pkill -KILL -f "rust-vgpu,host=$4"
rc=$?
echo "killed the VM on $4 while its engine was busy"
echo "== rc $rc"
sleep 1
tenant successor $4 victim 2
wait
for name in runaway attacker victim1 victim2 successor; do
    echo "== tenant $name"
    cat $RVG_WORK/$name.log
    echo "== rc $(cat $RVG_WORK/$name.rc)"
done
"""


class NestedSriov(NestedCase):
    extra_devices = (PF_DEVICE,)

    @classmethod
    def l1_script(cls):
        return (SCRIPT.replace("@BUILD@", str(BUILD)).replace("@PF@", PF_ADDR)
                .replace("@VFS@", str(VFS)).replace("@PROPS@", VF_PROPS)
                .replace("@GTT@", str(VF_GTT_ENTRIES))
                .replace("@SECONDS@", str(VICTIM_SECONDS)))

    def vfs(self):
        text, _ = self.section("sriov")
        return re.findall(r"(?m)^vf (\S+) id (\S+) driver (\S+) group (\d+)$", text)

    def test_script_ran_to_the_end(self):
        self.assertEqual(self.rc, 0, self.nested.log())

    def test_stock_drivers_take_the_pf_and_the_vfs(self):
        text, rc = self.section("sriov")
        self.assertEqual(rc, 0, text)
        pf = re.search(r"(?m)^pf (\S+) driver (\S+) group (\d+) totalvfs (\d+)$", text)
        self.assertIsNotNone(pf, text)
        self.assertEqual((pf.group(1), pf.group(2), pf.group(4)),
                         (PF_ADDR, "pci-pf-stub", str(VFS)))
        vfs = self.vfs()
        self.assertEqual(len(vfs), VFS, text)
        for _, ident, driver, _ in vfs:
            self.assertEqual((ident, driver), ("0x1234:0x5257", "vfio-pci"), text)
        # Every VF in an IOMMU group of its own, apart from the PF's.
        groups = [g for *_, g in vfs] + [pf.group(3)]
        self.assertEqual(len(set(groups)), len(groups), text)

    def test_the_host_sets_a_vf_quantum_and_the_timeout_through_the_pf(self):
        text, rc = self.section("quantum")
        self.assertEqual(rc, 0, text)
        self.assertIn(f"total_vfs {VFS} quantum_vf1 1000 -> 4000 "
                      "preempt_timeout_us 100000 -> 50000", text)

    def test_the_scenario_passes_on_every_vf_at_once(self):
        soft = self.nested.path("soft.txt").read_text().splitlines()
        self.assertGreater(len(soft), 30)
        for i, (vf, *_) in enumerate(self.vfs()):
            name = f"scenario vf{i} host={vf}"
            text, rc = self.section(name)
            self.assertEqual(rc, 0, f"{name} failed:\n{text}")
            self.assertNotRegex(text, r"(?m)^not ok")
            self.assertRegex(text, rf"(?m)^# backend: vfio {re.escape(vf)} ")
            for step in ("config", "registers", "gtt-shadowing", "engine", "reset"):
                self.assertRegex(text, rf"(?m)^ok \d+ /x86_64/rust-vgpu/scenario/{step}$")
            self.assertEqual(self.nested.path(f"vf{i}.txt").read_text().splitlines(), soft,
                             f"VF {vf} saw what the soft GPU did not")

    def test_a_vf_opens_by_its_sysfs_path_too(self):
        text, rc = self.section("scenario vf0 sysfsdev, config only")
        self.assertEqual(rc, 0, text)
        vf = self.vfs()[0][0]
        self.assertRegex(text, rf"(?m)^# backend: vfio {re.escape(vf)} ")
        self.assertRegex(text, r"(?m)^ok 1 /x86_64/rust-vgpu/scenario/config$")

    def tenant(self, name):
        text, rc = self.section(f"tenant {name}")
        return text, rc

    def assert_tenant_passed(self, name, steps):
        text, rc = self.tenant(name)
        self.assertEqual(rc, 0, f"tenant {name} failed:\n{text}")
        self.assertNotRegex(text, r"(?m)^not ok")
        for step in steps:
            self.assertRegex(text, rf"(?m)^ok \d+ /x86_64/rust-vgpu/tenant/{step}$")
        return text

    def fills(self, name):
        text = self.assert_tenant_passed(name, ("fresh", "work", "canaries-intact"))
        m = re.search(r"(?m)^# tenant fills (\d+) in ([\d.]+) s$", text)
        self.assertIsNotNone(m, text)
        return int(m.group(1)) / float(m.group(2))

    def test_the_attacker_reaches_nothing_and_is_told(self):
        text = self.assert_tenant_passed("attacker", ("fresh", "attack", "canaries-intact"))
        self.assertRegex(text, r"(?m)^# tenant attack rounds [1-9]\d* in ")

    def test_victims_keep_their_canaries_and_progress_alike(self):
        rates = [self.fills("victim1"), self.fills("victim2")]
        # Both made progress under attack, a runaway and its kill; neither
        # got less than half the other's rate (the figures are in the log).
        self.assertGreater(min(rates), 0)
        self.assertGreater(min(rates) / max(rates), 0.5, rates)
        print(f"victim fill rates: {rates[0]:.1f}/s and {rates[1]:.1f}/s", file=sys.stderr)

    def test_a_killed_vm_leaves_the_others_running_and_its_vf_clean(self):
        text, rc = self.section("kill")
        self.assertEqual(rc, 0, text)
        self.assertIn("busy", text)
        runaway, rc = self.tenant("runaway")
        self.assertNotEqual(rc, 0, "the runaway's QEMU was killed:\n" + runaway)
        self.assertRegex(runaway, r"(?m)^# tenant runaway busy")
        # Its successor on the same VF finds zeros where it left canaries.
        self.fills("successor")


if __name__ == "__main__":
    unittest.main()
