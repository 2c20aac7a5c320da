/*
 * rust-vgpu qtests: the display.
 *
 * What the console shows is checked the way a user sees it: QMP
 * `screendump` pixels. Covered: the EDID blob and the xres/yres
 * properties, a bochs DISPI mode from VRAM (resize, panning), the native
 * plane through the GTT on VRAM and guest-RAM pages (black with bus
 * mastering off), RGB565 and padded strides, bad plane settings (blank,
 * logged, device alive), a disabled display and a reset (blank),
 * redrawing only what changed, flips, and the engine's writes reaching
 * the screen.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/units.h"

#include "rvg-engine.h"

/* A screendump: 0xRRGGBB pixels. */
typedef struct Shot {
    int width;
    int height;
    uint32_t *px;
} Shot;

static void shot_free(Shot *s)
{
    g_free(s->px);
    g_free(s);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Shot, shot_free)

static Shot *screendump(Rvg *r)
{
    g_autofree char *path = NULL;
    g_autofree char *data = NULL;
    g_autoptr(GError) err = NULL;
    Shot *s = g_new0(Shot, 1);
    QDict *resp;
    gsize len;
    int fd = g_file_open_tmp("rvg-shot-XXXXXX.ppm", &path, &err);
    int header = 0;

    g_assert_no_error(err);
    close(fd);
    resp = qtest_qmp(r->qs->qts, "{'execute': 'screendump', 'arguments':"
                     " {'filename': %s, 'format': 'ppm'}}", path);
    g_assert_false(qdict_haskey(resp, "error"));
    qobject_unref(resp);
    g_assert_true(g_file_get_contents(path, &data, &len, &err));
    unlink(path);
    /* One whitespace byte ends the header: pixels may look like spaces. */
    g_assert_cmpint(sscanf(data, "P6 %d %d 255%n", &s->width, &s->height,
                           &header), ==, 2);
    header++;
    g_assert_cmpint(len, ==, header + 3 * s->width * s->height);
    s->px = g_new(uint32_t, s->width * s->height);
    for (int i = 0; i < s->width * s->height; i++) {
        const uint8_t *p = (const uint8_t *)data + header + 3 * i;

        s->px[i] = p[0] << 16 | p[1] << 8 | p[2];
    }
    return s;
}

static uint32_t px(Shot *s, int x, int y)
{
    g_assert_cmpint(x, <, s->width);
    g_assert_cmpint(y, <, s->height);
    return s->px[y * s->width + x];
}

static void assert_black(Shot *s)
{
    for (int i = 0; i < s->width * s->height; i++) {
        g_assert_cmphex(s->px[i], ==, 0);
    }
}

/* A vGPU with BAR0 and BAR2 mapped, the engine's GTT and ring unused. */
typedef struct Disp {
    Rvg *r;
    QPCIBar vram;
} Disp;

static Disp start(const char *extra)
{
    g_autofree char *args = g_strdup_printf(",id=v0,vram-size=16M%s",
                                            extra ? extra : "");
    Disp d = { .r = rvg_start(args) };

    rvg_enable(d.r);
    d.vram = qpci_iomap(d.r->dev, RVG_BAR_VRAM, NULL);
    return d;
}

static void dispi_write(Disp *d, uint32_t reg, uint16_t v)
{
    qpci_io_writew(d->r->dev, d->r->mmio, RVG_DISPI + reg, v);
}

/* A DISPI mode as bochs-drm sets one: disable, program, enable. */
static void dispi_mode(Disp *d, uint16_t w, uint16_t h, uint16_t bpp,
                       uint16_t virt_width, uint16_t y_offset)
{
    dispi_write(d, RVG_DISPI_ENABLE, 0);
    dispi_write(d, RVG_DISPI_BPP, bpp);
    dispi_write(d, RVG_DISPI_XRES, w);
    dispi_write(d, RVG_DISPI_YRES, h);
    dispi_write(d, RVG_DISPI_VIRT_WIDTH, virt_width);
    dispi_write(d, RVG_DISPI_Y_OFFSET, y_offset);
    dispi_write(d, RVG_DISPI_ENABLE, RVG_DISPI_ENABLED | RVG_DISPI_LFB_ENABLED);
}

