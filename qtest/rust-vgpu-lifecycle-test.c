/*
 * rust-vgpu lifecycle and soak qtests: many hot-plug cycles and system
 * resets with the QEMU process's RSS and descriptors watched, unplug of a
 * vGPU beside busy neighbours, and a seeded soak of every vGPU a GPU
 * holds running random valid and invalid work against canaries.
 *
 * RVG_SOAK_SECONDS sets the soak's length (default 10; `make soak` runs
 * 300), RVG_SOAK_SEED its seed (default random, printed).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qobject/qdict.h"

#include "rvg-engine.h"

#define GFX_SPACE (32768ull * 4096)
#define VRAM_SIZE (4 * MiB)
#define HOTPLUG_SLOT 5

/*
 * Tolerances of the QEMU process between the sample after cycle (or
 * reset) 10 and the one after cycle 100, chosen from measurements
 * (docs/security.md, "Lifecycle and soak"). Descriptors and threads must
 * be exactly back: every GPU, eventfd and worker thread a cycle creates
 * is gone. RSS may grow by less than 8 MiB: measured, hot-plug grows
 * about 0.5 MiB over those 90 cycles and is flat from there to 1000;
 * resets swing within 2.5 MiB with no trend over 1000. A leak of 91 KiB
 * or more a cycle exceeds it.
 */
#define RSS_TOLERANCE_KIB (8 * 1024)

/* ---- the QEMU process ---- */

typedef struct Usage {
    uint64_t rss_kib;
    uint64_t threads;
    unsigned fds;
} Usage;

static uint64_t proc_status_value(pid_t pid, const char *key)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/status", (int)pid);
    g_autofree char *text = NULL;
    g_autofree char *needle = g_strdup_printf("\n%s:", key);
    const char *at;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    at = strstr(text, needle);
    g_assert_nonnull(at);
    return g_ascii_strtoull(at + strlen(needle), NULL, 10);
}

static unsigned proc_fd_count(pid_t pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/fd", (int)pid);
    g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
    unsigned n = 0;

    g_assert_nonnull(dir);
    while (g_dir_read_name(dir)) {
        n++;
    }
    return n;
}

static Usage usage(QTestState *qts)
{
    pid_t pid = qtest_pid(qts);

    /* A round trip first: QEMU has handled everything sent before. */
    qobject_unref(qtest_qmp(qts, "{'execute': 'query-status'}"));
    return (Usage) {
        .rss_kib = proc_status_value(pid, "VmRSS"),
        .threads = proc_status_value(pid, "Threads"),
        .fds = proc_fd_count(pid),
    };
}

/* `late` (after cycle 100) against `early` (after cycle 10). */
static void assert_stable(const char *what, Usage start, Usage early,
                          Usage late)
{
    g_test_message("%s: RSS %" PRIu64 " / %" PRIu64 " / %" PRIu64 " KiB, "
                   "fds %u / %u / %u, threads %" PRIu64 " / %" PRIu64 " / %"
                   PRIu64 " (start / after 10 / after 100)", what,
                   start.rss_kib, early.rss_kib, late.rss_kib,
                   start.fds, early.fds, late.fds,
                   start.threads, early.threads, late.threads);
    g_assert_cmpuint(late.fds, ==, early.fds);
    g_assert_cmpuint(late.threads, ==, early.threads);
#ifdef QEMU_SANITIZE_ADDRESS
    /*
     * Built with ASan (as QEMU in the same build tree is): its quarantine
     * holds freed memory back, so RSS says nothing here. LeakSanitizer
     * checks QEMU's heap at exit instead.
     */
#else
    g_assert_cmpuint(late.rss_kib, <, early.rss_kib + RSS_TOLERANCE_KIB);
#endif
}

/* ---- helpers ---- */

/*
 * Program `e`'s mapped vGPU: graphics pages [0, pages) on its first VRAM
 * pages (each a GTT write over qtest, so only what the test uses), a ring
 * of `ring_size` at graphics 0, the engine's interrupts enabled.
 */
static void eng_program(Eng *e, uint32_t ring_size, uint32_t pages)
{
    Rvg *r = e->r;

    e->ring_size = ring_size;
    e->tail = 0;
    eng_map_vram(e, pages);
    greg_write(r, RVG_REG_INT_ENABLE, RVG_INT_FENCE | RVG_INT_ENGINE_ERROR |
               RVG_INT_GTT_FAULT);
    qpci_io_writeq(r->dev, r->mmio, RVG_ENGINE + RVG_ENGINE_RING_BASE, 0);
    eng_write(e, RVG_ENGINE_RING_SIZE, ring_size);
    eng_write(e, RVG_ENGINE_RING_CTL, RVG_RING_CTL_ENABLE);
}

/* eng_init, with only graphics pages [0, pages) mapped. */
static void eng_setup(Eng *e, Rvg *r, uint32_t ring_size, uint32_t pages)
{
    *e = (Eng) { .r = r };
    rvg_enable(r);
    e->vram = qpci_iomap(r->dev, RVG_BAR_VRAM, &e->vram_size);
    eng_program(e, ring_size, pages);
}

/* Wait (at most `ms`) until `e`'s SEQNO reaches `seqno` or it stops. */
static void wait_seqno(Eng *e, uint32_t seqno, int ms)
{
    for (int i = 0; i < ms; i++) {
        if (eng_read(e, RVG_ENGINE_SEQNO) == seqno ||
            eng_read(e, RVG_ENGINE_ERROR)) {
            break;
        }
        g_usleep(1000);
    }
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_SEQNO), ==, seqno);
}

static void engine_hold(QTestState *qts, bool hold)
{
    qtest_qmp_assert_success(qts,
                             "{'execute': 'qom-set', 'arguments': {"
                             "'path': '/objects/gpu0', "
                             "'property': 'x-engine-hold', 'value': %i}}",
                             hold);
}

