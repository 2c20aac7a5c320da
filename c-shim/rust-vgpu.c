/*
 * rust-vgpu: the C QOM shim.
 *
 * QOM types, qdev properties, BARs, MSI/MSI-X/INTx plumbing and the host
 * services Rust calls. Device behaviour lives in the Rust staticlib behind
 * rvg_ops (c-shim/rust-vgpu-ffi.h); nothing here decides what a register
 * means.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/log.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "qemu/units.h"
#include "hw/pci/pci_device.h"
#include "hw/pci/msi.h"
#include "hw/pci/msix.h"
#include "hw/qdev-properties.h"
#include "migration/vmstate.h"
#include "trace.h"

#include "rust-vgpu-ffi.h"

#define TYPE_RUST_VGPU_BASE "rust-vgpu-base"
#define TYPE_RUST_VGPU "rust-vgpu"
#define TYPE_RUST_VGPU_HW "rust-vgpu-hw"

OBJECT_DECLARE_TYPE(RustVgpuState, RustVgpuClass, RUST_VGPU_BASE)

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

    MemoryRegion vram;
    MemoryRegion mmio;
    RvgDevice *dev;
    RvgDeviceInfo info;
};

/* ---- host services: what Rust may ask of QEMU ---- */

static RustVgpuState *host_state(RvgHost *host)
{
    return (RustVgpuState *)host;
}

static RvgIrqMode host_irq_mode(RvgHost *host)
{
    PCIDevice *pdev = PCI_DEVICE(host_state(host));

    if (msix_enabled(pdev)) {
        return RVG_IRQ_MSIX;
    }
    if (msi_enabled(pdev)) {
        return RVG_IRQ_MSI;
    }
    return RVG_IRQ_INTX;
}

/*
 * The interrupt services may be called from a device worker thread: take
 * the BQL when the caller does not hold it, as QEMU's interrupt code needs.
 */
static void host_msix_notify(RvgHost *host, uint32_t vector)
{
    BQL_LOCK_GUARD();
    trace_rust_vgpu_irq("msix", vector);
    msix_notify(PCI_DEVICE(host_state(host)), vector);
}

static void host_msi_notify(RvgHost *host, uint32_t vector)
{
    BQL_LOCK_GUARD();
    trace_rust_vgpu_irq("msi", vector);
    msi_notify(PCI_DEVICE(host_state(host)), vector);
}

static void host_intx_set(RvgHost *host, bool level)
{
    BQL_LOCK_GUARD();
    trace_rust_vgpu_irq("intx", level);
    pci_set_irq(PCI_DEVICE(host_state(host)), level);
}

static void host_log(RvgHost *host, RvgLogKind kind, const char *msg)
{
    RustVgpuState *s = host_state(host);
    DeviceState *d = DEVICE(s);
    const char *name = d->id ? d->id : object_get_typename(OBJECT(s));

    switch (kind) {
    case RVG_LOG_GUEST_ERROR:
        qemu_log_mask(LOG_GUEST_ERROR, "%s: %s\n", name, msg);
        break;
    case RVG_LOG_UNIMP:
        qemu_log_mask(LOG_UNIMP, "%s: %s\n", name, msg);
        break;
    default:
        error_report("%s: %s", name, msg);
        break;
    }
}

static void host_set_error(RvgErrorSink *errp, const char *msg)
{
    error_setg((Error **)errp, "%s", msg);
}

static const RvgHostServices rust_vgpu_host_services = {
    .irq_mode = host_irq_mode,
    .msix_notify = host_msix_notify,
    .msi_notify = host_msi_notify,
    .intx_set = host_intx_set,
    .log = host_log,
    .set_error = host_set_error,
};

/* ---- BAR2: trapped MMIO, every access goes to Rust ---- */

static uint64_t rust_vgpu_mmio_read(void *opaque, hwaddr addr, unsigned size)
{
    RustVgpuState *s = opaque;
    uint64_t val = rvg_ops.mmio_read(s->dev, addr, size);

    trace_rust_vgpu_mmio_read(addr, size, val);
    return val;
}

static void rust_vgpu_mmio_write(void *opaque, hwaddr addr, uint64_t val,
                                 unsigned size)
{
    RustVgpuState *s = opaque;

    trace_rust_vgpu_mmio_write(addr, size, val);
    rvg_ops.mmio_write(s->dev, addr, val, size);
}

/* Rust sees every access as issued: it applies the documented size rules. */
static const MemoryRegionOps rust_vgpu_mmio_ops = {
    .read = rust_vgpu_mmio_read,
    .write = rust_vgpu_mmio_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .valid = {
        .min_access_size = 1,
        .max_access_size = 8,
        .unaligned = true,
    },
    .impl = {
        .min_access_size = 1,
        .max_access_size = 8,
        .unaligned = true,
    },
};

/* ---- PCI device ---- */

static void rust_vgpu_config_write(PCIDevice *pdev, uint32_t addr,
                                   uint32_t val, int len)
{
    RustVgpuState *s = RUST_VGPU_BASE(pdev);

    /* Handles BARs, command, and the MSI / MSI-X capabilities. */
    pci_default_write_config(pdev, addr, val, len);
    rvg_ops.irq_config_changed(s->dev);
}

static void rust_vgpu_use_all_vectors(RustVgpuState *s)
{
    for (uint32_t v = 0; v < s->info.msix_vectors; v++) {
        msix_vector_use(PCI_DEVICE(s), v);
    }
}

