/*
 * rust-vgpu qtests: the device in a real QEMU, driven through PCI.
 *
 * Enumeration and identity, BAR sizing, the global registers, and the
 * interrupt path in its three modes (MSI-X, MSI, INTx).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"

#include "libqos/pci-pc.h"

#include "rvg-engine.h"

/* ---- identity ---- */

static void test_identity(void)
{
    Rvg *r = rvg_start(NULL);

    g_assert_cmphex(qpci_config_readw(r->dev, PCI_VENDOR_ID), ==, 0x1234);
    g_assert_cmphex(qpci_config_readw(r->dev, PCI_DEVICE_ID), ==, 0x1111);
    g_assert_cmphex(qpci_config_readw(r->dev, PCI_SUBSYSTEM_VENDOR_ID), ==,
                    RVG_PCI_SUBSYSTEM_VENDOR_ID);
    g_assert_cmphex(qpci_config_readw(r->dev, PCI_SUBSYSTEM_ID), ==,
                    RVG_PCI_SUBSYSTEM_ID);
    g_assert_cmphex(qpci_config_readb(r->dev, PCI_REVISION_ID), ==, 2);
    g_assert_cmphex(qpci_config_readw(r->dev, PCI_CLASS_DEVICE), ==, 0x0380);
    g_assert_cmphex(qpci_config_readb(r->dev, PCI_CLASS_PROG), ==, 0);
    g_assert_cmphex(qpci_config_readb(r->dev, PCI_INTERRUPT_PIN), ==, 1);
    rvg_stop(r);
}

static void test_hw_model_identity(void)
{
    QOSState *qs = qtest_pc_boot("-nodefaults -device rust-vgpu-hw");
    QPCIDevice *dev = NULL;

    qpci_device_foreach(qs->pcibus, RVG_PCI_VENDOR_ID, 0x1111, save_dev, &dev);
    g_assert_null(dev);
    qpci_device_foreach(qs->pcibus, RVG_PCI_VENDOR_ID, RVG_PCI_DEVICE_ID_HW,
                        save_dev, &dev);
    g_assert_nonnull(dev);
    g_assert_cmphex(qpci_config_readw(dev, PCI_SUBSYSTEM_ID), ==,
                    RVG_PCI_SUBSYSTEM_ID);
    g_free(dev);
    qtest_pc_shutdown(qs);
}

/* ---- BAR sizing, as firmware does it ---- */

typedef struct BarProbe {
    uint64_t size;
    uint32_t flags; /* low 4 bits of the BAR */
} BarProbe;

static BarProbe probe_bar(QPCIDevice *dev, int bar)
{
    uint8_t reg = PCI_BASE_ADDRESS_0 + bar * 4;
    uint32_t lo = qpci_config_readl(dev, reg);
    BarProbe p = { .flags = lo & 0xf };
    bool is64 = (lo & PCI_BASE_ADDRESS_MEM_TYPE_MASK) ==
                PCI_BASE_ADDRESS_MEM_TYPE_64;
    uint64_t mask;

    qpci_config_writel(dev, reg, 0xffffffff);
    mask = qpci_config_readl(dev, reg) & PCI_BASE_ADDRESS_MEM_MASK;
    if (is64) {
        uint32_t hi = qpci_config_readl(dev, reg + 4);

        qpci_config_writel(dev, reg + 4, 0xffffffff);
        mask |= (uint64_t)qpci_config_readl(dev, reg + 4) << 32;
        qpci_config_writel(dev, reg + 4, hi);
    } else if (mask) {
        mask |= 0xffffffff00000000ULL;
    }
    qpci_config_writel(dev, reg, lo);
    /* An unimplemented BAR reads back as zero: size 0. */
    p.size = mask ? ~mask + 1 : 0;
    return p;
}

