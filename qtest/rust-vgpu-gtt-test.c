/*
 * rust-vgpu qtests: GTT shadowing.
 *
 * The guest's GTT reads back as written; valid entries appear in the vGPU's
 * slice of the physical GTT, relocated and translated (checked through
 * `info rust-vgpu-gtt`, which reads the physical GTT through the VFIO
 * contract); bad entries are rejected with the documented fault; removing
 * guest RAM (pc-dimm hot-unplug) re-points the entries that used it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qobject/qdict.h"

#include "rvg-qtest.h"

/* Where the vGPU's slice sits on its private soft GPU (docs/hardware.md). */
#define SLICE_GTT_BASE 1024
#define SCRATCH_PTE    RVG_GTT_LOCAL

static void gtt_write(Rvg *r, uint32_t index, uint64_t value)
{
    qpci_io_writeq(r->dev, r->mmio, RVG_GTT + index * 8ull, value);
}

static uint64_t gtt_read(Rvg *r, uint32_t index)
{
    return qpci_io_readq(r->dev, r->mmio, RVG_GTT + index * 8ull);
}

/* One entry as `info rust-vgpu-gtt` reports it. */
typedef struct GttView {
    uint64_t guest;
    uint64_t shadow;
    unsigned phys_index;
    char state[32];
} GttView;

static GttView gtt_view(Rvg *r, uint32_t index)
{
    g_autofree char *out = qtest_hmp(r->qs->qts, "info rust-vgpu-gtt v0 %u", index);
    GttView v = { 0 };
    unsigned idx;

    g_assert_cmpint(sscanf(out, "%u: guest=%" SCNx64 " shadow=%" SCNx64
                           " phys-index=%u %31s", &idx, &v.guest, &v.shadow,
                           &v.phys_index, v.state), ==, 5);
    g_assert_cmpuint(idx, ==, index);
    return v;
}

/* A counter from `info rust-vgpu`, e.g. "pinned-pages". */
static uint64_t info_counter(Rvg *r, const char *name)
{
    g_autofree char *key = g_strdup_printf("  %s: ", name);

    return rvg_info_value(r->qs->qts, NULL, key);
}

static Rvg *start(const char *extra)
{
    g_autofree char *args = g_strdup_printf(",id=v0,vram-size=16M%s",
                                            extra ? extra : "");
    Rvg *r = rvg_start(args);

    rvg_enable(r);
    return r;
}

static void test_slice_starts_on_scratch(void)
{
    Rvg *r = start(NULL);
    GttView v = gtt_view(r, 0);

    g_assert_cmphex(greg_read(r, RVG_REG_GTT_ENTRIES), ==, RVG_GTT_ENTRIES_VGPU);
    g_assert_cmphex(v.guest, ==, 0);
    g_assert_cmphex(v.shadow, ==, SCRATCH_PTE);
    g_assert_cmpuint(v.phys_index, ==, SLICE_GTT_BASE);
    g_assert_cmpstr(v.state, ==, "unmapped");
    v = gtt_view(r, RVG_GTT_ENTRIES_VGPU - 1);
    g_assert_cmpuint(v.phys_index, ==, SLICE_GTT_BASE + RVG_GTT_ENTRIES_VGPU - 1);
    rvg_stop(r);
}

static void test_local_entries_relocate(void)
{
    Rvg *r = start(NULL);
    GttView v;

    gtt_write(r, 7, 0x5000 | RVG_GTT_LOCAL | RVG_GTT_VALID);
    g_assert_cmphex(gtt_read(r, 7), ==, 0x5003);
    v = gtt_view(r, 7);
    /* A 16 MiB vGPU's slice sits at 16 MiB in its GPU's VRAM. */
    g_assert_cmphex(v.shadow, ==, (16 * MiB + 0x5000) | RVG_GTT_LOCAL | RVG_GTT_VALID);
    g_assert_cmpuint(v.phys_index, ==, SLICE_GTT_BASE + 7);
    g_assert_cmpstr(v.state, ==, "local");
    g_assert_cmpuint(info_counter(r, "shadowed-entries"), ==, 1);
    rvg_stop(r);
}

