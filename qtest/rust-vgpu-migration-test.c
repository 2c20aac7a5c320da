/*
 * rust-vgpu migration qtests: a vGPU migrated to a destination QEMU
 * started with -incoming, as QEMU's own migration tests do. On the
 * destination every register, GTT value and shadow, VRAM byte and
 * screendump pixel matches, interrupts still arrive, and new engine work
 * through the old GTT entries completes. Also: a migration while the
 * engine is busy, one whose vGPU work does not finish, and a destination
 * that does not fit the stream.
 *
 * The whole-state and busy-engine tests take the GPU behind each side
 * from the environment: RVG_MIGRATION_SOURCE and RVG_MIGRATION_DESTINATION
 * are appended to the vGPU's properties (",host=0000:00:03.0" for a
 * kernel device); unset, each side has a soft GPU of its own. The nested
 * test migrates between kernel devices, and between soft and kernel.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qobject/qdict.h"

#include "rvg-engine.h"

#define VRAM_SIZE (16 * MiB)
#define RAM_GFX_PAGE 300
#define REJECTED_ENTRY 500

/* The vGPU of the whole-state and busy-engine tests, on one side. */
static char *vgpu_args(const char *side_env)
{
    const char *gpu = g_getenv(side_env);

    return g_strdup_printf("-device rust-vgpu,id=v0,vram-size=16M,addr=04.0%s",
                           gpu ? gpu : "");
}

/* One side of a migration: its QEMU, and the vGPU as its guest sees it. */
typedef struct Side {
    Rvg r;
    Eng e;
} Side;

/* A QEMU with these arguments; its vGPU as the first rust-vgpu on the bus. */
static void G_GNUC_PRINTF(2, 3) boot(Side *s, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *args = NULL;

    va_start(ap, fmt);
    args = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    s->r.qs = qtest_pc_boot("-nodefaults %s", args);
    s->r.dev = find_rvg(s->r.qs->pcibus);
}

/* Say which GPU is behind the vGPU ("# source backend: vfio ..."). */
static void log_backend(Side *s, const char *side)
{
    g_autofree char *info = qtest_hmp(s->r.qs->qts, "info rust-vgpu");
    const char *b = strstr(info, "backend: ");

    g_assert_nonnull(b);
    g_test_message("%s %.*s", side, (int)strcspn(b, "\n"), b);
}

static void shut(Side *s)
{
    g_free(s->r.dev);
    qtest_pc_shutdown(s->r.qs);
}

static char *socket_uri(char **path)
{
    *path = g_strdup_printf("%s/rvg-mig-%d-%u.sock", g_get_tmp_dir(),
                            getpid(), g_random_int());
    return g_strdup_printf("unix:%s", *path);
}

/* Migrate `from` to `to` (booted with -incoming `uri`); true if it worked. */
static bool migrate_to(Side *from, Side *to, const char *uri)
{
    return rvg_migrate(from->r.qs->qts, to->r.qs->qts, uri);
}

/*
 * The destination's guest: the same BARs (config space came with the
 * migration), its ring where the source left it.
 */
static void take_over(Side *to, const Side *from)
{
    to->r.mmio = from->r.mmio;
    to->e = from->e;
    to->e.r = &to->r;
}

static void wait_seqno(Eng *e, uint32_t seqno)
{
    for (int i = 0; i < 5000 && eng_read(e, RVG_ENGINE_SEQNO) != seqno; i++) {
        g_usleep(1000);
    }
    g_assert_cmphex(eng_read(e, RVG_ENGINE_SEQNO), ==, seqno);
}

static char *screendump_bytes(QTestState *qts, gsize *len)
{
    g_autofree char *path = NULL;
    g_autoptr(GError) err = NULL;
    char *data = NULL;
    int fd = g_file_open_tmp("rvg-mig-XXXXXX.ppm", &path, &err);

    g_assert_no_error(err);
    close(fd);
    qtest_qmp_assert_success(qts, "{'execute': 'screendump', 'arguments':"
                             " {'filename': %s, 'format': 'ppm'}}", path);
    g_assert_true(g_file_get_contents(path, &data, len, &err));
    unlink(path);
    return data;
}

