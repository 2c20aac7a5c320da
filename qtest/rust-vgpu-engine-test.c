/*
 * rust-vgpu engine qtests: a guest driving the vGPU's ring. Commands are
 * scanned, copied into the mediator's shadow ring and run by the GPU's
 * engine; results are read back from guest RAM and the VRAM BAR.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"

#include "rvg-engine.h"

/* Bytes of graphics address space a vGPU has (32768 GTT entries). */
#define GFX_SPACE (32768ull * 4096)

static Eng *start(void)
{
    Eng *e = g_new0(Eng, 1);

    eng_init(e, rvg_start(",id=v0,vram-size=16M"), 4096);
    return e;
}

static void stop(Eng *e)
{
    rvg_stop(e->r);
    g_free(e);
}

/* Two guest RAM pages at graphics pages 300 and 301. */
static uint64_t map_ram(Eng *e)
{
    uint64_t ram = ROUND_UP(guest_alloc(&e->r->qs->alloc, 3 * 4096), 4096);

    eng_gtt(e, 300, ram | RVG_GTT_VALID);
    eng_gtt(e, 301, (ram + 4096) | RVG_GTT_VALID);
    return ram;
}

static void test_commands_into_vram_and_ram(void)
{
    Eng *e = start();
    QTestState *qts = e->r->qs->qts;
    uint64_t msg = guest_alloc(&e->r->qs->alloc, 4);
    uint64_t ram = map_ram(e);
    uint64_t ram_gfx = 300 * 4096;

    rvg_msix_route(e->r->dev, msg, 0x5a);
    qtest_memset(qts, ram, 0, 2 * 4096);
    SUBMIT(e,
           STORE_DW(0x8000, 0xcafe),
           STORE_DW(ram_gfx + 8, 0xbeef),
           /* 16x4 green at VRAM 64 KiB, rows 256 bytes apart. */
           FILL_RECT(0x10000, 256, 16, 4, 0x00ff00),
           /* Its left 8x4 into RAM, rows 64 bytes apart, across a page. */
           COPY_RECT(0x10000, 256, ram_gfx + 4096 - 128, 64, 8, 4),
           /* And a fill straight into RAM. */
           FILL_RECT(ram_gfx + 4096 + 512, 32, 8, 2, 0x123456),
           FENCE(7, true));
    rvg_wait_status(e->r, RVG_INT_FENCE);
    eng_wait_idle(e);
    g_assert_cmphex(qtest_readl(qts, msg), ==, 0x5a);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_SEQNO), ==, 7);
    g_assert_cmphex(eng_read(e, RVG_ENGINE_RING_HEAD), ==, e->tail);

    g_assert_cmphex(eng_vram_readl(e, 0x8000), ==, 0xcafe);
    g_assert_cmphex(qtest_readl(qts, ram + 8), ==, 0xbeef);
    for (int y = 0; y < 4; y++) {
        g_assert_cmphex(eng_vram_readl(e, 0x10000 + y * 256), ==, 0x00ff00);
        g_assert_cmphex(eng_vram_readl(e, 0x10000 + y * 256 + 60), ==, 0x00ff00);
        g_assert_cmphex(eng_vram_readl(e, 0x10000 + y * 256 + 64), ==, 0);
        g_assert_cmphex(qtest_readl(qts, ram + 4096 - 128 + y * 64 + 28), ==,
                        0x00ff00);
        g_assert_cmphex(qtest_readl(qts, ram + 4096 - 128 + y * 64 + 32), ==, 0);
    }
    g_assert_cmphex(qtest_readl(qts, ram + 4096 + 512 + 32 + 28), ==, 0x123456);
    g_assert_cmphex(qtest_readl(qts, ram + 4096 + 512 + 64), ==, 0);
    qpci_msix_disable(e->r->dev);
    stop(e);
}

/* 4x4 pixels numbered 1..16 at `base`, rows `pitch` apart. */
static void put_numbers(Eng *e, uint64_t base, uint32_t pitch)
{
    for (int i = 0; i < 16; i++) {
        eng_vram_writel(e, base + (i / 4) * pitch + (i % 4) * 4, i + 1);
    }
}

static void test_overlapping_copies(void)
{
    Eng *e = start();
    const uint32_t pitch = 64;
    /* Shifted by one row and one pixel, down-right then up-left. */
    const int64_t shifts[] = { pitch + 4, -(int64_t)(pitch + 4) };

    for (int s = 0; s < ARRAY_SIZE(shifts); s++) {
        uint64_t src = 0x20000 + 2 * pitch;
        uint64_t dst = src + shifts[s];

        put_numbers(e, src, pitch);
        SUBMIT(e, COPY_RECT(src, pitch, dst, pitch, 4, 4), FENCE(s + 1, false));
        eng_wait_idle(e);
        g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, 0);
        /* As if copied through a temporary: the source as it was. */
        for (int i = 0; i < 16; i++) {
            g_assert_cmpuint(eng_vram_readl(e, dst + (i / 4) * pitch + (i % 4) * 4),
                             ==, i + 1);
        }
    }
    stop(e);
}