static void plane_write(Disp *d, uint32_t reg, uint32_t v)
{
    qpci_io_writel(d->r->dev, d->r->mmio, RVG_DISPLAY + reg, v);
}

static void plane_set(Disp *d, uint32_t format, uint64_t base, uint32_t w,
                      uint32_t h, uint32_t stride)
{
    plane_write(d, RVG_DISPLAY_PLANE_FORMAT, format);
    plane_write(d, RVG_DISPLAY_PLANE_WIDTH, w);
    plane_write(d, RVG_DISPLAY_PLANE_HEIGHT, h);
    plane_write(d, RVG_DISPLAY_PLANE_STRIDE, stride);
    qpci_io_writeq(d->r->dev, d->r->mmio, RVG_DISPLAY + RVG_DISPLAY_PLANE_BASE,
                   base);
    plane_write(d, RVG_DISPLAY_PLANE_CTL, RVG_PLANE_CTL_ENABLE);
}

static void gtt(Disp *d, uint32_t index, uint64_t entry)
{
    qpci_io_writeq(d->r->dev, d->r->mmio, RVG_GTT + 8ull * index, entry);
}

/* A recognisable pixel for (x, y) of picture `tag`. */
static uint32_t pattern(int tag, int x, int y)
{
    return (tag << 20 | y << 10 | x) & 0xffffff;
}

/* Fill w x h pixels at VRAM `off` (pitch bytes apart) with `pattern`. */
static void vram_picture(Disp *d, uint64_t off, int w, int h, uint32_t pitch,
                         int tag)
{
    g_autofree uint32_t *line = g_new(uint32_t, w);

    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            line[x] = cpu_to_le32(pattern(tag, x, y));
        }
        qpci_memwrite(d->r->dev, d->vram, off + y * pitch, line, 4 * w);
    }
}

static void assert_picture(Shot *s, int w, int h, int tag)
{
    g_assert_cmpint(s->width, ==, w);
    g_assert_cmpint(s->height, ==, h);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            g_assert_cmphex(px(s, x, y), ==, pattern(tag, x, y));
        }
    }
}

static uint64_t info(Disp *d, const char *key)
{
    return rvg_info_value(d->r->qs->qts, "v0", key);
}

static void stop(Disp *d)
{
    rvg_stop(d->r);
}

/* The preferred mode of the first detailed timing, as a driver reads it. */
static void edid_preferred(Disp *d, int *w, int *h)
{
    uint8_t e[RVG_EDID_SIZE];
    uint8_t sum = 0;

    for (int i = 0; i < RVG_EDID_SIZE; i++) {
        e[i] = qpci_io_readb(d->r->dev, d->r->mmio, RVG_EDID + i);
        sum += e[i];
    }
    g_assert_cmpmem(e, 8, "\x00\xff\xff\xff\xff\xff\xff\x00", 8);
    g_assert_cmpuint(sum, ==, 0);
    g_assert_cmpuint(e[18], ==, 1);
    *w = e[56] | (e[58] >> 4) << 8;
    *h = e[59] | (e[61] >> 4) << 8;
}

static void test_edid(void)
{
    Disp d = start(NULL);
    int w, h;

    edid_preferred(&d, &w, &h);
    g_assert_cmpint(w, ==, 1024);
    g_assert_cmpint(h, ==, 768);
    /* The blob is read-only; the rest of the 1 KiB window reads zero. */
    qpci_io_writeb(d.r->dev, d.r->mmio, RVG_EDID, 0x55);
    g_assert_cmphex(qpci_io_readb(d.r->dev, d.r->mmio, RVG_EDID), ==, 0);
    g_assert_cmphex(qpci_io_readl(d.r->dev, d.r->mmio, RVG_EDID + 0x200), ==, 0);
    stop(&d);

    d = start(",xres=1920,yres=1080");
    edid_preferred(&d, &w, &h);
    g_assert_cmpint(w, ==, 1920);
    g_assert_cmpint(h, ==, 1080);
    stop(&d);

    /* Unset on a small VRAM: the largest standard mode that fits. */
    d.r = rvg_start(",vram-size=2M");
    rvg_enable(d.r);
    edid_preferred(&d, &w, &h);
    g_assert_cmpint(w, ==, 800);
    g_assert_cmpint(h, ==, 600);
    stop(&d);
}

