/*
 * rust-vgpu sharing qtests: several vGPUs on one rust-vgpu-gpu object,
 * isolated from each other, time-sharing its engine, within its capacity.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qobject/qdict.h"

#include "rvg-engine.h"

#define GFX_SPACE (32768ull * 4096)
#define VRAM_SIZE (4 * MiB)

typedef struct Pair {
    QOSState *qs;
    Rvg a, b;
    Eng ea, eb;
} Pair;

/* Two vGPUs, "a" then "b", on GPU "gpu0" with room for three. */
static Pair *start(uint32_t ring_size, const char *gpu_opts)
{
    Pair *p = g_new0(Pair, 1);
    QPCIDevice *found[3] = { NULL };

    p->qs = qtest_pc_boot("-nodefaults "
                          "-object rust-vgpu-gpu,id=gpu0,vram-size=16M%s "
                          "-device rust-vgpu,id=a,gpu=gpu0,vram-size=4M,addr=04.0 "
                          "-device rust-vgpu,id=b,gpu=gpu0,vram-size=4M,addr=05.0",
                          gpu_opts);
    qpci_device_foreach(p->qs->pcibus, RVG_PCI_VENDOR_ID, RVG_PCI_DEVICE_ID_VGPU,
                        append_dev, found);
    g_assert_nonnull(found[0]);
    g_assert_nonnull(found[1]);
    /* The bus is walked in slot order. */
    p->a = (Rvg) { .qs = p->qs, .dev = found[0] };
    p->b = (Rvg) { .qs = p->qs, .dev = found[1] };
    eng_init(&p->ea, &p->a, ring_size);
    eng_init(&p->eb, &p->b, ring_size);
    return p;
}

static void stop(Pair *p)
{
    g_free(p->a.dev);
    g_free(p->b.dev);
    qtest_pc_shutdown(p->qs);
    g_free(p);
}

static void reset_after_error(Eng *e, const char *what)
{
    g_test_message("%s: ERROR %u at %#" PRIx64, what,
                   eng_read(e, RVG_ENGINE_ERROR), eng_read_addr(e));
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), !=, 0);
    eng_reset(e);
}

/*
 * Everything vGPU "a" can express, against canaries in "b"'s VRAM slice
 * and in the guest RAM page "b"'s GTT maps.
 */
