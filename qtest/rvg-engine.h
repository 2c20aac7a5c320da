/*
 * Command-stream helpers shared by the rust-vgpu engine qtests: a guest
 * driving one vGPU's ring the way a driver would.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RVG_ENGINE_H
#define RVG_ENGINE_H

#include "rvg-qtest.h"

/* A guest of one vGPU: BAR0 mapped, its ring at graphics address 0. */
typedef struct Eng {
    Rvg *r;
    QPCIBar vram;
    uint64_t vram_size;
    uint32_t ring_size;
    uint32_t tail;
} Eng;

static inline uint32_t eng_read(Eng *e, uint32_t reg)
{
    return qpci_io_readl(e->r->dev, e->r->mmio, RVG_ENGINE + reg);
}

static inline uint64_t eng_read_addr(Eng *e)
{
    return qpci_io_readq(e->r->dev, e->r->mmio,
                         RVG_ENGINE + RVG_ENGINE_ERROR_ADDR);
}

static inline void eng_write(Eng *e, uint32_t reg, uint32_t v)
{
    qpci_io_writel(e->r->dev, e->r->mmio, RVG_ENGINE + reg, v);
}

static inline void eng_gtt(Eng *e, uint32_t index, uint64_t entry)
{
    qpci_io_writeq(e->r->dev, e->r->mmio, RVG_GTT + 8ull * index, entry);
}

/* Graphics pages [0, pages) on the first pages of the VRAM slice. */
static inline void eng_map_vram(Eng *e, uint32_t pages)
{
    for (uint32_t i = 0; i < pages; i++) {
        eng_gtt(e, i, (uint64_t)i << 12 | RVG_GTT_LOCAL | RVG_GTT_VALID);
    }
}

static inline void eng_vram_writel(Eng *e, uint64_t off, uint32_t v)
{
    qpci_io_writel(e->r->dev, e->vram, off, v);
}

static inline uint32_t eng_vram_readl(Eng *e, uint64_t off)
{
    return qpci_io_readl(e->r->dev, e->vram, off);
}

/* Set up `r`'s engine: a ring of `ring_size` bytes at graphics 0. */
static inline void eng_init(Eng *e, Rvg *r, uint32_t ring_size)
{
    *e = (Eng) { .r = r, .ring_size = ring_size };
    rvg_enable(r);
    e->vram = qpci_iomap(r->dev, RVG_BAR_VRAM, &e->vram_size);
    eng_map_vram(e, 256);
    greg_write(r, RVG_REG_INT_ENABLE, RVG_INT_FENCE | RVG_INT_ENGINE_ERROR |
               RVG_INT_GTT_FAULT);
    qpci_io_writeq(r->dev, r->mmio, RVG_ENGINE + RVG_ENGINE_RING_BASE, 0);
    eng_write(e, RVG_ENGINE_RING_SIZE, ring_size);
    eng_write(e, RVG_ENGINE_RING_CTL, RVG_RING_CTL_ENABLE);
}

/* Put dwords in the ring at the tail (wrapping); the tail is not moved. */
static inline void eng_emit(Eng *e, const uint32_t *dw, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        eng_vram_writel(e, e->tail, dw[i]);
        e->tail = (e->tail + 4) % e->ring_size;
    }
}

/*
 * Put `n` dwords in the ring at the tail in one or two bulk writes
 * (wrapping); the tail is not moved. For streams too long for a write per
 * dword.
 */
static inline void eng_emit_bulk(Eng *e, const uint32_t *dw, size_t n)
{
    size_t bytes = n * 4;
    size_t first = MIN(bytes, e->ring_size - e->tail);

    qpci_memwrite(e->r->dev, e->vram, e->tail, dw, first);
    qpci_memwrite(e->r->dev, e->vram, 0, (const uint8_t *)dw + first, bytes - first);
    e->tail = (e->tail + bytes) % e->ring_size;
}

/* The doorbell. */
static inline void eng_kick(Eng *e)
{
    eng_write(e, RVG_ENGINE_RING_TAIL, e->tail);
}

