/*
 * rust-vgpu preemption qtests: vGPUs on one rust-vgpu-gpu whose time slices
 * end inside long commands. A preempted fill or copy runs on from where it
 * stopped and gives the pixels an uninterrupted one gives; an engine that
 * does not stop within the preemption timeout costs its owner alone; a
 * guest that submits work the engine cannot preempt, without end, is halted
 * each time while the others keep their shares.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"

#include "rvg-engine.h"

#define VGPUS 3
#define RING_SIZE (64 * KiB)
#define PITCH 4096
#define ROW_PIXELS (PITCH / 4)
/* Rows of v0's 64 MiB slice past its ring. */
#define V0_ROWS ((64 * MiB - RING_SIZE) / PITCH)
#define V0_FIRST_ROW (RING_SIZE / PITCH)
#define TOLERANCE 0.08

typedef struct Gpu {
    QOSState *qs;
    Rvg r[VGPUS];
    Eng e[VGPUS];
    uint32_t emitted[VGPUS];
} Gpu;

/*
 * v0 (64 MiB of VRAM, all of it mapped), v1 and v2 (16 MiB) on gpu0 with
 * `gpu_opts`; a 500 us time slice.
 */
static Gpu *start(const char *gpu_opts)
{
    Gpu *g = g_new0(Gpu, 1);
    QPCIDevice *found[VGPUS + 1] = { NULL };

    g->qs = qtest_pc_boot("-nodefaults "
                          "-object rust-vgpu-gpu,id=gpu0,timeslice-us=500,%s "
                          "-device rust-vgpu,id=v0,gpu=gpu0,vram-size=64M,addr=04.0 "
                          "-device rust-vgpu,id=v1,gpu=gpu0,vram-size=16M,addr=05.0 "
                          "-device rust-vgpu,id=v2,gpu=gpu0,vram-size=16M,addr=06.0",
                          gpu_opts);
    qpci_device_foreach(g->qs->pcibus, RVG_PCI_VENDOR_ID, RVG_PCI_DEVICE_ID_VGPU,
                        append_dev, found);
    for (int i = 0; i < VGPUS; i++) {
        g_assert_nonnull(found[i]);
        g->r[i] = (Rvg) { .qs = g->qs, .dev = found[i] };
        eng_init(&g->e[i], &g->r[i], RING_SIZE);
        eng_map_vram(&g->e[i], (i == 0 ? 64 * MiB : 16 * MiB) / 4096);
    }
    return g;
}

static void stop(Gpu *g)
{
    for (int i = 0; i < VGPUS; i++) {
        g_free(g->r[i].dev);
    }
    qtest_pc_shutdown(g->qs);
    g_free(g);
}

/* x-query-rust-vgpu's number `field` for vGPU `i`. */
static uint64_t query(Gpu *g, int i, const char *field)
{
    QDict *resp = qtest_qmp(g->qs->qts, "{'execute': 'x-query-rust-vgpu'}");
    g_autofree char *id = g_strdup_printf("v%d", i);
    QListEntry *e;
    uint64_t value = 0;
    bool seen = false;

    QLIST_FOREACH_ENTRY(qdict_get_qlist(resp, "return"), e) {
        QDict *d = qobject_to(QDict, qlist_entry_obj(e));

        if (!strcmp(qdict_get_str(d, "id"), id)) {
            value = qdict_get_int(d, field);
            seen = true;
        }
    }
    qobject_unref(resp);
    g_assert_true(seen);
    return value;
}


/* Keep up to 8 small fills (64 x 64 pixels) with fences in vGPU i's ring. */
static void feed_small(Gpu *g, int i)
{
    Eng *e = &g->e[i];

    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, 0);
    while (g->emitted[i] - eng_read(e, RVG_ENGINE_SEQNO) < 8) {
        uint32_t seqno = ++g->emitted[i];

        SUBMIT(e, FILL_RECT(RING_SIZE, PITCH, 64, 64, seqno), FENCE(seqno, false));
    }
}