static void check_bars(const char *extra, uint64_t vram)
{
    Rvg *r = rvg_start(extra);
    BarProbe p;

    p = probe_bar(r->dev, RVG_BAR_VRAM);
    g_assert_cmphex(p.flags, ==, PCI_BASE_ADDRESS_SPACE_MEMORY |
                    PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH);
    g_assert_cmphex(p.size, ==, vram);

    p = probe_bar(r->dev, RVG_BAR_MMIO);
    g_assert_cmphex(p.flags, ==, PCI_BASE_ADDRESS_SPACE_MEMORY |
                    PCI_BASE_ADDRESS_MEM_TYPE_64);
    g_assert_cmphex(p.size, ==, RVG_MMIO_SIZE);

    p = probe_bar(r->dev, RVG_BAR_MSIX);
    g_assert_cmphex(p.flags, ==, PCI_BASE_ADDRESS_SPACE_MEMORY);
    g_assert_cmphex(p.size, ==, 4 * KiB);

    /* BARs 1, 3 are the upper halves; 5 is unimplemented. */
    g_assert_cmphex(probe_bar(r->dev, 5).size, ==, 0);
    rvg_stop(r);
}

static void test_bar_sizing_default(void)
{
    check_bars(NULL, 64 * MiB);
}

static void test_bar_sizing_vram_property(void)
{
    check_bars(",vram-size=16M", 16 * MiB);
}

static void test_bad_vram_size_fails_realize(void)
{
    QTestState *qts = qtest_init("-machine pc");
    QDict *resp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments':"
                            " {'driver': 'rust-vgpu', 'vram-size': 3145728}}");
    QDict *err = qdict_get_qdict(resp, "error");
    const char *desc;

    g_assert_nonnull(err);
    desc = qdict_get_str(err, "desc");
    g_assert_nonnull(strstr(desc, "'vram-size'"));
    g_assert_nonnull(strstr(desc, "3145728 (3 MiB)"));
    qobject_unref(resp);
    qtest_quit(qts);
}

static void test_properties_are_described(void)
{
    QTestState *qts = qtest_init("-machine none");
    QDict *resp = qtest_qmp(qts, "{'execute': 'device-list-properties',"
                            " 'arguments': {'typename': 'rust-vgpu'}}");
    QList *props = qdict_get_qlist(resp, "return");
    QListEntry *e;
    bool found = false;

    g_assert_nonnull(props);
    QLIST_FOREACH_ENTRY(props, e) {
        QDict *p = qobject_to(QDict, qlist_entry_obj(e));

        if (!strcmp(qdict_get_str(p, "name"), "vram-size")) {
            found = true;
            g_assert_nonnull(strstr(qdict_get_try_str(p, "description"),
                                    "power of two"));
        }
    }
    g_assert_true(found);
    qobject_unref(resp);
    qtest_quit(qts);
}

/* ---- global registers ---- */

static void test_id_registers(void)
{
    Rvg *r = rvg_start(",vram-size=32M");

    rvg_enable(r);
    g_assert_cmphex(greg_read(r, RVG_REG_ID), ==, RVG_ID_VALUE);
    g_assert_cmphex(greg_read(r, RVG_REG_VERSION), ==, RVG_VERSION_VALUE);
    g_assert_cmphex(qpci_io_readq(r->dev, r->mmio, RVG_GLOBAL + RVG_REG_VRAM_SIZE),
                    ==, 32 * MiB);
    /* Read-only: a write changes nothing. */
    greg_write(r, RVG_REG_ID, 0);
    g_assert_cmphex(greg_read(r, RVG_REG_ID), ==, RVG_ID_VALUE);
    rvg_stop(r);
}

static void test_memory_decode_gates_bar2(void)
{
    Rvg *r = rvg_start(NULL);
    uint16_t cmd;

    rvg_enable(r);
    g_assert_cmphex(greg_read(r, RVG_REG_ID), ==, RVG_ID_VALUE);
    cmd = qpci_config_readw(r->dev, PCI_COMMAND);
    qpci_config_writew(r->dev, PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY);
    /* Nothing decodes the address any more: unassigned reads. */
    g_assert_cmphex(greg_read(r, RVG_REG_ID), !=, RVG_ID_VALUE);
    qpci_config_writew(r->dev, PCI_COMMAND, cmd);
    g_assert_cmphex(greg_read(r, RVG_REG_ID), ==, RVG_ID_VALUE);
    rvg_stop(r);
}