static inline void eng_submit(Eng *e, const uint32_t *dw, size_t n)
{
    eng_emit(e, dw, n);
    eng_kick(e);
}

/* Wait until the head reaches the tail or the engine stops; five seconds. */
static inline void eng_wait_idle(Eng *e)
{
    for (int i = 0; i < 5000; i++) {
        if (eng_read(e, RVG_ENGINE_RING_HEAD) == e->tail ||
            eng_read(e, RVG_ENGINE_ERROR)) {
            return;
        }
        g_usleep(1000);
    }
    g_assert_cmphex(eng_read(e, RVG_ENGINE_RING_HEAD), ==, e->tail);
}

/*
 * An empty ring, the engine reset and enabled, interrupt status clear. The
 * engine is disabled first: moving the tail of an enabled engine is a
 * doorbell, and would submit the old commands between it and the end.
 */
static inline void eng_reset(Eng *e)
{
    eng_write(e, RVG_ENGINE_RING_CTL, 0);
    e->tail = 0;
    eng_kick(e);
    eng_write(e, RVG_ENGINE_RING_CTL, RVG_RING_CTL_RESET | RVG_RING_CTL_ENABLE);
    greg_write(e->r, RVG_REG_INT_STATUS, ~0u);
}

/* Command encoders (docs/hardware.md, "Commands"). */
#define CMD(op, flags) ((uint32_t)(op) << 24 | (uint32_t)(flags) << 16)
#define LO(a) ((uint32_t)(a))
#define HI(a) ((uint32_t)((uint64_t)(a) >> 32))
#define NOOP() CMD(RVG_OP_NOOP, 0)
#define STORE_DW(a, v) CMD(RVG_OP_STORE_DW, 0), LO(a), HI(a), (v)
#define FENCE(s, irq) CMD(RVG_OP_FENCE, (irq) ? 1 : 0), (s)
#define BATCH_START(a, len) CMD(RVG_OP_BATCH_START, 0), LO(a), HI(a), (len)
#define BATCH_END() CMD(RVG_OP_BATCH_END, 0)
#define FILL_RECT(d, pitch, w, h, c) \
    CMD(RVG_OP_FILL_RECT, 0), LO(d), HI(d), (pitch), (w), (h), (c)
#define COPY_RECT(s, sp, d, dp, w, h) \
    CMD(RVG_OP_COPY_RECT, 0), LO(s), HI(s), (sp), LO(d), HI(d), (dp), (w), (h)
#define LOAD_REG(reg, v) CMD(RVG_OP_LOAD_REG, 0), (reg), (v)

#define SUBMIT(e, ...) do { \
        const uint32_t dw_[] = { __VA_ARGS__ }; \
        eng_submit((e), dw_, ARRAY_SIZE(dw_)); \
    } while (0)

/*
 * Keep `e`'s ring busy with fills of `rows` rows of 1024 pixels (4096
 * bytes apart) at graphics address `dst`, each followed by a fence
 * numbered on from `*emitted`: when `refill_at` or fewer are queued (by
 * the engine's SEQNO), top it up to `most` in one bulk write and ring the
 * doorbell. The engine must not have stopped on an error.
 */
static inline void eng_keep_fills(Eng *e, uint32_t *emitted, uint32_t refill_at,
                                  uint32_t most, uint64_t dst, uint32_t rows)
{
    g_autofree uint32_t *dw = NULL;
    uint32_t queued;
    size_t n = 0;

    g_assert_cmpuint(eng_read(e, RVG_ENGINE_ERROR), ==, 0);
    queued = *emitted - eng_read(e, RVG_ENGINE_SEQNO);
    if (queued > refill_at) {
        return;
    }
    dw = g_new(uint32_t, (most - queued) * 9);
    for (; queued < most; queued++) {
        uint32_t seqno = ++*emitted;
        const uint32_t fill[] = {
            FILL_RECT(dst, 4096, 1024, rows, seqno),
            FENCE(seqno, false)
        };

        memcpy(dw + n, fill, sizeof(fill));
        n += ARRAY_SIZE(fill);
    }
    eng_emit_bulk(e, dw, n);
    eng_kick(e);
}

#endif
