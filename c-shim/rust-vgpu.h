/*
 * rust-vgpu: what the shim's files share: the QOM types and their state.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef RUST_VGPU_H
#define RUST_VGPU_H

#include "exec/memory.h"
#include "hw/pci/pci_device.h"
#include "migration/misc.h"
#include "migration/vmstate.h"
#include "system/runstate.h"
#include "qapi/qapi-types-qom.h"
#include "ui/console.h"

#include "rust-vgpu-ffi.h"

#define TYPE_RUST_VGPU_BASE "rust-vgpu-base"
#define TYPE_RUST_VGPU "rust-vgpu"
#define TYPE_RUST_VGPU_HW "rust-vgpu-hw"
#define TYPE_RUST_VGPU_HW_VF "rust-vgpu-hw-vf"
#define TYPE_RUST_VGPU_GPU "rust-vgpu-gpu"

OBJECT_DECLARE_TYPE(RustVgpuState, RustVgpuClass, RUST_VGPU_BASE)
OBJECT_DECLARE_SIMPLE_TYPE(RustVgpuGpu, RUST_VGPU_GPU)

/* -object rust-vgpu-gpu: a GPU several rust-vgpu devices share. */
struct RustVgpuGpu {
    Object parent_obj;

    /* properties */
    uint64_t vram_size;
    uint32_t timeslice_us;
    uint32_t watchdog_ms;
    uint32_t preempt_timeout_ms;
    RustVgpuGpuPolicy policy;
    /* Test hook: the GPU's engine starts no command while set. */
    bool engine_hold;

    RvgGpu *gpu;
    /* rust-vgpu devices realized on it: it cannot be deleted under them. */
    unsigned users;
};

enum {
    RVG_BAR_VRAM = 0,
    RVG_BAR_MMIO = 2,
    RVG_BAR_MSIX = 4,
};

struct RustVgpuClass {
    PCIDeviceClass parent_class;
    RvgModelKind model;
};

struct RustVgpuState {
    PCIDevice parent_obj;

    /* properties */
    uint64_t vram_size;
    uint64_t gfx_size;
    RustVgpuGpu *gpu;
    uint32_t xres;
    uint32_t yres;
    char *host;
    char *sysfsdev;
    char *vfio_iommu;
    uint32_t weight;
    uint16_t vfs; /* rust-vgpu-hw: TotalVFs of its SR-IOV capability */

    MemoryRegion vram;
    MemoryRegion mmio;
    /* vGPU only: guest RAM as the mediator must see it. */
    MemoryListener listener;
    bool listening;
    int watched_fd;
    /* vGPU only: its console, and BAR0's dirty log during a refresh. */
    QemuConsole *con;
    DirtyBitmapSnapshot *vram_dirty;
    /* vGPU only: migration. Rust's section, its length, and who calls. */
    GByteArray *saved;
    uint8_t *state_data;
    uint32_t state_len;
    VMChangeStateEntry *vm_change;
    NotifierWithReturn migration_notifier;
    RvgDevice *dev;
    RvgDeviceInfo info;
    /*
     * The device left the bus (exit ran): no host service touches the PCI
     * device any more. Set and read under the BQL.
     */
    bool exited;
};

/* rust-vgpu-migration.c: the vGPU's migration, set up at realize. */
extern const VMStateDescription vmstate_rust_vgpu;
void rust_vgpu_migration_init(RustVgpuState *s);
void rust_vgpu_migration_exit(RustVgpuState *s);

/* Fill QEMU's Error of the current call (RvgErrorSink is an Error **). */
void rust_vgpu_set_error(RvgErrorSink *errp, const char *msg);

#endif