static void test_scratch_all_sizes(void)
{
    Rvg *r = rvg_start(NULL);
    uint64_t s = RVG_GLOBAL + RVG_REG_SCRATCH;

    rvg_enable(r);
    qpci_io_writeq(r->dev, r->mmio, s, 0x0123456789abcdefULL);
    g_assert_cmphex(qpci_io_readq(r->dev, r->mmio, s), ==, 0x0123456789abcdefULL);
    g_assert_cmphex(qpci_io_readl(r->dev, r->mmio, s + 4), ==, 0x01234567);
    g_assert_cmphex(qpci_io_readw(r->dev, r->mmio, s + 2), ==, 0x89ab);
    g_assert_cmphex(qpci_io_readb(r->dev, r->mmio, s + 1), ==, 0xcd);

    qpci_io_writel(r->dev, r->mmio, s + 4, 0xdeadbeef);
    qpci_io_writew(r->dev, r->mmio, s + 2, 0x5a5a);
    qpci_io_writeb(r->dev, r->mmio, s + 1, 0x11);
    g_assert_cmphex(qpci_io_readq(r->dev, r->mmio, s), ==, 0xdeadbeef5a5a11efULL);

    /* Misaligned: ignored (and logged), the register is unchanged. */
    qpci_io_writel(r->dev, r->mmio, s + 2, 0);
    g_assert_cmphex(qpci_io_readq(r->dev, r->mmio, s), ==, 0xdeadbeef5a5a11efULL);
    rvg_stop(r);
}

static void test_reset_clears_state(void)
{
    Rvg *r = rvg_start(NULL);

    rvg_enable(r);
    greg_write(r, RVG_REG_SCRATCH, 0x55aa55aa);
    /* A wrong value is ignored. */
    greg_write(r, RVG_REG_RESET, 1);
    g_assert_cmphex(greg_read(r, RVG_REG_SCRATCH), ==, 0x55aa55aa);
    greg_write(r, RVG_REG_RESET, RVG_RESET_MAGIC);
    g_assert_cmphex(greg_read(r, RVG_REG_SCRATCH), ==, 0);

    greg_write(r, RVG_REG_SCRATCH, 0x1234);
    qtest_system_reset(r->qs->qts);
    rvg_enable(r);
    g_assert_cmphex(greg_read(r, RVG_REG_SCRATCH), ==, 0);
    rvg_stop(r);
}

/* ---- interrupts ---- */

#define MSG_DATA 0x4242u

/*
 * Fire the software interrupt source and wait until it is latched: it
 * travels through the GPU and back on an eventfd the main loop handles.
 */
static void trigger(Rvg *r)
{
    greg_write(r, RVG_REG_INT_TRIGGER, RVG_INT_SOFTWARE);
    rvg_wait_status(r, RVG_INT_SOFTWARE);
}

static void test_msix(void)
{
    Rvg *r = rvg_start(NULL);
    uint64_t msg = guest_alloc(&r->qs->alloc, 4);
    uint64_t entry;
    QTestState *qts = r->qs->qts;

    rvg_enable(r);
    qpci_msix_enable(r->dev);
    g_assert_cmpint(qpci_msix_table_size(r->dev), ==, RVG_MSIX_VECTORS);
    entry = r->dev->msix_table_off;
    qpci_io_writel(r->dev, r->dev->msix_table_bar,
                   entry + PCI_MSIX_ENTRY_LOWER_ADDR, msg & 0xffffffff);
    qpci_io_writel(r->dev, r->dev->msix_table_bar,
                   entry + PCI_MSIX_ENTRY_UPPER_ADDR, msg >> 32);
    qpci_io_writel(r->dev, r->dev->msix_table_bar,
                   entry + PCI_MSIX_ENTRY_DATA, MSG_DATA);

    greg_write(r, RVG_REG_INT_ENABLE, RVG_INT_SOFTWARE);

    /* Vector masked: nothing is written, the PBA bit is set. */
    qtest_writel(qts, msg, 0);
    trigger(r);
    g_assert_cmphex(qtest_readl(qts, msg), ==, 0);
    g_assert_true(qpci_msix_pending(r->dev, 0));

    /* Unmasking delivers the pending message. */
    qpci_io_writel(r->dev, r->dev->msix_table_bar,
                   entry + PCI_MSIX_ENTRY_VECTOR_CTRL, 0);
    g_assert_cmphex(qtest_readl(qts, msg), ==, MSG_DATA);
    g_assert_false(qpci_msix_pending(r->dev, 0));

    /* Clear, trigger again: a fresh message. */
    greg_write(r, RVG_REG_INT_STATUS, RVG_INT_SOFTWARE);
    qtest_writel(qts, msg, 0);
    trigger(r);
    g_assert_cmphex(qtest_readl(qts, msg), ==, MSG_DATA);
    g_assert_cmphex(greg_read(r, RVG_REG_INT_STATUS), ==, RVG_INT_SOFTWARE);

    /* INTx stays quiet in MSI-X mode. */
    g_assert_false(qpci_config_readw(r->dev, PCI_STATUS) & PCI_STATUS_INTERRUPT);
    qpci_msix_disable(r->dev);
    rvg_stop(r);
}