static void hotplug(QTestState *qts, const char *id, const char *gpu)
{
    g_autofree char *addr = g_strdup_printf("%x", HOTPLUG_SLOT);

    if (gpu) {
        qtest_qmp_device_add(qts, "rust-vgpu", id,
                             "{'addr': %s, 'vram-size': %d, 'gpu': %s}",
                             addr, (int)VRAM_SIZE, gpu);
    } else {
        qtest_qmp_device_add(qts, "rust-vgpu", id,
                             "{'addr': %s, 'vram-size': %d}",
                             addr, (int)VRAM_SIZE);
    }
}

static void assert_alive(QTestState *qts)
{
    QDict *resp = qtest_qmp(qts, "{'execute': 'query-status'}");

    g_assert_true(qdict_haskey(resp, "return"));
    qobject_unref(resp);
}

static bool info_has(QTestState *qts, const char *id)
{
    g_autofree char *out = qtest_hmp(qts, "info rust-vgpu");
    g_autofree char *quoted = g_strdup_printf("\"%s\"", id);

    return strstr(out, quoted) != NULL;
}

/* ---- 1. hot-plug and unplug, 100 times ---- */

/*
 * One cycle: plug vGPU "hp0" (on `gpu`, or on a private GPU), store
 * through its GTT to a guest RAM page (pinned and DMA-mapped) and to its
 * VRAM, fence with an INTx interrupt, eject it through ACPI.
 */
static void hotplug_cycle(QOSState *qs, const char *gpu, uint64_t page,
                          uint32_t n)
{
    QTestState *qts = qs->qts;
    /* The BARs go with the device: give their window back to libqos. */
    uint64_t alloc = qs->pcibus->mmio_alloc_ptr;
    Rvg r = { .qs = qs };
    Eng e;

    hotplug(qts, "hp0", gpu);
    r.dev = qpci_device_find(qs->pcibus, QPCI_DEVFN(HOTPLUG_SLOT, 0));
    g_assert_nonnull(r.dev);
    eng_setup(&e, &r, 4096, 1);
    eng_gtt(&e, 1, page | RVG_GTT_VALID);
    eng_gtt(&e, 2, 2 * 4096 | RVG_GTT_LOCAL | RVG_GTT_VALID);
    SUBMIT(&e, STORE_DW(0x1000, n), STORE_DW(0x2000, ~n), FENCE(n, true));
    eng_wait_idle(&e);
    g_assert_cmpuint(eng_read(&e, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmpuint(eng_read(&e, RVG_ENGINE_SEQNO), ==, n);
    g_assert_cmphex(qtest_readl(qts, page), ==, n);
    g_assert_cmphex(eng_vram_readl(&e, 0x2000), ==, ~n);
    rvg_wait_status(&r, RVG_INT_FENCE);

    /* Ejected with its interrupt pending. */
    qpci_unplug_acpi_device_test(qts, "hp0", HOTPLUG_SLOT);
    g_assert_false(info_has(qts, "hp0"));
    g_free(r.dev);
    qs->pcibus->mmio_alloc_ptr = alloc;
}

/*
 * 100 cycles, alternating a private GPU (created and destroyed with the
 * vGPU: its VRAM, threads, eventfds) and the shared GPU "gpu0" (its GTT
 * and VRAM slices, a third of each, taken and given back). The process
 * must not grow.
 */
static void test_hotplug_100(void)
{
    QOSState *qs = qtest_pc_boot("-nodefaults "
                                 "-object rust-vgpu-gpu,id=gpu0,vram-size=16M "
                                 "-device rust-vgpu,id=stay,gpu=gpu0,"
                                 "vram-size=4M,addr=04.0");
    QTestState *qts = qs->qts;
    uint64_t page = ROUND_UP(guest_alloc(&qs->alloc, 2 * 4096), 4096);
    Rvg stay = { .qs = qs };
    Eng s;
    Usage start, early = {}, late;

    start = usage(qts);
    for (uint32_t n = 1; n <= 100; n++) {
        hotplug_cycle(qs, n % 2 ? "gpu0" : NULL, page, n);
        if (n == 10) {
            early = usage(qts);
        }
    }
    late = usage(qts);
    assert_stable("hotplug-100", start, early, late);

    /* The GPU still works and has both free slices back. */
    stay.dev = qpci_device_find(qs->pcibus, QPCI_DEVFN(4, 0));
    g_assert_nonnull(stay.dev);
    eng_setup(&s, &stay, 4096, 16);
    SUBMIT(&s, STORE_DW(0x8000, 0x5a5a), FENCE(7, false));
    eng_wait_idle(&s);
    g_assert_cmpuint(eng_read(&s, RVG_ENGINE_SEQNO), ==, 7);
    g_assert_cmphex(eng_vram_readl(&s, 0x8000), ==, 0x5a5a);
    for (int i = 0; i < 2; i++) {
        g_autofree char *id = g_strdup_printf("x%d", i);
        g_autofree char *addr = g_strdup_printf("%x", 6 + i);

        qtest_qmp_device_add(qts, "rust-vgpu", id,
                             "{'addr': %s, 'vram-size': %d, 'gpu': 'gpu0'}",
                             addr, (int)VRAM_SIZE);
    }
    rvg_expect_error(qtest_qmp(qts, "{'execute': 'device_add', 'arguments': {"
                               "'driver': 'rust-vgpu', 'id': 'x2', "
                               "'gpu': 'gpu0', 'vram-size': 1048576}}"),
                     "the GPU's GTT holds 3 vGPUs and all are in use");
    g_free(stay.dev);
    qtest_pc_shutdown(qs);
}

/* ---- 2. system reset, 100 times, with the engine busy ---- */

/*
 * The batch each vGPU runs: BATCH_FILLS fills of 128 KiB at graphics
 * BATCH_TARGET, a quarter of a GiB in all, at graphics BATCH_ADDR.
 */
#define BATCH_ADDR 0x1000
#define BATCH_FILLS 2048
#define BATCH_TARGET 0x10000
#define BATCH_ROWS 32
#define BATCH_PAGES 48 /* [0, BATCH_TARGET + 128 KiB) */
/* Each round's store: past the batch's end, below its fills. */
#define BATCH_MARK 0xf800

static uint32_t *make_batch(size_t *len)
{
    uint32_t *b = g_new(uint32_t, BATCH_FILLS * 7);

    for (uint32_t i = 0; i < BATCH_FILLS; i++) {
        const uint32_t dw[] = {
            FILL_RECT(BATCH_TARGET, 4096, 1024, BATCH_ROWS, i + 1)
        };

        memcpy(b + 7 * i, dw, sizeof(dw));
    }
    *len = BATCH_FILLS * 7 * 4;
    return b;
}

/* Every register the reset defines, and the GTT cleared. */
static void assert_reset_values(Eng *e)
{
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmphex(eng_read_addr(e), ==, 0);
    g_assert_cmphex(qpci_io_readq(e->r->dev, e->r->mmio,
                                  RVG_ENGINE + RVG_ENGINE_RING_BASE), ==, 0);
    g_assert_cmphex(eng_read(e, RVG_ENGINE_RING_SIZE), ==, 0);
    g_assert_cmphex(eng_read(e, RVG_ENGINE_RING_HEAD), ==, 0);
    g_assert_cmphex(eng_read(e, RVG_ENGINE_RING_TAIL), ==, 0);
    g_assert_cmphex(eng_read(e, RVG_ENGINE_RING_CTL), ==, 0);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_SEQNO), ==, 0);
    g_assert_cmphex(greg_read(e->r, RVG_REG_INT_STATUS), ==, 0);
    g_assert_cmphex(greg_read(e->r, RVG_REG_INT_ENABLE), ==, 0);
    g_assert_cmphex(greg_read(e->r, RVG_REG_INT_MASK), ==, 0);
    g_assert_cmphex(qpci_io_readq(e->r->dev, e->r->mmio, RVG_GTT), ==, 0);
    g_assert_cmphex(qpci_io_readq(e->r->dev, e->r->mmio,
                                  RVG_GTT + 8 * (BATCH_PAGES - 1)), ==, 0);
}

