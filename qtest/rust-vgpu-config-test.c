/*
 * rust-vgpu qtests: config space semantics, capabilities, PCIe placement,
 * and every register block of BAR2.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "libqos/malloc-pc.h"
#include "libqos/pci-pc.h"

#include "rvg-qtest.h"

/* ---- config space ---- */

static void test_read_only_header(void)
{
    Rvg *r = rvg_start(NULL);
    static const uint8_t ro[] = {
        PCI_VENDOR_ID, PCI_DEVICE_ID, PCI_REVISION_ID, PCI_CLASS_PROG,
        PCI_CLASS_DEVICE, PCI_SUBSYSTEM_VENDOR_ID, PCI_SUBSYSTEM_ID,
        PCI_CAPABILITY_LIST, PCI_INTERRUPT_PIN,
    };

    for (int i = 0; i < ARRAY_SIZE(ro); i++) {
        uint8_t before = qpci_config_readb(r->dev, ro[i]);

        qpci_config_writeb(r->dev, ro[i], ~before);
        g_assert_cmphex(qpci_config_readb(r->dev, ro[i]), ==, before);
    }
    /* Interrupt Line is scratch for software. */
    qpci_config_writeb(r->dev, PCI_INTERRUPT_LINE, 0x5a);
    g_assert_cmphex(qpci_config_readb(r->dev, PCI_INTERRUPT_LINE), ==, 0x5a);
    rvg_stop(r);
}

static void test_command_and_status(void)
{
    Rvg *r = rvg_start(NULL);
    uint16_t rw = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE;
    uint16_t status;

    qpci_config_writew(r->dev, PCI_COMMAND, 0xffff);
    /* Memory, bus master, INTx disable (and SERR/parity, which QEMU keeps);
     * no I/O BARs, so I/O Space Enable reads as zero. */
    g_assert_cmphex(qpci_config_readw(r->dev, PCI_COMMAND) & rw, ==, rw);
    g_assert_false(qpci_config_readw(r->dev, PCI_COMMAND) & PCI_COMMAND_IO);
    qpci_config_writew(r->dev, PCI_COMMAND, 0);
    g_assert_cmphex(qpci_config_readw(r->dev, PCI_COMMAND), ==, 0);

    /* Status: capabilities bit set and read-only; writing ones sets nothing. */
    status = qpci_config_readw(r->dev, PCI_STATUS);
    g_assert_true(status & PCI_STATUS_CAP_LIST);
    qpci_config_writew(r->dev, PCI_STATUS, 0xffff);
    g_assert_cmphex(qpci_config_readw(r->dev, PCI_STATUS), ==, status);

    /* Interrupt Status follows INTx and is not cleared by writing 1. */
    rvg_enable(r);
    greg_write(r, RVG_REG_INT_ENABLE, RVG_INT_SOFTWARE);
    greg_write(r, RVG_REG_INT_TRIGGER, RVG_INT_SOFTWARE);
    rvg_wait_status(r, RVG_INT_SOFTWARE);
    g_assert_true(qpci_config_readw(r->dev, PCI_STATUS) & PCI_STATUS_INTERRUPT);
    qpci_config_writew(r->dev, PCI_STATUS, PCI_STATUS_INTERRUPT);
    g_assert_true(qpci_config_readw(r->dev, PCI_STATUS) & PCI_STATUS_INTERRUPT);
    greg_write(r, RVG_REG_INT_STATUS, RVG_INT_SOFTWARE);
    g_assert_false(qpci_config_readw(r->dev, PCI_STATUS) & PCI_STATUS_INTERRUPT);
    rvg_stop(r);
}

/* Walk the capability list; return a bitmap of the IDs found. */
static uint64_t capabilities(QPCIDevice *dev)
{
    uint64_t found = 0;
    uint8_t at = qpci_config_readb(dev, PCI_CAPABILITY_LIST);

    for (int n = 0; at && n < 48; n++) {
        g_assert_cmpint(at & 3, ==, 0);
        g_assert_cmpint(at, >=, 0x40);
        found |= 1ull << qpci_config_readb(dev, at);
        at = qpci_config_readb(dev, at + PCI_CAP_LIST_NEXT);
    }
    g_assert_cmpint(at, ==, 0);
    return found;
}

