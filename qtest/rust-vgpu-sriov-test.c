/*
 * rust-vgpu-hw with SR-IOV (vfs=N) behind a PCIe root port: the PF's
 * SR-IOV capability, VF Enable, each VF's identity and BARs, a VF's GTT
 * window and VRAM partition, engine work on two VFs at once, a fault on
 * one VF while another completes, Function Level Reset scrubbing a
 * VF's partition, and the PF's own block where the host sets each
 * function's engine quantum.
 *
 * libqos knows nothing of SR-IOV, and reaches config space through the
 * legacy ports, which end at 256 bytes: the test opens q35's ECAM window
 * for the extended capabilities, places the VF BARs in the root port's
 * window itself, as a host's PCI core would, and reaches each VF by its
 * routing ID.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "libqtest.h"
#include "libqos/libqos-pc.h"
#include "libqos/pci-pc.h"
#include "libqos/malloc-pc.h"

#include "rvg-engine.h"

#define RVG_PCI_DEVICE_ID_VF 0x5257
#define GPU_VRAM (64 * MiB)
#define NUM_VFS 4
/* Each VF's equal partition of a 64 MiB, 131072-entry GPU. */
#define VF_VRAM (16 * MiB)
#define VF_GTT_ENTRIES 32768
#define ROOT_PORT_SLOT 2
#define PCI_EXT_CAP_ID_SRIOV_ 0x10
#define PCI_EXT_CAP_ID_ACS_ 0x0d
#define PCI_EXT_CAP_ID_ARI_ 0x0e

typedef struct Vf {
    Rvg r;           /* its BAR2 (r.mmio) and config space (r.dev) */
    QPCIDevice dev;
    QPCIBar vram;    /* its BAR0 */
    QPCIBar msix;    /* its BAR4 */
} Vf;

typedef struct Pf {
    QTestState *qts;
    QGuestAllocator alloc;
    QPCIBus *bus;
    QPCIDevice *port;
    Rvg r;           /* the PF's BAR2 and config space */
    QPCIBar vram;
    uint16_t sriov;  /* its SR-IOV capability */
    Vf vf[16];
} Pf;

/* q35's MMCONFIG window, as firmware would place it. */
#define ECAM_BASE 0xb0000000ull
#define MCH_PCIEXBAR 0x60

static uint64_t ecam(QPCIDevice *dev, uint16_t off)
{
    /* libqos keeps the bus number above devfn. */
    return ECAM_BASE + ((uint64_t)dev->devfn << 12) + off;
}

static uint32_t xcfg_readl(QPCIDevice *dev, uint16_t off)
{
    return qtest_readl(dev->bus->qts, ecam(dev, off));
}

static uint16_t xcfg_readw(QPCIDevice *dev, uint16_t off)
{
    return qtest_readw(dev->bus->qts, ecam(dev, off));
}

static void xcfg_writel(QPCIDevice *dev, uint16_t off, uint32_t val)
{
    qtest_writel(dev->bus->qts, ecam(dev, off), val);
}

static void xcfg_writew(QPCIDevice *dev, uint16_t off, uint16_t val)
{
    qtest_writew(dev->bus->qts, ecam(dev, off), val);
}

/* An extended capability's offset, 0 if absent. */
static uint16_t ext_cap(QPCIDevice *dev, uint16_t id)
{
    uint16_t off = 0x100;

    while (off) {
        uint32_t hdr = xcfg_readl(dev, off);

        if ((hdr & 0xffff) == id) {
            return off;
        }
        off = hdr >> 20;
    }
    return 0;
}

