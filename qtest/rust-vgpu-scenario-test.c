/*
 * One scenario, any backend: what a guest sees of a vGPU, whichever GPU is
 * behind it. Config space, registers, GTT shadowing with DMA into guest
 * RAM, engine commands with results read back, interrupts, a reset.
 *
 * The same program runs against the soft GPU (in `meson test`) and, in the
 * nested VFIO test (guest/vfio), against rust-vgpu-hw through the kernel's
 * vfio-pci: RVG_SCENARIO_DEVICE adds properties to the -device option
 * (e.g. ",host=0000:00:03.0"), and RVG_SCENARIO_TRANSCRIPT names a file
 * that receives every observation, one "step: what = value" per line, so
 * the two runs can be compared line for line. Every step also asserts what
 * docs/hardware.md specifies. With RVG_SCENARIO_MIGRATE_TO set (properties
 * for the destination's -device, "" for a soft GPU), the vGPU migrates to
 * a second QEMU after the GTT step and the steps after run there: the
 * transcript must not tell.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "hw/pci/pci_regs.h"
#include "rvg-engine.h"

/* Graphics pages of the guest RAM the scenario maps. */
#define RAM_PAGE   300
/* A GTT entry with a reserved bit, and one pointing past guest RAM. */
#define BAD_BITS_PAGE 302
#define NOT_RAM_PAGE  303

static Eng eng;
static Rvg *rvg;
static GString *transcript;

static void note(const char *step, const char *what, uint64_t value)
{
    g_string_append_printf(transcript, "%s: %s = 0x%" PRIx64 "\n", step, what,
                           value);
}

static QTestState *qts(void)
{
    return rvg->qs->qts;
}

static uint64_t guest_ram;    /* two pages at graphics page RAM_PAGE */
static uint64_t msix_msg;     /* where MSI-X vector 0 writes */

static void test_config(void)
{
    QPCIDevice *d = rvg->dev;
    uint16_t cmd = qpci_config_readw(d, PCI_COMMAND);
    uint8_t pos;
    int n = 0;

    g_assert_cmphex(qpci_config_readw(d, PCI_VENDOR_ID), ==, RVG_PCI_VENDOR_ID);
    g_assert_cmphex(qpci_config_readw(d, PCI_DEVICE_ID), ==, RVG_PCI_DEVICE_ID_VGPU);
    g_assert_cmphex(qpci_config_readw(d, PCI_SUBSYSTEM_VENDOR_ID), ==,
                    RVG_PCI_SUBSYSTEM_VENDOR_ID);
    g_assert_cmphex(qpci_config_readw(d, PCI_SUBSYSTEM_ID), ==, RVG_PCI_SUBSYSTEM_ID);
    note("config", "vendor:device", qpci_config_readl(d, PCI_VENDOR_ID));
    note("config", "subsystem", qpci_config_readl(d, PCI_SUBSYSTEM_VENDOR_ID));
    note("config", "class:revision", qpci_config_readl(d, PCI_CLASS_REVISION));
    note("config", "header type", qpci_config_readb(d, PCI_HEADER_TYPE));
    note("config", "interrupt pin", qpci_config_readb(d, PCI_INTERRUPT_PIN));
    g_assert_cmpuint(qpci_config_readb(d, PCI_INTERRUPT_PIN), ==, 1);

    /* The command register's writable bits: no I/O space. */
    qpci_config_writew(d, PCI_COMMAND, 0xffff);
    note("config", "command after writing ones", qpci_config_readw(d, PCI_COMMAND));
    g_assert_cmphex(qpci_config_readw(d, PCI_COMMAND) & PCI_COMMAND_IO, ==, 0);
    qpci_config_writew(d, PCI_COMMAND, cmd);

    for (pos = qpci_config_readb(d, PCI_CAPABILITY_LIST); pos && n < 16;
         pos = qpci_config_readb(d, pos + PCI_CAP_LIST_NEXT), n++) {
        g_autofree char *what = g_strdup_printf("capability %d", n);

        note("config", what, qpci_config_readb(d, pos + PCI_CAP_LIST_ID));
    }
    g_assert_cmpuint(qpci_find_capability(d, PCI_CAP_ID_MSIX, 0), !=, 0);
    g_assert_cmpuint(qpci_find_capability(d, PCI_CAP_ID_MSI, 0), !=, 0);
    note("config", "BAR0 size", eng.vram_size);
    g_assert_cmpuint(eng.vram_size, ==, 64 * MiB);
}

/* Say which GPU is behind the vGPU (not in the transcript: it differs). */
static void log_backend(void)
{
    g_autofree char *info = qtest_hmp(qts(), "info rust-vgpu");
    const char *line = strstr(info, "backend: ");

    g_assert_nonnull(line);
    g_test_message("%.*s", (int)strcspn(line, "\n"), line);
}

