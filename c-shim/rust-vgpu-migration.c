/*
 * rust-vgpu: migration of the vGPU.
 *
 * QEMU's own vmstate carries config space (MSI with it) and the MSI-X
 * table; QEMU's RAM migration carries the VRAM slice (BAR0's RAM block,
 * iteratively, with the GPU's writes reported to the dirty log); Rust
 * writes and checks the rest as one buffer (docs/migration.md). When the
 * VM stops the vGPU quiesces: its work in the GPU finishes before the
 * last pass over RAM and before the device state is saved.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/timer.h"
#include "hw/pci/msix.h"
#include "migration/misc.h"
#include "migration/vmstate.h"
#include "system/runstate.h"
#include "trace.h"

#include "rust-vgpu.h"

/*
 * The most a stream may make the destination allocate for Rust's section
 * (about 420 KiB for today's largest GTT slice): a larger length is
 * refused before any allocation.
 */
#define RUST_VGPU_STATE_MAX (16u << 20)

static const char *rust_vgpu_name(RustVgpuState *s)
{
    DeviceState *d = DEVICE(s);

    return d->id ? d->id : object_get_typename(OBJECT(s));
}

static void rust_vgpu_vm_change(void *opaque, bool running, RunState state)
{
    RustVgpuState *s = opaque;
    int64_t start;

    if (running || !s->dev) {
        return;
    }
    start = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
    rvg_ops.quiesce(s->dev);
    trace_rust_vgpu_quiesce(rust_vgpu_name(s),
                            qemu_clock_get_us(QEMU_CLOCK_REALTIME) - start);
}

static int rust_vgpu_migration_notify(NotifierWithReturn *notifier,
                                      MigrationEvent *e, Error **errp)
{
    RustVgpuState *s = container_of(notifier, RustVgpuState,
                                    migration_notifier);

    if (e->type == MIG_EVENT_PRECOPY_SETUP && s->dev) {
        rvg_ops.migration_begin(s->dev);
    }
    return 0;
}

void rust_vgpu_migration_init(RustVgpuState *s)
{
    s->saved = g_byte_array_new();
    /* BAR0 goes with RAM migration, under the device's own name. */
    vmstate_register_ram(&s->vram, DEVICE(s));
    s->vm_change = qemu_add_vm_change_state_handler(rust_vgpu_vm_change, s);
    migration_add_notifier(&s->migration_notifier, rust_vgpu_migration_notify);
}

void rust_vgpu_migration_exit(RustVgpuState *s)
{
    if (!s->saved) {
        return;
    }
    migration_remove_notifier(&s->migration_notifier);
    qemu_del_vm_change_state_handler(s->vm_change);
    vmstate_unregister_ram(&s->vram, DEVICE(s));
    g_byte_array_free(s->saved, true);
    s->saved = NULL;
    g_free(s->state_data);
    s->state_data = NULL;
}

static int rust_vgpu_pre_save(void *opaque)
{
    RustVgpuState *s = opaque;
    Error *err = NULL;

    g_byte_array_set_size(s->saved, 0);
    if (!rvg_ops.save_state(s->dev, (RvgByteSink *)s->saved,
                            (RvgErrorSink *)&err)) {
        error_prepend(&err, "%s: cannot save the vGPU: ", rust_vgpu_name(s));
        error_report_err(err);
        return -EBUSY;
    }
    s->state_data = s->saved->data;
    s->state_len = s->saved->len;
    trace_rust_vgpu_state_saved(rust_vgpu_name(s), s->state_len);
    return 0;
}

static int rust_vgpu_post_save(void *opaque)
{
    RustVgpuState *s = opaque;

    /* The bytes stay the GByteArray's. */
    s->state_data = NULL;
    s->state_len = 0;
    return 0;
}

static int rust_vgpu_pre_load(void *opaque)
{
    RustVgpuState *s = opaque;

    g_free(s->state_data);
    s->state_data = NULL;
    return 0;
}

static bool rust_vgpu_state_len_ok(void *opaque, int version_id)
{
    RustVgpuState *s = opaque;

    if (s->state_len > RUST_VGPU_STATE_MAX) {
        error_report("%s: vGPU state of %u bytes refused: at most %u",
                     rust_vgpu_name(s), s->state_len, RUST_VGPU_STATE_MAX);
        return false;
    }
    return true;
}

static int rust_vgpu_post_load(void *opaque, int version_id)
{
    RustVgpuState *s = opaque;
    Error *err = NULL;
    bool ok = rvg_ops.load_state(s->dev, s->state_data, s->state_len,
                                 (RvgErrorSink *)&err);

    trace_rust_vgpu_state_loaded(rust_vgpu_name(s), s->state_len);
    g_free(s->state_data);
    s->state_data = NULL;
    if (!ok) {
        error_prepend(&err, "%s: ", rust_vgpu_name(s));
        error_report_err(err);
        return -EINVAL;
    }
    return 0;
}

const VMStateDescription vmstate_rust_vgpu = {
    .name = TYPE_RUST_VGPU,
    .version_id = 1,
    .minimum_version_id = 1,
    .pre_save = rust_vgpu_pre_save,
    .post_save = rust_vgpu_post_save,
    .pre_load = rust_vgpu_pre_load,
    .post_load = rust_vgpu_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_PCI_DEVICE(parent_obj, RustVgpuState),
        VMSTATE_MSIX(parent_obj, RustVgpuState),
        VMSTATE_UINT32(state_len, RustVgpuState),
        VMSTATE_VALIDATE("vGPU state length", rust_vgpu_state_len_ok),
        VMSTATE_VBUFFER_ALLOC_UINT32(state_data, RustVgpuState, 0, NULL,
                                     state_len),
        VMSTATE_END_OF_LIST()
    },
};