/*
 * Two vGPUs on one GPU, each running a quarter GiB of fills from a batch
 * with an interrupting fence behind it, reset 100 times. On even rounds
 * the GPU's engine is held (x-engine-hold), so the work is certainly in
 * flight at the reset; on odd rounds it runs, and the reset lands
 * wherever it lands. After each reset both vGPUs read their reset values,
 * then and 20 ms later (after the hold is let go); at the end both
 * complete a batch. The process must not grow.
 */
static void test_reset_100_busy(void)
{
    QOSState *qs = qtest_pc_boot("-nodefaults "
                                 "-object rust-vgpu-gpu,id=gpu0,vram-size=16M "
                                 "-device rust-vgpu,id=a,gpu=gpu0,vram-size=4M,addr=04.0 "
                                 "-device rust-vgpu,id=b,gpu=gpu0,vram-size=4M,addr=05.0");
    QTestState *qts = qs->qts;
    uint64_t alloc = qs->pcibus->mmio_alloc_ptr;
    Rvg r[2] = { { .qs = qs }, { .qs = qs } };
    Eng e[2];
    size_t len;
    g_autofree uint32_t *batch = make_batch(&len);
    Usage start = {}, early = {}, late;
    unsigned in_flight = 0;

    /* A round that finishes must not write into the batch later ones run. */
    g_assert_cmpuint(BATCH_ADDR + len, <=, BATCH_MARK);

    for (int g = 0; g < 2; g++) {
        r[g].dev = qpci_device_find(qs->pcibus, QPCI_DEVFN(4 + g, 0));
        g_assert_nonnull(r[g].dev);
        eng_setup(&e[g], &r[g], 4096, BATCH_PAGES);
        /* VRAM is not reset: the batch is written once. */
        qtest_memwrite(qts, e[g].vram.addr + BATCH_ADDR, batch, len);
    }
    start = usage(qts);
    for (uint32_t round = 1; round <= 100; round++) {
        bool held = round % 2 == 0;

        if (held) {
            engine_hold(qts, true);
        }
        for (int g = 0; g < 2; g++) {
            SUBMIT(&e[g], BATCH_START(BATCH_ADDR, len),
                   STORE_DW(BATCH_MARK, round), FENCE(round, true));
        }
        for (int g = 0; g < 2; g++) {
            if (eng_read(&e[g], RVG_ENGINE_SEQNO) != round) {
                in_flight++;
            } else {
                g_assert_false(held);
            }
        }
        qtest_system_reset(qts);

        /* The BARs are cleared: map them again at the same addresses. */
        qs->pcibus->mmio_alloc_ptr = alloc;
        for (int g = 0; g < 2; g++) {
            rvg_enable(&r[g]);
            e[g].vram = qpci_iomap(r[g].dev, RVG_BAR_VRAM, NULL);
            assert_reset_values(&e[g]);
        }
        if (held) {
            engine_hold(qts, false);
        }
        /* Give late progress of the old generation time to show. */
        g_usleep(20 * 1000);
        qs->pcibus->mmio_alloc_ptr = alloc;
        for (int g = 0; g < 2; g++) {
            assert_reset_values(&e[g]);
            eng_setup(&e[g], &r[g], 4096, BATCH_PAGES);
        }
        if (round == 10) {
            early = usage(qts);
        }
    }
    late = usage(qts);
    g_test_message("%u of 200 submissions were unfinished at their reset",
                   in_flight);
    assert_stable("reset-100-busy", start, early, late);

    for (int g = 0; g < 2; g++) {
        SUBMIT(&e[g], BATCH_START(BATCH_ADDR, len), STORE_DW(BATCH_MARK, 0xd0e),
               FENCE(1000, true));
    }
    for (int g = 0; g < 2; g++) {
        wait_seqno(&e[g], 1000, 10000);
        g_assert_cmphex(eng_vram_readl(&e[g], BATCH_MARK), ==, 0xd0e);
        g_assert_cmphex(eng_vram_readl(&e[g], BATCH_TARGET), ==, BATCH_FILLS);
        g_assert_cmphex(eng_vram_readl(&e[g], BATCH_TARGET +
                                       4096 * BATCH_ROWS - 4),
                        ==, BATCH_FILLS);
        g_free(r[g].dev);
    }
    qtest_pc_shutdown(qs);
}