static void test_bad_resolution(void)
{
    Disp d = start(NULL);
    QTestState *qts = d.r->qs->qts;

    rvg_expect_error(qtest_qmp(qts, "{'execute': 'device_add', 'arguments': {"
                               "'driver': 'rust-vgpu', 'xres': 5000}}"),
                     "property 'xres' is 5000: it must be 320 to 4000");
    rvg_expect_error(qtest_qmp(qts, "{'execute': 'device_add', 'arguments': {"
                               "'driver': 'rust-vgpu', 'yres': 100}}"),
                     "property 'yres' is 100: it must be 200 to 2400");
    rvg_expect_error(qtest_qmp(qts, "{'execute': 'device_add', 'arguments': {"
                               "'driver': 'rust-vgpu', 'vram-size': 4194304, "
                               "'xres': 1920, 'yres': 1080}}"),
                     "needs 8294400 bytes of VRAM at 32 bits per pixel; "
                     "vram-size is 4194304 (4 MiB)");
    rvg_expect_error(qtest_qmp(qts, "{'execute': 'device_add', 'arguments': {"
                               "'driver': 'rust-vgpu', 'xres': 800}}"),
                     "property 'yres' is 0: set it with 'xres'");
    stop(&d);
}

static void test_dispi_mode(void)
{
    Disp d = start(NULL);
    g_autoptr(Shot) s = NULL;

    /* Power-on: blank, nothing enabled. */
    s = screendump(d.r);
    g_assert_cmpint(s->width, ==, 640);
    assert_black(s);
    g_clear_pointer(&s, shot_free);

    vram_picture(&d, 0, 64, 48, 64 * 4, 1);
    dispi_mode(&d, 64, 48, 32, 64, 0);
    s = screendump(d.r);
    assert_picture(s, 64, 48, 1);
    g_clear_pointer(&s, shot_free);

    /* A new mode resizes the console. */
    vram_picture(&d, 0, 32, 16, 32 * 4, 2);
    dispi_mode(&d, 32, 16, 32, 32, 0);
    s = screendump(d.r);
    assert_picture(s, 32, 16, 2);
    g_clear_pointer(&s, shot_free);

    /* Panning: a wider virtual screen, shown from line 100. */
    vram_picture(&d, 100 * 256 * 4, 40, 30, 256 * 4, 3);
    dispi_mode(&d, 40, 30, 32, 256, 100);
    s = screendump(d.r);
    assert_picture(s, 40, 30, 3);
    stop(&d);
}

static void test_plane_on_vram_pages(void)
{
    Disp d = start(NULL);
    g_autoptr(Shot) s = NULL;

    /* 64x32 pixels, 256-byte lines: graphics pages 8 and 9 on VRAM pages
     * 7 and 2, in that order. */
    gtt(&d, 8, 7 * 4096 | RVG_GTT_LOCAL | RVG_GTT_VALID);
    gtt(&d, 9, 2 * 4096 | RVG_GTT_LOCAL | RVG_GTT_VALID);
    vram_picture(&d, 7 * 4096, 64, 16, 256, 4);
    for (int y = 16; y < 32; y++) {
        uint32_t line[64];

        for (int x = 0; x < 64; x++) {
            line[x] = cpu_to_le32(pattern(4, x, y));
        }
        qpci_memwrite(d.r->dev, d.vram, 2 * 4096 + (y - 16) * 256, line, 256);
    }
    /* DISPI is on too: the plane wins. */
    dispi_mode(&d, 100, 100, 32, 100, 0);
    plane_set(&d, RVG_FORMAT_XRGB8888, 8 * 4096, 64, 32, 256);
    s = screendump(d.r);
    assert_picture(s, 64, 32, 4);
    stop(&d);
}