static void test_msi(void)
{
    Rvg *r = rvg_start(NULL);
    uint64_t msg = guest_alloc(&r->qs->alloc, 4);
    QTestState *qts = r->qs->qts;
    uint8_t cap;
    uint16_t flags;

    rvg_enable(r);
    cap = qpci_find_capability(r->dev, PCI_CAP_ID_MSI, 0);
    g_assert_cmpint(cap, !=, 0);
    flags = qpci_config_readw(r->dev, cap + PCI_MSI_FLAGS);
    g_assert_true(flags & PCI_MSI_FLAGS_64BIT);
    g_assert_true(flags & PCI_MSI_FLAGS_MASKBIT);

    qpci_config_writel(r->dev, cap + PCI_MSI_ADDRESS_LO, msg & 0xffffffff);
    qpci_config_writel(r->dev, cap + PCI_MSI_ADDRESS_HI, msg >> 32);
    qpci_config_writew(r->dev, cap + PCI_MSI_DATA_64, MSG_DATA);
    qpci_config_writew(r->dev, cap + PCI_MSI_FLAGS, flags | PCI_MSI_FLAGS_ENABLE);
    greg_write(r, RVG_REG_INT_ENABLE, RVG_INT_SOFTWARE);

    qtest_writel(qts, msg, 0);
    trigger(r);
    g_assert_cmphex(qtest_readl(qts, msg), ==, MSG_DATA);

    /* Masked vector: held pending, delivered on unmask. */
    greg_write(r, RVG_REG_INT_STATUS, RVG_INT_SOFTWARE);
    qpci_config_writel(r->dev, cap + PCI_MSI_MASK_64, 1);
    qtest_writel(qts, msg, 0);
    trigger(r);
    g_assert_cmphex(qtest_readl(qts, msg), ==, 0);
    g_assert_cmphex(qpci_config_readl(r->dev, cap + PCI_MSI_PENDING_64), ==, 1);
    qpci_config_writel(r->dev, cap + PCI_MSI_MASK_64, 0);
    g_assert_cmphex(qtest_readl(qts, msg), ==, MSG_DATA);

    g_assert_false(qpci_config_readw(r->dev, PCI_STATUS) & PCI_STATUS_INTERRUPT);
    rvg_stop(r);
}

/*
 * INTx on the pc machine: route every PIIX3 PIRQ line to one ISA IRQ and
 * watch that IOAPIC input, as well as the function's Interrupt Status bit.
 */
#define PIIX3_DEVFN QPCI_DEVFN(1, 0)
#define PIIX3_PIRQRC 0x60
#define INTX_GSI 11

static bool intx_level(Rvg *r)
{
    bool status = qpci_config_readw(r->dev, PCI_STATUS) & PCI_STATUS_INTERRUPT;
    bool line = qtest_get_irq(r->qs->qts, INTX_GSI);

    g_assert_cmpint(status, ==, line);
    return line;
}

