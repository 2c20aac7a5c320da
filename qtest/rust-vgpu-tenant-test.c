/*
 * One VM's vGPU as a tenant of a GPU that others share. The nested SR-IOV
 * test (guest/vfio/test_sriov.py) runs several of these at once, each in
 * a QEMU of its own on a VF of its own, as separate VMs:
 *
 *   RVG_TENANT_DEVICE   properties for -device rust-vgpu (",host=VF,...")
 *   RVG_TENANT_ROLE     "victim" (default): canaries, then work, then the
 *                       canaries checked; "attacker": aims GTT entries and
 *                       commands at every address it can express, between
 *                       work of its own; "runaway": keeps the engine busy
 *                       until it is killed
 *   RVG_TENANT_SECONDS  how long the busy step lasts (default 2)
 *
 * Every tenant first checks that its VRAM holds nothing of a previous
 * tenant where tenants put their canaries. The work step reports how many
 * fills it completed: the fairness figures.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "libqtest.h"
#include "libqos/libqos-pc.h"

#include "rvg-engine.h"

/* Where every tenant puts its VRAM canaries: a page each, 1 MiB apart. */
#define CANARIES 8
#define CANARY_AT(k) ((uint64_t)(k + 1) * MiB)
#define CANARY(k, i) (0xc0de0000u | (k) << 8 | (i))
/* The work: fills of 1024 x 64 pixels at graphics 0x10000. */
#define FILL_AT 0x10000
#define FILL_ROWS 64

static Rvg *rvg;
static Eng eng;
static uint64_t ram_canary;
static const char *role;
static double seconds = 2;

static bool is(const char *r)
{
    return !strcmp(role, r);
}

static void write_canaries(void)
{
    uint32_t page[1024];

    for (int k = 0; k < CANARIES; k++) {
        for (int i = 0; i < 1024; i++) {
            page[i] = CANARY(k, i & 0xff);
        }
        qpci_memwrite(rvg->dev, eng.vram, CANARY_AT(k), page, sizeof(page));
    }
    for (int i = 0; i < 1024; i++) {
        page[i] = 0x7a7a0000 | i;
    }
    qtest_memwrite(rvg->qs->qts, ram_canary, page, sizeof(page));
}

/* A new tenant finds zeros where the last one left its canaries. */
static void test_fresh(void)
{
    uint32_t page[1024];

    for (int k = 0; k < CANARIES; k++) {
        qpci_memread(rvg->dev, eng.vram, CANARY_AT(k), page, sizeof(page));
        for (int i = 0; i < 1024; i++) {
            g_assert_cmphex(page[i], ==, 0);
        }
    }
    write_canaries();
}

static void test_canaries_intact(void)
{
    uint32_t page[1024];

    for (int k = 0; k < CANARIES; k++) {
        qpci_memread(rvg->dev, eng.vram, CANARY_AT(k), page, sizeof(page));
        for (int i = 0; i < 1024; i++) {
            g_assert_cmphex(page[i], ==, CANARY(k, i & 0xff));
        }
    }
    qtest_memread(rvg->qs->qts, ram_canary, page, sizeof(page));
    for (int i = 0; i < 1024; i++) {
        g_assert_cmphex(page[i], ==, 0x7a7a0000 | i);
    }
}

/* One fill and a fence, waited for; false if the engine stopped. */
static bool one_fill(uint32_t color, uint32_t seqno)
{
    uint32_t work[] = {
        FILL_RECT(FILL_AT, 4096, 1024, FILL_ROWS, color), FENCE(seqno, false),
    };

    eng_submit(&eng, work, ARRAY_SIZE(work));
    eng_wait_idle(&eng);
    return eng_read(&eng, RVG_ENGINE_SEQNO) == seqno &&
           eng_vram_readl(&eng, FILL_AT + (FILL_ROWS - 1) * 4096 + 4092) == color;
}

static void test_work(void)
{
    g_autoptr(GTimer) t = g_timer_new();
    uint32_t n = 0;

    if (is("runaway")) {
        /* Busy until killed: the test's driver waits for this line. */
        g_test_message("tenant runaway busy");
        for (;;) {
            one_fill(n, n + 1);
            n++;
        }
    }
    while (g_timer_elapsed(t, NULL) < seconds) {
        g_assert_true(one_fill(0x01000000 + n, n + 1));
        n++;
    }
    g_test_message("tenant fills %u in %.2f s", n, g_timer_elapsed(t, NULL));
    g_assert_cmpuint(n, >, 0);
}

/*
 * Submit `dw` and expect the engine to stop with `error`: the guest sees
 * its own error, and after a ring reset its engine works again.
 */