/*
 * All of BAR0, in reads of 64 KiB: libqtest's reply parsing is quadratic
 * in a reply's length, which one 16 MiB read would feel (under ASan, for
 * minutes).
 */
static void read_vram(QTestState *qts, Eng *e, uint8_t *out)
{
    for (uint64_t off = 0; off < VRAM_SIZE; off += 64 * KiB) {
        qtest_bufread(qts, e->vram.addr + off, out + off, 64 * KiB);
    }
}

/* Registers a guest reads, and which must carry over. */
static const uint32_t carried[] = {
    RVG_GLOBAL + RVG_REG_SCRATCH, RVG_GLOBAL + RVG_REG_INT_STATUS,
    RVG_GLOBAL + RVG_REG_INT_MASK, RVG_GLOBAL + RVG_REG_INT_ENABLE,
    RVG_GLOBAL + RVG_REG_FAULT_ADDR, RVG_GLOBAL + RVG_REG_FAULT_REASON,
    RVG_GLOBAL + RVG_REG_GTT_FAULTS,
    RVG_ENGINE + RVG_ENGINE_RING_BASE, RVG_ENGINE + RVG_ENGINE_RING_SIZE,
    RVG_ENGINE + RVG_ENGINE_RING_HEAD, RVG_ENGINE + RVG_ENGINE_RING_TAIL,
    RVG_ENGINE + RVG_ENGINE_RING_CTL, RVG_ENGINE + RVG_ENGINE_SEQNO,
    RVG_ENGINE + RVG_ENGINE_ERROR,
    RVG_DISPLAY + RVG_DISPLAY_PLANE_CTL, RVG_DISPLAY + RVG_DISPLAY_PLANE_FORMAT,
    RVG_DISPLAY + RVG_DISPLAY_PLANE_BASE, RVG_DISPLAY + RVG_DISPLAY_PLANE_WIDTH,
    RVG_DISPLAY + RVG_DISPLAY_PLANE_HEIGHT,
    RVG_DISPLAY + RVG_DISPLAY_PLANE_STRIDE, RVG_DISPLAY + RVG_DISPLAY_FLIP_COUNT,
};

static void read_carried(Rvg *r, uint64_t *out)
{
    for (int i = 0; i < ARRAY_SIZE(carried); i++) {
        out[i] = qpci_io_readl(r->dev, r->mmio, carried[i]);
    }
}