static void test_system_entries_share_one_pin(void)
{
    Rvg *r = start(NULL);
    uint64_t page = guest_alloc(&r->qs->alloc, 2 * 4096);

    page = ROUND_UP(page, 4096);
    gtt_write(r, 0, page | RVG_GTT_VALID);
    gtt_write(r, 1, page | RVG_GTT_VALID);
    g_assert_cmphex(gtt_view(r, 0).shadow, ==, page | RVG_GTT_VALID);
    g_assert_cmpstr(gtt_view(r, 1).state, ==, "system");
    g_assert_cmpuint(info_counter(r, "pinned-pages"), ==, 1);

    /* The last user going releases the page. */
    gtt_write(r, 0, 0);
    g_assert_cmpuint(info_counter(r, "pinned-pages"), ==, 1);
    gtt_write(r, 1, 0);
    g_assert_cmpuint(info_counter(r, "pinned-pages"), ==, 0);
    g_assert_cmphex(gtt_view(r, 1).shadow, ==, SCRATCH_PTE);
    rvg_stop(r);
}

static void test_half_writes(void)
{
    Rvg *r = start(NULL);
    uint64_t off = RVG_GTT + 9 * 8;

    qpci_io_writel(r->dev, r->mmio, off, 0x6000 | RVG_GTT_LOCAL | RVG_GTT_VALID);
    /* Half an entry: the guest reads it, the shadow has not moved. */
    g_assert_cmphex(gtt_read(r, 9), ==, 0x6003);
    g_assert_cmpstr(gtt_view(r, 9).state, ==, "unmapped");
    qpci_io_writel(r->dev, r->mmio, off + 4, 0);
    g_assert_cmpstr(gtt_view(r, 9).state, ==, "local");
    g_assert_cmphex(qpci_io_readl(r->dev, r->mmio, off), ==, 0x6003);
    g_assert_cmphex(qpci_io_readl(r->dev, r->mmio, off + 4), ==, 0);
    rvg_stop(r);
}

typedef struct BadEntry {
    const char *what;
    uint64_t value;
    uint32_t reason;
} BadEntry;