/* The pixel at `row`, `col` of v0's VRAM. */
static uint32_t v0_pixel(Gpu *g, uint32_t row, uint32_t col)
{
    return eng_vram_readl(&g->e[0], (uint64_t)row * PITCH + col * 4);
}

/*
 * Long fills and an overlapping copy on v0, each tens of time slices of
 * the engine, while v1 always waits with small work: v0's commands are
 * preempted inside, again and again, and each runs on from where it
 * stopped. The pixels are those of uninterrupted commands: the copy moves
 * rows down by 1000, bottom-up, so a resume at the wrong row or in the
 * wrong order shows as a row of the wrong colour.
 */
static void test_long_commands_resume(void)
{
    Gpu *g = start("policy=best-effort");
    Eng *e = &g->e[0];
    const uint32_t shift = 1000, half = V0_FIRST_ROW + V0_ROWS / 2;
    const uint32_t height = V0_ROWS - shift;

    for (uint32_t c = 1; c <= 4; c++) {
        SUBMIT(e, FILL_RECT(RING_SIZE, PITCH, ROW_PIXELS, V0_ROWS, 0x01010101u * c));
    }
    SUBMIT(e, FILL_RECT(RING_SIZE, PITCH, ROW_PIXELS, half - V0_FIRST_ROW, 0xaaaaaaaau),
           FILL_RECT((uint64_t)half * PITCH, PITCH, ROW_PIXELS,
                     V0_FIRST_ROW + V0_ROWS - half, 0xbbbbbbbbu),
           COPY_RECT(RING_SIZE, PITCH, RING_SIZE + (uint64_t)shift * PITCH, PITCH,
                     ROW_PIXELS, height),
           FENCE(1, false));
    while (eng_read(e, RVG_ENGINE_SEQNO) != 1) {
        g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, 0);
        feed_small(g, 1);
        g_usleep(1000);
    }
    eng_wait_idle(&g->e[1]);

    for (uint32_t row = V0_FIRST_ROW; row < V0_FIRST_ROW + V0_ROWS; row++) {
        /* Rows above the copy's destination keep their fill; below, each
         * holds the row `shift` above it as it was before the copy. */
        uint32_t from = row < V0_FIRST_ROW + shift ? row : row - shift;
        uint32_t want = from < half ? 0xaaaaaaaau : 0xbbbbbbbbu;
        bool edge = row % 61 == 0 || row + 1 == half || row == half ||
                    row + 1 == half + shift || row == half + shift ||
                    row + 1 == V0_FIRST_ROW + V0_ROWS;

        if (edge) {
            g_assert_cmphex(v0_pixel(g, row, 0), ==, want);
            g_assert_cmphex(v0_pixel(g, row, ROW_PIXELS - 1), ==, want);
        }
    }
    g_test_message("v0 preempted %" PRIu64 " times",
                   query(g, 0, "preemptions"));
    g_assert_cmpuint(query(g, 0, "preemptions"), >, 0);
    for (int i = 0; i < 2; i++) {
        g_assert_cmpuint(query(g, i, "engine-faults"), ==, 0);
    }
    g_assert_cmpuint(eng_read(&g->e[1], RVG_ENGINE_SEQNO), ==, g->emitted[1]);
    stop(g);
}

/*
 * The engine is held (stuck) with v0's fill in it while v1 waits: the
 * preemption at the end of v0's slice is never answered, so after the
 * preemption timeout v0 alone is halted with PREEMPT_TIMEOUT, head on the
 * fill; v1's work runs once the engine moves, and v0 works again after
 * its driver resets its engine.
 */