static void test_plane_on_guest_ram(void)
{
    Disp d = start(NULL);
    QTestState *qts = d.r->qs->qts;
    uint64_t ram = ROUND_UP(guest_alloc(&d.r->qs->alloc, 3 * 4096), 4096);
    g_autoptr(Shot) s = NULL;
    uint32_t line[32];

    /* 32x64 pixels, 128-byte lines: two guest RAM pages, swapped. */
    gtt(&d, 20, (ram + 4096) | RVG_GTT_VALID);
    gtt(&d, 21, ram | RVG_GTT_VALID);
    for (int y = 0; y < 64; y++) {
        uint64_t page = y < 32 ? ram + 4096 : ram;

        for (int x = 0; x < 32; x++) {
            line[x] = cpu_to_le32(pattern(5, x, y));
        }
        qtest_memwrite(qts, page + (y % 32) * 128, line, sizeof(line));
    }
    plane_set(&d, RVG_FORMAT_XRGB8888, 20 * 4096, 32, 64, 128);
    s = screendump(d.r);
    assert_picture(s, 32, 64, 5);
    g_clear_pointer(&s, shot_free);

    /* Guest RAM is not dirty-logged: a CPU write still shows. */
    qtest_writel(qts, ram + 4096 + 5 * 128 + 4 * 7, 0x00abcdef);
    s = screendump(d.r);
    g_assert_cmphex(px(s, 7, 5), ==, 0xabcdef);
    g_clear_pointer(&s, shot_free);

    /* An entry re-pointed at nothing shows black. */
    gtt(&d, 21, 0);
    s = screendump(d.r);
    g_assert_cmphex(px(s, 0, 31), ==, pattern(5, 0, 31));
    g_assert_cmphex(px(s, 0, 32), ==, 0);
    g_assert_cmphex(px(s, 31, 63), ==, 0);
    g_clear_pointer(&s, shot_free);

    /* Bus mastering off: the display cannot fetch guest RAM either. */
    qpci_config_writew(d.r->dev, PCI_COMMAND, PCI_COMMAND_MEMORY);
    s = screendump(d.r);
    g_assert_cmphex(px(s, 0, 0), ==, 0);
    g_clear_pointer(&s, shot_free);
    rvg_pci_enable(d.r->dev);
    s = screendump(d.r);
    g_assert_cmphex(px(s, 0, 0), ==, pattern(5, 0, 0));
    stop(&d);
}

static void test_plane_format_and_stride(void)
{
    Disp d = start(NULL);
    g_autoptr(Shot) s = NULL;
    uint16_t line[16];

    /* RGB565, 16 pixels in lines of 64 bytes: the padding is not shown. */
    for (int i = 0; i < 16; i++) {
        gtt(&d, i, i * 4096ull | RVG_GTT_LOCAL | RVG_GTT_VALID);
    }
    for (int y = 0; y < 4; y++) {
        for (int x = 0; x < 16; x++) {
            line[x] = cpu_to_le16(x < 8 ? 0xf800 : 0x07e0); /* red, green */
        }
        qpci_memwrite(d.r->dev, d.vram, y * 64, line, sizeof(line));
        qpci_memwrite(d.r->dev, d.vram, y * 64 + 32, "\xff\xff\xff\xff", 4);
    }
    plane_set(&d, RVG_FORMAT_RGB565, 0, 16, 4, 64);
    s = screendump(d.r);
    g_assert_cmpint(s->width, ==, 16);
    for (int y = 0; y < 4; y++) {
        for (int x = 0; x < 16; x++) {
            g_assert_cmphex(px(s, x, y), ==, x < 8 ? 0xff0000 : 0x00ff00);
        }
    }
    stop(&d);
}