static void test_intx(void)
{
    Rvg *r = rvg_start(NULL);
    QPCIDevice *isa = qpci_device_find(r->qs->pcibus, PIIX3_DEVFN);
    uint16_t cmd;

    for (int pirq = 0; pirq < 4; pirq++) {
        qpci_config_writeb(isa, PIIX3_PIRQRC + pirq, INTX_GSI);
    }
    qtest_irq_intercept_in(r->qs->qts, "ioapic");
    rvg_enable(r);

    greg_write(r, RVG_REG_INT_ENABLE, RVG_INT_SOFTWARE);
    g_assert_false(intx_level(r));
    trigger(r);
    g_assert_true(intx_level(r));
    /* Clearing the cause drops the line. */
    greg_write(r, RVG_REG_INT_STATUS, RVG_INT_SOFTWARE);
    g_assert_false(intx_level(r));

    /* Disabling the source drops it too, re-enabling raises it again. */
    trigger(r);
    g_assert_true(intx_level(r));
    greg_write(r, RVG_REG_INT_ENABLE, 0);
    g_assert_false(intx_level(r));
    greg_write(r, RVG_REG_INT_ENABLE, RVG_INT_SOFTWARE);
    g_assert_true(intx_level(r));

    /* Command register INTx Disable masks the pin, not the status. */
    cmd = qpci_config_readw(r->dev, PCI_COMMAND);
    qpci_config_writew(r->dev, PCI_COMMAND, cmd | PCI_COMMAND_INTX_DISABLE);
    g_assert_false(qtest_get_irq(r->qs->qts, INTX_GSI));
    qpci_config_writew(r->dev, PCI_COMMAND, cmd);
    g_assert_true(intx_level(r));

    greg_write(r, RVG_REG_INT_STATUS, RVG_INT_SOFTWARE);
    g_assert_false(intx_level(r));
    g_free(isa);
    rvg_stop(r);
}

/*
 * Hot-plug a vGPU, give it work that pins guest RAM, unplug it the way the
 * guest's ACPI code would: QEMU carries on and the device is gone.
 */
#define HOTPLUG_SLOT 5

static void test_hotplug_unplug(void)
{
    QOSState *qs = qtest_pc_boot("-nodefaults");
    QTestState *qts = qs->qts;
    uint64_t page = ROUND_UP(guest_alloc(&qs->alloc, 2 * 4096), 4096);
    QPCIDevice *dev;
    QPCIBar mmio;
    g_autofree char *before = NULL;
    g_autofree char *after = NULL;
    QDict *resp;

    g_autofree char *addr = g_strdup_printf("%x", HOTPLUG_SLOT);

    qtest_qmp_device_add(qts, "rust-vgpu", "hp0", "{'addr': %s, 'vram-size': %d}",
                         addr, (int)(16 * MiB));
    dev = qpci_device_find(qs->pcibus, QPCI_DEVFN(HOTPLUG_SLOT, 0));
    g_assert_nonnull(dev);
    mmio = qpci_iomap(dev, RVG_BAR_MMIO, NULL);
    rvg_pci_enable(dev);
    qpci_io_writeq(dev, mmio, RVG_GTT, page | 1);
    before = qtest_hmp(qts, "info rust-vgpu");
    g_assert_nonnull(strstr(before, "\"hp0\""));
    g_assert_nonnull(strstr(before, "pinned-pages: 1"));

    qpci_unplug_acpi_device_test(qts, "hp0", HOTPLUG_SLOT);
    after = qtest_hmp(qts, "info rust-vgpu");
    g_assert_cmpstr(after, ==, "no rust-vgpu devices\r\n");
    resp = qtest_qmp(qts, "{'execute': 'query-status'}");
    g_assert_true(qdict_haskey(resp, "return"));
    qobject_unref(resp);
    g_free(dev);
    qtest_pc_shutdown(qs);
}

/*
 * The unplug rule: a vGPU leaves the bus with engine work in flight whose
 * last fence interrupts (INTx, the guest never enabled MSI). Its GPU's
 * engine is held (the x-engine-hold test hook) so the work is certainly in
 * flight when the guest's ACPI code ejects the device, and released after:
 * nothing of that work may call into QEMU for the device that left (a
 * fence arriving then once aborted QEMU in pci_set_irq). The vGPU beside
 * it on the same GPU keeps working.
 */