static void test_stuck_engine_costs_its_owner_alone(void)
{
    Gpu *g = start("preempt-timeout-ms=50,x-engine-hold=on");
    Eng *v0 = &g->e[0], *v1 = &g->e[1];

    SUBMIT(v0, FILL_RECT(RING_SIZE, PITCH, 64, 64, 1), FENCE(1, false));
    /* v0 owns the ring before v1 has work. */
    for (int i = 0; i < 100 && !query(g, 0, "slices"); i++) {
        g_usleep(1000);
    }
    g_assert_cmpuint(query(g, 0, "slices"), ==, 1);
    SUBMIT(v1, FILL_RECT(RING_SIZE, PITCH, 64, 64, 2), FENCE(2, false));
    rvg_wait_status(&g->r[0], RVG_INT_ENGINE_ERROR);
    g_assert_cmpuint(eng_read(v0, RVG_ENGINE_ERROR), ==, RVG_ERR_PREEMPT_TIMEOUT);
    g_assert_cmphex(eng_read_addr(v0), ==, 0);
    g_assert_cmphex(eng_read(v0, RVG_ENGINE_RING_HEAD), ==, 0);
    g_assert_cmpuint(query(g, 0, "preempt-timeouts"), ==, 1);
    g_assert_cmpuint(query(g, 0, "engine-faults"), ==, 1);

    qtest_qmp_assert_success(g->qs->qts,
                             "{'execute': 'qom-set', 'arguments': {"
                             "'path': '/objects/gpu0', 'property': 'x-engine-hold', "
                             "'value': false}}");
    eng_wait_idle(v1);
    g_assert_cmpuint(eng_read(v1, RVG_ENGINE_SEQNO), ==, 2);
    g_assert_cmpuint(query(g, 1, "engine-faults"), ==, 0);

    eng_reset(v0);
    SUBMIT(v0, FILL_RECT(RING_SIZE, PITCH, 64, 64, 3), FENCE(3, false));
    eng_wait_idle(v0);
    g_assert_cmpuint(eng_read(v0, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmpuint(eng_read(v0, RVG_ENGINE_SEQNO), ==, 3);
    g_assert_cmphex(v0_pixel(g, V0_FIRST_ROW, 0), ==, 3);
    stop(g);
}

/*
 * v0 submits, without end, a copy the engine cannot preempt inside: 125 MiB
 * between rectangles of different pitches that overlap, over its whole
 * graphics space (its second 64 MiB maps its VRAM again), so the source is
 * read whole before the destination is written: about 40 ms of this
 * machine's engine, four times the preemption timeout. It resets its
 * engine each time the timeout halts it. v1 and v2 keep the engine busy
 * with fills, which stop within a band (a few microseconds) when their
 * slice ends: well inside the timeout, however the host schedules the
 * engine's thread. Under equal-share v0's overruns are charged to it: v1
 * and v2 keep their part of the engine and complete all their work.
 */
static void test_runaway_is_halted_and_others_keep_their_shares(void)
{
    Gpu *g = start("policy=equal-share,preempt-timeout-ms=10");
    const uint32_t vram_pages = 64 * MiB / 4096, ring_pages = RING_SIZE / 4096;
    uint64_t before[VGPUS], after[VGPUS];
    int64_t start_us, end_us;
    uint32_t halted = 0;

    for (uint32_t i = vram_pages; i < 2 * vram_pages; i++) {
        uint32_t page = ring_pages + (i - vram_pages) % (vram_pages - ring_pages);

        eng_gtt(&g->e[0], i, (uint64_t)page << 12 | RVG_GTT_LOCAL | RVG_GTT_VALID);
    }
    start_us = g_get_monotonic_time();
    end_us = start_us + 1500 * 1000;
    for (int i = 0; i < VGPUS; i++) {
        before[i] = query(g, i, "engine-time-us");
    }
    while (g_get_monotonic_time() < end_us) {
        Eng *v0 = &g->e[0];
        uint32_t err = eng_read(v0, RVG_ENGINE_ERROR);

        if (err) {
            g_assert_cmpuint(err, ==, RVG_ERR_PREEMPT_TIMEOUT);
            halted++;
            eng_reset(v0);
        }
        if (eng_read(v0, RVG_ENGINE_RING_HEAD) == v0->tail) {
            SUBMIT(v0, COPY_RECT(RING_SIZE, PITCH, RING_SIZE + PITCH, PITCH + 4,
                                 ROW_PIXELS, 32000));
        }
        for (int i = 1; i < VGPUS; i++) {
            /* 64 to 128 fills of 1000 rows: tens of milliseconds. */
            eng_keep_fills(&g->e[i], &g->emitted[i], 63, 128, RING_SIZE, 1000);
        }
        g_usleep(2000);
    }
    for (int i = 0; i < VGPUS; i++) {
        after[i] = query(g, i, "engine-time-us");
    }
    g_test_message("v0 halted %u times; engine shares %.3f %.3f %.3f", halted,
                   (double)(after[0] - before[0]) / (g_get_monotonic_time() - start_us),
                   (double)(after[1] - before[1]) / (g_get_monotonic_time() - start_us),
                   (double)(after[2] - before[2]) / (g_get_monotonic_time() - start_us));
    g_assert_cmpuint(halted, >, 0);
    g_assert_cmpuint(query(g, 0, "preempt-timeouts"), >=, halted);
    for (int i = 1; i < VGPUS; i++) {
        double share = (double)(after[i] - before[i]) /
                       (g_get_monotonic_time() - start_us);

        g_assert_cmpuint(eng_read(&g->e[i], RVG_ENGINE_ERROR), ==, 0);
        g_assert_cmpuint(query(g, i, "engine-faults"), ==, 0);
        g_assert_cmpfloat_with_epsilon(share, 1.0 / 3, TOLERANCE);
        eng_wait_idle(&g->e[i]);
        g_assert_cmpuint(eng_read(&g->e[i], RVG_ENGINE_SEQNO), ==, g->emitted[i]);
    }
    stop(g);
}

/*
 * Preemption is the physical engine arbiter's: a guest's PREEMPT bit is not
 * kept, its RING_RESUME writes are refused (read 0), and its engine runs on.
 */
static void test_guest_cannot_preempt(void)
{
    Gpu *g = start("policy=best-effort");
    Eng *e = &g->e[1];

    eng_write(e, RVG_ENGINE_RING_CTL, RVG_RING_CTL_ENABLE | RVG_RING_CTL_PREEMPT);
    g_assert_cmphex(eng_read(e, RVG_ENGINE_RING_CTL), ==, RVG_RING_CTL_ENABLE);
    eng_write(e, RVG_ENGINE_RING_RESUME, 5);
    g_assert_cmphex(eng_read(e, RVG_ENGINE_RING_RESUME), ==, 0);
    SUBMIT(e, FILL_RECT(RING_SIZE, PITCH, 64, 64, 7), FENCE(7, false));
    eng_wait_idle(e);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_SEQNO), ==, 7);
    g_assert_cmphex(eng_vram_readl(e, RING_SIZE + 63 * PITCH + 63 * 4), ==, 7);
    stop(g);
}

/* A preemption timeout out of range is refused, with the reason. */
static void test_bad_preempt_timeout(void)
{
    QTestState *qts = qtest_init("-machine none");

    rvg_expect_error(qtest_qmp(qts, "{'execute': 'object-add', 'arguments': {"
                               "'qom-type': 'rust-vgpu-gpu', 'id': 'g', "
                               "'preempt-timeout-ms': 0}}"),
                     "property 'preempt-timeout-ms' is 0: it must be from 1 to 600000");
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/rust-vgpu/preempt/long-commands-resume", test_long_commands_resume);
    qtest_add_func("/rust-vgpu/preempt/stuck-engine-costs-its-owner-alone",
                   test_stuck_engine_costs_its_owner_alone);
    qtest_add_func("/rust-vgpu/preempt/runaway-is-halted-others-keep-shares",
                   test_runaway_is_halted_and_others_keep_their_shares);
    qtest_add_func("/rust-vgpu/preempt/guest-cannot-preempt", test_guest_cannot_preempt);
    qtest_add_func("/rust-vgpu/preempt/bad-timeout", test_bad_preempt_timeout);
    return g_test_run();
}