static void test_bad_plane_is_blank(void)
{
    Disp d = start(NULL);
    struct {
        uint32_t format;
        uint64_t base;
        uint32_t w, h, stride;
        const char *why;
    } bad[] = {
        { RVG_FORMAT_XRGB8888, 128 * MiB - 4096, 64, 64, 256,
          "runs past the 0x8000000 bytes the GTT maps" },
        { RVG_FORMAT_XRGB8888, 0, 64, 64, 252,
          "PLANE_STRIDE 252 is smaller than a line of 64 pixels" },
        { 0x20203859 /* "Y8  " */, 0, 64, 64, 256,
          "PLANE_FORMAT 0x20203859 is not a supported format" },
        { RVG_FORMAT_XRGB8888, 0, 0, 64, 256, "each side must be 1 to 4096" },
        { RVG_FORMAT_XRGB8888, 0, 64, 5000, 256, "each side must be 1 to 4096" },
    };

    for (int i = 0; i < 16; i++) {
        gtt(&d, i, i * 4096ull | RVG_GTT_LOCAL | RVG_GTT_VALID);
    }
    vram_picture(&d, 0, 64, 64, 256, 6);
    for (int i = 0; i < ARRAY_SIZE(bad); i++) {
        g_autoptr(Shot) s = NULL;
        g_autofree char *out = NULL;

        plane_set(&d, RVG_FORMAT_XRGB8888, 0, 64, 64, 256);
        s = screendump(d.r);
        assert_picture(s, 64, 64, 6);
        g_clear_pointer(&s, shot_free);

        plane_set(&d, bad[i].format, bad[i].base, bad[i].w, bad[i].h,
                  bad[i].stride);
        s = screendump(d.r);
        g_assert_cmpint(s->width, ==, 64);
        assert_black(s);
        out = qtest_hmp(d.r->qs->qts, "info rust-vgpu");
        g_test_message("%s", bad[i].why);
        g_assert_nonnull(strstr(out, "display: blank: "));
        g_assert_nonnull(strstr(out, bad[i].why));
        /* The device still works. */
        g_assert_cmphex(greg_read(d.r, RVG_REG_ID), ==, RVG_ID_VALUE);
    }
    stop(&d);
}

static void test_disabled_and_reset_are_blank(void)
{
    Disp d = start(NULL);
    g_autoptr(Shot) s = NULL;

    vram_picture(&d, 0, 48, 48, 48 * 4, 7);
    dispi_mode(&d, 48, 48, 32, 48, 0);
    s = screendump(d.r);
    assert_picture(s, 48, 48, 7);
    g_clear_pointer(&s, shot_free);

    dispi_write(&d, RVG_DISPI_ENABLE, 0);
    s = screendump(d.r);
    g_assert_cmpint(s->width, ==, 48);
    assert_black(s);
    g_clear_pointer(&s, shot_free);

    dispi_write(&d, RVG_DISPI_ENABLE, RVG_DISPI_ENABLED);
    s = screendump(d.r);
    assert_picture(s, 48, 48, 7);
    g_clear_pointer(&s, shot_free);

    /* A system reset disables the display: the VRAM's picture goes. */
    qtest_qmp_assert_success(d.r->qs->qts, "{'execute': 'system_reset'}");
    s = screendump(d.r);
    assert_black(s);
    stop(&d);
}

static void test_redraws_only_changes(void)
{
    Disp d = start(NULL);
    g_autoptr(Shot) s = NULL;
    uint64_t compared, updated;

    vram_picture(&d, 0, 256, 64, 1024, 8);
    dispi_mode(&d, 256, 64, 32, 256, 0);
    s = screendump(d.r);
    g_clear_pointer(&s, shot_free);
    compared = info(&d, "lines-compared=");
    updated = info(&d, "lines-updated=");
    g_assert_cmpuint(updated, ==, 64);

    /* Nothing changed: no line is even read. */
    s = screendump(d.r);
    g_clear_pointer(&s, shot_free);
    g_assert_cmpuint(info(&d, "lines-compared="), ==, compared);
    g_assert_cmpuint(info(&d, "lines-updated="), ==, updated);

    /* One pixel of line 9: its page (lines 8-11) is read, one line copied. */
    qpci_io_writel(d.r->dev, d.vram, 9 * 1024 + 4 * 100, 0x123456);
    s = screendump(d.r);
    g_assert_cmphex(px(s, 100, 9), ==, 0x123456);
    g_assert_cmpuint(info(&d, "lines-compared="), ==, compared + 4);
    g_assert_cmpuint(info(&d, "lines-updated="), ==, updated + 1);
    stop(&d);
}