static Pf *pf_start(const char *props)
{
    Pf *p = g_new0(Pf, 1);
    QPCIDevice *mch;
    uint32_t secondary;

    p->qts = qtest_initf("-machine q35 -nodefaults"
                         " -device pcie-root-port,id=rp0,bus=pcie.0,chassis=1,addr=0x%x"
                         " -device rust-vgpu-hw,bus=rp0,id=gpu,%s",
                         ROOT_PORT_SLOT, props);
    pc_alloc_init(&p->alloc, p->qts, ALLOC_NO_FLAGS);
    p->bus = qpci_new_pc(p->qts, &p->alloc);
    mch = qpci_device_find(p->bus, QPCI_DEVFN(0, 0));
    qpci_config_writel(mch, MCH_PCIEXBAR + 4, ECAM_BASE >> 32);
    /* 256 buses, enabled. */
    qpci_config_writel(mch, MCH_PCIEXBAR, ECAM_BASE | 1);
    g_free(mch);
    g_assert_cmpint(qpci_secondary_buses_init(p->bus), ==, 1);
    p->port = qpci_device_find(p->bus, QPCI_DEVFN(ROOT_PORT_SLOT, 0));
    g_assert_nonnull(p->port);
    secondary = qpci_config_readb(p->port, PCI_SECONDARY_BUS);
    /* The root port forwards libqos's whole MMIO range. */
    qpci_config_writew(p->port, PCI_MEMORY_BASE, 0xe000);
    qpci_config_writew(p->port, PCI_MEMORY_LIMIT, 0xfff0);
    qpci_config_writew(p->port, PCI_PREF_MEMORY_BASE, 0xe000);
    qpci_config_writew(p->port, PCI_PREF_MEMORY_LIMIT, 0xfff0);
    qpci_config_writel(p->port, PCI_PREF_BASE_UPPER32, 0);
    qpci_config_writel(p->port, PCI_PREF_LIMIT_UPPER32, 0);
    rvg_pci_enable(p->port);

    p->r.dev = qpci_device_find(p->bus, (secondary << 8) | QPCI_DEVFN(0, 0));
    g_assert_nonnull(p->r.dev);
    p->r.mmio = qpci_iomap(p->r.dev, RVG_BAR_MMIO, NULL);
    p->vram = qpci_iomap(p->r.dev, RVG_BAR_VRAM, NULL);
    rvg_pci_enable(p->r.dev);
    p->sriov = ext_cap(p->r.dev, PCI_EXT_CAP_ID_SRIOV_);
    return p;
}

static void pf_stop(Pf *p)
{
    g_free(p->r.dev);
    g_free(p->port);
    qpci_free_pc(p->bus);
    alloc_destroy(&p->alloc);
    qtest_quit(p->qts);
    g_free(p);
}

/* `size` bytes of the root port's window, aligned to `size`. */
static uint64_t mmio_alloc(QPCIBus *bus, uint64_t size)
{
    uint64_t at = QEMU_ALIGN_UP(bus->mmio_alloc_ptr, size);

    g_assert_cmphex(at + size, <=, bus->mmio_limit);
    bus->mmio_alloc_ptr = at + size;
    return at;
}

static void sriov_write_bar(Pf *p, int bar, uint64_t addr)
{
    xcfg_writel(p->r.dev, p->sriov + PCI_SRIOV_BAR + 4 * bar, addr);
    xcfg_writel(p->r.dev, p->sriov + PCI_SRIOV_BAR + 4 * bar + 4,
                       addr >> 32);
}

/*
 * NumVFs, the VF BARs placed, VF Enable and VF Memory Space Enable: what
 * a host's `echo 4 > sriov_numvfs` does. Each VF is then enabled as a
 * host driver enables it (QEMU maps a VF's BARs on its own Memory Space
 * Enable, as Linux sets it).
 */
static void sriov_enable_n(Pf *p, int num, uint64_t vf_vram)
{
    uint32_t secondary = qpci_config_readb(p->port, PCI_SECONDARY_BUS);
    uint64_t bar0 = mmio_alloc(p->bus, num * vf_vram);
    uint64_t bar2 = mmio_alloc(p->bus, num * RVG_MMIO_SIZE);
    uint64_t bar4 = mmio_alloc(p->bus, num * 4096);
    uint16_t ctrl = PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE;
    uint16_t offset, stride;

    g_assert_cmpint(num, <=, ARRAY_SIZE(p->vf));
    if (num > 7) {
        /* VFs past function 7: the root port forwards by ARI, and the
         * PF is told its hierarchy is ARI capable. */
        uint8_t exp = qpci_find_capability(p->port, PCI_CAP_ID_EXP, 0);

        qpci_config_writew(p->port, exp + PCI_EXP_DEVCTL2,
                           qpci_config_readw(p->port, exp + PCI_EXP_DEVCTL2) |
                           PCI_EXP_DEVCTL2_ARI);
        ctrl |= PCI_SRIOV_CTRL_ARI;
    }
    xcfg_writew(p->r.dev, p->sriov + PCI_SRIOV_NUM_VF, num);
    sriov_write_bar(p, RVG_BAR_VRAM, bar0);
    sriov_write_bar(p, RVG_BAR_MMIO, bar2);
    xcfg_writel(p->r.dev, p->sriov + PCI_SRIOV_BAR + 4 * RVG_BAR_MSIX,
                       bar4);
    xcfg_writew(p->r.dev, p->sriov + PCI_SRIOV_CTRL, ctrl);
    offset = xcfg_readw(p->r.dev, p->sriov + PCI_SRIOV_VF_OFFSET);
    stride = xcfg_readw(p->r.dev, p->sriov + PCI_SRIOV_VF_STRIDE);
    for (int i = 0; i < num; i++) {
        Vf *v = &p->vf[i];

        v->dev = (QPCIDevice) {
            .bus = p->bus,
            .devfn = (secondary << 8) | (offset + i * stride),
        };
        v->r.dev = &v->dev;
        v->r.mmio = (QPCIBar) { .addr = bar2 + i * RVG_MMIO_SIZE };
        v->vram = (QPCIBar) { .addr = bar0 + i * vf_vram };
        v->msix = (QPCIBar) { .addr = bar4 + i * 4096 };
        rvg_pci_enable(&v->dev);
    }
}