/* The vGPU's GTT entries: the default's, or RVG_SCENARIO_GTT_ENTRIES for a
 * device given another gfx-size (an SR-IOV VF's partition holds less). */
static uint32_t expected_gtt_entries(void)
{
    const char *n = g_getenv("RVG_SCENARIO_GTT_ENTRIES");

    return n ? (uint32_t)g_ascii_strtoull(n, NULL, 0) : RVG_GTT_ENTRIES_VGPU;
}

static void test_registers(void)
{
    uint64_t vram = qpci_io_readq(rvg->dev, rvg->mmio, RVG_GLOBAL + RVG_REG_VRAM_SIZE);

    g_assert_cmphex(greg_read(rvg, RVG_REG_ID), ==, RVG_ID_VALUE);
    g_assert_cmphex(greg_read(rvg, RVG_REG_VERSION), ==, RVG_VERSION_VALUE);
    g_assert_cmpuint(vram, ==, eng.vram_size);
    g_assert_cmpuint(greg_read(rvg, RVG_REG_GTT_ENTRIES), ==, expected_gtt_entries());
    note("registers", "ID", greg_read(rvg, RVG_REG_ID));
    note("registers", "VERSION", greg_read(rvg, RVG_REG_VERSION));
    note("registers", "CAPS", greg_read(rvg, RVG_REG_CAPS));
    note("registers", "VRAM_SIZE", vram);
    note("registers", "GTT_ENTRIES", greg_read(rvg, RVG_REG_GTT_ENTRIES));

    greg_write(rvg, RVG_REG_SCRATCH, 0x5a5aa5a5);
    g_assert_cmphex(greg_read(rvg, RVG_REG_SCRATCH), ==, 0x5a5aa5a5);
    note("registers", "SCRATCH", greg_read(rvg, RVG_REG_SCRATCH));

    /* A software interrupt, and write-1-to-clear. */
    greg_write(rvg, RVG_REG_INT_TRIGGER, RVG_INT_SOFTWARE);
    g_assert_cmphex(greg_read(rvg, RVG_REG_INT_STATUS) & RVG_INT_SOFTWARE, ==,
                    RVG_INT_SOFTWARE);
    note("registers", "INT_STATUS after trigger", greg_read(rvg, RVG_REG_INT_STATUS));
    greg_write(rvg, RVG_REG_INT_STATUS, RVG_INT_SOFTWARE);
    g_assert_cmphex(greg_read(rvg, RVG_REG_INT_STATUS) & RVG_INT_SOFTWARE, ==, 0);

    note("registers", "DISPI ID",
         qpci_io_readw(rvg->dev, rvg->mmio, RVG_DISPI + RVG_DISPI_ID));
}

