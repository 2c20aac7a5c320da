/*
 * rust-vgpu: the monitor's view of the devices: HMP's info rust-vgpu and
 * info rust-vgpu-gtt for people, QMP's x-query-rust-vgpu for tools.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-rust-vgpu.h"
#include "qapi/util.h"
#include "qemu/module.h"
#include "qobject/qdict.h"
#include "hw/boards.h"
#include "hw/qdev-core.h"
#include "hw/sysbus.h"
#include "monitor/monitor.h"

#include "rust-vgpu.h"

static int rust_vgpu_describe_one(Object *obj, void *opaque)
{
    RustVgpuState *s = (RustVgpuState *)object_dynamic_cast(obj,
                                                            TYPE_RUST_VGPU_BASE);
    GString *out = opaque;
    DeviceState *d;
    PCIDevice *pdev;

    if (!s || !s->dev) {
        return 0;
    }
    d = DEVICE(s);
    pdev = PCI_DEVICE(s);
    g_string_append_printf(out, "%s \"%s\" at %02x:%02x.%x\n",
                           object_get_typename(obj), d->id ? d->id : "",
                           pci_dev_bus_num(pdev), PCI_SLOT(pdev->devfn),
                           PCI_FUNC(pdev->devfn));
    rvg_ops.describe(s->dev, (RvgTextSink *)out);
    return 0;
}

static void hmp_info_rust_vgpu(Monitor *mon, const QDict *qdict)
{
    g_autoptr(GString) out = g_string_new("");

    object_child_foreach_recursive(qdev_get_machine(), rust_vgpu_describe_one,
                                   out);
    monitor_puts(mon, out->len ? out->str : "no rust-vgpu devices\n");
}

/* ---- QMP: x-query-rust-vgpu ---- */

static int rust_vgpu_query_one(Object *obj, void *opaque)
{
    RustVgpuState *s = (RustVgpuState *)object_dynamic_cast(obj,
                                                            TYPE_RUST_VGPU_BASE);
    RustVgpuInfoList ***tail = opaque;
    g_autoptr(GString) backend = g_string_new("");
    RvgReport r = { 0 };
    RustVgpuInfo *info;

    if (!s || !s->dev ||
        !rvg_ops.report(s->dev, &r, (RvgTextSink *)backend)) {
        return 0;
    }
    info = g_new0(RustVgpuInfo, 1);
    info->qom_path = object_get_canonical_path(obj);
    info->id = g_strdup(DEVICE(s)->id);
    info->backend = g_strdup(backend->str);
    info->vgpus_on_gpu = r.vgpus_on_gpu;
    info->policy = qapi_enum_parse(&RustVgpuGpuPolicy_lookup, r.policy,
                                   RUST_VGPU_GPU_POLICY_BEST_EFFORT,
                                   &error_abort);
    info->weight = r.weight;
    info->engine_time_us = r.engine_time_us;
    info->slices = r.slices;
    info->submitted_dwords = r.submitted_dwords;
    info->engine_faults = r.engine_faults;
    info->hangs = r.hangs;
    info->preemptions = r.preemptions;
    info->preempt_timeouts = r.preempt_timeouts;
    info->scanned_commands = r.scanned_commands;
    info->rejected_streams = r.rejected_streams;
    info->gtt_faults = r.gtt_faults;
    info->pinned_pages = r.pinned_pages;
    QAPI_LIST_APPEND(*tail, info);
    return 0;
}

RustVgpuInfoList *qmp_x_query_rust_vgpu(Error **errp)
{
    RustVgpuInfoList *head = NULL, **tail = &head;

    object_child_foreach_recursive(qdev_get_machine(), rust_vgpu_query_one,
                                   &tail);
    return head;
}

static void hmp_info_rust_vgpu_gtt(Monitor *mon, const QDict *qdict)
{
    const char *id = qdict_get_str(qdict, "id");
    int64_t first = qdict_get_int(qdict, "first");
    int64_t count = qdict_get_try_int(qdict, "count", 1);
    DeviceState *d = qdev_find_recursive(sysbus_get_default(), id);
    RustVgpuState *s = d ? (RustVgpuState *)object_dynamic_cast(OBJECT(d),
                                            TYPE_RUST_VGPU_BASE) : NULL;
    g_autoptr(GString) out = g_string_new("");

    if (!s || !s->dev) {
        monitor_printf(mon, "no rust-vgpu device with id '%s'\n", id);
        return;
    }
    if (first < 0 || first > UINT32_MAX || count < 1 || count > 4096) {
        monitor_printf(mon, "entries %" PRId64 "+%" PRId64
                       ": first must be >= 0 and count 1 to 4096\n",
                       first, count);
        return;
    }
    rvg_ops.gtt_dump(s->dev, first, count, (RvgTextSink *)out);
    monitor_puts(mon, out->str);
}

static void rust_vgpu_monitor_register(void)
{
    monitor_register_hmp("rust-vgpu", true, hmp_info_rust_vgpu);
    monitor_register_hmp("rust-vgpu-gtt", true, hmp_info_rust_vgpu_gtt);
}

type_init(rust_vgpu_monitor_register)