static void sriov_enable(Pf *p)
{
    sriov_enable_n(p, NUM_VFS, VF_VRAM);
}

/* A guest driver's view of VF `v`'s engine: its ring at graphics 0. */
static void vf_engine(Eng *e, Vf *v)
{
    *e = (Eng) { .r = &v->r, .vram = v->vram, .vram_size = VF_VRAM,
                 .ring_size = 4096 };
    eng_map_vram(e, 256);
    greg_write(&v->r, RVG_REG_INT_ENABLE, RVG_INT_FENCE |
               RVG_INT_ENGINE_ERROR | RVG_INT_GTT_FAULT);
    qpci_io_writeq(&v->dev, v->r.mmio, RVG_ENGINE + RVG_ENGINE_RING_BASE, 0);
    eng_write(e, RVG_ENGINE_RING_SIZE, e->ring_size);
    eng_write(e, RVG_ENGINE_RING_CTL, RVG_RING_CTL_ENABLE);
}

/* BAR sizing, as a host does: all ones, read back the writable bits. */
static uint64_t sriov_bar_size(Pf *p, int bar, bool is64)
{
    uint16_t reg = p->sriov + PCI_SRIOV_BAR + 4 * bar;
    uint64_t mask;

    xcfg_writel(p->r.dev, reg, 0xffffffff);
    mask = xcfg_readl(p->r.dev, reg) & ~0xfull;
    if (is64) {
        xcfg_writel(p->r.dev, reg + 4, 0xffffffff);
        mask |= (uint64_t)xcfg_readl(p->r.dev, reg + 4) << 32;
    } else {
        mask |= 0xffffffff00000000ull;
    }
    xcfg_writel(p->r.dev, reg, 0);
    if (is64) {
        xcfg_writel(p->r.dev, reg + 4, 0);
    }
    return ~mask + 1;
}