/* ---- 3. unplug beside busy neighbours ---- */

#define NB_WORK 300           /* entries per neighbour ring: 15600 bytes */
#define NB_FILL 0x100000      /* 256 KiB fills, pages 256-319 */
#define NB_PAGES 320

static uint32_t nb_colour(int g, uint32_t seqno)
{
    return (uint32_t)(g + 1) << 24 | seqno;
}

/* A ring of NB_WORK (fill, store, fence) entries, seqnos from `first`. */
static void nb_emit(Eng *e, int g, uint32_t first)
{
    for (uint32_t i = 0; i < NB_WORK; i++) {
        uint32_t seqno = first + i;
        const uint32_t dw[] = {
            FILL_RECT(NB_FILL, 4096, 1024, 64, nb_colour(g, seqno)),
            STORE_DW(0x8000 + 4 * i, nb_colour(g, seqno)),
            FENCE(seqno, false),
        };

        eng_emit(e, dw, ARRAY_SIZE(dw));
    }
}

/* Every entry of the ring from `first` ran, in order, with its values. */
static void nb_check(Eng *e, int g, uint32_t first)
{
    uint32_t last = first + NB_WORK - 1;

    wait_seqno(e, last, 10000);
    g_assert_cmphex(eng_read(e, RVG_ENGINE_RING_HEAD), ==, e->tail);
    for (uint32_t i = 0; i < NB_WORK; i++) {
        g_assert_cmphex(eng_vram_readl(e, 0x8000 + 4 * i), ==,
                        nb_colour(g, first + i));
    }
    g_assert_cmphex(eng_vram_readl(e, NB_FILL), ==, nb_colour(g, last));
    g_assert_cmphex(eng_vram_readl(e, NB_FILL + 64 * 4096 - 4), ==,
                    nb_colour(g, last));
}

/*
 * The third vGPU, "c", at the hot-plug slot: 8 runs of a 64 KiB batch of
 * 1 MiB fills (18 GiB in all, seconds of engine time), each with an
 * interrupting fence.
 */
#define C_BATCH 0x10000
#define C_BATCH_FILLS (64 * KiB / 28)
#define C_RUNS 8

static void plug_busy_c(QOSState *qs, Rvg *c, Eng *ec)
{
    g_autofree uint32_t *batch = g_new(uint32_t, C_BATCH_FILLS * 7);

    hotplug(qs->qts, "c", "gpu0");
    c->dev = qpci_device_find(qs->pcibus, QPCI_DEVFN(HOTPLUG_SLOT, 0));
    g_assert_nonnull(c->dev);
    eng_setup(ec, c, 16384, 512);
    for (uint32_t i = 0; i < C_BATCH_FILLS; i++) {
        const uint32_t dw[] = { FILL_RECT(0x100000, 4096, 1024, 256, i) };

        memcpy(batch + 7 * i, dw, sizeof(dw));
    }
    qtest_bufwrite(qs->qts, ec->vram.addr + C_BATCH, batch,
                   C_BATCH_FILLS * 28);
    for (uint32_t i = 1; i <= C_RUNS; i++) {
        const uint32_t dw[] = {
            BATCH_START(C_BATCH, C_BATCH_FILLS * 28), FENCE(i, true),
        };

        eng_emit(ec, dw, ARRAY_SIZE(dw));
    }
    eng_kick(ec);
}

/*
 * Three vGPUs on one GPU: a and b with rings of fills and stores, c with
 * long batches of fills, ejected (ACPI) while its work is queued and in
 * flight. a and b finish all of theirs with every result right; QEMU
 * carries on. First with the engine held until c is gone (c's work
 * certainly unfinished), then with everything running when c goes (c's
 * progress then is reported, not asserted: it depends on timing).
 */
