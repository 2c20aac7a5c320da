/*
 * rust-vgpu scheduling qtests: three vGPUs on one rust-vgpu-gpu under each
 * policy. Each vGPU that is busy keeps its ring full of long fills; the
 * engine time each gets, from x-query-rust-vgpu, is held against the share
 * its policy gives it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"

#include "rvg-engine.h"

#define VGPUS 3
#define VRAM_SIZE (4 * MiB)
#define RING_SIZE (64 * KiB)
/* Fills queued at most per vGPU: well inside the ring (36 bytes each). */
#define QUEUED 600
/* Measured shares are within this much of the engine of the asked ones. */
#define TOLERANCE 0.08

typedef struct Trio {
    QOSState *qs;
    Rvg r[VGPUS];
    Eng e[VGPUS];
    /* Fences emitted per vGPU: the seqno of its last fill. */
    uint32_t emitted[VGPUS];
} Trio;

/* vGPUs v0, v1, v2 on GPU gpu0 (`policy`), with `weights`. */
static Trio *start(const char *policy, const uint32_t weights[VGPUS])
{
    Trio *t = g_new0(Trio, 1);
    QPCIDevice *found[VGPUS + 1] = { NULL };

    t->qs = qtest_pc_boot("-nodefaults "
                          "-object rust-vgpu-gpu,id=gpu0,vram-size=16M,policy=%s "
                          "-device rust-vgpu,id=v0,gpu=gpu0,vram-size=4M,addr=04.0,weight=%u "
                          "-device rust-vgpu,id=v1,gpu=gpu0,vram-size=4M,addr=05.0,weight=%u "
                          "-device rust-vgpu,id=v2,gpu=gpu0,vram-size=4M,addr=06.0,weight=%u",
                          policy, weights[0], weights[1], weights[2]);
    qpci_device_foreach(t->qs->pcibus, RVG_PCI_VENDOR_ID, RVG_PCI_DEVICE_ID_VGPU,
                        append_dev, found);
    for (int i = 0; i < VGPUS; i++) {
        g_assert_nonnull(found[i]);
        /* The bus is walked in slot order: v0, v1, v2. */
        t->r[i] = (Rvg) { .qs = t->qs, .dev = found[i] };
        eng_init(&t->e[i], &t->r[i], RING_SIZE);
        eng_map_vram(&t->e[i], VRAM_SIZE / 4096);
    }
    return t;
}

static void stop(Trio *t)
{
    for (int i = 0; i < VGPUS; i++) {
        g_free(t->r[i].dev);
    }
    qtest_pc_shutdown(t->qs);
    g_free(t);
}

/*
 * Top up the ring of every vGPU in `busy` to QUEUED fills of its slice
 * past the ring, each with a fence.
 */
static void feed(Trio *t, const bool busy[VGPUS])
{
    for (int i = 0; i < VGPUS; i++) {
        if (busy[i]) {
            eng_keep_fills(&t->e[i], &t->emitted[i], QUEUED / 2, QUEUED, RING_SIZE,
                           (VRAM_SIZE - RING_SIZE) / 4096);
        }
    }
}

/*
 * x-query-rust-vgpu's entry for each vGPU, in order v0, v1, v2; the
 * caller unrefs `resp`.
 */
static void query(Trio *t, QDict **resp, QDict *entry[VGPUS])
{
    QListEntry *e;

    *resp = qtest_qmp(t->qs->qts, "{'execute': 'x-query-rust-vgpu'}");
    memset(entry, 0, VGPUS * sizeof(entry[0]));
    QLIST_FOREACH_ENTRY(qdict_get_qlist(*resp, "return"), e) {
        QDict *d = qobject_to(QDict, qlist_entry_obj(e));
        const char *id = qdict_get_str(d, "id");

        g_assert_true(id[0] == 'v' && id[1] >= '0' && id[1] < '0' + VGPUS);
        entry[id[1] - '0'] = d;
    }
    for (int i = 0; i < VGPUS; i++) {
        g_assert_nonnull(entry[i]);
    }
}