static void test_flip(void)
{
    Disp d = start(NULL);

    greg_write(d.r, RVG_REG_INT_ENABLE, RVG_INT_DISPLAY_FLIP);
    plane_set(&d, RVG_FORMAT_XRGB8888, 0, 64, 64, 256);
    g_assert_cmpuint(qpci_io_readl(d.r->dev, d.r->mmio,
                                   RVG_DISPLAY + RVG_DISPLAY_FLIP_COUNT), ==, 1);
    g_assert_cmphex(greg_read(d.r, RVG_REG_INT_STATUS), ==, RVG_INT_DISPLAY_FLIP);
    greg_write(d.r, RVG_REG_INT_STATUS, RVG_INT_DISPLAY_FLIP);
    /* The high half alone does not latch; the low half does. */
    plane_write(&d, RVG_DISPLAY_PLANE_BASE + 4, 0);
    g_assert_cmphex(greg_read(d.r, RVG_REG_INT_STATUS), ==, 0);
    plane_write(&d, RVG_DISPLAY_PLANE_BASE, 0x4000);
    g_assert_cmpuint(qpci_io_readl(d.r->dev, d.r->mmio,
                                   RVG_DISPLAY + RVG_DISPLAY_FLIP_COUNT), ==, 2);
    g_assert_cmphex(greg_read(d.r, RVG_REG_INT_STATUS), ==, RVG_INT_DISPLAY_FLIP);
    stop(&d);
}

static void test_engine_writes_show(void)
{
    Eng e;
    Disp d;
    g_autoptr(Shot) s = NULL;

    /* The ring on graphics pages 0-255 = VRAM pages 0-255; the screen at
     * VRAM 2 MiB, 128x64. */
    eng_init(&e, rvg_start(",id=v0,vram-size=16M"), 4096);
    d = (Disp) { .r = e.r, .vram = e.vram };
    for (int i = 0; i < 8; i++) {
        eng_gtt(&e, 1024 + i, (2 * MiB + i * 4096) | RVG_GTT_LOCAL | RVG_GTT_VALID);
    }
    dispi_mode(&d, 128, 64, 32, 128, 2 * MiB / 512);
    s = screendump(d.r);
    assert_black(s);
    g_clear_pointer(&s, shot_free);

    SUBMIT(&e, FILL_RECT(1024 * 4096ull + 10 * 512 + 16, 512, 20, 5, 0x00ff8800),
           FENCE(1, false));
    eng_wait_idle(&e);
    g_assert_cmpuint(eng_read(&e, RVG_ENGINE_SEQNO), ==, 1);
    s = screendump(d.r);
    for (int y = 0; y < 64; y++) {
        for (int x = 0; x < 128; x++) {
            bool in = x >= 4 && x < 24 && y >= 10 && y < 15;

            g_assert_cmphex(px(s, x, y), ==, in ? 0xff8800 : 0);
        }
    }
    rvg_stop(e.r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/rust-vgpu/display/edid", test_edid);
    qtest_add_func("/rust-vgpu/display/bad-resolution", test_bad_resolution);
    qtest_add_func("/rust-vgpu/display/dispi-mode", test_dispi_mode);
    qtest_add_func("/rust-vgpu/display/plane-vram-pages", test_plane_on_vram_pages);
    qtest_add_func("/rust-vgpu/display/plane-guest-ram", test_plane_on_guest_ram);
    qtest_add_func("/rust-vgpu/display/plane-format-stride",
                   test_plane_format_and_stride);
    qtest_add_func("/rust-vgpu/display/bad-plane-is-blank", test_bad_plane_is_blank);
    qtest_add_func("/rust-vgpu/display/disabled-and-reset-blank",
                   test_disabled_and_reset_are_blank);
    qtest_add_func("/rust-vgpu/display/redraws-only-changes",
                   test_redraws_only_changes);
    qtest_add_func("/rust-vgpu/display/flip", test_flip);
    qtest_add_func("/rust-vgpu/display/engine-writes-show", test_engine_writes_show);
    return g_test_run();
}