static void test_unplug_busy_neighbours(void)
{
    QOSState *qs = qtest_pc_boot("-nodefaults "
                                 "-object rust-vgpu-gpu,id=gpu0,vram-size=16M,"
                                 "timeslice-us=500 "
                                 "-device rust-vgpu,id=a,gpu=gpu0,vram-size=4M,addr=04.0 "
                                 "-device rust-vgpu,id=b,gpu=gpu0,vram-size=4M,addr=06.0");
    QTestState *qts = qs->qts;
    Rvg r[2] = { { .qs = qs }, { .qs = qs } }, c = { .qs = qs };
    Eng e[2], ec;
    uint64_t alloc;
    uint32_t c_done;

    for (int g = 0; g < 2; g++) {
        r[g].dev = qpci_device_find(qs->pcibus, QPCI_DEVFN(4 + 2 * g, 0));
        g_assert_nonnull(r[g].dev);
        eng_setup(&e[g], &r[g], 16384, NB_PAGES);
    }
    alloc = qs->pcibus->mmio_alloc_ptr;

    /* Held: everything queued, c ejected before any of its work ran. */
    engine_hold(qts, true);
    plug_busy_c(qs, &c, &ec);
    for (int g = 0; g < 2; g++) {
        nb_emit(&e[g], g, 1);
        eng_kick(&e[g]);
    }
    g_assert_cmpuint(eng_read(&ec, RVG_ENGINE_SEQNO), ==, 0);
    qpci_unplug_acpi_device_test(qts, "c", HOTPLUG_SLOT);
    g_free(c.dev);
    qs->pcibus->mmio_alloc_ptr = alloc;
    engine_hold(qts, false);
    for (int g = 0; g < 2; g++) {
        nb_check(&e[g], g, 1);
    }

    /* Running: c goes once the engine is well into a's work. */
    plug_busy_c(qs, &c, &ec);
    for (int g = 0; g < 2; g++) {
        nb_emit(&e[g], g, NB_WORK + 1);
        eng_kick(&e[g]);
    }
    for (int i = 0; i < 5000 &&
         eng_read(&e[0], RVG_ENGINE_SEQNO) < NB_WORK + 10; i++) {
        g_usleep(200);
    }
    c_done = eng_read(&ec, RVG_ENGINE_SEQNO);
    g_assert_cmpuint(eng_read(&ec, RVG_ENGINE_ERROR), ==, 0);
    qpci_unplug_acpi_device_test(qts, "c", HOTPLUG_SLOT);
    g_test_message("c had finished %u of its %u batches when ejected",
                   c_done, C_RUNS);
    g_free(c.dev);
    for (int g = 0; g < 2; g++) {
        nb_check(&e[g], g, NB_WORK + 1);
    }

    assert_alive(qts);
    g_assert_true(info_has(qts, "a"));
    g_assert_true(info_has(qts, "b"));
    g_assert_false(info_has(qts, "c"));
    for (int g = 0; g < 2; g++) {
        g_free(r[g].dev);
    }
    qtest_pc_shutdown(qs);
}

/* ---- 4. soak ---- */

/*
 * Every vGPU a GPU holds: its GTT fits three (docs/hardware.md), so three
 * 4 MiB vGPUs on a 64 MiB GPU. Each vGPU's graphics space: the ring on
 * page 0, a marker on page 1, the work area on pages 2-255 (all on the
 * same VRAM pages); nothing else is mapped. The last MiB of its VRAM
 * slice is a canary: its GTT never maps it, so no command of its own can
 * touch it, and no other vGPU can reach its slice at all.
 */
#define SOAK_VGPUS 3
#define SOAK_MARKER 0x1000
#define SOAK_WORK 0x2000
#define SOAK_WORK_END 0x100000
#define SOAK_CANARY (3 * MiB)
#define SOAK_CANARY_SIZE (1 * MiB)
#define SOAK_REFUSED_INDEX 600
#define SOAK_CHECK_EVERY 25 /* rounds between canary and progress checks */

enum {
    K_VALID,         /* stores, fills, copies in the work area; fence */
    K_RESET_FLIGHT,  /* valid long work, engine RESET straight after */
    K_DEVICE_RESET,  /* valid long work, device RESET straight after */
    K_PAST_SPACE,    /* scanner: a store past the graphics space */
    K_BAD_OPCODE,    /* scanner: UNKNOWN_OPCODE */
    K_RESERVED,      /* scanner: RESERVED_BITS */
    K_PRIVILEGED,    /* scanner: LOAD_REG */
    K_UNMAPPED,      /* GPU: a store or fill on an unmapped page */
    K_REFUSED_GTT,   /* GTT: an entry the mediator refuses, then used */
    K_KINDS,
};

static const char *const kind_name[K_KINDS] = {
    "valid", "engine-reset-in-flight", "device-reset-in-flight",
    "store-past-space", "bad-opcode", "reserved-bits", "privileged",
    "unmapped", "refused-gtt",
};

typedef struct SoakVgpu {
    Rvg r;
    Eng e;
    uint32_t seqno;       /* last fence value submitted */
    uint32_t done;        /* last fence value seen completed */
    int kind;             /* this round's */
    uint32_t expect_err;
    uint64_t valid_since; /* valid submissions since the last check */
    uint32_t progress;    /* SEQNO read after its last valid completion */
    uint32_t checked;     /* progress at the last check */
    uint64_t kinds[K_KINDS];
} SoakVgpu;

typedef struct Soak {
    QOSState *qs;
    uint64_t seed;
    uint64_t rng;
    uint64_t round;
    SoakVgpu v[SOAK_VGPUS];
    uint8_t canary[SOAK_VGPUS][SOAK_CANARY_SIZE];
} Soak;

/* xorshift64*: the whole run follows from the seed. */
static uint32_t rnd(Soak *s, uint32_t n)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (uint32_t)((s->rng * 0x2545f4914f6cdd1dull) >> 32) % n;
}