static void engine_times_us(Trio *t, uint64_t us[VGPUS])
{
    QDict *resp, *entry[VGPUS];

    query(t, &resp, entry);
    for (int i = 0; i < VGPUS; i++) {
        us[i] = qdict_get_int(entry[i], "engine-time-us");
    }
    qobject_unref(resp);
}

/*
 * Keep the vGPUs in `busy` busy for `ms` milliseconds; `share[i]` is the
 * part of that wall time the engine spent on vGPU i.
 */
static void run(Trio *t, const bool busy[VGPUS], int ms, double share[VGPUS])
{
    uint64_t before[VGPUS], after[VGPUS];
    int64_t start, end;

    feed(t, busy);
    engine_times_us(t, before);
    start = g_get_monotonic_time();
    end = start + ms * 1000;
    while (g_get_monotonic_time() < end) {
        feed(t, busy);
        g_usleep(5000);
    }
    engine_times_us(t, after);
    for (int i = 0; i < VGPUS; i++) {
        share[i] = (double)(after[i] - before[i]) / (g_get_monotonic_time() - start);
    }
    g_test_message("engine shares: %.3f %.3f %.3f", share[0], share[1], share[2]);
}

/*
 * Let `busy` settle for `settle_ms` (the others' queues drain, credit
 * builds up), then measure its shares over 1.5 s.
 */
static void measure(Trio *t, const bool busy[VGPUS], int settle_ms,
                    double share[VGPUS])
{
    run(t, busy, settle_ms, share);
    run(t, busy, 1500, share);
}

/* Each share of the engine's busy time (all three busy) near `want`. */
static void assert_relative(const double share[VGPUS], const double want[VGPUS])
{
    double total = share[0] + share[1] + share[2];

    g_assert_cmpfloat(total, >, 0.5);
    for (int i = 0; i < VGPUS; i++) {
        g_assert_cmpfloat_with_epsilon(share[i] / total, want[i], TOLERANCE);
    }
}

static const bool ALL[VGPUS] = { true, true, true };
static const bool V0_ALONE[VGPUS] = { true, false, false };
static const uint32_t EQUAL[VGPUS] = { 100, 100, 100 };
static const double THIRDS[VGPUS] = { 1.0 / 3, 1.0 / 3, 1.0 / 3 };

/* Best effort: the busy share the engine; one alone takes it all. */
static void test_best_effort(void)
{
    Trio *t = start("best-effort", EQUAL);
    double share[VGPUS];

    measure(t, ALL, 300, share);
    assert_relative(share, THIRDS);
    measure(t, V0_ALONE, 1000, share);
    g_assert_cmpfloat(share[0], >, 0.7);
    stop(t);
}

/* Equal share: a third each, and a lone busy vGPU still only a third. */
static void test_equal_share(void)
{
    const uint32_t weights[VGPUS] = { 1000, 100, 100 };
    Trio *t = start("equal-share", weights);
    double share[VGPUS];

    measure(t, ALL, 300, share);
    assert_relative(share, THIRDS);
    measure(t, V0_ALONE, 1000, share);
    g_assert_cmpfloat_with_epsilon(share[0], 1.0 / 3, TOLERANCE);
    stop(t);
}

/*
 * Fixed share: the weights' parts; a lone busy vGPU gets its part and no
 * more; a weight set at run time (qom-set) takes effect.
 */
