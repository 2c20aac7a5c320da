/*
 * Helpers shared by the rust-vgpu qtests.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RVG_QTEST_H
#define RVG_QTEST_H

#include "libqtest.h"
#include "libqos/libqos-pc.h"
#include "libqos/pci.h"
#include "hw/pci/pci_regs.h"
#include "qobject/qdict.h"

#include "rvg-regs.h"

typedef struct Rvg {
    QOSState *qs;
    QPCIDevice *dev;
    QPCIBar mmio;
} Rvg;

static inline void save_dev(QPCIDevice *dev, int devfn, void *data)
{
    *(QPCIDevice **)data = dev;
}

/*
 * For qpci_device_foreach: append `dev` to the NULL-terminated array
 * `data`, which has room for every device the walk finds. The bus is
 * walked in slot order.
 */
static inline void append_dev(QPCIDevice *dev, int devfn, void *data)
{
    QPCIDevice **found = data;
    int i = 0;

    while (found[i]) {
        i++;
    }
    found[i] = dev;
}

static inline QPCIDevice *find_rvg(QPCIBus *bus)
{
    QPCIDevice *dev = NULL;

    qpci_device_foreach(bus, RVG_PCI_VENDOR_ID, RVG_PCI_DEVICE_ID_VGPU,
                        save_dev, &dev);
    g_assert_nonnull(dev);
    return dev;
}

static inline Rvg *rvg_start(const char *extra)
{
    Rvg *r = g_new0(Rvg, 1);

    /* -nodefaults: the pc machine's default VGA is 1234:1111 too. */
    r->qs = qtest_pc_boot("-nodefaults -device rust-vgpu%s", extra ? extra : "");
    r->dev = find_rvg(r->qs->pcibus);
    return r;
}

/*
 * Turn on memory decode and bus mastering. (libqos's qpci_device_enable
 * insists on I/O Space Enable too, which RVG-1, having no I/O BARs,
 * hardwires to zero.)
 */
static inline void rvg_pci_enable(QPCIDevice *dev)
{
    uint16_t cmd = qpci_config_readw(dev, PCI_COMMAND);

    qpci_config_writew(dev, PCI_COMMAND,
                       cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

/*
 * Enable MSI-X and route vector 0, unmasked, to a write of `data` at the
 * 32-bit guest address `msg`.
 */
static inline void rvg_msix_route(QPCIDevice *d, uint32_t msg, uint32_t data)
{
    qpci_msix_enable(d);
    qpci_io_writel(d, d->msix_table_bar,
                   d->msix_table_off + PCI_MSIX_ENTRY_LOWER_ADDR, msg);
    qpci_io_writel(d, d->msix_table_bar,
                   d->msix_table_off + PCI_MSIX_ENTRY_UPPER_ADDR, 0);
    qpci_io_writel(d, d->msix_table_bar,
                   d->msix_table_off + PCI_MSIX_ENTRY_DATA, data);
    qpci_io_writel(d, d->msix_table_bar,
                   d->msix_table_off + PCI_MSIX_ENTRY_VECTOR_CTRL, 0);
}

/* Map BAR2 and enable the device. */
static inline void rvg_enable(Rvg *r)
{
    r->mmio = qpci_iomap(r->dev, RVG_BAR_MMIO, NULL);
    rvg_pci_enable(r->dev);
}

static inline void rvg_stop(Rvg *r)
{
    g_free(r->dev);
    qtest_pc_shutdown(r->qs);
    g_free(r);
}

static inline uint32_t greg_read(Rvg *r, uint32_t reg)
{
    return qpci_io_readl(r->dev, r->mmio, RVG_GLOBAL + reg);
}

static inline void greg_write(Rvg *r, uint32_t reg, uint32_t val)
{
    qpci_io_writel(r->dev, r->mmio, RVG_GLOBAL + reg, val);
}

/* Poll INT_STATUS until `bits` are all set; fail after five seconds. */
static inline void rvg_wait_status(Rvg *r, uint32_t bits)
{
    for (int i = 0; i < 5000; i++) {
        if ((greg_read(r, RVG_REG_INT_STATUS) & bits) == bits) {
            return;
        }
        g_usleep(1000);
    }
    g_assert_cmphex(greg_read(r, RVG_REG_INT_STATUS) & bits, ==, bits);
}

/*
 * Migrate `from` to `to`, a QEMU started with -incoming `uri`: true once
 * the migration completed and `to` runs, false if it failed (both within
 * 30 s).
 */
static inline bool rvg_migrate(QTestState *from, QTestState *to, const char *uri)
{
    qtest_qmp_assert_success(from, "{'execute': 'migrate', 'arguments':"
                             " {'uri': %s}}", uri);
    for (int i = 0; i < 3000; i++) {
        QDict *ret = qtest_qmp_assert_success_ref(from,
                                                  "{'execute': 'query-migrate'}");
        g_autofree char *status = g_strdup(qdict_get_try_str(ret, "status"));

        qobject_unref(ret);
        g_test_message("migration: %s", status ? status : "none");
        if (status && !strcmp(status, "completed")) {
            qtest_qmp_eventwait(to, "RESUME");
            return true;
        }
        if (status && (!strcmp(status, "failed") || !strcmp(status, "cancelled"))) {
            return false;
        }
        g_usleep(10 * 1000);
    }
    g_assert_not_reached();
}

/* A QMP response must be an error whose description contains `want`. */
static inline void rvg_expect_error(QDict *resp, const char *want)
{
    const char *desc = qdict_get_str(qdict_get_qdict(resp, "error"), "desc");

    g_test_message("%s", desc);
    g_assert_nonnull(strstr(desc, want));
    qobject_unref(resp);
}

/*
 * A number from `info rust-vgpu`: the one after `key` (e.g. "seqno="), in
 * the section of device `id` if given.
 */
static inline uint64_t rvg_info_value(QTestState *qts, const char *id,
                                      const char *key)
{
    g_autofree char *out = qtest_hmp(qts, "info rust-vgpu");
    g_autofree char *quoted = g_strdup_printf("\"%s\"", id ? id : "");
    const char *section = id ? strstr(out, quoted) : out;
    const char *at;

    g_assert_nonnull(section);
    at = strstr(section, key);
    g_assert_nonnull(at);
    return g_ascii_strtoull(at + strlen(key), NULL, 0);
}

#endif