static void test_batch_buffer(void)
{
    Eng *e = start();
    const uint32_t batch[] = {
        STORE_DW(0x9000, 1),
        FENCE(5, false),
        FILL_RECT(0xa000, 16, 4, 2, 0xaa),
        BATCH_END(),
        STORE_DW(0x9008, 0xbad),    /* after BATCH_END: never runs */
    };

    for (int i = 0; i < ARRAY_SIZE(batch); i++) {
        eng_vram_writel(e, 0x1000 + 4 * i, batch[i]);
    }
    SUBMIT(e, BATCH_START(0x1000, sizeof(batch)), STORE_DW(0x9004, 2),
           FENCE(6, false));
    eng_wait_idle(e);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_SEQNO), ==, 6);
    g_assert_cmphex(eng_vram_readl(e, 0x9000), ==, 1);
    g_assert_cmphex(eng_vram_readl(e, 0x9004), ==, 2);
    g_assert_cmphex(eng_vram_readl(e, 0x9008), ==, 0);
    g_assert_cmphex(eng_vram_readl(e, 0xa000 + 16 + 12), ==, 0xaa);
    stop(e);
}

/*
 * The guest rewrites its ring and its batch right after the tail write,
 * while a long fill keeps the engine busy: what runs is what was there at
 * the tail write.
 */
static void test_rewrite_after_tail_changes_nothing(void)
{
    Eng *e = start();
    const uint32_t batch[] = { STORE_DW(0x9000, 1), BATCH_END() };
    const uint32_t evil_batch[] = { LOAD_REG(RVG_ENGINE_SEQNO, 666), BATCH_END() };
    const uint32_t evil_ring[] = { STORE_DW(0x9004, 0xbad), STORE_DW(0x9004, 0xbad) };
    uint32_t start_of_store;

    for (int i = 0; i < ARRAY_SIZE(batch); i++) {
        eng_vram_writel(e, 0x1000 + 4 * i, batch[i]);
    }
    /* 32 MiB of fills (1 MiB of VRAM, 32 times) before the work. */
    for (uint32_t p = 256; p < 512; p++) {
        eng_gtt(e, p, (uint64_t)p << 12 | RVG_GTT_LOCAL | RVG_GTT_VALID);
    }
    for (int i = 0; i < 32; i++) {
        SUBMIT(e, FILL_RECT(1 * MiB, 4096, 1024, 256, i));
    }
    start_of_store = e->tail;
    SUBMIT(e, BATCH_START(0x1000, sizeof(batch)), STORE_DW(0x9004, 2),
           FENCE(9, false));
    for (int i = 0; i < ARRAY_SIZE(evil_batch); i++) {
        eng_vram_writel(e, 0x1000 + 4 * i, evil_batch[i]);
    }
    for (int i = 0; i < ARRAY_SIZE(evil_ring); i++) {
        eng_vram_writel(e, start_of_store + 4 * i, evil_ring[i]);
    }
    eng_wait_idle(e);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_SEQNO), ==, 9);
    g_assert_cmphex(eng_vram_readl(e, 0x9000), ==, 1);
    g_assert_cmphex(eng_vram_readl(e, 0x9004), ==, 2);
    stop(e);
}

/* A stream and the error it must stop the engine with. */
typedef struct BadStream {
    const char *what;
    uint32_t dw[12];
    size_t n;
    uint32_t tail_cut;      /* bytes of the last command left out */
    uint32_t error;
    uint64_t addr;
    bool reaches_gpu;       /* only an execution-time fault does */
} BadStream;

#define S(...) { __VA_ARGS__ }, sizeof((uint32_t[]){ __VA_ARGS__ }) / 4