static void test_fixed_share(void)
{
    const uint32_t weights[VGPUS] = { 100, 200, 100 };
    Trio *t = start("fixed-share", weights);
    const bool lone[VGPUS] = { false, true, false };
    const double parts[VGPUS] = { 0.25, 0.5, 0.25 };
    const double reweighed[VGPUS] = { 0.6, 0.2, 0.2 };
    double share[VGPUS];

    measure(t, ALL, 300, share);
    assert_relative(share, parts);
    measure(t, lone, 1000, share);
    g_assert_cmpfloat_with_epsilon(share[1], 0.5, TOLERANCE);

    qtest_qmp_assert_success(t->qs->qts,
                             "{'execute': 'qom-set', 'arguments': {"
                             "'path': 'v0', 'property': 'weight', 'value': 300}}");
    qtest_qmp_assert_success(t->qs->qts,
                             "{'execute': 'qom-set', 'arguments': {"
                             "'path': 'v1', 'property': 'weight', 'value': 100}}");
    measure(t, ALL, 300, share);
    assert_relative(share, reweighed);

    /* What tools read: the policy, each vGPU's weight, its GPU. */
    {
        QDict *resp, *entry[VGPUS];
        const uint32_t now[VGPUS] = { 300, 100, 100 };

        query(t, &resp, entry);
        for (int i = 0; i < VGPUS; i++) {
            g_assert_cmpstr(qdict_get_str(entry[i], "policy"), ==, "fixed-share");
            g_assert_cmpuint(qdict_get_int(entry[i], "weight"), ==, now[i]);
            g_assert_cmpuint(qdict_get_int(entry[i], "vgpus-on-gpu"), ==, VGPUS);
            g_assert_cmpuint(qdict_get_int(entry[i], "engine-faults"), ==, 0);
            g_assert_cmpuint(qdict_get_int(entry[i], "scanned-commands"), >, 0);
            g_assert_true(g_str_has_prefix(qdict_get_str(entry[i], "qom-path"),
                                           "/machine/peripheral/v"));
            g_assert_cmpstr(qdict_get_str(entry[i], "backend"), !=, "");
        }
        qobject_unref(resp);
    }
    stop(t);
}

/* A policy set at run time takes effect: fixed-share, then best effort. */
static void test_policy_at_run_time(void)
{
    Trio *t = start("fixed-share", EQUAL);
    double share[VGPUS];
    QDict *resp, *entry[VGPUS];

    measure(t, V0_ALONE, 300, share);
    g_assert_cmpfloat_with_epsilon(share[0], 1.0 / 3, TOLERANCE);
    qtest_qmp_assert_success(t->qs->qts,
                             "{'execute': 'qom-set', 'arguments': {"
                             "'path': '/objects/gpu0', 'property': 'policy', "
                             "'value': 'best-effort'}}");
    measure(t, V0_ALONE, 300, share);
    g_assert_cmpfloat(share[0], >, 0.7);
    query(t, &resp, entry);
    g_assert_cmpstr(qdict_get_str(entry[0], "policy"), ==, "best-effort");
    qobject_unref(resp);
    stop(t);
}

/* Unknown policies and weights out of range are refused, with the reason. */
static void test_bad_policy_and_weight(void)
{
    QTestState *qts = qtest_init("-machine none");
    QDict *resp, *entry[VGPUS];
    Trio *t;

    rvg_expect_error(qtest_qmp(qts, "{'execute': 'object-add', 'arguments': {"
                               "'qom-type': 'rust-vgpu-gpu', 'id': 'g', "
                               "'policy': 'fair'}}"),
                     "'fair'");
    qtest_quit(qts);

    t = start("equal-share", EQUAL);
    rvg_expect_error(qtest_qmp(t->qs->qts,
                               "{'execute': 'qom-set', 'arguments': {"
                               "'path': 'v0', 'property': 'weight', 'value': 0}}"),
                     "property 'weight' is 0: it must be 1 to 10000");
    rvg_expect_error(qtest_qmp(t->qs->qts,
                               "{'execute': 'qom-set', 'arguments': {"
                               "'path': '/objects/gpu0', 'property': 'policy', "
                               "'value': 'fair'}}"),
                     "'fair'");
    query(t, &resp, entry);
    g_assert_cmpuint(qdict_get_int(entry[0], "weight"), ==, 100);
    g_assert_cmpstr(qdict_get_str(entry[0], "policy"), ==, "equal-share");
    qobject_unref(resp);
    stop(t);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/rust-vgpu/sched/best-effort", test_best_effort);
    qtest_add_func("/rust-vgpu/sched/equal-share", test_equal_share);
    qtest_add_func("/rust-vgpu/sched/fixed-share", test_fixed_share);
    qtest_add_func("/rust-vgpu/sched/policy-at-run-time", test_policy_at_run_time);
    qtest_add_func("/rust-vgpu/sched/bad-policy-and-weight",
                   test_bad_policy_and_weight);
    return g_test_run();
}