static void test_capability(void)
{
    Pf *p = pf_start("vfs=4,vram-size=64M");
    QPCIDevice *pf = p->r.dev;
    Vf *v;
    uint8_t exp;

    g_assert_cmpint(p->sriov, !=, 0);
    g_assert_cmpint(xcfg_readw(pf, p->sriov + PCI_SRIOV_TOTAL_VF), ==, 4);
    g_assert_cmpint(xcfg_readw(pf, p->sriov + PCI_SRIOV_INITIAL_VF), ==, 4);
    g_assert_cmpint(xcfg_readw(pf, p->sriov + PCI_SRIOV_NUM_VF), ==, 0);
    g_assert_cmphex(xcfg_readw(pf, p->sriov + PCI_SRIOV_VF_DID), ==,
                    RVG_PCI_DEVICE_ID_VF);
    g_assert_cmpint(xcfg_readw(pf, p->sriov + PCI_SRIOV_VF_OFFSET), ==, 1);
    g_assert_cmpint(xcfg_readw(pf, p->sriov + PCI_SRIOV_VF_STRIDE), ==, 1);
    /* Each VF's BARs: its VRAM partition, the register BAR, MSI-X. */
    g_assert_cmphex(sriov_bar_size(p, RVG_BAR_VRAM, true), ==, VF_VRAM);
    g_assert_cmphex(sriov_bar_size(p, RVG_BAR_MMIO, true), ==, RVG_MMIO_SIZE);
    g_assert_cmphex(sriov_bar_size(p, RVG_BAR_MSIX, false), ==, 4096);
    /* A multi-function PF without peer-to-peer says so: ACS. No ARI
     * for 5 functions. */
    g_assert_cmpint(ext_cap(pf, PCI_EXT_CAP_ID_ACS_), !=, 0);
    g_assert_cmpint(ext_cap(pf, PCI_EXT_CAP_ID_ARI_), ==, 0);
    g_assert_cmphex(qpci_config_readw(pf, PCI_DEVICE_ID), ==, RVG_PCI_DEVICE_ID_HW);

    sriov_enable(p);
    for (int i = 0; i < NUM_VFS; i++) {
        v = &p->vf[i];
        /* A VF's vendor and device ID registers read all ones (SR-IOV
         * 1.1, 3.4.1.1): the host takes them from the PF. */
        g_assert_cmphex(qpci_config_readl(&v->dev, PCI_VENDOR_ID), ==, 0xffffffff);
        g_assert_cmphex(qpci_config_readw(&v->dev, PCI_SUBSYSTEM_VENDOR_ID), ==,
                        RVG_PCI_SUBSYSTEM_VENDOR_ID);
        g_assert_cmphex(qpci_config_readw(&v->dev, PCI_SUBSYSTEM_ID), ==,
                        RVG_PCI_SUBSYSTEM_ID);
        g_assert_cmphex(qpci_config_readw(&v->dev, PCI_CLASS_DEVICE), ==, 0x0380);
        /* MSI-X only: no INTx pin, no MSI. */
        g_assert_cmpint(qpci_config_readb(&v->dev, PCI_INTERRUPT_PIN), ==, 0);
        g_assert_cmpint(qpci_find_capability(&v->dev, PCI_CAP_ID_MSIX, 0), !=, 0);
        g_assert_cmpint(qpci_find_capability(&v->dev, PCI_CAP_ID_MSI, 0), ==, 0);
        exp = qpci_find_capability(&v->dev, PCI_CAP_ID_EXP, 0);
        g_assert_cmpint(exp, !=, 0);
        g_assert_true(qpci_config_readl(&v->dev, exp + PCI_EXP_DEVCAP) &
                      PCI_EXP_DEVCAP_FLR);
        /* Its registers answer in its BAR2, sized to its partition. */
        g_assert_cmphex(greg_read(&v->r, RVG_REG_ID), ==, RVG_ID_VALUE);
        g_assert_cmphex(qpci_io_readq(&v->dev, v->r.mmio,
                                      RVG_GLOBAL + RVG_REG_VRAM_SIZE), ==, VF_VRAM);
        g_assert_cmphex(greg_read(&v->r, RVG_REG_GTT_ENTRIES), ==, VF_GTT_ENTRIES);
    }
    /* The PF is still the whole GPU. */
    g_assert_cmphex(qpci_io_readq(pf, p->r.mmio, RVG_GLOBAL + RVG_REG_VRAM_SIZE),
                    ==, GPU_VRAM);
    pf_stop(p);

    /* 17 functions need ARI: the PF and each VF have it. */
    p = pf_start("vfs=16,vram-size=256M");
    g_assert_cmpint(xcfg_readw(p->r.dev, p->sriov + PCI_SRIOV_TOTAL_VF),
                    ==, 16);
    g_assert_cmpint(ext_cap(p->r.dev, PCI_EXT_CAP_ID_ARI_), !=, 0);
    g_assert_cmphex(sriov_bar_size(p, RVG_BAR_VRAM, true), ==, 16 * MiB);
    pf_stop(p);
}

static void test_vf_window(void)
{
    Pf *p = pf_start("vfs=4,vram-size=64M");
    Vf *v = &p->vf[1];
    uint64_t past = RVG_GTT + 8ull * VF_GTT_ENTRIES;

    sriov_enable(p);
    /* VF 1's GTT entry 5 is the GPU's entry 32768 + 5. */
    qpci_io_writeq(&v->dev, v->r.mmio, RVG_GTT + 5 * 8, 0x7003);
    g_assert_cmphex(qpci_io_readq(p->r.dev, p->r.mmio,
                                  RVG_GTT + 8ull * (VF_GTT_ENTRIES + 5)), ==, 0x7003);
    g_assert_cmphex(qpci_io_readq(p->r.dev, p->r.mmio, RVG_GTT + 5 * 8), ==, 0);
    /* Past its window there is nothing: the next VF's entries stay. */
    qpci_io_writeq(&v->dev, v->r.mmio, past, 0x3);
    g_assert_cmphex(qpci_io_readq(&v->dev, v->r.mmio, past), ==, 0);
    g_assert_cmphex(qpci_io_readq(p->r.dev, p->r.mmio,
                                  RVG_GTT + 8ull * 2 * VF_GTT_ENTRIES), ==, 0);
    /* Its BAR0 is its partition of the GPU's VRAM. */
    qpci_io_writel(&v->dev, v->vram, 0, 0xa1a1a1a1);
    qpci_io_writel(&v->dev, v->vram, VF_VRAM - 4, 0xa2a2a2a2);
    g_assert_cmphex(qpci_io_readl(p->r.dev, p->vram, VF_VRAM), ==, 0xa1a1a1a1);
    g_assert_cmphex(qpci_io_readl(p->r.dev, p->vram, 2 * VF_VRAM - 4), ==,
                    0xa2a2a2a2);
    g_assert_cmphex(qpci_io_readl(p->r.dev, p->vram, 2 * VF_VRAM), ==, 0);
    pf_stop(p);
}