static void test_every_error(void)
{
    Eng *e = start();
    uint64_t msg = guest_alloc(&e->r->qs->alloc, 4);
    /* Commands start after a NOOP: at ring offset 4. */
    const BadStream bad[] = {
        { "unknown opcode", S(NOOP(), 0xee000000), 0, RVG_ERR_UNKNOWN_OPCODE, 4 },
        { "reserved header bits", S(NOOP(), NOOP() | 1), 0, RVG_ERR_RESERVED_BITS, 4 },
        { "undefined flag", S(NOOP(), CMD(RVG_OP_STORE_DW, 1), 0, 0, 0), 0,
          RVG_ERR_RESERVED_BITS, 4 },
        { "tail inside a command", S(NOOP(), STORE_DW(0x9000, 1)), 4,
          RVG_ERR_TRUNCATED, 4 },
        { "store past the space", S(NOOP(), STORE_DW(GFX_SPACE, 1)), 0,
          RVG_ERR_BAD_ADDRESS, GFX_SPACE },
        { "store at 2^64-4", S(NOOP(), STORE_DW(~3ull, 1)), 0,
          RVG_ERR_BAD_ADDRESS, ~3ull },
        { "misaligned store", S(NOOP(), STORE_DW(0x9002, 1)), 0,
          RVG_ERR_MISALIGNED, 0x9002 },
        { "fill leaving the space", S(NOOP(), FILL_RECT(GFX_SPACE - 4096, 4096, 1024, 2, 0)),
          0, RVG_ERR_BAD_ADDRESS, GFX_SPACE },
        { "rows overlapping", S(NOOP(), FILL_RECT(0x9000, 8, 4, 2, 0)), 0,
          RVG_ERR_BAD_RECT, 0x9000 },
        { "copy from past the space", S(NOOP(), COPY_RECT(GFX_SPACE, 64, 0x9000, 64, 4, 4)),
          0, RVG_ERR_BAD_ADDRESS, GFX_SPACE },
        { "BATCH_END in the ring", S(NOOP(), BATCH_END()), 0,
          RVG_ERR_BATCH_NESTING, 4 },
        { "misaligned batch", S(NOOP(), BATCH_START(0x1002, 8)), 0,
          RVG_ERR_MISALIGNED, 0x1002 },
        { "batch too long", S(NOOP(), BATCH_START(0x1000, 2 * MiB)), 0,
          RVG_ERR_TRUNCATED, 0x1000 },
        { "batch on an unmapped page", S(NOOP(), BATCH_START(0x200000, 8)), 0,
          RVG_ERR_BAD_ADDRESS, 0x200000 },
        { "privileged LOAD_REG", S(NOOP(), LOAD_REG(RVG_ENGINE_SEQNO, 5)), 0,
          RVG_ERR_PRIVILEGED, 4 },
        { "store on an unmapped page", S(NOOP(), STORE_DW(0x200010, 1)), 0,
          RVG_ERR_BAD_ADDRESS, 0x200010, true },
    };
    /* A batch that starts another, at graphics 0x1000. */
    const uint32_t nested[] = { NOOP(), BATCH_START(0x1000, 4) };

    rvg_msix_route(e->r->dev, msg, 0x3c);
    for (int i = 0; i < ARRAY_SIZE(nested); i++) {
        eng_vram_writel(e, 0x1000 + 4 * i, nested[i]);
    }
    for (int i = 0; i <= ARRAY_SIZE(bad); i++) {
        BadStream nest = { "nested batch", S(NOOP(), BATCH_START(0x1000, sizeof(nested))),
                           0, RVG_ERR_BATCH_NESTING, 0x1004 };
        const BadStream *b = i < ARRAY_SIZE(bad) ? &bad[i] : &nest;
        uint32_t want = RVG_INT_ENGINE_ERROR;
        uint64_t shadowed = rvg_info_value(e->r->qs->qts, NULL, "shadow-dwords=");

        g_test_message("%s", b->what);
        eng_reset(e);
        qtest_writel(e->r->qs->qts, msg, 0);
        eng_emit(e, b->dw, b->n);
        e->tail -= b->tail_cut;
        eng_kick(e);
        if (b->error == RVG_ERR_BAD_ADDRESS) {
            want |= RVG_INT_GTT_FAULT;
        }
        rvg_wait_status(e->r, want);
        g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, b->error);
        g_assert_cmphex(eng_read_addr(e), ==, b->addr);
        g_assert_cmphex(greg_read(e->r, RVG_REG_INT_STATUS), ==, want);
        g_assert_cmphex(qtest_readl(e->r->qs->qts, msg), ==, 0x3c);
        if (b->reaches_gpu) {
            /* Scanned fine, faulted on the GPU: head on the command. */
            g_assert_cmphex(eng_read(e, RVG_ENGINE_RING_HEAD), ==, 4);
        } else {
            /* Refused whole: not a dword reached the GPU. */
            g_assert_cmpuint(rvg_info_value(e->r->qs->qts, NULL, "shadow-dwords="),
                             ==, shadowed);
            g_assert_cmphex(eng_read(e, RVG_ENGINE_RING_HEAD), ==, 0);
        }
        /* Halted: a new tail is not taken. */
        SUBMIT(e, STORE_DW(0x9100, 1));
        g_assert_cmphex(eng_vram_readl(e, 0x9100), ==, 0);
    }
    /* A bad ring: size not a power of two. */
    eng_reset(e);
    eng_write(e, RVG_ENGINE_RING_SIZE, 3000);
    SUBMIT(e, NOOP());
    rvg_wait_status(e->r, RVG_INT_ENGINE_ERROR);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, RVG_ERR_BAD_RING);

    /* Reset recovers. */
    eng_write(e, RVG_ENGINE_RING_SIZE, 4096);
    eng_reset(e);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, 0);
    SUBMIT(e, STORE_DW(0x9200, 3), FENCE(11, false));
    eng_wait_idle(e);
    g_assert_cmphex(eng_vram_readl(e, 0x9200), ==, 3);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_SEQNO), ==, 11);
    g_assert_cmpuint(rvg_info_value(e->r->qs->qts, NULL, "rejected-streams="),
                     ==, ARRAY_SIZE(bad) + 1);
    qpci_msix_disable(e->r->dev);
    stop(e);
}