static void test_gtt_shadowing(void)
{
    uint64_t gfx = (uint64_t)RAM_PAGE * 4096;
    uint32_t faults = greg_read(rvg, RVG_REG_GTT_FAULTS);

    qtest_memset(qts(), guest_ram, 0, 2 * 4096);
    eng_gtt(&eng, RAM_PAGE, guest_ram | RVG_GTT_VALID);
    eng_gtt(&eng, RAM_PAGE + 1, (guest_ram + 4096) | RVG_GTT_VALID);

    /* Refused entries: kept as written, faulted, shadowed by scratch. */
    eng_gtt(&eng, BAD_BITS_PAGE, guest_ram | 1ull << 11 | RVG_GTT_VALID);
    g_assert_cmphex(greg_read(rvg, RVG_REG_FAULT_REASON), ==,
                    RVG_FAULT_GTT_RESERVED_BITS);
    eng_gtt(&eng, NOT_RAM_PAGE, 0xfee00000ull | RVG_GTT_VALID);
    g_assert_cmphex(greg_read(rvg, RVG_REG_FAULT_REASON), ==,
                    RVG_FAULT_GTT_NOT_GUEST_RAM);
    g_assert_cmpuint(greg_read(rvg, RVG_REG_GTT_FAULTS), ==, faults + 2);
    for (uint32_t i = RAM_PAGE; i <= NOT_RAM_PAGE; i++) {
        g_autofree char *what = g_strdup_printf("entry %u - guest RAM", i);
        uint64_t v = qpci_io_readq(rvg->dev, rvg->mmio, RVG_GTT + 8ull * i);

        note("gtt", what, v - guest_ram);
    }
    note("gtt", "faults", greg_read(rvg, RVG_REG_GTT_FAULTS) - faults);
    greg_write(rvg, RVG_REG_INT_STATUS, ~0u);

    /* The GPU writes guest RAM through the shadows (DMA). */
    SUBMIT(&eng, STORE_DW(gfx + 8, 0xbeef), STORE_DW(gfx + 4096 + 16, 0xf00d),
           FENCE(1, false));
    eng_wait_idle(&eng);
    g_assert_cmpuint(eng_read(&eng, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmphex(qtest_readl(qts(), guest_ram + 8), ==, 0xbeef);
    g_assert_cmphex(qtest_readl(qts(), guest_ram + 4096 + 16), ==, 0xf00d);
    note("gtt", "RAM word 2", qtest_readl(qts(), guest_ram + 8));
    note("gtt", "RAM word 1028", qtest_readl(qts(), guest_ram + 4096 + 16));

    /* Through a refused entry: stopped, nothing written anywhere. */
    SUBMIT(&eng, STORE_DW((uint64_t)NOT_RAM_PAGE * 4096, 0xdead));
    eng_wait_idle(&eng);
    g_assert_cmpuint(eng_read(&eng, RVG_ENGINE_ERROR), ==, RVG_ERR_BAD_ADDRESS);
    note("gtt", "store through a refused entry: ERROR", eng_read(&eng, RVG_ENGINE_ERROR));
    note("gtt", "ERROR_ADDR", eng_read_addr(&eng));
    eng_reset(&eng);
}

static void test_engine(void)
{
    uint64_t gfx = (uint64_t)RAM_PAGE * 4096;
    const uint32_t batch[] = { STORE_DW(0x9000, 0xba7c4), BATCH_END() };
    uint32_t sum = 0;

    /* Interrupts to MSI-X vector 0, writing 0x5a into guest RAM. */
    rvg_msix_route(rvg->dev, msix_msg, 0x5a);
    qtest_writel(qts(), msix_msg, 0);

    /* A batch in guest RAM, run from the ring. */
    for (int i = 0; i < ARRAY_SIZE(batch); i++) {
        qtest_writel(qts(), guest_ram + 4096 + 512 + 4 * i, batch[i]);
    }
    SUBMIT(&eng,
           FILL_RECT(0x10000, 256, 16, 4, 0x00ff00),
           COPY_RECT(0x10000, 256, gfx + 4096 - 128, 64, 8, 4),
           FILL_RECT(gfx + 2048, 32, 8, 2, 0x123456),
           BATCH_START(gfx + 4096 + 512, sizeof(batch)),
           FENCE(7, true));
    rvg_wait_status(rvg, RVG_INT_FENCE);
    eng_wait_idle(&eng);
    g_assert_cmpuint(eng_read(&eng, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmpuint(eng_read(&eng, RVG_ENGINE_SEQNO), ==, 7);
    g_assert_cmphex(qtest_readl(qts(), msix_msg), ==, 0x5a);
    g_assert_cmphex(eng_vram_readl(&eng, 0x10000 + 3 * 256 + 60), ==, 0x00ff00);
    g_assert_cmphex(qtest_readl(qts(), guest_ram + 4096 - 128 + 3 * 64 + 28), ==,
                    0x00ff00);
    g_assert_cmphex(qtest_readl(qts(), guest_ram + 2048 + 32 + 28), ==, 0x123456);
    g_assert_cmphex(eng_vram_readl(&eng, 0x9000), ==, 0xba7c4);
    note("engine", "SEQNO", eng_read(&eng, RVG_ENGINE_SEQNO));
    note("engine", "HEAD", eng_read(&eng, RVG_ENGINE_RING_HEAD));
    note("engine", "MSI-X message", qtest_readl(qts(), msix_msg));
    note("engine", "batch store", eng_vram_readl(&eng, 0x9000));
    /* Every word the commands could have touched, summed. */
    for (uint64_t off = 0; off < 8192; off += 4) {
        sum = sum * 31 + qtest_readl(qts(), guest_ram + off);
    }
    note("engine", "guest RAM hash", sum);
    for (uint64_t off = 0x10000; off < 0x10000 + 4 * 256; off += 4) {
        sum = sum * 31 + eng_vram_readl(&eng, off);
    }
    note("engine", "VRAM hash", sum);

    /* An engine error raises its interrupt and says where. */
    qtest_writel(qts(), msix_msg, 0);
    greg_write(rvg, RVG_REG_INT_STATUS, ~0u);
    SUBMIT(&eng, NOOP(), 0xee000000);
    rvg_wait_status(rvg, RVG_INT_ENGINE_ERROR);
    g_assert_cmpuint(eng_read(&eng, RVG_ENGINE_ERROR), ==, RVG_ERR_UNKNOWN_OPCODE);
    g_assert_cmphex(qtest_readl(qts(), msix_msg), ==, 0x5a);
    note("engine", "bad opcode: ERROR", eng_read(&eng, RVG_ENGINE_ERROR));
    note("engine", "bad opcode: INT_STATUS", greg_read(rvg, RVG_REG_INT_STATUS));
    eng_reset(&eng);
    qpci_msix_disable(rvg->dev);
}

/*
 * Live migration to a second QEMU, whose guest goes on where this one
 * stopped: the same BARs, its PCI address allocator past them. Notes
 * nothing: the transcript is the one a run without migration writes.
 */
static void test_migrate(void)
{
    const char *to = g_getenv("RVG_SCENARIO_MIGRATE_TO");
    g_autofree char *sock = g_strdup_printf("%s/rvg-scenario-%d.sock",
                                            g_get_tmp_dir(), getpid());
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    Rvg *dst = g_new0(Rvg, 1);

    dst->qs = qtest_pc_boot("-nodefaults -device rust-vgpu%s -incoming %s", to, uri);
    dst->dev = find_rvg(dst->qs->pcibus);
    g_assert_true(rvg_migrate(qts(), dst->qs->qts, uri));
    unlink(sock);
    dst->mmio = rvg->mmio;
    dst->qs->pcibus->mmio_alloc_ptr = rvg->qs->pcibus->mmio_alloc_ptr;
    dst->qs->pcibus->pio_alloc_ptr = rvg->qs->pcibus->pio_alloc_ptr;
    rvg_stop(rvg);
    rvg = dst;
    eng.r = dst;
    log_backend();
}

/* A system reset: power-on state, and a GPU that works afterwards. */
static void test_reset(void)
{
    /* The vGPU's GPU is its own: it is reset along with the vGPU. */
    uint64_t gpu_resets = rvg_info_value(qts(), NULL, "resets=");

    qtest_system_reset(qts());
    g_assert_cmpuint(rvg_info_value(qts(), NULL, "resets="), ==, gpu_resets + 1);
    note("reset", "GPU resets", rvg_info_value(qts(), NULL, "resets=") - gpu_resets);
    rvg_enable(rvg);
    g_assert_cmphex(greg_read(rvg, RVG_REG_SCRATCH), ==, 0);
    g_assert_cmphex(qpci_io_readq(rvg->dev, rvg->mmio, RVG_GTT + 8ull * RAM_PAGE), ==, 0);
    g_assert_cmpuint(eng_read(&eng, RVG_ENGINE_SEQNO), ==, 0);
    note("reset", "SCRATCH", greg_read(rvg, RVG_REG_SCRATCH));
    note("reset", "GTT entry", qpci_io_readq(rvg->dev, rvg->mmio, RVG_GTT + 8ull * RAM_PAGE));
    note("reset", "SEQNO", eng_read(&eng, RVG_ENGINE_SEQNO));
    note("reset", "RING_CTL", eng_read(&eng, RVG_ENGINE_RING_CTL));

    eng_init(&eng, rvg, 4096);
    eng_gtt(&eng, RAM_PAGE, guest_ram | RVG_GTT_VALID);
    qtest_writel(qts(), guest_ram + 64, 0);
    SUBMIT(&eng, STORE_DW((uint64_t)RAM_PAGE * 4096 + 64, 0x600d), FENCE(9, false));
    eng_wait_idle(&eng);
    g_assert_cmpuint(eng_read(&eng, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmpuint(eng_read(&eng, RVG_ENGINE_SEQNO), ==, 9);
    g_assert_cmphex(qtest_readl(qts(), guest_ram + 64), ==, 0x600d);
    note("reset", "store after reset", qtest_readl(qts(), guest_ram + 64));
}

int main(int argc, char **argv)
{
    const char *device = g_getenv("RVG_SCENARIO_DEVICE");
    const char *out = g_getenv("RVG_SCENARIO_TRANSCRIPT");
    int ret;

    g_test_init(&argc, &argv, NULL);
    transcript = g_string_new("");
    rvg = rvg_start(device ? device : "");
    eng_init(&eng, rvg, 4096);
    log_backend();
    guest_ram = ROUND_UP(guest_alloc(&rvg->qs->alloc, 3 * 4096), 4096);
    msix_msg = guest_alloc(&rvg->qs->alloc, 4);

    /* In order: each step builds on the one before. */
    qtest_add_func("/rust-vgpu/scenario/config", test_config);
    qtest_add_func("/rust-vgpu/scenario/registers", test_registers);
    qtest_add_func("/rust-vgpu/scenario/gtt-shadowing", test_gtt_shadowing);
    if (g_getenv("RVG_SCENARIO_MIGRATE_TO")) {
        qtest_add_func("/rust-vgpu/scenario/migrate", test_migrate);
    }
    qtest_add_func("/rust-vgpu/scenario/engine", test_engine);
    qtest_add_func("/rust-vgpu/scenario/reset", test_reset);
    ret = g_test_run();

    rvg_stop(rvg);
    if (out) {
        g_autoptr(GError) err = NULL;

        if (!g_file_set_contents(out, transcript->str, transcript->len, &err)) {
            g_printerr("writing %s: %s\n", out, err->message);
            ret = 1;
        }
    }
    g_string_free(transcript, true);
    return ret;
}