#define SOAK_ASSERT(s, g, cond) \
    do { \
        if (!(cond)) { \
            soak_fail((s), (g), #cond, __LINE__); \
        } \
    } while (0)

static G_NORETURN void soak_fail(Soak *s, int g, const char *what, int line)
{
    SoakVgpu *v = &s->v[g];

    g_error("soak failed at line %d: %s; RVG_SOAK_SEED=%" PRIu64 " round %"
            PRIu64 " vGPU %d (%s): ERROR %u at 0x%" PRIx64 ", SEQNO %u "
            "(submitted %u), head 0x%x tail 0x%x", line, what, s->seed,
            s->round, g, kind_name[v->kind], eng_read(&v->e, RVG_ENGINE_ERROR),
            eng_read_addr(&v->e), eng_read(&v->e, RVG_ENGINE_SEQNO), v->seqno,
            eng_read(&v->e, RVG_ENGINE_RING_HEAD), v->e.tail);
}

/*
 * An engine reset that submits nothing: eng_reset's "TAIL 0, then RESET"
 * would, on an enabled engine with no error latched, first submit the
 * stale commands from the old tail to the ring's end (the tail write is
 * a doorbell), and their fences could land before the RESET. With the
 * engine disabled a tail write scans nothing.
 */
static void soak_engine_reset(Eng *e)
{
    eng_write(e, RVG_ENGINE_RING_CTL, 0);
    e->tail = 0;
    eng_kick(e);
    eng_write(e, RVG_ENGINE_RING_CTL, RVG_RING_CTL_RESET | RVG_RING_CTL_ENABLE);
}

/* A random rectangle of `w` x `h` dwords in the work area: its start. */
static uint32_t soak_rect(Soak *s, uint32_t *pitch, uint32_t *w, uint32_t *h)
{
    uint32_t span;

    /* Mostly small, sometimes a good part of the work area. */
    if (rnd(s, 8) == 0) {
        *w = 1 + rnd(s, 1024);
        *h = 1 + rnd(s, 200);
    } else {
        *w = 1 + rnd(s, 64);
        *h = 1 + rnd(s, 16);
    }
    *pitch = *w * 4 + 4 * rnd(s, 64);
    span = *pitch * (*h - 1) + *w * 4;
    if (span > SOAK_WORK_END - SOAK_WORK) {
        *h = 1;
        span = *w * 4;
    }
    return SOAK_WORK + 4 * rnd(s, (SOAK_WORK_END - SOAK_WORK - span) / 4 + 1);
}

/* 0 to 5 random valid commands in the work area. */
static void soak_emit_valid(Soak *s, Eng *e)
{
    uint32_t n = rnd(s, 6);

    for (uint32_t i = 0; i < n; i++) {
        uint32_t pitch, w, h, dst, src, spitch, span;
        uint32_t dw[9];
        size_t len;

        switch (rnd(s, 3)) {
        case 0:
            dst = SOAK_WORK + 4 * rnd(s, (SOAK_WORK_END - SOAK_WORK) / 4);
            len = 4;
            memcpy(dw, (uint32_t[]) { STORE_DW(dst, rnd(s, UINT32_MAX)) },
                   len * 4);
            break;
        case 1:
            dst = soak_rect(s, &pitch, &w, &h);
            len = 7;
            memcpy(dw, (uint32_t[]) {
                       FILL_RECT(dst, pitch, w, h, rnd(s, UINT32_MAX))
                   }, len * 4);
            break;
        default:
            dst = soak_rect(s, &pitch, &w, &h);
            /* The source: same size, its own pitch and place. */
            spitch = w * 4 + 4 * rnd(s, 64);
            if (spitch * (h - 1) + w * 4 > SOAK_WORK_END - SOAK_WORK) {
                spitch = pitch;
            }
            span = spitch * (h - 1) + w * 4;
            src = SOAK_WORK +
                  4 * rnd(s, (SOAK_WORK_END - SOAK_WORK - span) / 4 + 1);
            len = 9;
            memcpy(dw, (uint32_t[]) {
                       COPY_RECT(src, spitch, dst, pitch, w, h)
                   }, len * 4);
            break;
        }
        eng_emit(e, dw, len);
    }
}

/* Long valid work: a few MiB of fills. */
static void soak_emit_long(Soak *s, Eng *e)
{
    for (int i = 0; i < 4; i++) {
        const uint32_t dw[] = {
            FILL_RECT(SOAK_WORK, 4096, 1024, 200, rnd(s, UINT32_MAX))
        };

        eng_emit(e, dw, ARRAY_SIZE(dw));
    }
}

/* This round's work for vGPU g, submitted. */
static void soak_submit(Soak *s, int g)
{
    SoakVgpu *v = &s->v[g];
    Eng *e = &v->e;
    uint32_t pick = rnd(s, 100);
    int kind;

    /* Three in five valid; the rest spread over the invalid kinds. */
    kind = pick < 60 ? K_VALID : K_RESET_FLIGHT + (pick - 60) % (K_KINDS - 1);
    v->kind = kind;
    v->kinds[kind]++;
    v->expect_err = 0;
    switch (kind) {
    case K_VALID: {
        const uint32_t tail[] = {
            STORE_DW(SOAK_MARKER, v->seqno + 1), FENCE(v->seqno + 1, rnd(s, 2)),
        };

        soak_emit_valid(s, e);
        eng_emit(e, tail, ARRAY_SIZE(tail));
        v->seqno++;
        v->valid_since++;
        eng_kick(e);
        break;
    }
    case K_RESET_FLIGHT:
    case K_DEVICE_RESET: {
        const uint32_t tail[] = { FENCE(v->seqno + 1, true) };

        soak_emit_long(s, e);
        eng_emit(e, tail, ARRAY_SIZE(tail));
        v->seqno++;
        eng_kick(e);
        if (kind == K_RESET_FLIGHT) {
            soak_engine_reset(e);
        } else {
            greg_write(&v->r, RVG_REG_RESET, RVG_RESET_MAGIC);
            e->tail = 0;
        }
        break;
    }
    case K_PAST_SPACE: {
        const uint32_t dw[] = {
            STORE_DW(GFX_SPACE + 4 * rnd(s, 1 << 20), 0xbad),
        };

        soak_emit_valid(s, e);
        eng_submit(e, dw, ARRAY_SIZE(dw));
        v->expect_err = RVG_ERR_BAD_ADDRESS;
        break;
    }
    case K_BAD_OPCODE: {
        const uint32_t dw[] = { CMD(0xe0 + rnd(s, 0x20), 0), 0, 0, 0 };

        soak_emit_valid(s, e);
        eng_submit(e, dw, ARRAY_SIZE(dw));
        v->expect_err = RVG_ERR_UNKNOWN_OPCODE;
        break;
    }
    case K_RESERVED: {
        const uint32_t dw[] = { NOOP() | (1 + rnd(s, 0xffff)) };

        soak_emit_valid(s, e);
        eng_submit(e, dw, ARRAY_SIZE(dw));
        v->expect_err = RVG_ERR_RESERVED_BITS;
        break;
    }
    case K_PRIVILEGED: {
        const uint32_t dw[] = { LOAD_REG(RVG_ENGINE_SEQNO, 0xffffffff) };

        soak_emit_valid(s, e);
        eng_submit(e, dw, ARRAY_SIZE(dw));
        v->expect_err = RVG_ERR_PRIVILEGED;
        break;
    }
    case K_UNMAPPED: {
        /* Valid to the scanner; the GPU faults inside the slice. */
        uint64_t a = SOAK_WORK_END +
                     4ull * rnd(s, (GFX_SPACE - SOAK_WORK_END) / 4);
        /* Or a fill from the work area across its end. */
        uint32_t from = SOAK_WORK_END - 4096 * (1 + rnd(s, 8));

        soak_emit_valid(s, e);
        if (rnd(s, 2)) {
            const uint32_t dw[] = { STORE_DW(a, 0xbad) };

            eng_submit(e, dw, ARRAY_SIZE(dw));
        } else {
            const uint32_t dw[] = { FILL_RECT(from, 4096, 1024, 16, 0xbad) };

            eng_submit(e, dw, ARRAY_SIZE(dw));
        }
        v->expect_err = RVG_ERR_BAD_ADDRESS;
        break;
    }
    case K_REFUSED_GTT: {
        /*
         * Past its VRAM (where another vGPU's slice is), reserved bits, a
         * system page on its own BAR0.
         */
        const uint32_t want[] = {
            RVG_FAULT_GTT_OUTSIDE_VRAM, RVG_FAULT_GTT_RESERVED_BITS,
            RVG_FAULT_GTT_NOT_GUEST_RAM,
        };
        uint32_t which = rnd(s, ARRAY_SIZE(want));
        uint64_t bad;
        const uint32_t dw[] = { STORE_DW(SOAK_REFUSED_INDEX * 4096, 0xbad) };

        if (which == 0) {
            bad = (VRAM_SIZE + 4096ull * rnd(s, 4096)) | RVG_GTT_LOCAL;
        } else if (which == 1) {
            bad = 4096ull * rnd(s, 256) | RVG_GTT_LOCAL;
            bad |= 4 << rnd(s, 8);
        } else {
            bad = e->vram.addr;
        }
        eng_gtt(e, SOAK_REFUSED_INDEX, bad | RVG_GTT_VALID);
        SOAK_ASSERT(s, g, greg_read(&v->r, RVG_REG_FAULT_REASON) ==
                          want[which]);
        SOAK_ASSERT(s, g, greg_read(&v->r, RVG_REG_INT_STATUS) &
                          RVG_INT_GTT_FAULT);
        soak_emit_valid(s, e);
        eng_submit(e, dw, ARRAY_SIZE(dw));
        v->expect_err = RVG_ERR_BAD_ADDRESS;
        break;
    }
    default:
        g_assert_not_reached();
    }
}

/* Wait for vGPU g's round to end (bounded) and check how it ended. */
static void soak_finish(Soak *s, int g)
{
    SoakVgpu *v = &s->v[g];
    Eng *e = &v->e;
    uint32_t seqno;
    int i;

    /* Ten seconds: a wedged vGPU fails the test, it does not hang it. */
    for (i = 0; i < 10000; i++) {
        if (eng_read(e, RVG_ENGINE_RING_HEAD) == e->tail ||
            eng_read(e, RVG_ENGINE_ERROR)) {
            break;
        }
        g_usleep(1000);
    }
    SOAK_ASSERT(s, g, i < 10000);
    seqno = eng_read(e, RVG_ENGINE_SEQNO);
    switch (v->kind) {
    case K_VALID:
        SOAK_ASSERT(s, g, eng_read(e, RVG_ENGINE_ERROR) == 0);
        SOAK_ASSERT(s, g, seqno == v->seqno);
        SOAK_ASSERT(s, g, eng_vram_readl(e, SOAK_MARKER) == v->seqno);
        v->done = seqno;
        v->progress = seqno;
        break;
    case K_RESET_FLIGHT:
        /* Completed before the reset, or dropped: nothing else. */
        SOAK_ASSERT(s, g, eng_read(e, RVG_ENGINE_ERROR) == 0);
        SOAK_ASSERT(s, g, eng_read(e, RVG_ENGINE_RING_HEAD) == 0);
        SOAK_ASSERT(s, g, seqno == v->done || seqno == v->seqno);
        v->done = seqno;
        break;
    case K_DEVICE_RESET:
        /*
         * Back to its reset state (config space is not reset: BAR2 still
         * answers), then set up again.
         */
        SOAK_ASSERT(s, g, greg_read(&v->r, RVG_REG_ID) == RVG_ID_VALUE);
        SOAK_ASSERT(s, g, eng_read(e, RVG_ENGINE_ERROR) == 0);
        SOAK_ASSERT(s, g, eng_read(e, RVG_ENGINE_RING_CTL) == 0);
        SOAK_ASSERT(s, g, eng_read(e, RVG_ENGINE_RING_SIZE) == 0);
        SOAK_ASSERT(s, g, seqno == 0);
        SOAK_ASSERT(s, g, greg_read(&v->r, RVG_REG_INT_STATUS) == 0);
        SOAK_ASSERT(s, g, qpci_io_readq(v->r.dev, v->r.mmio, RVG_GTT) == 0);
        v->done = 0;
        eng_program(e, 4096, SOAK_WORK_END / 4096);
        break;
    default:
        SOAK_ASSERT(s, g, eng_read(e, RVG_ENGINE_ERROR) == v->expect_err);
        SOAK_ASSERT(s, g, seqno == v->done);
        soak_engine_reset(e);
        SOAK_ASSERT(s, g, eng_read(e, RVG_ENGINE_ERROR) == 0);
        if (v->kind == K_REFUSED_GTT) {
            eng_gtt(e, SOAK_REFUSED_INDEX, 0);
        }
        break;
    }
    greg_write(&v->r, RVG_REG_INT_STATUS, ~0u);
}

/* Every canary intact; every vGPU given valid work completed some. */
static void soak_check(Soak *s)
{
    g_autofree uint8_t *seen = g_malloc(SOAK_CANARY_SIZE);

    for (int g = 0; g < SOAK_VGPUS; g++) {
        SoakVgpu *v = &s->v[g];

        qtest_bufread(s->qs->qts, v->e.vram.addr + SOAK_CANARY, seen,
                      SOAK_CANARY_SIZE);
        SOAK_ASSERT(s, g, memcmp(seen, s->canary[g], SOAK_CANARY_SIZE) == 0);
        /* Fence values only grow: progress is a larger SEQNO. */
        SOAK_ASSERT(s, g, v->valid_since == 0 || v->progress > v->checked);
        v->checked = v->progress;
        v->valid_since = 0;
    }
}

static void test_soak(void)
{
    const char *env_secs = g_getenv("RVG_SOAK_SECONDS");
    const char *env_seed = g_getenv("RVG_SOAK_SEED");
    double secs = env_secs ? g_ascii_strtod(env_secs, NULL) : 10;
    g_autofree Soak *s = g_new0(Soak, 1);
    g_autoptr(GTimer) timer = g_timer_new();
    QTestState *qts;
    uint64_t checks = 0;
    Usage start, end;

    s->seed = env_seed ? g_ascii_strtoull(env_seed, NULL, 0)
                       : (uint64_t)(uint32_t)g_test_rand_int() << 32 |
                         (uint32_t)g_test_rand_int();
    s->rng = s->seed ? s->seed : 1;
    g_test_message("soak: %d vGPUs, %.0f s, RVG_SOAK_SEED=%" PRIu64,
                   SOAK_VGPUS, secs, s->seed);
    s->qs = qtest_pc_boot("-nodefaults "
                          "-object rust-vgpu-gpu,id=gpu0,vram-size=64M "
                          "-device rust-vgpu,id=v0,gpu=gpu0,vram-size=4M,addr=04.0 "
                          "-device rust-vgpu,id=v1,gpu=gpu0,vram-size=4M,addr=05.0 "
                          "-device rust-vgpu,id=v2,gpu=gpu0,vram-size=4M,addr=06.0");
    qts = s->qs->qts;
    for (int g = 0; g < SOAK_VGPUS; g++) {
        SoakVgpu *v = &s->v[g];

        v->r = (Rvg) { .qs = s->qs };
        v->r.dev = qpci_device_find(s->qs->pcibus, QPCI_DEVFN(4 + g, 0));
        g_assert_nonnull(v->r.dev);
        eng_setup(&v->e, &v->r, 4096, SOAK_WORK_END / 4096);
        for (size_t i = 0; i < SOAK_CANARY_SIZE; i++) {
            s->canary[g][i] = (i * 7 + 3 + g * 101) ^ (i >> 12);
        }
        qtest_bufwrite(qts, v->e.vram.addr + SOAK_CANARY, s->canary[g],
                       SOAK_CANARY_SIZE);
    }
    start = usage(qts);
    while (g_timer_elapsed(timer, NULL) < secs) {
        s->round++;
        for (int g = 0; g < SOAK_VGPUS; g++) {
            soak_submit(s, g);
        }
        for (int g = 0; g < SOAK_VGPUS; g++) {
            soak_finish(s, g);
        }
        if (s->round % SOAK_CHECK_EVERY == 0) {
            soak_check(s);
            checks++;
        }
    }
    soak_check(s);
    checks++;
    end = usage(qts);

    g_test_message("soak: %" PRIu64 " rounds in %.1f s (%.1f rounds/s), "
                   "%" PRIu64 " canary checks, seed %" PRIu64, s->round,
                   g_timer_elapsed(timer, NULL),
                   s->round / g_timer_elapsed(timer, NULL), checks, s->seed);
    for (int g = 0; g < SOAK_VGPUS; g++) {
        g_autoptr(GString) kinds = g_string_new("");

        for (int k = 0; k < K_KINDS; k++) {
            g_string_append_printf(kinds, " %s=%" PRIu64, kind_name[k],
                                   s->v[g].kinds[k]);
        }
        g_test_message("vGPU %d: seqno %u;%s", g, s->v[g].seqno, kinds->str);
        g_free(s->v[g].r.dev);
    }
    /* Errors and resets of every kind leave nothing open behind them. */
    g_test_message("soak: RSS %" PRIu64 " -> %" PRIu64 " KiB, fds %u -> %u, "
                   "threads %" PRIu64 " -> %" PRIu64, start.rss_kib,
                   end.rss_kib, start.fds, end.fds, start.threads, end.threads);
    g_assert_cmpuint(end.fds, ==, start.fds);
    g_assert_cmpuint(end.threads, ==, start.threads);
    qtest_pc_shutdown(s->qs);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/rust-vgpu/lifecycle/hotplug-100", test_hotplug_100);
    qtest_add_func("/rust-vgpu/lifecycle/reset-100-busy", test_reset_100_busy);
    qtest_add_func("/rust-vgpu/lifecycle/unplug-busy-neighbours",
                   test_unplug_busy_neighbours);
    qtest_add_func("/rust-vgpu/lifecycle/soak", test_soak);
    return g_test_run();
}