static void test_capabilities_conventional(void)
{
    Rvg *r = rvg_start(NULL);
    uint64_t caps = capabilities(r->dev);

    g_assert_true(caps & (1ull << PCI_CAP_ID_PM));
    g_assert_true(caps & (1ull << PCI_CAP_ID_MSI));
    g_assert_true(caps & (1ull << PCI_CAP_ID_MSIX));
    g_assert_false(caps & (1ull << PCI_CAP_ID_EXP));
    rvg_stop(r);
}

static void test_power_management(void)
{
    Rvg *r = rvg_start(NULL);
    uint8_t pm = qpci_find_capability(r->dev, PCI_CAP_ID_PM, 0);
    uint16_t ctrl;

    g_assert_cmpint(pm, !=, 0);
    g_assert_cmphex(qpci_config_readw(r->dev, pm + PCI_PM_PMC) & PCI_PM_CAP_VER_MASK,
                    ==, 3);
    ctrl = qpci_config_readw(r->dev, pm + PCI_PM_CTRL);
    g_assert_cmphex(ctrl & PCI_PM_CTRL_STATE_MASK, ==, 0);
    g_assert_true(ctrl & PCI_PM_CTRL_NO_SOFT_RESET);

    /* D3hot and back; only the state field is writable. */
    qpci_config_writew(r->dev, pm + PCI_PM_CTRL, 0xffff);
    ctrl = qpci_config_readw(r->dev, pm + PCI_PM_CTRL);
    g_assert_cmphex(ctrl, ==, 3 | PCI_PM_CTRL_NO_SOFT_RESET);
    qpci_config_writew(r->dev, pm + PCI_PM_CTRL, 0);
    g_assert_cmphex(qpci_config_readw(r->dev, pm + PCI_PM_CTRL), ==,
                    PCI_PM_CTRL_NO_SOFT_RESET);
    rvg_stop(r);
}

/*
 * On q35 behind a PCIe root port: a PCIe endpoint that works. libqos numbers
 * the buses but opens no bridge windows, so the test opens the root port's
 * memory windows over libqos's whole MMIO allocation range itself.
 */
#define ROOT_PORT_SLOT 2

static void test_behind_pcie_root_port(void)
{
    QTestState *qts = qtest_init("-machine q35 -nodefaults"
                                 " -device pcie-root-port,id=rp0,bus=pcie.0,chassis=1,addr=0x2"
                                 " -device rust-vgpu,bus=rp0");
    QGuestAllocator alloc;
    QPCIBus *bus;
    QPCIDevice *port, *dev;
    QPCIBar mmio;
    uint8_t exp;
    uint32_t secondary, bar2_lo, bar2_hi;

    pc_alloc_init(&alloc, qts, ALLOC_NO_FLAGS);
    bus = qpci_new_pc(qts, &alloc);
    g_assert_cmpint(qpci_secondary_buses_init(bus), ==, 1);
    port = qpci_device_find(bus, QPCI_DEVFN(ROOT_PORT_SLOT, 0));
    g_assert_nonnull(port);
    secondary = qpci_config_readb(port, PCI_SECONDARY_BUS);
    qpci_config_writew(port, PCI_MEMORY_BASE, 0xe000);
    qpci_config_writew(port, PCI_MEMORY_LIMIT, 0xfff0);
    qpci_config_writew(port, PCI_PREF_MEMORY_BASE, 0xe000);
    qpci_config_writew(port, PCI_PREF_MEMORY_LIMIT, 0xfff0);
    qpci_config_writel(port, PCI_PREF_BASE_UPPER32, 0);
    qpci_config_writel(port, PCI_PREF_LIMIT_UPPER32, 0);
    rvg_pci_enable(port);

    /* libqos encodes the bus number above devfn. */
    dev = qpci_device_find(bus, (secondary << 8) | QPCI_DEVFN(0, 0));
    g_assert_nonnull(dev);
    g_assert_cmphex(qpci_config_readw(dev, PCI_VENDOR_ID), ==, RVG_PCI_VENDOR_ID);
    g_assert_cmphex(qpci_config_readw(dev, PCI_DEVICE_ID), ==, RVG_PCI_DEVICE_ID_VGPU);
    exp = qpci_find_capability(dev, PCI_CAP_ID_EXP, 0);
    g_assert_cmpint(exp, !=, 0);
    g_assert_cmphex((qpci_config_readw(dev, exp + PCI_EXP_FLAGS) & PCI_EXP_FLAGS_TYPE) >> 4,
                    ==, PCI_EXP_TYPE_ENDPOINT);
    g_assert_true(capabilities(dev) & (1ull << PCI_CAP_ID_MSIX));
    mmio = qpci_iomap(dev, RVG_BAR_MMIO, NULL);
    rvg_pci_enable(dev);
    g_assert_cmphex(qpci_io_readl(dev, mmio, RVG_GLOBAL + RVG_REG_ID), ==, RVG_ID_VALUE);

    /*
     * Function Level Reset: advertised, and Initiate FLR resets the
     * function (registers, BARs, the command register) and reads back 0.
     * The test then restores BAR2 as an OS would.
     */
    g_assert_true(qpci_config_readl(dev, exp + PCI_EXP_DEVCAP) & PCI_EXP_DEVCAP_FLR);
    qpci_io_writel(dev, mmio, RVG_GLOBAL + RVG_REG_SCRATCH, 0xfeedf00d);
    bar2_lo = qpci_config_readl(dev, PCI_BASE_ADDRESS_2);
    bar2_hi = qpci_config_readl(dev, PCI_BASE_ADDRESS_3);
    qpci_config_writew(dev, exp + PCI_EXP_DEVCTL,
                       qpci_config_readw(dev, exp + PCI_EXP_DEVCTL) |
                       PCI_EXP_DEVCTL_BCR_FLR);
    g_assert_cmphex(qpci_config_readw(dev, exp + PCI_EXP_DEVCTL) &
                    PCI_EXP_DEVCTL_BCR_FLR, ==, 0);
    g_assert_cmphex(qpci_config_readw(dev, PCI_COMMAND) &
                    (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER), ==, 0);
    g_assert_cmphex(qpci_config_readl(dev, PCI_BASE_ADDRESS_2), !=, bar2_lo);
    qpci_config_writel(dev, PCI_BASE_ADDRESS_2, bar2_lo);
    qpci_config_writel(dev, PCI_BASE_ADDRESS_3, bar2_hi);
    rvg_pci_enable(dev);
    g_assert_cmphex(qpci_io_readl(dev, mmio, RVG_GLOBAL + RVG_REG_SCRATCH), ==, 0);
    g_free(dev);
    g_free(port);
    qpci_free_pc(bus);
    alloc_destroy(&alloc);
    qtest_quit(qts);
}