static void test_bad_entries_rejected(void)
{
    Rvg *r = start(NULL);
    uint64_t bar0_size;
    QPCIBar bar0 = qpci_iomap(r->dev, RVG_BAR_VRAM, &bar0_size);
    uint64_t msg = guest_alloc(&r->qs->alloc, 4);
    BadEntry bad[] = {
        { "reserved bit 2", 0x100000 | RVG_GTT_VALID | 0x4, RVG_FAULT_GTT_RESERVED_BITS },
        { "reserved bit 11", 0x100000 | RVG_GTT_VALID | 0x800, RVG_FAULT_GTT_RESERVED_BITS },
        { "local past the slice", 16 * MiB | RVG_GTT_LOCAL | RVG_GTT_VALID, RVG_FAULT_GTT_OUTSIDE_VRAM },
        { "local far out", 0xfffffffffffff000ull | RVG_GTT_LOCAL | RVG_GTT_VALID, RVG_FAULT_GTT_OUTSIDE_VRAM },
        { "the vGPU's own BAR0", bar0.addr | RVG_GTT_VALID, RVG_FAULT_GTT_NOT_GUEST_RAM },
        { "BIOS ROM", 0xfffc0000 | RVG_GTT_VALID, RVG_FAULT_GTT_NOT_GUEST_RAM },
        { "IOAPIC MMIO", 0xfec00000 | RVG_GTT_VALID, RVG_FAULT_GTT_NOT_GUEST_RAM },
        { "beyond RAM", 0x7fff00000000ull | RVG_GTT_VALID, RVG_FAULT_GTT_NOT_GUEST_RAM },
    };

    g_assert_cmphex(bar0_size, ==, 16 * MiB);
    /* GTT faults raise MSI-X vector 0. */
    rvg_msix_route(r->dev, msg, 0x77);
    greg_write(r, RVG_REG_INT_ENABLE, RVG_INT_GTT_FAULT);

    for (int i = 0; i < ARRAY_SIZE(bad); i++) {
        GttView v;

        g_test_message("%s: %#" PRIx64, bad[i].what, bad[i].value);
        qtest_writel(r->qs->qts, msg, 0);
        gtt_write(r, 100 + i, bad[i].value);
        g_assert_cmphex(greg_read(r, RVG_REG_FAULT_REASON), ==, bad[i].reason);
        g_assert_cmphex(qpci_io_readq(r->dev, r->mmio, RVG_GLOBAL + RVG_REG_FAULT_ADDR),
                        ==, (100ull + i) << 12);
        g_assert_cmphex(greg_read(r, RVG_REG_INT_STATUS), ==, RVG_INT_GTT_FAULT);
        g_assert_cmphex(qtest_readl(r->qs->qts, msg), ==, 0x77);
        greg_write(r, RVG_REG_INT_STATUS, RVG_INT_GTT_FAULT);

        /* The guest still reads its value; the GPU sees the scratch page. */
        g_assert_cmphex(gtt_read(r, 100 + i), ==, bad[i].value);
        v = gtt_view(r, 100 + i);
        g_assert_cmphex(v.shadow, ==, SCRATCH_PTE);
        g_assert_true(g_str_has_prefix(v.state, "rejected:"));
    }
    g_assert_cmpuint(greg_read(r, RVG_REG_GTT_FAULTS), ==, ARRAY_SIZE(bad));
    g_assert_cmpuint(info_counter(r, "rejected-entries"), ==, ARRAY_SIZE(bad));
    g_assert_cmpuint(info_counter(r, "pinned-pages"), ==, 0);

    /* A valid entry clears the rejection. */
    gtt_write(r, 100, 0x1000 | RVG_GTT_LOCAL | RVG_GTT_VALID);
    g_assert_cmpuint(info_counter(r, "rejected-entries"), ==, ARRAY_SIZE(bad) - 1);
    qpci_msix_disable(r->dev);
    rvg_stop(r);
}

static void test_bad_accesses_ignored(void)
{
    Rvg *r = start(NULL);

    gtt_write(r, 3, 0x2000 | RVG_GTT_LOCAL | RVG_GTT_VALID);
    /* 2- and 1-byte writes, and an entry past the vGPU's GTT, change nothing. */
    qpci_io_writew(r->dev, r->mmio, RVG_GTT + 3 * 8, 0xffff);
    qpci_io_writeb(r->dev, r->mmio, RVG_GTT + 3 * 8 + 1, 0xff);
    gtt_write(r, RVG_GTT_ENTRIES_VGPU, 0x3000 | RVG_GTT_LOCAL | RVG_GTT_VALID);
    g_assert_cmphex(gtt_read(r, 3), ==, 0x2003);
    g_assert_cmphex(gtt_read(r, RVG_GTT_ENTRIES_VGPU), ==, 0);
    g_assert_cmpstr(gtt_view(r, 3).state, ==, "local");
    rvg_stop(r);
}

static void test_reset_releases_everything(void)
{
    Rvg *r = start(NULL);
    uint64_t page = ROUND_UP(guest_alloc(&r->qs->alloc, 2 * 4096), 4096);

    gtt_write(r, 0, page | RVG_GTT_VALID);
    gtt_write(r, 1, 0x1000 | RVG_GTT_LOCAL | RVG_GTT_VALID);
    g_assert_cmpuint(info_counter(r, "pinned-pages"), ==, 1);
    qtest_system_reset(r->qs->qts);
    g_assert_cmpuint(info_counter(r, "pinned-pages"), ==, 0);
    g_assert_cmpuint(info_counter(r, "shadowed-entries"), ==, 0);
    g_assert_cmphex(gtt_view(r, 0).shadow, ==, SCRATCH_PTE);
    g_assert_cmphex(gtt_view(r, 1).guest, ==, 0);
    rvg_stop(r);
}