static void rust_vgpu_realize(PCIDevice *pdev, Error **errp)
{
    RustVgpuState *s = RUST_VGPU_BASE(pdev);
    RustVgpuClass *rc = RUST_VGPU_BASE_GET_CLASS(s);
    uint8_t *conf = pdev->config;
    RvgConfig config = {
        .model = rc->model,
        .vram_size = s->vram_size,
    };

    if (rvg_ops.abi_version != RVG_FFI_ABI_VERSION) {
        error_setg(errp, "Rust library ABI %u does not match the shim's %u",
                   rvg_ops.abi_version, RVG_FFI_ABI_VERSION);
        return;
    }
    s->dev = rvg_ops.realize(&config, (RvgHost *)s, &rust_vgpu_host_services,
                             &s->info, (RvgErrorSink *)errp);
    if (!s->dev) {
        return;
    }

    pci_config_set_vendor_id(conf, s->info.vendor_id);
    pci_config_set_device_id(conf, s->info.device_id);
    pci_set_word(conf + PCI_SUBSYSTEM_VENDOR_ID, s->info.subsystem_vendor_id);
    pci_set_word(conf + PCI_SUBSYSTEM_ID, s->info.subsystem_id);
    pci_config_set_revision(conf, s->info.revision);
    pci_config_set_class(conf, s->info.class_code >> 8);
    pci_config_set_prog_interface(conf, s->info.class_code & 0xff);
    pci_config_set_interrupt_pin(conf, 1);

    if (!memory_region_init_ram(&s->vram, OBJECT(s), "rust-vgpu.vram",
                                s->info.vram_size, errp)) {
        goto fail;
    }
    pci_register_bar(pdev, RVG_BAR_VRAM,
                     PCI_BASE_ADDRESS_SPACE_MEMORY |
                     PCI_BASE_ADDRESS_MEM_TYPE_64 |
                     PCI_BASE_ADDRESS_MEM_PREFETCH, &s->vram);

    memory_region_init_io(&s->mmio, OBJECT(s), &rust_vgpu_mmio_ops, s,
                          "rust-vgpu.mmio", s->info.mmio_size);
    pci_register_bar(pdev, RVG_BAR_MMIO,
                     PCI_BASE_ADDRESS_SPACE_MEMORY |
                     PCI_BASE_ADDRESS_MEM_TYPE_64, &s->mmio);

    if (msix_init_exclusive_bar(pdev, s->info.msix_vectors, RVG_BAR_MSIX,
                                errp)) {
        goto fail;
    }
    rust_vgpu_use_all_vectors(s);

    /* 64-bit addresses, per-vector masking. */
    if (msi_init(pdev, 0, s->info.msi_vectors, true, true, errp) < 0) {
        goto fail_msix;
    }
    return;

fail_msix:
    msix_uninit_exclusive_bar(pdev);
fail:
    rvg_ops.unrealize(s->dev);
    s->dev = NULL;
}

static void rust_vgpu_exit(PCIDevice *pdev)
{
    RustVgpuState *s = RUST_VGPU_BASE(pdev);

    msi_uninit(pdev);
    msix_uninit_exclusive_bar(pdev);
    rvg_ops.unrealize(s->dev);
    s->dev = NULL;
}

static void rust_vgpu_reset(DeviceState *d)
{
    RustVgpuState *s = RUST_VGPU_BASE(d);

    rvg_ops.reset(s->dev);
}

/* Device state lives in Rust and has no migration format yet. */
static const VMStateDescription vmstate_rust_vgpu = {
    .name = TYPE_RUST_VGPU_BASE,
    .unmigratable = 1,
};

static const Property rust_vgpu_properties[] = {
    DEFINE_PROP_SIZE("vram-size", RustVgpuState, vram_size, 64 * MiB),
};

static void rust_vgpu_base_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    PCIDeviceClass *k = PCI_DEVICE_CLASS(klass);

    k->realize = rust_vgpu_realize;
    k->exit = rust_vgpu_exit;
    k->config_write = rust_vgpu_config_write;
    device_class_set_legacy_reset(dc, rust_vgpu_reset);
    dc->vmsd = &vmstate_rust_vgpu;
    device_class_set_props(dc, rust_vgpu_properties);
    object_class_property_set_description(klass, "vram-size",
        "VRAM size (BAR0): a power of two from 1 MiB to 1 GiB, default 64M");
    set_bit(DEVICE_CATEGORY_DISPLAY, dc->categories);
}

static void rust_vgpu_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);

    RUST_VGPU_BASE_CLASS(klass)->model = RVG_MODEL_VGPU;
    dc->desc = "rust-vgpu mediated virtual GPU (RVG-1)";
}

static void rust_vgpu_hw_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);

    RUST_VGPU_BASE_CLASS(klass)->model = RVG_MODEL_HW;
    dc->desc = "rust-vgpu RVG-1 GPU model, unmediated (for VFIO hosts)";
}

static const TypeInfo rust_vgpu_types[] = {
    {
        .name = TYPE_RUST_VGPU_BASE,
        .parent = TYPE_PCI_DEVICE,
        .instance_size = sizeof(RustVgpuState),
        .class_size = sizeof(RustVgpuClass),
        .class_init = rust_vgpu_base_class_init,
        .abstract = true,
        .interfaces = (InterfaceInfo[]) {
            { INTERFACE_CONVENTIONAL_PCI_DEVICE },
            { },
        },
    },
    {
        .name = TYPE_RUST_VGPU,
        .parent = TYPE_RUST_VGPU_BASE,
        .class_init = rust_vgpu_class_init,
    },
    {
        .name = TYPE_RUST_VGPU_HW,
        .parent = TYPE_RUST_VGPU_BASE,
        .class_init = rust_vgpu_hw_class_init,
    },
};

DEFINE_TYPES(rust_vgpu_types)