static void test_hotplug_unplug_busy(void)
{
    QOSState *qs = qtest_pc_boot("-nodefaults "
                                 "-object rust-vgpu-gpu,id=gpu0,vram-size=64M,"
                                 "x-engine-hold=on "
                                 "-device rust-vgpu,id=stay,gpu=gpu0,"
                                 "vram-size=16M,addr=04.0");
    QTestState *qts = qs->qts;
    g_autofree char *addr = g_strdup_printf("%x", HOTPLUG_SLOT);
    g_autofree char *after = NULL;
    Rvg gone = { .qs = qs }, stay = { .qs = qs };
    Eng e, s;
    QDict *resp;

    qtest_qmp_device_add(qts, "rust-vgpu", "hp0",
                         "{'addr': %s, 'vram-size': %d, 'gpu': 'gpu0'}",
                         addr, (int)(16 * MiB));
    gone.dev = qpci_device_find(qs->pcibus, QPCI_DEVFN(HOTPLUG_SLOT, 0));
    stay.dev = qpci_device_find(qs->pcibus, QPCI_DEVFN(4, 0));
    g_assert_nonnull(gone.dev);
    g_assert_nonnull(stay.dev);
    eng_init(&e, &gone, 4096);
    eng_init(&s, &stay, 4096);
    SUBMIT(&e, FILL_RECT(0, 4096, 1024, 256, 1), FILL_RECT(0, 4096, 1024, 256, 2),
           STORE_DW(0x8000, 3), FENCE(1, true));
    qpci_unplug_acpi_device_test(qts, "hp0", HOTPLUG_SLOT);

    qtest_qmp_assert_success(qts, "{'execute': 'qom-set', 'arguments': {"
                             "'path': '/objects/gpu0', "
                             "'property': 'x-engine-hold', 'value': false}}");
    SUBMIT(&s, STORE_DW(0x8000, 5), FENCE(2, true));
    eng_wait_idle(&s);
    g_assert_cmpuint(eng_read(&s, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmpuint(eng_read(&s, RVG_ENGINE_SEQNO), ==, 2);
    g_assert_cmphex(eng_vram_readl(&s, 0x8000), ==, 5);

    /* A few more turns of the main loop: QEMU is alive, the device gone. */
    for (int i = 0; i < 10; i++) {
        g_usleep(10 * 1000);
        resp = qtest_qmp(qts, "{'execute': 'query-status'}");
        g_assert_true(qdict_haskey(resp, "return"));
        qobject_unref(resp);
    }
    after = qtest_hmp(qts, "info rust-vgpu");
    g_assert_null(strstr(after, "\"hp0\""));
    g_assert_nonnull(strstr(after, "\"stay\""));
    g_free(gone.dev);
    g_free(stay.dev);
    qtest_pc_shutdown(qs);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    qtest_add_func("/rust-vgpu/identity", test_identity);
    qtest_add_func("/rust-vgpu/hw-model-identity", test_hw_model_identity);
    qtest_add_func("/rust-vgpu/bar-sizing/default", test_bar_sizing_default);
    qtest_add_func("/rust-vgpu/bar-sizing/vram-size", test_bar_sizing_vram_property);
    qtest_add_func("/rust-vgpu/properties/bad-vram-size", test_bad_vram_size_fails_realize);
    qtest_add_func("/rust-vgpu/properties/described", test_properties_are_described);
    qtest_add_func("/rust-vgpu/regs/id", test_id_registers);
    qtest_add_func("/rust-vgpu/regs/memory-decode", test_memory_decode_gates_bar2);
    qtest_add_func("/rust-vgpu/regs/scratch", test_scratch_all_sizes);
    qtest_add_func("/rust-vgpu/regs/reset", test_reset_clears_state);
    qtest_add_func("/rust-vgpu/irq/msix", test_msix);
    qtest_add_func("/rust-vgpu/irq/msi", test_msi);
    qtest_add_func("/rust-vgpu/irq/intx", test_intx);
    qtest_add_func("/rust-vgpu/hotplug", test_hotplug_unplug);
    qtest_add_func("/rust-vgpu/hotplug/busy", test_hotplug_unplug_busy);

    return g_test_run();
}