static void test_whole_state(void)
{
    g_autofree char *sock = NULL;
    g_autofree char *uri = socket_uri(&sock);
    g_autofree char *src_gtt = NULL, *dst_gtt = NULL;
    g_autofree char *src_shot = NULL, *dst_shot = NULL;
    g_autofree uint8_t *src_vram = NULL, *dst_vram = NULL;
    g_autofree char *src_dev = vgpu_args("RVG_MIGRATION_SOURCE");
    g_autofree char *dst_dev = vgpu_args("RVG_MIGRATION_DESTINATION");
    uint64_t before[ARRAY_SIZE(carried)], after[ARRAY_SIZE(carried)];
    uint64_t gtt_before[8];
    Side src = { 0 }, dst = { 0 };
    Eng *e = &src.e;
    uint64_t msg, ram;
    gsize src_len, dst_len;
    QTestState *qts;

    boot(&src, "%s", src_dev);
    qts = src.r.qs->qts;
    eng_init(e, &src.r, 4096);
    msg = guest_alloc(&src.r.qs->alloc, 4);
    ram = ROUND_UP(guest_alloc(&src.r.qs->alloc, 2 * 4096), 4096);
    rvg_msix_route(src.r.dev, msg, 0x5a);
    eng_gtt(e, RAM_GFX_PAGE, ram | RVG_GTT_VALID);
    /* Outside the 16 MiB VRAM: rejected, a GTT fault latched. */
    eng_gtt(e, REJECTED_ENTRY, (32ull << 20) | RVG_GTT_LOCAL | RVG_GTT_VALID);
    greg_write(&src.r, RVG_REG_SCRATCH, 0x5eed);
    greg_write(&src.r, RVG_REG_INT_STATUS, RVG_INT_GTT_FAULT);
    greg_write(&src.r, RVG_REG_INT_MASK, RVG_INT_DISPLAY_FLIP);
    /* A 64x32 plane at VRAM 256 KiB, drawn by the CPU and the engine. */
    for (int i = 0; i < 64 * 32; i += 7) {
        eng_vram_writel(e, 0x40000 + 4 * i, 0x010203 * i);
    }
    qpci_io_writel(src.r.dev, src.r.mmio, RVG_DISPLAY + RVG_DISPLAY_PLANE_FORMAT,
                   RVG_FORMAT_XRGB8888);
    qpci_io_writel(src.r.dev, src.r.mmio, RVG_DISPLAY + RVG_DISPLAY_PLANE_WIDTH, 64);
    qpci_io_writel(src.r.dev, src.r.mmio, RVG_DISPLAY + RVG_DISPLAY_PLANE_HEIGHT, 32);
    qpci_io_writel(src.r.dev, src.r.mmio, RVG_DISPLAY + RVG_DISPLAY_PLANE_STRIDE, 256);
    qpci_io_writeq(src.r.dev, src.r.mmio, RVG_DISPLAY + RVG_DISPLAY_PLANE_BASE, 0x40000);
    qpci_io_writel(src.r.dev, src.r.mmio, RVG_DISPLAY + RVG_DISPLAY_PLANE_CTL,
                   RVG_PLANE_CTL_ENABLE);
    qtest_memset(qts, ram, 0, 2 * 4096);
    qtest_writel(qts, msg, 0);
    SUBMIT(e,
           FILL_RECT(0x40000 + 16 * 256, 256, 32, 8, 0x00ff00),
           FILL_RECT(RAM_GFX_PAGE * 4096ull, 64, 16, 2, 0x123456),
           FENCE(7, true));
    eng_wait_idle(e);
    g_assert_cmphex(qtest_readl(qts, msg), ==, 0x5a);
    g_assert_cmphex(qtest_readl(qts, ram + 64 + 60), ==, 0x123456);

    read_carried(&src.r, before);
    for (int i = 0; i < ARRAY_SIZE(gtt_before); i++) {
        gtt_before[i] = qpci_io_readq(src.r.dev, src.r.mmio, RVG_GTT + 8 * i);
    }
    src_gtt = qtest_hmp(qts, "info rust-vgpu-gtt v0 298 4");
    src_shot = screendump_bytes(qts, &src_len);
    src_vram = g_malloc(VRAM_SIZE);
    read_vram(qts, e, src_vram);

    boot(&dst, "%s -incoming %s", dst_dev, uri);
    log_backend(&src, "source");
    log_backend(&dst, "destination");
    g_assert_true(migrate_to(&src, &dst, uri));
    take_over(&dst, &src);
    qts = dst.r.qs->qts;

    read_carried(&dst.r, after);
    for (int i = 0; i < ARRAY_SIZE(carried); i++) {
        g_assert_cmphex(after[i], ==, before[i]);
    }
    for (int i = 0; i < ARRAY_SIZE(gtt_before); i++) {
        g_assert_cmphex(qpci_io_readq(dst.r.dev, dst.r.mmio, RVG_GTT + 8 * i),
                        ==, gtt_before[i]);
    }
    g_assert_cmphex(qpci_io_readq(dst.r.dev, dst.r.mmio,
                                  RVG_GTT + 8 * REJECTED_ENTRY),
                    ==, (32ull << 20) | RVG_GTT_LOCAL | RVG_GTT_VALID);
    dst_gtt = qtest_hmp(qts, "info rust-vgpu-gtt v0 298 4");
    g_assert_cmpstr(dst_gtt, ==, src_gtt);
    dst_shot = screendump_bytes(qts, &dst_len);
    g_assert_cmpuint(dst_len, ==, src_len);
    g_assert_true(memcmp(dst_shot, src_shot, src_len) == 0);
    for (int i = 0; i < 64 * 32; i += 7) {
        g_assert_cmphex(eng_vram_readl(&dst.e, 0x40000 + 4 * i), ==,
                        i >= 16 * 64 && i < 24 * 64 && i % 64 < 32 ?
                        0x00ff00 : 0x010203 * i);
    }
    /* Every byte of VRAM, not only the samples. */
    dst_vram = g_malloc(VRAM_SIZE);
    read_vram(qts, &dst.e, dst_vram);
    g_assert_true(memcmp(dst_vram, src_vram, VRAM_SIZE) == 0);

    /* New work through the old entries; its interrupt through MSI-X. */
    qtest_writel(qts, msg, 0);
    greg_write(&dst.r, RVG_REG_INT_STATUS, RVG_INT_FENCE);
    SUBMIT(&dst.e,
           COPY_RECT(0x40000 + 16 * 256, 256, 0x80000, 128, 32, 8),
           STORE_DW(RAM_GFX_PAGE * 4096ull + 0x800, 0xfeed),
           FENCE(8, true));
    eng_wait_idle(&dst.e);
    g_assert_cmpuint(eng_read(&dst.e, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmphex(eng_read(&dst.e, RVG_ENGINE_SEQNO), ==, 8);
    g_assert_cmphex(eng_vram_readl(&dst.e, 0x80000 + 7 * 128 + 124), ==, 0x00ff00);
    g_assert_cmphex(qtest_readl(qts, ram + 0x800), ==, 0xfeed);
    g_assert_cmphex(qtest_readl(qts, msg), ==, 0x5a);

    shut(&src);
    shut(&dst);
    unlink(sock);
}

/*
 * The engine fills the 16 MiB of VRAM again and again while RAM
 * migration copies it: pages it rewrites after they were sent reach the
 * destination only because the vGPU reports the GPU's writes.
 */
static void test_busy_engine(void)
{
    g_autofree char *sock = NULL;
    g_autofree char *uri = socket_uri(&sock);
    g_autofree char *src_dev = vgpu_args("RVG_MIGRATION_SOURCE");
    g_autofree char *dst_dev = vgpu_args("RVG_MIGRATION_DESTINATION");
    Side src = { 0 }, dst = { 0 };
    Eng *e = &src.e;
    uint32_t fills = 48, last_color = 0;

    boot(&src, "%s", src_dev);
    eng_init(e, &src.r, 4096);
    eng_map_vram(e, 4096);
    boot(&dst, "%s -incoming %s", dst_dev, uri);
    /* Slow enough that the fills run while VRAM is being sent. */
    qtest_qmp_assert_success(src.r.qs->qts,
                             "{'execute': 'migrate-set-parameters', 'arguments':"
                             " {'max-bandwidth': %d}}", 256 * 1024 * 1024);
    for (uint32_t i = 0; i < fills; i++) {
        last_color = 0x00100000 | i;
        /* Everything but the ring's page. */
        SUBMIT(e, FILL_RECT(4096, 4096, 1024, 4095, last_color),
               FENCE(i + 1, false));
    }
    g_assert_true(migrate_to(&src, &dst, uri));
    take_over(&dst, &src);
    g_assert_cmpuint(eng_read(&dst.e, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmphex(eng_read(&dst.e, RVG_ENGINE_SEQNO), ==, fills);
    g_assert_cmphex(eng_read(&dst.e, RVG_ENGINE_RING_HEAD), ==, e->tail);
    for (uint64_t off = 4096; off < 16 * MiB; off += 4096 + 4) {
        g_assert_cmphex(eng_vram_readl(&dst.e, off), ==, last_color);
    }
    SUBMIT(&dst.e, FILL_RECT(4096, 4096, 1024, 15, 0x77), FENCE(fills + 1, false));
    wait_seqno(&dst.e, fills + 1);
    g_assert_cmphex(eng_vram_readl(&dst.e, 15 * 4096 + 4092), ==, 0x77);
    shut(&src);
    shut(&dst);
    unlink(sock);
}

/*
 * Work that does not finish while the VM stops fails the migration with
 * a clear error, nothing half saved; the source goes on, and a second
 * attempt once the engine runs succeeds.
 */
static void test_unfinished_work_fails_the_migration(void)
{
    g_autofree char *sock = NULL;
    g_autofree char *uri = socket_uri(&sock);
    g_autofree char *sock2 = NULL;
    g_autofree char *uri2 = socket_uri(&sock2);
    const char *dev = "-object rust-vgpu-gpu,id=gpu0,vram-size=16M "
                      "-device rust-vgpu,id=v0,gpu=gpu0,vram-size=4M,addr=04.0";
    Side src = { 0 }, dst = { 0 }, dst2 = { 0 };
    Eng *e = &src.e;
    QTestState *qts;

    boot(&src, "%s", dev);
    qts = src.r.qs->qts;
    eng_init(e, &src.r, 4096);
    qtest_qmp_assert_success(qts, "{'execute': 'qom-set', 'arguments':"
                             " {'path': '/objects/gpu0',"
                             "  'property': 'x-engine-hold', 'value': true}}");
    SUBMIT(e, FENCE(1, false));
    boot(&dst, "%s -incoming %s", dev, uri);
    /* The destination gives up when the source does. */
    qtest_set_expected_status(dst.r.qs->qts, 1);
    g_assert_false(migrate_to(&src, &dst, uri));
    shut(&dst);

    qtest_qmp_assert_success(qts, "{'execute': 'qom-set', 'arguments':"
                             " {'path': '/objects/gpu0',"
                             "  'property': 'x-engine-hold', 'value': false}}");
    qtest_qmp_assert_success(qts, "{'execute': 'cont'}");
    wait_seqno(e, 1);
    SUBMIT(e, FENCE(2, false));
    wait_seqno(e, 2);

    boot(&dst2, "%s -incoming %s", dev, uri2);
    g_assert_true(migrate_to(&src, &dst2, uri2));
    take_over(&dst2, &src);
    g_assert_cmphex(eng_read(&dst2.e, RVG_ENGINE_SEQNO), ==, 2);
    shut(&src);
    shut(&dst2);
    unlink(sock);
    unlink(sock2);
}

/* A destination whose vGPU has another VRAM size refuses the stream. */
static void test_other_vram_size_is_refused(void)
{
    g_autofree char *sock = NULL;
    g_autofree char *uri = socket_uri(&sock);
    Side src = { 0 }, dst = { 0 };

    boot(&src, "-device rust-vgpu,id=v0,vram-size=16M,addr=04.0");
    eng_init(&src.e, &src.r, 4096);
    boot(&dst, "-device rust-vgpu,id=v0,vram-size=8M,addr=04.0 -incoming %s", uri);
    qtest_set_expected_status(dst.r.qs->qts, 1);
    g_assert_false(migrate_to(&src, &dst, uri));
    shut(&dst);
    /* The source runs on. */
    qtest_qmp_assert_success(src.r.qs->qts, "{'execute': 'cont'}");
    SUBMIT(&src.e, FENCE(3, false));
    wait_seqno(&src.e, 3);
    shut(&src);
    unlink(sock);
}

/*
 * Two vGPUs sharing one rust-vgpu-gpu migrate with their VM to a
 * destination whose GPU they share too: each keeps its own registers, GTT
 * and VRAM, and both run new work.
 */
static void test_shared_gpu(void)
{
    g_autofree char *sock = NULL;
    g_autofree char *uri = socket_uri(&sock);
    const char *devs = "-object rust-vgpu-gpu,id=gpu0,vram-size=16M "
                       "-device rust-vgpu,id=a,gpu=gpu0,vram-size=4M,addr=04.0 "
                       "-device rust-vgpu,id=b,gpu=gpu0,vram-size=4M,addr=05.0";
    QOSState *qs[2];
    Rvg r[2][2];
    Eng e[2][2];

    for (int side = 0; side < 2; side++) {
        QPCIDevice *found[3] = { NULL };

        qs[side] = qtest_pc_boot("-nodefaults %s%s%s", devs,
                                 side ? " -incoming " : "", side ? uri : "");
        qpci_device_foreach(qs[side]->pcibus, RVG_PCI_VENDOR_ID,
                            RVG_PCI_DEVICE_ID_VGPU, append_dev, found);
        for (int v = 0; v < 2; v++) {
            g_assert_nonnull(found[v]);
            r[side][v] = (Rvg) { .qs = qs[side], .dev = found[v] };
        }
    }
    for (int v = 0; v < 2; v++) {
        eng_init(&e[0][v], &r[0][v], 4096);
        greg_write(&r[0][v], RVG_REG_SCRATCH, 0xa0 + v);
        SUBMIT(&e[0][v], FILL_RECT(0x10000, 256, 64, 16, 0x100 + v),
               FENCE(10 + v, false));
        eng_wait_idle(&e[0][v]);
    }
    g_assert_true(rvg_migrate(qs[0]->qts, qs[1]->qts, uri));
    for (int v = 0; v < 2; v++) {
        Eng *d = &e[1][v];

        r[1][v].mmio = r[0][v].mmio;
        *d = e[0][v];
        d->r = &r[1][v];
        g_assert_cmphex(greg_read(&r[1][v], RVG_REG_SCRATCH), ==, 0xa0 + v);
        g_assert_cmphex(eng_read(d, RVG_ENGINE_SEQNO), ==, 10 + v);
        g_assert_cmphex(eng_vram_readl(d, 0x10000 + 15 * 256 + 252), ==, 0x100 + v);
        SUBMIT(d, COPY_RECT(0x10000, 256, 0x20000, 256, 64, 16), FENCE(20 + v, false));
    }
    for (int v = 0; v < 2; v++) {
        eng_wait_idle(&e[1][v]);
        g_assert_cmphex(eng_read(&e[1][v], RVG_ENGINE_SEQNO), ==, 20 + v);
        g_assert_cmphex(eng_vram_readl(&e[1][v], 0x20000 + 15 * 256 + 252), ==,
                        0x100 + v);
    }
    for (int side = 0; side < 2; side++) {
        g_free(r[side][0].dev);
        g_free(r[side][1].dev);
        qtest_pc_shutdown(qs[side]);
    }
    unlink(sock);
}

/* Wait for job `id` to conclude without an error, then dismiss it. */
static void wait_job(QTestState *qts, const char *id)
{
    for (int i = 0; i < 1000; i++) {
        QDict *resp = qtest_qmp(qts, "{'execute': 'query-jobs'}");
        QList *jobs = qdict_get_qlist(resp, "return");
        bool done = false;

        for (const QListEntry *e = qlist_first(jobs); e; e = qlist_next(e)) {
            QDict *job = qobject_to(QDict, qlist_entry_obj(e));

            if (!strcmp(qdict_get_str(job, "id"), id) &&
                !strcmp(qdict_get_str(job, "status"), "concluded")) {
                g_assert_cmpstr(qdict_get_try_str(job, "error"), ==, NULL);
                done = true;
            }
        }
        qobject_unref(resp);
        if (done) {
            qtest_qmp_assert_success(qts, "{'execute': 'job-dismiss',"
                                     " 'arguments': {'id': %s}}", id);
            return;
        }
        g_usleep(10 * 1000);
    }
    g_assert_not_reached();
}

/*
 * A snapshot (snapshot-save, QMP's savevm) taken with work done, the vGPU
 * changed after it, then the snapshot loaded into the same running vGPU:
 * registers, GTT entries, VRAM and the engine are back as they were, and
 * work goes on.
 */
static void test_snapshot(void)
{
    g_autofree char *path = NULL;
    g_autoptr(GError) err = NULL;
    int fd = g_file_open_tmp("rvg-snap-XXXXXX.qcow2", &path, &err);
    Side s = { 0 };
    Eng *e = &s.e;
    QTestState *qts;

    g_assert_no_error(err);
    close(fd);
    boot(&s, "-device rust-vgpu,id=v0,vram-size=16M,addr=04.0");
    qts = s.r.qs->qts;
    qtest_qmp_assert_success(qts, "{'execute': 'blockdev-add', 'arguments':"
                             " {'driver': 'file', 'filename': %s,"
                             "  'node-name': 'f0'}}", path);
    qtest_qmp_assert_success(qts, "{'execute': 'blockdev-create', 'arguments':"
                             " {'job-id': 'c0', 'options': {'driver': 'qcow2',"
                             "  'file': 'f0', 'size': 16777216}}}");
    wait_job(qts, "c0");
    qtest_qmp_assert_success(qts, "{'execute': 'blockdev-add', 'arguments':"
                             " {'driver': 'qcow2', 'file': 'f0',"
                             "  'node-name': 'd0'}}");

    eng_init(e, &s.r, 4096);
    greg_write(&s.r, RVG_REG_SCRATCH, 0x5a5a);
    SUBMIT(e, FILL_RECT(0x10000, 256, 64, 16, 0x00c0ffee), FENCE(1, false));
    eng_wait_idle(e);
    qtest_qmp_assert_success(qts, "{'execute': 'snapshot-save', 'arguments':"
                             " {'job-id': 's0', 'tag': 'before',"
                             "  'vmstate': 'd0', 'devices': ['d0']}}");
    wait_job(qts, "s0");

    greg_write(&s.r, RVG_REG_SCRATCH, 0x1111);
    eng_gtt(e, 100, RVG_GTT_LOCAL | RVG_GTT_VALID);
    SUBMIT(e, FILL_RECT(0x10000, 256, 64, 16, 0x00bad000), FENCE(2, false));
    eng_wait_idle(e);
    g_assert_cmphex(eng_vram_readl(e, 0x10000), ==, 0x00bad000);

    qtest_qmp_assert_success(qts, "{'execute': 'snapshot-load', 'arguments':"
                             " {'job-id': 'l0', 'tag': 'before',"
                             "  'vmstate': 'd0', 'devices': ['d0']}}");
    wait_job(qts, "l0");
    e->tail = eng_read(e, RVG_ENGINE_RING_TAIL);
    g_assert_cmphex(greg_read(&s.r, RVG_REG_SCRATCH), ==, 0x5a5a);
    g_assert_cmphex(qpci_io_readq(s.r.dev, s.r.mmio, RVG_GTT + 8 * 100), ==,
                    (100ull << 12) | RVG_GTT_LOCAL | RVG_GTT_VALID);
    g_assert_cmphex(eng_read(e, RVG_ENGINE_SEQNO), ==, 1);
    g_assert_cmphex(eng_vram_readl(e, 0x10000 + 15 * 256 + 252), ==, 0x00c0ffee);
    SUBMIT(e, COPY_RECT(0x10000, 256, 0x20000, 256, 64, 16), FENCE(3, false));
    eng_wait_idle(e);
    g_assert_cmphex(eng_read(e, RVG_ENGINE_SEQNO), ==, 3);
    g_assert_cmphex(eng_vram_readl(e, 0x20000 + 15 * 256 + 252), ==, 0x00c0ffee);
    shut(&s);
    unlink(path);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/rust-vgpu/migration/whole-state", test_whole_state);
    qtest_add_func("/rust-vgpu/migration/busy-engine", test_busy_engine);
    qtest_add_func("/rust-vgpu/migration/unfinished-work-fails",
                   test_unfinished_work_fails_the_migration);
    qtest_add_func("/rust-vgpu/migration/other-vram-size-refused",
                   test_other_vram_size_is_refused);
    qtest_add_func("/rust-vgpu/migration/snapshot", test_snapshot);
    qtest_add_func("/rust-vgpu/migration/shared-gpu", test_shared_gpu);
    return g_test_run();
}