/* A device reset stops the engine and forgets the ring. */
static void test_device_reset(void)
{
    Eng *e = start();

    SUBMIT(e, FENCE(3, false));
    eng_wait_idle(e);
    qtest_system_reset(e->r->qs->qts);
    rvg_enable(e->r);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_SEQNO), ==, 0);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_RING_CTL), ==, 0);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_RING_TAIL), ==, 0);
    stop(e);
}

/* The physical shadow of the vGPU's GTT entry `index`. */
static uint64_t shadow_of(Eng *e, uint32_t index)
{
    g_autofree char *out = qtest_hmp(e->r->qs->qts, "info rust-vgpu-gtt v0 %u",
                                     index);
    const char *at = strstr(out, "shadow=");

    g_assert_nonnull(at);
    return g_ascii_strtoull(at + strlen("shadow="), NULL, 16);
}

/*
 * Bus Master Enable off: the vGPU reaches no guest RAM. The shadows of
 * system entries go to the scratch page, a stream touching guest RAM is
 * refused with BAD_ADDRESS and RAM stays untouched; VRAM work still runs.
 * Back on, the same entries work again without being rewritten.
 */
static void test_bus_master_gates_guest_ram(void)
{
    Eng *e = start();
    QTestState *qts = e->r->qs->qts;
    uint64_t ram = map_ram(e);
    uint64_t ram_gfx = 300 * 4096;
    uint64_t mapped = shadow_of(e, 300);
    uint16_t cmd = qpci_config_readw(e->r->dev, PCI_COMMAND);

    g_assert_cmphex(mapped & RVG_GTT_VALID, ==, RVG_GTT_VALID);
    qtest_writel(qts, ram + 16, 0);
    qpci_config_writew(e->r->dev, PCI_COMMAND, cmd & ~PCI_COMMAND_MASTER);
    g_assert_cmphex(shadow_of(e, 300), ==, RVG_GTT_LOCAL); /* scratch */

    SUBMIT(e, STORE_DW(0x8000, 0x77), FENCE(1, false));
    eng_wait_idle(e);
    g_assert_cmphex(eng_vram_readl(e, 0x8000), ==, 0x77);
    SUBMIT(e, STORE_DW(ram_gfx + 16, 0xbad), FENCE(2, false));
    eng_wait_idle(e);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, RVG_ERR_BAD_ADDRESS);
    g_assert_cmphex(eng_read_addr(e), ==, ram_gfx + 16);
    g_assert_cmphex(qtest_readl(qts, ram + 16), ==, 0);

    qpci_config_writew(e->r->dev, PCI_COMMAND, cmd);
    g_assert_cmphex(shadow_of(e, 300), ==, mapped);
    eng_reset(e);
    SUBMIT(e, STORE_DW(ram_gfx + 16, 0x600d), FENCE(3, false));
    eng_wait_idle(e);
    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, 0);
    g_assert_cmphex(qtest_readl(qts, ram + 16), ==, 0x600d);
    stop(e);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/rust-vgpu/engine/commands", test_commands_into_vram_and_ram);
    qtest_add_func("/rust-vgpu/engine/overlapping-copies", test_overlapping_copies);
    qtest_add_func("/rust-vgpu/engine/batch", test_batch_buffer);
    qtest_add_func("/rust-vgpu/engine/rewrite-after-tail",
                   test_rewrite_after_tail_changes_nothing);
    qtest_add_func("/rust-vgpu/engine/errors", test_every_error);
    qtest_add_func("/rust-vgpu/engine/device-reset", test_device_reset);
    qtest_add_func("/rust-vgpu/engine/bus-master", test_bus_master_gates_guest_ram);
    return g_test_run();
}