/* ---- register blocks ---- */

static uint64_t rd(Rvg *r, uint64_t off, int size)
{
    switch (size) {
    case 1: return qpci_io_readb(r->dev, r->mmio, off);
    case 2: return qpci_io_readw(r->dev, r->mmio, off);
    case 4: return qpci_io_readl(r->dev, r->mmio, off);
    default: return qpci_io_readq(r->dev, r->mmio, off);
    }
}

static void wr(Rvg *r, uint64_t off, int size, uint64_t v)
{
    switch (size) {
    case 1: qpci_io_writeb(r->dev, r->mmio, off, v); break;
    case 2: qpci_io_writew(r->dev, r->mmio, off, v); break;
    case 4: qpci_io_writel(r->dev, r->mmio, off, v); break;
    default: qpci_io_writeq(r->dev, r->mmio, off, v); break;
    }
}

/* A register: where, how wide, whether the guest may write it. */
typedef struct Reg {
    const char *name;
    uint64_t off;
    int size;
    bool writable;
} Reg;

/* RING_CTL keeps only its ENABLE bit: rust-vgpu-engine-test covers it. */
static const Reg stored_regs[] = {
    { "RING_BASE", RVG_ENGINE + RVG_ENGINE_RING_BASE, 8, true },
    { "RING_SIZE", RVG_ENGINE + RVG_ENGINE_RING_SIZE, 4, true },
    { "RING_HEAD", RVG_ENGINE + RVG_ENGINE_RING_HEAD, 4, false },
    { "RING_TAIL", RVG_ENGINE + RVG_ENGINE_RING_TAIL, 4, true },
    { "SEQNO", RVG_ENGINE + RVG_ENGINE_SEQNO, 4, false },
    { "PLANE_CTL", RVG_DISPLAY + RVG_DISPLAY_PLANE_CTL, 4, true },
    { "PLANE_FORMAT", RVG_DISPLAY + RVG_DISPLAY_PLANE_FORMAT, 4, true },
    { "PLANE_BASE", RVG_DISPLAY + RVG_DISPLAY_PLANE_BASE, 8, true },
    { "PLANE_WIDTH", RVG_DISPLAY + RVG_DISPLAY_PLANE_WIDTH, 4, true },
    { "FLIP_COUNT", RVG_DISPLAY + RVG_DISPLAY_FLIP_COUNT, 4, false },
    { "DISPI_XRES", RVG_DISPI + RVG_DISPI_XRES, 2, true },
    { "QEXT_SIZE", RVG_QEMU_EXT + RVG_QEXT_SIZE, 4, false },
    { "SCRATCH", RVG_GLOBAL + RVG_REG_SCRATCH, 8, true },
    { "CAPS", RVG_GLOBAL + RVG_REG_CAPS, 4, false },
};