static void expect_engine_error(const uint32_t *dw, size_t n, uint32_t error)
{
    eng_submit(&eng, dw, n);
    eng_wait_idle(&eng);
    g_assert_cmphex(eng_read(&eng, RVG_ENGINE_ERROR), ==, error);
    eng_reset(&eng);
}

/*
 * Everything this guest can name outside its own memory: GTT entries past
 * its VRAM or at addresses that are not its RAM, commands at graphics
 * addresses past its space. None reaches anything; each is refused in a
 * way the guest sees; its own work goes on.
 */
static void attack_once(uint32_t round)
{
    uint64_t gfx_size = 4096ull * greg_read(rvg, RVG_REG_GTT_ENTRIES);
    uint32_t last = greg_read(rvg, RVG_REG_GTT_ENTRIES) - 1;
    uint64_t bad_entries[] = {
        eng.vram_size | RVG_GTT_LOCAL | RVG_GTT_VALID,   /* past its VRAM */
        (1ull << 40) | RVG_GTT_LOCAL | RVG_GTT_VALID,    /* far past it */
        /* where other VFs' partitions start in a 512 MiB, 4-VF GPU */
        (128ull << 20) | RVG_GTT_LOCAL | RVG_GTT_VALID,
        (256ull << 20) | RVG_GTT_LOCAL | RVG_GTT_VALID,
        (384ull << 20) | RVG_GTT_LOCAL | RVG_GTT_VALID,
        0xfee00000ull | RVG_GTT_VALID,                   /* MSI, not RAM */
        (1ull << 40) | RVG_GTT_VALID,                    /* no RAM there */
        0xb0000000ull | RVG_GTT_VALID,                   /* config space */
    };
    uint32_t faults = greg_read(rvg, RVG_REG_GTT_FAULTS);
    uint32_t past[] = { STORE_DW(gfx_size, 0xbad0000 | round), FENCE(1, false) };
    uint32_t wild[] = { FILL_RECT(~0ull - 4095, 4096, 1024, 1, 0xbad), FENCE(1, false) };
    uint32_t through[] = { STORE_DW((uint64_t)last * 4096, 0xbad1), FENCE(2, false) };

    for (int i = 0; i < ARRAY_SIZE(bad_entries); i++) {
        eng_gtt(&eng, last, bad_entries[i]);
        /* What a refused entry maps is the scratch page: a store through
         * it goes nowhere a tenant can see. */
        eng_submit(&eng, through, ARRAY_SIZE(through));
        eng_wait_idle(&eng);
    }
    g_assert_cmpuint(greg_read(rvg, RVG_REG_GTT_FAULTS), ==,
                     faults + ARRAY_SIZE(bad_entries));
    expect_engine_error(past, ARRAY_SIZE(past), RVG_ERR_BAD_ADDRESS);
    expect_engine_error(wild, ARRAY_SIZE(wild), RVG_ERR_BAD_RECT);
    eng_gtt(&eng, last, 0);
}

static void test_attack(void)
{
    g_autoptr(GTimer) t = g_timer_new();
    uint32_t rounds = 0;

    while (g_timer_elapsed(t, NULL) < seconds) {
        attack_once(rounds);
        g_assert_true(one_fill(0x0a000000 + rounds, 100));
        eng_reset(&eng);
        rounds++;
    }
    g_test_message("tenant attack rounds %u in %.2f s", rounds,
                   g_timer_elapsed(t, NULL));
}

int main(int argc, char **argv)
{
    const char *device = g_getenv("RVG_TENANT_DEVICE");
    const char *secs = g_getenv("RVG_TENANT_SECONDS");
    int ret;

    g_test_init(&argc, &argv, NULL);
    role = g_getenv("RVG_TENANT_ROLE") ? g_getenv("RVG_TENANT_ROLE") : "victim";
    g_assert_true(is("victim") || is("attacker") || is("runaway"));
    if (secs) {
        seconds = g_ascii_strtod(secs, NULL);
    }
    rvg = rvg_start(device ? device : "");
    eng_init(&eng, rvg, 4096);
    ram_canary = ROUND_UP(guest_alloc(&rvg->qs->alloc, 2 * 4096), 4096);
    g_test_message("tenant role %s", role);

    qtest_add_func("/rust-vgpu/tenant/fresh", test_fresh);
    if (is("attacker")) {
        qtest_add_func("/rust-vgpu/tenant/attack", test_attack);
    } else {
        qtest_add_func("/rust-vgpu/tenant/work", test_work);
    }
    qtest_add_func("/rust-vgpu/tenant/canaries-intact", test_canaries_intact);
    ret = g_test_run();
    rvg_stop(rvg);
    return ret;
}