/*
 * Guest RAM hot-unplug: a pc-dimm, unplugged by doing what the guest's ACPI
 * code does (select the slot, eject) on QEMU's memory hotplug ports.
 */
#define MEMHP_BASE        0x0a00
#define MEMHP_SLOT_SEL    0x00
#define MEMHP_CTRL        0x14
#define MEMHP_CTRL_EJECT  (1 << 3)

static void test_ram_unplug_invalidates(void)
{
    Rvg *r = start(" -m 256M,slots=2,maxmem=1G"
                   " -object memory-backend-ram,id=mem1,size=128M"
                   " -device pc-dimm,id=dimm1,memdev=mem1");
    QTestState *qts = r->qs->qts;
    QDict *resp;
    uint64_t addr;
    int64_t slot;

    resp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments':"
                     " {'path': 'dimm1', 'property': 'addr'}}");
    addr = qdict_get_int(resp, "return");
    qobject_unref(resp);
    resp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments':"
                     " {'path': 'dimm1', 'property': 'slot'}}");
    slot = qdict_get_int(resp, "return");
    qobject_unref(resp);
    g_assert_cmphex(addr, >=, 4 * GiB);

    gtt_write(r, 10, (addr + 0x3000) | RVG_GTT_VALID);
    gtt_write(r, 11, (addr + 0x3000) | RVG_GTT_VALID);
    gtt_write(r, 12, 0x100000 | RVG_GTT_VALID);
    g_assert_cmpstr(gtt_view(r, 10).state, ==, "system");
    g_assert_cmpuint(info_counter(r, "pinned-pages"), ==, 2);

    qtest_qmp_device_del_send(qts, "dimm1");
    qtest_outl(qts, MEMHP_BASE + MEMHP_SLOT_SEL, slot);
    qtest_outb(qts, MEMHP_BASE + MEMHP_CTRL, MEMHP_CTRL_EJECT);
    qtest_qmp_eventwait(qts, "DEVICE_DELETED");

    /* Both users re-pointed at scratch whatever their refcount; the rest stays. */
    for (int i = 10; i <= 11; i++) {
        GttView v = gtt_view(r, i);

        g_assert_cmphex(v.shadow, ==, SCRATCH_PTE);
        g_assert_cmpstr(v.state, ==, "rejected:0x13");
        g_assert_cmphex(v.guest, ==, (addr + 0x3000) | RVG_GTT_VALID);
    }
    g_assert_cmpstr(gtt_view(r, 12).state, ==, "system");
    g_assert_cmpuint(info_counter(r, "pinned-pages"), ==, 1);
    g_assert_cmpuint(info_counter(r, "invalidated-entries"), ==, 2);
    g_assert_cmphex(greg_read(r, RVG_REG_FAULT_REASON), ==, RVG_FAULT_GTT_RAM_REMOVED);
    /* The memory is gone for new entries too. */
    gtt_write(r, 13, (addr + 0x3000) | RVG_GTT_VALID);
    g_assert_cmpstr(gtt_view(r, 13).state, ==, "rejected:0x11");
    rvg_stop(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    qtest_add_func("/rust-vgpu/gtt/slice-starts-on-scratch", test_slice_starts_on_scratch);
    qtest_add_func("/rust-vgpu/gtt/local-relocated", test_local_entries_relocate);
    qtest_add_func("/rust-vgpu/gtt/system-shared-pin", test_system_entries_share_one_pin);
    qtest_add_func("/rust-vgpu/gtt/half-writes", test_half_writes);
    qtest_add_func("/rust-vgpu/gtt/bad-entries", test_bad_entries_rejected);
    qtest_add_func("/rust-vgpu/gtt/bad-accesses", test_bad_accesses_ignored);
    qtest_add_func("/rust-vgpu/gtt/reset", test_reset_releases_everything);
    qtest_add_func("/rust-vgpu/gtt/ram-unplug", test_ram_unplug_invalidates);

    return g_test_run();
}