static void test_register_blocks(void)
{
    Rvg *r = rvg_start(",vram-size=32M");

    rvg_enable(r);
    for (int i = 0; i < ARRAY_SIZE(stored_regs); i++) {
        const Reg *g = &stored_regs[i];
        uint64_t pattern = 0x8877665544332211ull & (g->size == 8 ? ~0ull : (1ull << (g->size * 8)) - 1);
        uint64_t before = rd(r, g->off, g->size);

        g_test_message("%s", g->name);
        wr(r, g->off, g->size, pattern);
        g_assert_cmphex(rd(r, g->off, g->size), ==, g->writable ? pattern : before);
    }
    /* Identity and sizes of the bochs-compatible block. */
    g_assert_cmphex(rd(r, RVG_DISPI + RVG_DISPI_ID, 2), ==, RVG_DISPI_ID5);
    g_assert_cmphex(rd(r, RVG_DISPI + RVG_DISPI_VIDEO_MEMORY_64K, 2), ==, 32 * MiB / (64 * KiB));
    g_assert_cmphex(rd(r, RVG_QEMU_EXT + RVG_QEXT_SIZE, 4), ==, 8);
    g_assert_cmphex(rd(r, RVG_QEMU_EXT + RVG_QEXT_ENDIAN, 4), ==, 0x1e1e1e1e);
    /* VGA ports are bytes; the EDID blob is read-only. */
    wr(r, RVG_VGA_PORTS, 1, 0x20);
    g_assert_cmphex(rd(r, RVG_VGA_PORTS, 1), ==, 0x20);
    wr(r, RVG_EDID, 4, 0x12345678);
    g_assert_cmphex(rd(r, RVG_EDID, 4), ==, 0xffffff00);
    rvg_stop(r);
}

static void test_bad_register_accesses(void)
{
    Rvg *r = rvg_start(NULL);

    rvg_enable(r);
    wr(r, RVG_ENGINE + RVG_ENGINE_RING_SIZE, 4, 0x1000);
    /* Misaligned, spanning two registers, unassigned: ignored, reads 0. */
    wr(r, RVG_ENGINE + RVG_ENGINE_RING_SIZE + 1, 2, 0xffff);
    wr(r, RVG_ENGINE + RVG_ENGINE_RING_SIZE, 8, ~0ull);
    g_assert_cmphex(rd(r, RVG_ENGINE + RVG_ENGINE_RING_SIZE, 4), ==, 0x1000);
    g_assert_cmphex(rd(r, RVG_ENGINE + RVG_ENGINE_RING_SIZE + 1, 2), ==, 0);
    wr(r, 0x8000, 4, 0x12345678);
    g_assert_cmphex(rd(r, 0x8000, 4), ==, 0);
    g_assert_cmphex(rd(r, RVG_GLOBAL + 0x0c, 4), ==, 0);
    /* The device still works. */
    g_assert_cmphex(greg_read(r, RVG_REG_ID), ==, RVG_ID_VALUE);
    rvg_stop(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    qtest_add_func("/rust-vgpu/config/read-only-header", test_read_only_header);
    qtest_add_func("/rust-vgpu/config/command-status", test_command_and_status);
    qtest_add_func("/rust-vgpu/config/capabilities", test_capabilities_conventional);
    qtest_add_func("/rust-vgpu/config/power-management", test_power_management);
    qtest_add_func("/rust-vgpu/config/pcie-root-port", test_behind_pcie_root_port);
    qtest_add_func("/rust-vgpu/regs/blocks", test_register_blocks);
    qtest_add_func("/rust-vgpu/regs/bad-accesses", test_bad_register_accesses);

    return g_test_run();
}