#define FILL_AT 0x10000
/* 1024 x 64 pixels at FILL_AT, rows 4 KiB apart. */
#define FILL(color) FILL_RECT(FILL_AT, 4096, 1024, 64, (color))

static void test_engine_on_two_vfs(void)
{
    Pf *p = pf_start("vfs=4,vram-size=64M");
    Vf *a = &p->vf[0], *b = &p->vf[3];
    uint32_t work_a[] = { FILL(0x11111111), FILL(0x11aa11aa), FENCE(7, true) };
    uint32_t work_b[] = { FILL(0x22222222), FENCE(9, true) };
    uint64_t msg = 0x200000;
    uint8_t msix;
    Eng ea, eb;

    sriov_enable(p);
    vf_engine(&ea, a);
    vf_engine(&eb, b);
    /* VF 0's vector 0: a write of 0xf00d at `msg` in guest RAM. */
    msix = qpci_find_capability(&a->dev, PCI_CAP_ID_MSIX, 0);
    qpci_io_writel(&a->dev, a->msix, PCI_MSIX_ENTRY_LOWER_ADDR, msg);
    qpci_io_writel(&a->dev, a->msix, PCI_MSIX_ENTRY_UPPER_ADDR, 0);
    qpci_io_writel(&a->dev, a->msix, PCI_MSIX_ENTRY_DATA, 0xf00d);
    qpci_io_writel(&a->dev, a->msix, PCI_MSIX_ENTRY_VECTOR_CTRL, 0);
    qpci_config_writew(&a->dev, msix + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE);
    qtest_writel(p->qts, msg, 0);

    eng_emit(&ea, work_a, ARRAY_SIZE(work_a));
    eng_emit(&eb, work_b, ARRAY_SIZE(work_b));
    eng_kick(&ea);
    eng_kick(&eb);
    eng_wait_idle(&ea);
    eng_wait_idle(&eb);
    g_assert_cmphex(eng_read(&ea, RVG_ENGINE_SEQNO), ==, 7);
    g_assert_cmphex(eng_read(&eb, RVG_ENGINE_SEQNO), ==, 9);
    /* Each fill in its own partition, seen through the VF and the PF. */
    g_assert_cmphex(eng_vram_readl(&ea, FILL_AT + 63 * 4096 + 4092), ==, 0x11aa11aa);
    g_assert_cmphex(eng_vram_readl(&eb, FILL_AT), ==, 0x22222222);
    g_assert_cmphex(qpci_io_readl(p->r.dev, p->vram, FILL_AT), ==, 0x11aa11aa);
    g_assert_cmphex(qpci_io_readl(p->r.dev, p->vram, 3 * VF_VRAM + FILL_AT), ==,
                    0x22222222);
    g_assert_cmphex(qpci_io_readl(p->r.dev, p->vram, VF_VRAM + FILL_AT), ==, 0);
    /* VF 0's fence interrupt went out as its MSI-X message. */
    rvg_wait_status(&a->r, RVG_INT_FENCE);
    for (int i = 0; i < 5000 && qtest_readl(p->qts, msg) != 0xf00d; i++) {
        g_usleep(1000);
    }
    g_assert_cmphex(qtest_readl(p->qts, msg), ==, 0xf00d);
    /* The PF saw none of it. */
    g_assert_cmphex(greg_read(&p->r, RVG_REG_INT_STATUS), ==, 0);
    pf_stop(p);
}