static void test_isolation(void)
{
    Pair *p = start(4096, "");
    QTestState *qts = p->qs->qts;
    Eng *a = &p->ea, *b = &p->eb;
    uint64_t b_ram = ROUND_UP(guest_alloc(&p->qs->alloc, 2 * 4096), 4096);
    g_autofree uint8_t *canary = g_malloc(VRAM_SIZE);
    g_autofree uint8_t *seen = g_malloc(VRAM_SIZE);

    for (size_t i = 0; i < VRAM_SIZE; i++) {
        canary[i] = i * 7 + 3;
    }
    qtest_memwrite(qts, b->vram.addr, canary, VRAM_SIZE);
    qtest_memwrite(qts, b_ram, canary, 4096);
    eng_gtt(b, 300, b_ram | RVG_GTT_VALID);

    /* a fills every page it maps (its whole VRAM slice), then more. */
    eng_map_vram(a, VRAM_SIZE / 4096);
    SUBMIT(a, FILL_RECT(0, 4096, 1024, VRAM_SIZE / 4096, 0xdeadbeef), FENCE(1, false));
    eng_wait_idle(a);
    g_assert_cmpuint(eng_read(a, RVG_ENGINE_ERROR), ==, 0);

    SUBMIT(a, FILL_RECT(0, 4096, 1024, 2 * VRAM_SIZE / 4096, 0));
    eng_wait_idle(a);
    reset_after_error(a, "fill past its mapped pages");
    SUBMIT(a, STORE_DW(GFX_SPACE - 4, 0));
    eng_wait_idle(a);
    reset_after_error(a, "store at the end of its space (unmapped)");
    SUBMIT(a, STORE_DW(GFX_SPACE, 0));
    eng_wait_idle(a);
    reset_after_error(a, "store past its space");
    SUBMIT(a, COPY_RECT(0, 4096, GFX_SPACE - 4096, 4096, 1024, 2));
    eng_wait_idle(a);
    reset_after_error(a, "copy across the end of its space");
    SUBMIT(a, FILL_RECT(~0ull - 4095, 0, 1024, 1, 0));
    eng_wait_idle(a);
    reset_after_error(a, "fill wrapping the address space");
    SUBMIT(a, COPY_RECT(2000 * 4096, 64, 0, 64, 16, 1));
    eng_wait_idle(a);
    reset_after_error(a, "read through an entry it never set");

    /* GTT entries of a that would reach b's slice are refused. */
    eng_gtt(a, 600, VRAM_SIZE | RVG_GTT_LOCAL | RVG_GTT_VALID);
    g_assert_cmphex(greg_read(&p->a, RVG_REG_FAULT_REASON), ==,
                    RVG_FAULT_GTT_OUTSIDE_VRAM);
    eng_gtt(a, 601, (2 * VRAM_SIZE - 4096) | RVG_GTT_LOCAL | RVG_GTT_VALID);
    SUBMIT(a, FILL_RECT(600 * 4096, 4096, 1024, 2, 0));
    eng_wait_idle(a);
    reset_after_error(a, "fill through refused entries");

    qtest_memread(qts, b->vram.addr, seen, VRAM_SIZE);
    g_assert_true(memcmp(seen, canary, VRAM_SIZE) == 0);
    qtest_memread(qts, b_ram, seen, 4096);
    g_assert_true(memcmp(seen, canary, 4096) == 0);

    /* b's own mapping of the page works: the canary was live. */
    SUBMIT(b, COPY_RECT(300 * 4096, 64, 0x9000, 64, 16, 1), FENCE(2, false));
    eng_wait_idle(b);
    g_assert_cmpuint(eng_read(b, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmphex(eng_vram_readl(b, 0x9000), ==, *(uint32_t *)canary);
    stop(p);
}

/* Both rings full of long fills: when one finishes, the other is well on. */
static void test_fairness(void)
{
    Pair *p = start(16384, ",timeslice-us=500");
    Eng *e[2] = { &p->ea, &p->eb };
    const uint32_t fills = 400;
    uint32_t done[2];

    for (int g = 0; g < 2; g++) {
        eng_map_vram(e[g], VRAM_SIZE / 4096);
        eng_write(e[g], RVG_ENGINE_RING_CTL, 0);
        for (uint32_t i = 1; i <= fills; i++) {
            const uint32_t dw[] = { FILL_RECT(0x100000, 4096, 1024, 256, i), FENCE(i, false) };

            eng_emit(e[g], dw, ARRAY_SIZE(dw));
        }
        eng_kick(e[g]);
    }
    eng_write(e[0], RVG_ENGINE_RING_CTL, RVG_RING_CTL_ENABLE);
    eng_write(e[1], RVG_ENGINE_RING_CTL, RVG_RING_CTL_ENABLE);
    for (int i = 0;; i++) {
        done[0] = eng_read(e[0], RVG_ENGINE_SEQNO);
        done[1] = eng_read(e[1], RVG_ENGINE_SEQNO);
        if (done[0] == fills || done[1] == fills) {
            break;
        }
        g_assert_cmpuint(eng_read(e[0], RVG_ENGINE_ERROR), ==, 0);
        g_assert_cmpuint(eng_read(e[1], RVG_ENGINE_ERROR), ==, 0);
        g_assert_cmpint(i, <, 60000);
        g_usleep(500);
    }
    g_test_message("when one vGPU finished, the other had %u of %u fills done",
                   MIN(done[0], done[1]), fills);
    g_assert_cmpuint(MIN(done[0], done[1]), >=, fills / 4);
    eng_wait_idle(e[0]);
    eng_wait_idle(e[1]);
    g_assert_cmpuint(eng_read(e[0], RVG_ENGINE_SEQNO), ==, fills);
    g_assert_cmpuint(eng_read(e[1], RVG_ENGINE_SEQNO), ==, fills);
    g_assert_cmphex(eng_vram_readl(e[0], 0x100000), ==, fills);
    g_assert_cmphex(eng_vram_readl(e[1], 0x100000), ==, fills);
    stop(p);
}

/* Set the GPU's engine hold (the x-engine-hold test hook). */
static void engine_hold(Pair *p, bool hold)
{
    qtest_qmp_assert_success(p->qs->qts,
                             "{'execute': 'qom-set', 'arguments': {"
                             "'path': '/objects/gpu0', "
                             "'property': 'x-engine-hold', 'value': %i}}",
                             hold);
}

/* Wait (five seconds at most) for `e`'s ERROR to read `code`. */
static void wait_error(Eng *e, uint32_t code)
{
    for (int i = 0; i < 5000 && eng_read(e, RVG_ENGINE_ERROR) != code; i++) {
        g_usleep(1000);
    }
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, code);
}

/*
 * Liveness: work that makes no progress (the engine held, as a hung GPU
 * would be) is stopped by the watchdog. Its vGPU alone is halted with
 * HANG; the neighbour's work, queued behind it, completes; a reset
 * recovers the halted vGPU. (With the neighbour waiting, the preemption
 * timeout would stop it first: /rust-vgpu/preempt/stuck-engine-...; here
 * it is set past the watchdog.)
 */
static void test_watchdog(void)
{
    Pair *p = start(4096, ",watchdog-ms=1000,preempt-timeout-ms=600000,"
                    "x-engine-hold=on");
    QTestState *qts = p->qs->qts;
    Eng *a = &p->ea, *b = &p->eb;

    SUBMIT(a, FILL_RECT(0x10000, 4096, 1024, 4, 0x11), FENCE(1, true));
    SUBMIT(b, STORE_DW(0x8000, 0xb0b), FENCE(2, true));
    wait_error(a, RVG_ERR_HANG);
    g_assert_cmphex(eng_read_addr(a), ==, 0);
    g_assert_cmphex(eng_read(a, RVG_ENGINE_RING_HEAD), ==, 0);
    g_assert_cmpuint(eng_read(a, RVG_ENGINE_SEQNO), ==, 0);
    g_assert_cmphex(greg_read(&p->a, RVG_REG_INT_STATUS) & RVG_INT_ENGINE_ERROR,
                    ==, RVG_INT_ENGINE_ERROR);
    g_assert_cmpuint(rvg_info_value(qts, "a", "hangs="), ==, 1);
    g_assert_cmpuint(rvg_info_value(qts, "a", "watchdog-resets="), ==, 1);
    g_assert_cmpuint(rvg_info_value(qts, "b", "hangs="), ==, 0);

    /* The GPU works again: b's work was never lost, only delayed. */
    engine_hold(p, false);
    eng_wait_idle(b);
    g_assert_cmpuint(eng_read(b, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmpuint(eng_read(b, RVG_ENGINE_SEQNO), ==, 2);
    g_assert_cmphex(eng_vram_readl(b, 0x8000), ==, 0xb0b);
    g_assert_cmphex(eng_vram_readl(a, 0x10000), !=, 0x11);

    eng_reset(a);
    SUBMIT(a, STORE_DW(0x8000, 0xa0a), FENCE(3, true));
    eng_wait_idle(a);
    g_assert_cmpuint(eng_read(a, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmpuint(eng_read(a, RVG_ENGINE_SEQNO), ==, 3);
    g_assert_cmphex(eng_vram_readl(a, 0x8000), ==, 0xa0a);
    stop(p);
}

/*
 * The reported wedge, as the adversary drove it: vGPU a submits work
 * touching one guest RAM page, rewrites that page's GTT entry to a value
 * the mediator refuses right after the tail write, waits for the engine
 * to finish or fault, resets its engine, and again. Whatever the timing
 * of each round, a recovers every time and b is never stalled. (The
 * interleavings that wedged the GPU are replayed deterministically by the
 * scheduler core's unit tests; this is the end-to-end check.)
 */
static void test_reset_resubmit_adversary(void)
{
    Pair *p = start(4096, ",timeslice-us=500");
    Eng *a = &p->ea, *b = &p->eb;
    uint64_t page = ROUND_UP(guest_alloc(&p->qs->alloc, 2 * 4096), 4096);
    const uint64_t rejected[] = {
        (64ull << 20) | RVG_GTT_LOCAL | RVG_GTT_VALID, /* past its VRAM */
        page | 0x100 | RVG_GTT_VALID,                  /* reserved bits */
        0,                                             /* invalid */
    };
    const uint32_t p_gfx = 300 * 4096;
    uint32_t faults = 0;

    for (uint32_t i = 1; i <= 300; i++) {
        eng_gtt(a, 300, page | RVG_GTT_VALID);
        SUBMIT(a, STORE_DW(p_gfx, i), FILL_RECT(p_gfx + 64, 64, 8, 4, i),
               COPY_RECT(p_gfx, 64, 0x9000, 64, 8, 4), FENCE(i, true));
        eng_gtt(a, 300, rejected[i % ARRAY_SIZE(rejected)]);
        eng_wait_idle(a);
        if (eng_read(a, RVG_ENGINE_ERROR)) {
            g_assert_cmpuint(eng_read(a, RVG_ENGINE_ERROR), ==, RVG_ERR_BAD_ADDRESS);
            faults++;
        } else {
            g_assert_cmpuint(eng_read(a, RVG_ENGINE_SEQNO), ==, i);
        }
        eng_reset(a);
        if (i % 50 == 0) {
            SUBMIT(b, STORE_DW(0x8000, i), FENCE(i, false));
            eng_wait_idle(b);
            g_assert_cmpuint(eng_read(b, RVG_ENGINE_ERROR), ==, 0);
            g_assert_cmpuint(eng_read(b, RVG_ENGINE_SEQNO), ==, i);
        }
    }
    g_test_message("300 rounds: %u faulted, %u completed", faults, 300 - faults);
    eng_gtt(a, 300, page | RVG_GTT_VALID);
    SUBMIT(a, STORE_DW(p_gfx, 0x5a5a), FENCE(1000, false));
    eng_wait_idle(a);
    g_assert_cmpuint(eng_read(a, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmpuint(eng_read(a, RVG_ENGINE_SEQNO), ==, 1000);
    g_assert_cmphex(qtest_readl(p->qs->qts, page), ==, 0x5a5a);
    stop(p);
}

/* After a system reset, `e`'s vGPU reads its documented reset state. */
static void assert_reset_state(Eng *e)
{
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmphex(eng_read_addr(e), ==, 0);
    g_assert_cmphex(eng_read(e, RVG_ENGINE_RING_HEAD), ==, 0);
    g_assert_cmphex(eng_read(e, RVG_ENGINE_RING_TAIL), ==, 0);
    g_assert_cmphex(eng_read(e, RVG_ENGINE_RING_CTL), ==, 0);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_SEQNO), ==, 0);
    g_assert_cmphex(greg_read(e->r, RVG_REG_INT_STATUS), ==, 0);
}

/*
 * A system reset with faulting and long work in flight on both vGPUs of a
 * shared GPU leaves each in its reset state: nothing of the old
 * generation (an error, a head, an interrupt) reaches the new one.
 */
static void test_reset_under_load(void)
{
    Pair *p = start(4096, "");
    Eng *e[2] = { &p->ea, &p->eb };

    for (int round = 0; round < 20; round++) {
        for (int g = 0; g < 2; g++) {
            /* Long fills, then a store its GTT entry is pulled from. */
            eng_gtt(e[g], 300, ((4ull << 20) - 4096) | RVG_GTT_LOCAL | RVG_GTT_VALID);
            SUBMIT(e[g], FILL_RECT(0, 4096, 1024, 256, round),
                   FILL_RECT(0, 4096, 1024, 256, round),
                   STORE_DW(300 * 4096, 1), FENCE(1, true));
            eng_gtt(e[g], 300, 0);
        }
        qtest_system_reset(p->qs->qts);
        for (int g = 0; g < 2; g++) {
            rvg_enable(e[g]->r);
            assert_reset_state(e[g]);
        }
        /* Give any late progress of the old generation time to show. */
        g_usleep(20 * 1000);
        for (int g = 0; g < 2; g++) {
            assert_reset_state(e[g]);
            eng_init(e[g], e[g]->r, 4096);
        }
    }
    for (int g = 0; g < 2; g++) {
        SUBMIT(e[g], STORE_DW(0x8000, 7 + g), FENCE(5, false));
        eng_wait_idle(e[g]);
        g_assert_cmpuint(eng_read(e[g], RVG_ENGINE_SEQNO), ==, 5);
    }
    stop(p);
}

/* `resp` is an error whose description holds `want`. */
static void test_capacity(void)
{
    Pair *p = start(4096, "");
    QTestState *qts = p->qs->qts;
    QDict *resp;

    /* 16 MiB of VRAM: a third 4 MiB slice fits, an 8 MiB one does not. */
    rvg_expect_error(qtest_qmp(qts, "{'execute': 'device_add', 'arguments': {"
                           "'driver': 'rust-vgpu', 'id': 'big', 'gpu': 'gpu0', "
                           "'vram-size': 8388608}}"),
                 "gpu 'gpu0': the GPU's VRAM has no free 8388608 (8 MiB) slice");
    resp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments': {"
                     "'driver': 'rust-vgpu', 'id': 'c', 'gpu': 'gpu0', "
                     "'vram-size': 4194304}}");
    g_assert_false(qdict_haskey(resp, "error"));
    qobject_unref(resp);
    /* The GTT has room for three. */
    rvg_expect_error(qtest_qmp(qts, "{'execute': 'device_add', 'arguments': {"
                           "'driver': 'rust-vgpu', 'id': 'd', 'gpu': 'gpu0', "
                           "'vram-size': 1048576}}"),
                 "gpu 'gpu0': the GPU's GTT holds 3 vGPUs and all are in use");
    /* An unknown GPU, and deleting one in use. */
    rvg_expect_error(qtest_qmp(qts, "{'execute': 'device_add', 'arguments': {"
                           "'driver': 'rust-vgpu', 'id': 'e', 'gpu': 'nope'}}"),
                 "nope");
    rvg_expect_error(qtest_qmp(qts, "{'execute': 'object-del', 'arguments': {"
                           "'id': 'gpu0'}}"), "gpu0");
    stop(p);
}

static void test_bad_gpu_properties(void)
{
    QTestState *qts = qtest_init("-machine none");

    rvg_expect_error(qtest_qmp(qts, "{'execute': 'object-add', 'arguments': {"
                           "'qom-type': 'rust-vgpu-gpu', 'id': 'g', "
                           "'vram-size': 3145728}}"),
                 "property 'vram-size' is 3145728 (3 MiB)");
    rvg_expect_error(qtest_qmp(qts, "{'execute': 'object-add', 'arguments': {"
                           "'qom-type': 'rust-vgpu-gpu', 'id': 'g', "
                           "'timeslice-us': 10}}"),
                 "property 'timeslice-us' is 10");
    rvg_expect_error(qtest_qmp(qts, "{'execute': 'object-add', 'arguments': {"
                           "'qom-type': 'rust-vgpu-gpu', 'id': 'g', "
                           "'watchdog-ms': 99}}"),
                 "property 'watchdog-ms' is 99: it must be from 100 to 600000");
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/rust-vgpu/share/isolation", test_isolation);
    qtest_add_func("/rust-vgpu/share/fairness", test_fairness);
    qtest_add_func("/rust-vgpu/share/capacity", test_capacity);
    qtest_add_func("/rust-vgpu/share/watchdog", test_watchdog);
    qtest_add_func("/rust-vgpu/share/reset-resubmit-adversary",
                   test_reset_resubmit_adversary);
    qtest_add_func("/rust-vgpu/share/reset-under-load", test_reset_under_load);
    qtest_add_func("/rust-vgpu/share/bad-gpu-properties", test_bad_gpu_properties);
    return g_test_run();
}
