/*
 * rust-vgpu: -object rust-vgpu-gpu, a GPU several rust-vgpu devices share.
 *
 * Its properties go to Rust when the object is created (gpu_new); policy
 * and x-engine-hold also at run time.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qemu/error-report.h"
#include "qemu/module.h"
#include "qemu/units.h"
#include "qom/object_interfaces.h"

#include "rust-vgpu.h"

static void rust_vgpu_gpu_log(const char *msg)
{
    error_report("rust-vgpu-gpu: %s", msg);
}

static void rust_vgpu_gpu_complete(UserCreatable *uc, Error **errp)
{
    RustVgpuGpu *g = RUST_VGPU_GPU(uc);
    RvgGpuConfig config = {
        .vram_size = g->vram_size,
        .timeslice_us = g->timeslice_us,
        .watchdog_ms = g->watchdog_ms,
        .preempt_timeout_ms = g->preempt_timeout_ms,
        .policy = RustVgpuGpuPolicy_str(g->policy),
    };

    if (rvg_ops.abi_version != RVG_FFI_ABI_VERSION) {
        error_setg(errp, "Rust library ABI %u does not match the shim's %u",
                   rvg_ops.abi_version, RVG_FFI_ABI_VERSION);
        return;
    }
    g->gpu = rvg_ops.gpu_new(&config, rust_vgpu_gpu_log, rust_vgpu_set_error,
                             (RvgErrorSink *)errp);
    if (g->gpu && g->engine_hold) {
        rvg_ops.gpu_set_engine_hold(g->gpu, true);
    }
}

static bool rust_vgpu_gpu_can_be_deleted(UserCreatable *uc)
{
    return RUST_VGPU_GPU(uc)->users == 0;
}

static void rust_vgpu_gpu_instance_init(Object *obj)
{
    RustVgpuGpu *g = RUST_VGPU_GPU(obj);

    g->vram_size = 256 * MiB;
    g->timeslice_us = 1000;
    g->watchdog_ms = 5000;
    g->preempt_timeout_ms = 250;
}

static void rust_vgpu_gpu_instance_finalize(Object *obj)
{
    RustVgpuGpu *g = RUST_VGPU_GPU(obj);

    if (g->gpu) {
        rvg_ops.gpu_free(g->gpu);
        g->gpu = NULL;
    }
}

/* Properties are fixed once the GPU exists. */
static bool rust_vgpu_gpu_settable(RustVgpuGpu *g, const char *name,
                                   Error **errp)
{
    if (g->gpu) {
        error_setg(errp, "property '%s' of rust-vgpu-gpu cannot change "
                   "once it is created", name);
        return false;
    }
    return true;
}

static void rust_vgpu_gpu_get_vram_size(Object *obj, Visitor *v,
                                        const char *name, void *opaque,
                                        Error **errp)
{
    visit_type_size(v, name, &RUST_VGPU_GPU(obj)->vram_size, errp);
}

static void rust_vgpu_gpu_set_vram_size(Object *obj, Visitor *v,
                                        const char *name, void *opaque,
                                        Error **errp)
{
    RustVgpuGpu *g = RUST_VGPU_GPU(obj);
    uint64_t value;

    if (rust_vgpu_gpu_settable(g, name, errp) &&
        visit_type_size(v, name, &value, errp)) {
        g->vram_size = value;
    }
}

/* A uint32 field of RustVgpuGpu, at offset `opaque`. */
static uint32_t *rust_vgpu_gpu_u32(Object *obj, void *opaque)
{
    return (uint32_t *)((char *)RUST_VGPU_GPU(obj) + (uintptr_t)opaque);
}

static void rust_vgpu_gpu_get_u32(Object *obj, Visitor *v, const char *name,
                                  void *opaque, Error **errp)
{
    visit_type_uint32(v, name, rust_vgpu_gpu_u32(obj, opaque), errp);
}

static void rust_vgpu_gpu_set_u32(Object *obj, Visitor *v, const char *name,
                                  void *opaque, Error **errp)
{
    uint32_t value;

    if (rust_vgpu_gpu_settable(RUST_VGPU_GPU(obj), name, errp) &&
        visit_type_uint32(v, name, &value, errp)) {
        *rust_vgpu_gpu_u32(obj, opaque) = value;
    }
}

static bool rust_vgpu_gpu_get_engine_hold(Object *obj, Error **errp)
{
    return RUST_VGPU_GPU(obj)->engine_hold;
}