static void test_fault_stays_in_its_vf(void)
{
    Pf *p = pf_start("vfs=4,vram-size=64M");
    Vf *good = &p->vf[0], *bad = &p->vf[1];
    /* Graphics page 300 leads to the first page past VF 1's partition. */
    uint32_t stray[] = { STORE_DW(300 * 4096, 0xbad), FENCE(1, false) };
    uint32_t work[] = { FILL(0x33333333), FENCE(5, true) };
    Eng eg, eb;

    sriov_enable(p);
    vf_engine(&eg, good);
    vf_engine(&eb, bad);
    qpci_io_writel(p->r.dev, p->vram, 2 * VF_VRAM, 0x5a5a5a5a);
    eng_gtt(&eb, 300, VF_VRAM | RVG_GTT_LOCAL | RVG_GTT_VALID);
    eng_emit(&eb, stray, ARRAY_SIZE(stray));
    eng_emit(&eg, work, ARRAY_SIZE(work));
    eng_kick(&eb);
    eng_kick(&eg);
    eng_wait_idle(&eb);
    eng_wait_idle(&eg);
    g_assert_cmphex(eng_read(&eb, RVG_ENGINE_ERROR), ==, RVG_ERR_BAD_ADDRESS);
    g_assert_cmphex(eng_read(&eb, RVG_ENGINE_SEQNO), ==, 0);
    rvg_wait_status(&bad->r, RVG_INT_ENGINE_ERROR);
    g_assert_cmphex(qpci_io_readl(p->r.dev, p->vram, 2 * VF_VRAM), ==, 0x5a5a5a5a);
    /* The neighbour finished, with no error of its own. */
    g_assert_cmphex(eng_read(&eg, RVG_ENGINE_SEQNO), ==, 5);
    g_assert_cmphex(eng_read(&eg, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmphex(greg_read(&good->r, RVG_REG_INT_STATUS) & RVG_INT_ENGINE_ERROR,
                    ==, 0);
    g_assert_cmphex(eng_vram_readl(&eg, FILL_AT), ==, 0x33333333);
    pf_stop(p);
}

static void test_flr_scrubs_the_partition(void)
{
    Pf *p = pf_start("vfs=4,vram-size=64M");
    Vf *old = &p->vf[2], *next = &p->vf[3];
    uint64_t at[] = { 0, 4096, VF_VRAM / 2, VF_VRAM - 4 };
    uint8_t exp;

    sriov_enable(p);
    for (int i = 0; i < ARRAY_SIZE(at); i++) {
        qpci_io_writel(&old->dev, old->vram, at[i], 0xdead0000 + i);
        qpci_io_writel(&next->dev, next->vram, at[i], 0xbeef0000 + i);
    }
    qpci_io_writeq(&old->dev, old->r.mmio, RVG_GTT, 0x1003);
    greg_write(&old->r, RVG_REG_SCRATCH, 0x12345678);

    exp = qpci_find_capability(&old->dev, PCI_CAP_ID_EXP, 0);
    qpci_config_writew(&old->dev, exp + PCI_EXP_DEVCTL,
                       qpci_config_readw(&old->dev, exp + PCI_EXP_DEVCTL) |
                       PCI_EXP_DEVCTL_BCR_FLR);
    rvg_pci_enable(&old->dev);
    /* The next tenant of VF 2 finds nothing of the last one. */
    for (int i = 0; i < ARRAY_SIZE(at); i++) {
        g_assert_cmphex(qpci_io_readl(&old->dev, old->vram, at[i]), ==, 0);
        g_assert_cmphex(qpci_io_readl(&next->dev, next->vram, at[i]), ==,
                        0xbeef0000 + i);
    }
    g_assert_cmphex(qpci_io_readq(&old->dev, old->r.mmio, RVG_GTT), ==, 0);
    g_assert_cmphex(greg_read(&old->r, RVG_REG_SCRATCH), ==, 0);

    /* Disabling the VFs resets every one of them. */
    xcfg_writew(p->r.dev, p->sriov + PCI_SRIOV_CTRL, 0);
    xcfg_writew(p->r.dev, p->sriov + PCI_SRIOV_CTRL,
                       PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE);
    for (int i = 0; i < ARRAY_SIZE(at); i++) {
        g_assert_cmphex(qpci_io_readl(&next->dev, next->vram, at[i]), ==, 0);
    }
    pf_stop(p);
}

/* Density: 16 VFs (ARI), each with work of its own, all done. */
static void test_sixteen_vfs(void)
{
    /* 8 MiB partitions: all BARs fit libqos's 512 MiB of MMIO. */
    Pf *p = pf_start("vfs=16,vram-size=128M");
    Eng e[16];

    sriov_enable_n(p, 16, 8 * MiB);
    for (int i = 0; i < 16; i++) {
        uint32_t work[] = { FILL(0x10000000u * (i % 16) + i), FENCE(100 + i, true) };

        vf_engine(&e[i], &p->vf[i]);
        eng_emit(&e[i], work, ARRAY_SIZE(work));
    }
    for (int i = 0; i < 16; i++) {
        eng_kick(&e[i]);
    }
    for (int i = 0; i < 16; i++) {
        eng_wait_idle(&e[i]);
        g_assert_cmphex(eng_read(&e[i], RVG_ENGINE_SEQNO), ==, 100 + i);
        g_assert_cmphex(eng_read(&e[i], RVG_ENGINE_ERROR), ==, 0);
        /* In its own 8 MiB partition of the GPU's VRAM. */
        g_assert_cmphex(qpci_io_readl(p->r.dev, p->vram, i * 8 * MiB + FILL_AT),
                        ==, 0x10000000u * (i % 16) + i);
    }
    pf_stop(p);
}

/*
 * A VF whose batch goes on past its quantum and the preemption timeout
 * while another VF waits is halted with PREEMPT_TIMEOUT; the other's
 * work completes; a ring reset recovers the halted one.
 */
static void test_preempt_timeout(void)
{
    Pf *p = pf_start("vfs=4,vram-size=64M");
    Vf *hog = &p->vf[0], *light = &p->vf[1];
    /* 30000 fills of 8 MiB: minutes of engine time, in one batch. */
    enum { FILLS = 30000, BATCH_AT = 0x80000 };
    g_autofree uint32_t *batch = g_new(uint32_t, FILLS * 7 + 1);
    uint32_t ring[] = { BATCH_START(BATCH_AT, (FILLS * 7 + 1) * 4), FENCE(1, false) };
    uint32_t work[] = { FILL(0x44444444), FENCE(2, false) };
    Eng eh, el;

    sriov_enable(p);
    qpci_io_writel(p->r.dev, p->r.mmio, RVG_SRIOV + RVG_SRIOV_PREEMPT_TIMEOUT_US, 2000);
    qpci_io_writel(p->r.dev, p->r.mmio, RVG_SRIOV + RVG_SRIOV_PREEMPT_TIMEOUT_US, 10);
    g_assert_cmpuint(qpci_io_readl(p->r.dev, p->r.mmio,
                                   RVG_SRIOV + RVG_SRIOV_PREEMPT_TIMEOUT_US), ==, 2000);
    vf_engine(&eh, hog);
    vf_engine(&el, light);
    /* The batch and its fills reach past the first MiB. */
    eng_map_vram(&eh, VF_VRAM / 4096);
    for (int i = 0; i < FILLS; i++) {
        uint32_t f[] = { FILL_RECT(2 * MiB, 4096, 1024, 2048, i) };

        memcpy(&batch[i * 7], f, sizeof(f));
    }
    batch[FILLS * 7] = BATCH_END();
    qpci_memwrite(&hog->dev, hog->vram, BATCH_AT, batch, (FILLS * 7 + 1) * 4);
    eng_submit(&eh, ring, ARRAY_SIZE(ring));
    /* The hog has the engine well before the other asks. */
    g_usleep(50 * 1000);
    eng_submit(&el, work, ARRAY_SIZE(work));
    eng_wait_idle(&el);
    g_assert_cmphex(eng_read(&el, RVG_ENGINE_SEQNO), ==, 2);
    eng_wait_idle(&eh);
    g_assert_cmphex(eng_read(&eh, RVG_ENGINE_ERROR), ==, RVG_ERR_PREEMPT_TIMEOUT);
    g_assert_cmphex(eng_read(&eh, RVG_ENGINE_SEQNO), ==, 0);
    rvg_wait_status(&hog->r, RVG_INT_ENGINE_ERROR);
    g_assert_cmphex(greg_read(&light->r, RVG_REG_INT_STATUS) & RVG_INT_ENGINE_ERROR, ==, 0);
    eng_reset(&eh);
    eng_submit(&eh, (uint32_t[]) { FENCE(3, false) }, 2);
    eng_wait_idle(&eh);
    g_assert_cmphex(eng_read(&eh, RVG_ENGINE_SEQNO), ==, 3);
    pf_stop(p);
}

/* The PF's SR-IOV block: partitions, and each function's quantum. */
static void test_quanta(void)
{
    Pf *p = pf_start("vfs=4,vram-size=64M");
    Vf *v = &p->vf[0];

    sriov_enable(p);
    g_assert_cmpuint(qpci_io_readl(p->r.dev, p->r.mmio,
                                   RVG_SRIOV + RVG_SRIOV_TOTAL_VFS), ==, NUM_VFS);
    g_assert_cmpuint(qpci_io_readl(p->r.dev, p->r.mmio,
                                   RVG_SRIOV + RVG_SRIOV_VF_GTT_ENTRIES), ==,
                     VF_GTT_ENTRIES);
    g_assert_cmphex(qpci_io_readq(p->r.dev, p->r.mmio,
                                  RVG_SRIOV + RVG_SRIOV_VF_VRAM_SIZE), ==, VF_VRAM);
    for (int f = 0; f <= NUM_VFS; f++) {
        g_assert_cmpuint(qpci_io_readl(p->r.dev, p->r.mmio,
                                       RVG_SRIOV + RVG_SRIOV_QUANTUM(f)), ==, 1000);
    }
    /* VF 1's quantum: 4 ms. Too short a one, and a VF past TotalVFs, are
     * refused. */
    qpci_io_writel(p->r.dev, p->r.mmio, RVG_SRIOV + RVG_SRIOV_QUANTUM(2), 4000);
    qpci_io_writel(p->r.dev, p->r.mmio, RVG_SRIOV + RVG_SRIOV_QUANTUM(2), 99);
    g_assert_cmpuint(qpci_io_readl(p->r.dev, p->r.mmio,
                                   RVG_SRIOV + RVG_SRIOV_QUANTUM(2)), ==, 4000);
    g_assert_cmpuint(qpci_io_readl(p->r.dev, p->r.mmio,
                                   RVG_SRIOV + RVG_SRIOV_QUANTUM(NUM_VFS + 1)), ==, 0);
    /* A VF has no such block: it cannot change its own share. */
    qpci_io_writel(&v->dev, v->r.mmio, RVG_SRIOV + RVG_SRIOV_QUANTUM(1), 100000);
    g_assert_cmpuint(qpci_io_readl(&v->dev, v->r.mmio,
                                   RVG_SRIOV + RVG_SRIOV_QUANTUM(1)), ==, 0);
    g_assert_cmpuint(qpci_io_readl(p->r.dev, p->r.mmio,
                                   RVG_SRIOV + RVG_SRIOV_QUANTUM(1)), ==, 1000);
    pf_stop(p);
}

static void test_bad_vfs(void)
{
    QTestState *qts = qtest_init("-machine q35 -nodefaults"
                                 " -device pcie-root-port,id=rp0,bus=pcie.0,chassis=1");

    rvg_expect_error(qtest_qmp(qts, "{'execute': 'device_add', 'arguments': {"
                               "'driver': 'rust-vgpu-hw', 'bus': 'rp0', "
                               "'vfs': 17}}"),
                     "property 'vfs' is 17: a GPU offers at most 16 VFs");
    rvg_expect_error(qtest_qmp(qts, "{'execute': 'device_add', 'arguments': {"
                               "'driver': 'rust-vgpu-hw', 'bus': 'rp0', "
                               "'vfs': 16, 'vram-size': 8388608}}"),
                     "each VF needs at least 1048576 (1 MiB) of VRAM");
    rvg_expect_error(qtest_qmp(qts, "{'execute': 'device_add', 'arguments': {"
                               "'driver': 'rust-vgpu-hw-vf', 'bus': 'rp0'}}"),
                     "expects a pluggable device type");
    qtest_quit(qts);

    qts = qtest_init("-machine pc -nodefaults");
    rvg_expect_error(qtest_qmp(qts, "{'execute': 'device_add', 'arguments': {"
                               "'driver': 'rust-vgpu-hw', 'vfs': 2}}"),
                     "property 'vfs' is 2: SR-IOV needs a PCI Express bus");
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/rust-vgpu/sriov/capability", test_capability);
    qtest_add_func("/rust-vgpu/sriov/vf-window", test_vf_window);
    qtest_add_func("/rust-vgpu/sriov/engine-on-two-vfs", test_engine_on_two_vfs);
    qtest_add_func("/rust-vgpu/sriov/fault-stays-in-its-vf",
                   test_fault_stays_in_its_vf);
    qtest_add_func("/rust-vgpu/sriov/flr-scrubs-the-partition",
                   test_flr_scrubs_the_partition);
    qtest_add_func("/rust-vgpu/sriov/sixteen-vfs", test_sixteen_vfs);
    qtest_add_func("/rust-vgpu/sriov/quanta", test_quanta);
    qtest_add_func("/rust-vgpu/sriov/preempt-timeout", test_preempt_timeout);
    qtest_add_func("/rust-vgpu/sriov/bad-vfs", test_bad_vfs);
    return g_test_run();
}