/* The one property that changes at run time: a test holds the engine. */
static void rust_vgpu_gpu_set_engine_hold(Object *obj, bool value,
                                          Error **errp)
{
    RustVgpuGpu *g = RUST_VGPU_GPU(obj);

    g->engine_hold = value;
    if (g->gpu) {
        rvg_ops.gpu_set_engine_hold(g->gpu, value);
    }
}

static int rust_vgpu_gpu_get_policy(Object *obj, Error **errp)
{
    return RUST_VGPU_GPU(obj)->policy;
}

/* Settable at run time (qom-set): a created GPU hands it to Rust. */
static void rust_vgpu_gpu_set_policy(Object *obj, int value, Error **errp)
{
    RustVgpuGpu *g = RUST_VGPU_GPU(obj);

    if (g->gpu && !rvg_ops.gpu_set_policy(g->gpu, RustVgpuGpuPolicy_str(value),
                                          rust_vgpu_set_error,
                                          (RvgErrorSink *)errp)) {
        return;
    }
    g->policy = value;
}

static void rust_vgpu_gpu_class_init(ObjectClass *klass, void *data)
{
    UserCreatableClass *ucc = USER_CREATABLE_CLASS(klass);

    ucc->complete = rust_vgpu_gpu_complete;
    ucc->can_be_deleted = rust_vgpu_gpu_can_be_deleted;
    object_class_property_add(klass, "vram-size", "size",
                              rust_vgpu_gpu_get_vram_size,
                              rust_vgpu_gpu_set_vram_size, NULL, NULL);
    object_class_property_set_description(klass, "vram-size",
        "VRAM the vGPUs' slices come from: a power of two from 1 MiB to "
        "1 GiB, default 256M");
    object_class_property_add(klass, "timeslice-us", "uint32",
                              rust_vgpu_gpu_get_u32, rust_vgpu_gpu_set_u32,
                              NULL,
                              (void *)offsetof(RustVgpuGpu, timeslice_us));
    object_class_property_set_description(klass, "timeslice-us",
        "how long one vGPU's commands run before another's get the engine, "
        "in microseconds (100 to 1000000), default 1000");
    object_class_property_add(klass, "watchdog-ms", "uint32",
                              rust_vgpu_gpu_get_u32, rust_vgpu_gpu_set_u32,
                              NULL,
                              (void *)offsetof(RustVgpuGpu, watchdog_ms));
    object_class_property_set_description(klass, "watchdog-ms",
        "how long work on the engine may make no progress before the "
        "engine is reset and the vGPU it belongs to is halted with HANG, "
        "in milliseconds (100 to 600000), default 5000");
    object_class_property_add(klass, "preempt-timeout-ms", "uint32",
                              rust_vgpu_gpu_get_u32, rust_vgpu_gpu_set_u32,
                              NULL,
                              (void *)offsetof(RustVgpuGpu,
                                               preempt_timeout_ms));
    object_class_property_set_description(klass, "preempt-timeout-ms",
        "how long the engine may take to stop for a preemption when a "
        "vGPU's time slice is over and another waits, before the engine "
        "is reset and the vGPU is halted with PREEMPT_TIMEOUT, in "
        "milliseconds (1 to 600000), default 250");
    object_class_property_add_enum(klass, "policy", "RustVgpuGpuPolicy",
                                   &RustVgpuGpuPolicy_lookup,
                                   rust_vgpu_gpu_get_policy,
                                   rust_vgpu_gpu_set_policy);
    object_class_property_set_description(klass, "policy",
        "how the vGPUs share the engine: best-effort (any vGPU with work "
        "runs), equal-share (each gets 1/N, busy or not) or fixed-share "
        "(each gets its weight's part, never more); default best-effort; "
        "settable at run time with qom-set");
    object_class_property_add_bool(klass, "x-engine-hold",
                                   rust_vgpu_gpu_get_engine_hold,
                                   rust_vgpu_gpu_set_engine_hold);
    object_class_property_set_description(klass, "x-engine-hold",
        "test hook: while true the GPU's engine starts no command "
        "(settable at run time with qom-set)");
}

static const TypeInfo rust_vgpu_gpu_type = {
    .name = TYPE_RUST_VGPU_GPU,
    .parent = TYPE_OBJECT,
    .instance_size = sizeof(RustVgpuGpu),
    .instance_init = rust_vgpu_gpu_instance_init,
    .instance_finalize = rust_vgpu_gpu_instance_finalize,
    .class_init = rust_vgpu_gpu_class_init,
    .interfaces = (InterfaceInfo[]) {
        { TYPE_USER_CREATABLE },
        { },
    },
};

static void rust_vgpu_gpu_register(void)
{
    type_register_static(&rust_vgpu_gpu_type);
}

type_init(rust_vgpu_gpu_register)
