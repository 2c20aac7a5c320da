/*
 * rust-vgpu: the C QOM shim.
 *
 * The PCI devices (rust-vgpu, rust-vgpu-hw): qdev properties, BARs,
 * MSI/MSI-X/INTx plumbing and the host services Rust calls. The shared GPU
 * object is in rust-vgpu-gpu.c, the monitor commands in
 * rust-vgpu-monitor.c, their common types in rust-vgpu.h. Device behaviour
 * lives in the Rust staticlib behind rvg_ops (c-shim/rust-vgpu-ffi.h);
 * nothing here decides what a register means.
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
#include "qobject/qdict.h"
#include "qapi/visitor.h"
#include "exec/address-spaces.h"
#include "exec/memory.h"
#include "hw/boards.h"
#include "hw/pci/pci_device.h"
#include "hw/pci/pcie.h"
#include "hw/pci/pcie_sriov.h"
#include "hw/pci/msi.h"
#include "hw/pci/msix.h"
#include "hw/qdev-properties.h"
#include "migration/vmstate.h"
#include "monitor/monitor.h"
#include "system/dma.h"
#include "ui/console.h"
#include "trace.h"

#include "rust-vgpu.h"

/* ---- host services: what Rust may ask of QEMU ---- */

static RustVgpuState *host_state(RvgHost *host)
{
    return (RustVgpuState *)host;
}

static RvgIrqMode host_irq_mode(RvgHost *host)
{
    PCIDevice *pdev = PCI_DEVICE(host_state(host));

    /* Config space changes under the BQL; the engine thread asks too. */
    BQL_LOCK_GUARD();
    if (host_state(host)->exited) {
        return RVG_IRQ_INTX;
    }
    if (msix_enabled(pdev)) {
        return RVG_IRQ_MSIX;
    }
    if (msi_enabled(pdev)) {
        return RVG_IRQ_MSI;
    }
    return RVG_IRQ_INTX;
}

static bool host_bus_master(RvgHost *host)
{
    PCIDevice *pdev = PCI_DEVICE(host_state(host));

    return pci_get_word(pdev->config + PCI_COMMAND) & PCI_COMMAND_MASTER;
}

/*
 * The interrupt services may be called from a device worker thread: take
 * the BQL when the caller does not hold it, as QEMU's interrupt code needs.
 */
static void host_msix_notify(RvgHost *host, uint32_t vector)
{
    BQL_LOCK_GUARD();
    if (host_state(host)->exited) {
        return;
    }
    trace_rust_vgpu_irq("msix", vector);
    msix_notify(PCI_DEVICE(host_state(host)), vector);
}

static void host_msi_notify(RvgHost *host, uint32_t vector)
{
    BQL_LOCK_GUARD();
    if (host_state(host)->exited) {
        return;
    }
    trace_rust_vgpu_irq("msi", vector);
    msi_notify(PCI_DEVICE(host_state(host)), vector);
}

static void host_intx_set(RvgHost *host, bool level)
{
    BQL_LOCK_GUARD();
    /* A VF has no INTx pin: it signals by MSI-X or not at all. */
    if (host_state(host)->exited || !host_state(host)->info.intx) {
        return;
    }
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

void rust_vgpu_set_error(RvgErrorSink *errp, const char *msg)
{
    error_setg((Error **)errp, "%s", msg);
}

static bool host_dma_rw(RvgHost *host, uint64_t addr, void *buf, uint64_t len,
                        bool is_write)
{
    BQL_LOCK_GUARD();
    if (host_state(host)->exited) {
        return false;
    }
    return pci_dma_rw(PCI_DEVICE(host_state(host)), addr, buf, len,
                      is_write ? DMA_DIRECTION_FROM_DEVICE
                               : DMA_DIRECTION_TO_DEVICE,
                      MEMTXATTRS_UNSPECIFIED) == MEMTX_OK;
}

static void rust_vgpu_fd_read(void *opaque);

/* One watched fd per device: the vGPU's physical interrupt eventfd. */
static void host_watch_fd(RvgHost *host, int fd)
{
    RustVgpuState *s = host_state(host);

    assert(s->watched_fd < 0);
    s->watched_fd = fd;
    qemu_set_fd_handler(fd, rust_vgpu_fd_read, NULL, s);
}

static void host_unwatch_fd(RvgHost *host, int fd)
{
    RustVgpuState *s = host_state(host);

    qemu_set_fd_handler(fd, NULL, NULL, NULL);
    if (s->watched_fd == fd) {
        s->watched_fd = -1;
    }
}

static void host_text_append(RvgTextSink *sink, const char *text)
{
    g_string_append((GString *)sink, text);
}

static void host_bytes_append(RvgByteSink *sink, const uint8_t *data,
                              size_t len)
{
    g_byte_array_append((GByteArray *)sink, data, len);
}

/* The GPU wrote memory behind the dirty log: tell every client. */
static void host_mark_dirty(RvgHost *host, RvgDirtyKind kind, uint64_t addr,
                            uint64_t len)
{
    RustVgpuState *s = host_state(host);

    trace_rust_vgpu_mark_dirty(kind, addr, len);
    if (kind == RVG_DIRTY_VRAM) {
        if (addr < s->info.vram_size) {
            memory_region_set_dirty(&s->vram, addr,
                                    MIN(len, s->info.vram_size - addr));
        }
        return;
    }
    /* Guest RAM: section by section, the range may cross regions. */
    while (len) {
        MemoryRegionSection sec = memory_region_find(get_system_memory(),
                                                     addr, len);
        uint64_t done = sec.mr ? int128_get64(sec.size) : 0;

        if (!sec.mr || !done) {
            return;
        }
        if (memory_region_is_ram(sec.mr)) {
            memory_region_set_dirty(sec.mr, sec.offset_within_region, done);
        }
        memory_region_unref(sec.mr);
        done += sec.offset_within_address_space - addr;
        addr += done;
        len -= MIN(len, done);
    }
}

static bool host_vram_dirty(RvgHost *host, uint64_t offset, uint64_t len)
{
    RustVgpuState *s = host_state(host);

    if (!s->vram_dirty || offset >= s->info.vram_size) {
        return true;
    }
    return memory_region_snapshot_get_dirty(&s->vram, s->vram_dirty, offset,
                                            MIN(len, s->info.vram_size - offset));
}

static void host_display_resize(RvgHost *host, uint32_t width, uint32_t height)
{
    RustVgpuState *s = host_state(host);

    trace_rust_vgpu_display_resize(width, height);
    dpy_gfx_replace_surface(s->con, qemu_create_displaysurface(width, height));
}

static bool host_display_surface(RvgHost *host, RvgSurface *out)
{
    DisplaySurface *ds = qemu_console_surface(host_state(host)->con);

    if (!ds || surface_format(ds) != PIXMAN_x8r8g8b8) {
        return false;
    }
    *out = (RvgSurface) {
        .pixels = surface_data(ds),
        .width = surface_width(ds),
        .height = surface_height(ds),
        .stride = surface_stride(ds),
    };
    return true;
}

static void host_display_update(RvgHost *host, uint32_t y, uint32_t height)
{
    RustVgpuState *s = host_state(host);
    DisplaySurface *ds = qemu_console_surface(s->con);

    trace_rust_vgpu_display_update(y, height);
    dpy_gfx_update(s->con, 0, y, surface_width(ds), height);
}

static const RvgHostServices rust_vgpu_host_services = {
    .irq_mode = host_irq_mode,
    .bus_master = host_bus_master,
    .msix_notify = host_msix_notify,
    .msi_notify = host_msi_notify,
    .intx_set = host_intx_set,
    .log = host_log,
    .set_error = rust_vgpu_set_error,
    .dma_rw = host_dma_rw,
    .watch_fd = host_watch_fd,
    .unwatch_fd = host_unwatch_fd,
    .text_append = host_text_append,
    .bytes_append = host_bytes_append,
    .mark_dirty = host_mark_dirty,
    .vram_dirty = host_vram_dirty,
    .display_resize = host_display_resize,
    .display_surface = host_display_surface,
    .display_update = host_display_update,
};

static void rust_vgpu_fd_read(void *opaque)
{
    RustVgpuState *s = opaque;

    rvg_ops.fd_ready(s->dev, s->watched_fd);
}

/* ---- BAR2: trapped MMIO, every access goes to Rust ---- */

/*
 * The MMIO trace events are emitted out of line: inlined, their slow path
 * (a timestamp, qemu_log) makes every register access save registers and
 * check a stack canary, which costs more than the enabled test itself.
 */
static void G_NO_INLINE rust_vgpu_trace_read(hwaddr addr, unsigned size,
                                             uint64_t val)
{
    trace_rust_vgpu_mmio_read(addr, size, val);
}

static void G_NO_INLINE rust_vgpu_trace_write(hwaddr addr, unsigned size,
                                              uint64_t val)
{
    trace_rust_vgpu_mmio_write(addr, size, val);
}

/*
 * The BAR2 handlers start on a cache line, as the Rust library's functions
 * do: their cost then does not depend on where the linker put them.
 */
static uint64_t QEMU_ALIGNED(64) rust_vgpu_mmio_read(void *opaque, hwaddr addr,
                                                      unsigned size)
{
    RustVgpuState *s = opaque;
    uint64_t val = rvg_ops.mmio_read(s->dev, addr, size);

    if (trace_event_get_state_backends(TRACE_RUST_VGPU_MMIO_READ)) {
        rust_vgpu_trace_read(addr, size, val);
    }
    return val;
}

static void QEMU_ALIGNED(64) rust_vgpu_mmio_write(void *opaque, hwaddr addr,
                                                   uint64_t val, unsigned size)
{
    RustVgpuState *s = opaque;

    if (trace_event_get_state_backends(TRACE_RUST_VGPU_MMIO_WRITE)) {
        rust_vgpu_trace_write(addr, size, val);
    }
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

/* ---- the console: the vGPU's scanout ---- */

static void rust_vgpu_gfx_update(void *opaque)
{
    RustVgpuState *s = opaque;

    /* Guest CPU writes to VRAM since the last refresh; Rust asks per range. */
    s->vram_dirty = memory_region_snapshot_and_clear_dirty(&s->vram, 0,
                                                           s->info.vram_size,
                                                           DIRTY_MEMORY_VGA);
    rvg_ops.display_refresh(s->dev);
    g_free(s->vram_dirty);
    s->vram_dirty = NULL;
}

static void rust_vgpu_gfx_invalidate(void *opaque)
{
    RustVgpuState *s = opaque;

    rvg_ops.display_invalidate(s->dev);
}

static const GraphicHwOps rust_vgpu_gfx_ops = {
    .gfx_update = rust_vgpu_gfx_update,
    .invalidate = rust_vgpu_gfx_invalidate,
};

/* ---- PCI device ---- */

static void rust_vgpu_config_write(PCIDevice *pdev, uint32_t addr,
                                   uint32_t val, int len)
{
    RustVgpuState *s = RUST_VGPU_BASE(pdev);

    /* Handles BARs, command, and the MSI / MSI-X capabilities. */
    pci_default_write_config(pdev, addr, val, len);
    if (pci_is_express(pdev)) {
        /* Initiate Function Level Reset: resets the device at once. */
        pcie_cap_flr_write_config(pdev, addr, val, len);
    }
    rvg_ops.config_changed(s->dev);
}

static void rust_vgpu_use_all_vectors(RustVgpuState *s)
{
    for (uint32_t v = 0; v < s->info.msix_vectors; v++) {
        msix_vector_use(PCI_DEVICE(s), v);
    }
}

/* ---- the memory listener: guest RAM for the mediator ---- */

static RvgMemKind rust_vgpu_mem_kind(MemoryRegion *mr)
{
    Object *owner = memory_region_owner(mr);

    if (memory_region_is_ram_device(mr) ||
        (owner && object_dynamic_cast(owner, TYPE_PCI_DEVICE))) {
        return RVG_MEM_DEVICE;
    }
    if (memory_region_is_rom(mr) || mr->readonly) {
        return RVG_MEM_ROM;
    }
    return RVG_MEM_RAM;
}

/* The page-aligned part of a RAM section, as the GPU maps whole pages. */
static bool rust_vgpu_section_range(MemoryRegionSection *section,
                                    uint64_t *gpa, uint64_t *size, void **hva)
{
    uint64_t start = section->offset_within_address_space;
    uint64_t end = start + int128_get64(section->size);
    uint64_t first = ROUND_UP(start, qemu_real_host_page_size());
    uint64_t last = ROUND_DOWN(end, qemu_real_host_page_size());

    if (!memory_region_is_ram(section->mr) || first >= last) {
        return false;
    }
    *gpa = first;
    *size = last - first;
    if (hva) {
        *hva = (uint8_t *)memory_region_get_ram_ptr(section->mr) +
               section->offset_within_region + (first - start);
    }
    return true;
}

static void rust_vgpu_region_add(MemoryListener *listener,
                                 MemoryRegionSection *section)
{
    RustVgpuState *s = container_of(listener, RustVgpuState, listener);
    uint64_t gpa, size;
    void *hva;

    if (rust_vgpu_section_range(section, &gpa, &size, &hva)) {
        RvgMemKind kind = rust_vgpu_mem_kind(section->mr);

        trace_rust_vgpu_memory_add(gpa, size, kind);
        rvg_ops.memory_add(s->dev, gpa, size, hva, kind);
    }
}

static void rust_vgpu_region_del(MemoryListener *listener,
                                 MemoryRegionSection *section)
{
    RustVgpuState *s = container_of(listener, RustVgpuState, listener);
    uint64_t gpa, size;

    if (rust_vgpu_section_range(section, &gpa, &size, NULL)) {
        trace_rust_vgpu_memory_del(gpa, size);
        rvg_ops.memory_del(s->dev, gpa, size);
    }
}

/* ---- realize / exit ---- */

static void rust_vgpu_instance_init(Object *obj)
{
    RustVgpuState *s = RUST_VGPU_BASE(obj);

    s->watched_fd = -1;
    s->weight = 100;
    /* Decided at realize from the bus: a PCIe endpoint behind a root port. */
    PCI_DEVICE(obj)->cap_present |= QEMU_PCI_CAP_EXPRESS;
}

/* PCI power management: D0 and D3hot, state kept across them. */
static bool rust_vgpu_pm_init(PCIDevice *pdev, Error **errp)
{
    int pm = pci_pm_init(pdev, 0, errp);

    if (pm < 0) {
        return false;
    }
    pci_set_word(pdev->config + pm + PCI_PM_PMC, PCI_PM_CAP_VER_1_2);
    pci_set_word(pdev->config + pm + PCI_PM_CTRL, PCI_PM_CTRL_NO_SOFT_RESET);
    pci_set_word(pdev->wmask + pm + PCI_PM_CTRL, PCI_PM_CTRL_STATE_MASK);
    return true;
}

/*
 * The PF's SR-IOV capability (rust-vgpu-hw,vfs=N), and the extended
 * capabilities its functions need: ARI once VFs reach past function 7,
 * and on the PF, a multi-function device, an ACS capability that says
 * its functions do no peer-to-peer, so a host gives each its own IOMMU
 * group. Nothing for a device without VFs.
 */
enum {
    RVG_EXT_SRIOV = 0x100, /* the first extended capability is at 0x100 */
    /*
     * Not at 0x140, right after SR-IOV's 0x40 bytes: QEMU 10.0's
     * pcie_sriov_pf_reset writes its last VF BAR register as 8 bytes,
     * 4 past the capability's end.
     */
    RVG_EXT_PF_ARI = 0x148,
    RVG_EXT_ACS = 0x150,
    RVG_EXT_VF_ARI = 0x100,
    /* msix_init_exclusive_bar's BAR for up to 128 vectors */
    RVG_MSIX_BAR_SIZE = 4096,
};

static bool rust_vgpu_sriov_init(RustVgpuState *s, Error **errp)
{
    PCIDevice *pdev = PCI_DEVICE(s);

    if (pci_is_vf(pdev)) {
        if (RUST_VGPU_BASE(pcie_sriov_get_pf(pdev))->vfs > 7) {
            pcie_ari_init(pdev, RVG_EXT_VF_ARI);
        }
        return true;
    }
    if (!s->vfs) {
        return true;
    }
    assert(s->info.msix_vectors <= 128);
    if (!pcie_sriov_pf_init(pdev, RVG_EXT_SRIOV, TYPE_RUST_VGPU_HW_VF,
                            s->info.vf_device_id, s->vfs, s->vfs, 1, 1,
                            errp)) {
        return false;
    }
    if (s->vfs > 7) {
        pcie_ari_init(pdev, RVG_EXT_PF_ARI);
    }
    pcie_sriov_pf_init_vf_bar(pdev, RVG_BAR_VRAM,
                              PCI_BASE_ADDRESS_SPACE_MEMORY |
                              PCI_BASE_ADDRESS_MEM_TYPE_64 |
                              PCI_BASE_ADDRESS_MEM_PREFETCH,
                              s->info.vf_vram_size);
    pcie_sriov_pf_init_vf_bar(pdev, RVG_BAR_MMIO,
                              PCI_BASE_ADDRESS_SPACE_MEMORY |
                              PCI_BASE_ADDRESS_MEM_TYPE_64,
                              s->info.mmio_size);
    pcie_sriov_pf_init_vf_bar(pdev, RVG_BAR_MSIX,
                              PCI_BASE_ADDRESS_SPACE_MEMORY,
                              RVG_MSIX_BAR_SIZE);
    /* pcie_sriov_pf_init made the PF multi-function: ACS applies. */
    pcie_acs_init(pdev, RVG_EXT_ACS);
    return true;
}

static void rust_vgpu_realize(PCIDevice *pdev, Error **errp)
{
    RustVgpuState *s = RUST_VGPU_BASE(pdev);
    RustVgpuClass *rc = RUST_VGPU_BASE_GET_CLASS(s);
    uint8_t *conf = pdev->config;
    RvgConfig config = {
        .model = rc->model,
        .vram_size = s->vram_size,
        .gfx_size = s->gfx_size,
        .gpu = s->gpu ? s->gpu->gpu : NULL,
        .xres = s->xres,
        .yres = s->yres,
        .host = s->host,
        .sysfsdev = s->sysfsdev,
        .vfio_iommu = s->vfio_iommu,
        .weight = s->weight,
        .vfs = s->vfs,
    };

    if (rvg_ops.abi_version != RVG_FFI_ABI_VERSION) {
        error_setg(errp, "Rust library ABI %u does not match the shim's %u",
                   rvg_ops.abi_version, RVG_FFI_ABI_VERSION);
        return;
    }
    if (pci_is_vf(pdev)) {
        /* Realized by the PF's pcie_sriov_pf_init, after the PF's device. */
        config.pf = RUST_VGPU_BASE(pcie_sriov_get_pf(pdev))->dev;
        config.vf_index = pcie_sriov_vf_number(pdev);
    }
    if (s->vfs && !pci_bus_is_express(pci_get_bus(pdev))) {
        error_setg(errp, "property 'vfs' is %u: SR-IOV needs a PCI Express "
                   "bus (pcie.0 or a root port)", s->vfs);
        return;
    }
    s->dev = rvg_ops.realize(&config, (RvgHost *)s, &rust_vgpu_host_services,
                             &s->info, (RvgErrorSink *)errp);
    if (!s->dev) {
        if (s->gpu) {
            error_prepend(errp, "gpu '%s': ",
                          object_get_canonical_path_component(OBJECT(s->gpu)));
        }
        return;
    }
    if (s->gpu) {
        s->gpu->users++;
    }

    pci_config_set_vendor_id(conf, s->info.vendor_id);
    pci_config_set_device_id(conf, s->info.device_id);
    pci_set_word(conf + PCI_SUBSYSTEM_VENDOR_ID, s->info.subsystem_vendor_id);
    pci_set_word(conf + PCI_SUBSYSTEM_ID, s->info.subsystem_id);
    pci_config_set_revision(conf, s->info.revision);
    pci_config_set_class(conf, s->info.class_code >> 8);
    pci_config_set_prog_interface(conf, s->info.class_code & 0xff);
    pci_config_set_interrupt_pin(conf, s->info.intx ? 1 : 0);
    /* No I/O BARs: I/O Space Enable is hardwired to zero. */
    pci_word_test_and_clear_mask(pdev->wmask + PCI_COMMAND, PCI_COMMAND_IO);

    if (pci_bus_is_express(pci_get_bus(pdev))) {
        if (pcie_endpoint_cap_init(pdev, 0x80) < 0) {
            error_setg(errp, "cannot add the PCI Express capability");
            goto fail;
        }
        /* What lets a host's vfio-pci reset the function on its own. */
        pcie_cap_flr_init(pdev);
    } else {
        pdev->cap_present &= ~QEMU_PCI_CAP_EXPRESS;
    }
    if (!rust_vgpu_pm_init(pdev, errp)) {
        goto fail;
    }

    /* BAR0: the VRAM Rust owns (for the vGPU, its slice of the GPU's). */
    memory_region_init_ram_ptr(&s->vram, OBJECT(s), "rust-vgpu.vram",
                               s->info.vram_size, s->info.vram_ptr);
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
    if (s->info.msi_vectors &&
        msi_init(pdev, 0, s->info.msi_vectors, true, true, errp) < 0) {
        goto fail_msix;
    }
    if (pci_is_express(pdev) && !rust_vgpu_sriov_init(s, errp)) {
        goto fail_msi;
    }

    if (rc->model == RVG_MODEL_VGPU) {
        s->listener = (MemoryListener) {
            .name = "rust-vgpu",
            .region_add = rust_vgpu_region_add,
            .region_del = rust_vgpu_region_del,
            .priority = MEMORY_LISTENER_PRIORITY_DEV_BACKEND,
        };
        memory_listener_register(&s->listener, &address_space_memory);
        s->listening = true;

        memory_region_set_log(&s->vram, true, DIRTY_MEMORY_VGA);
        s->con = graphic_console_init(DEVICE(pdev), 0, &rust_vgpu_gfx_ops, s);
        rust_vgpu_migration_init(s);
    }
    return;

fail_msi:
    msi_uninit(pdev);
fail_msix:
    msix_uninit_exclusive_bar(pdev);
fail:
    rvg_ops.unrealize(s->dev);
    s->dev = NULL;
    if (s->gpu) {
        s->gpu->users--;
    }
}

/*
 * The device leaves the bus: Rust first shuts every path that could call
 * back for it (its eventfd, the engine's progress, worker threads), then
 * the services refuse whatever was already on its way.
 */
static void rust_vgpu_exit(PCIDevice *pdev)
{
    RustVgpuState *s = RUST_VGPU_BASE(pdev);

    /* The VFs go first: they reach the GPU through this device. */
    pcie_sriov_pf_exit(pdev);
    rust_vgpu_migration_exit(s);
    if (s->dev) {
        rvg_ops.exit(s->dev);
    }
    s->exited = true;
    if (s->con) {
        graphic_console_close(s->con);
        s->con = NULL;
    }
    if (s->listening) {
        memory_listener_unregister(&s->listener);
        s->listening = false;
    }
    msi_uninit(pdev);
    msix_uninit_exclusive_bar(pdev);
}

/*
 * The Rust device owns BAR0's memory, which the RAM block made for it
 * references until the device object goes: free it here, not at exit.
 */
static void rust_vgpu_instance_finalize(Object *obj)
{
    RustVgpuState *s = RUST_VGPU_BASE(obj);

    if (s->dev) {
        rvg_ops.unrealize(s->dev);
        s->dev = NULL;
        if (s->gpu) {
            s->gpu->users--;
        }
    }
}

static void rust_vgpu_reset(DeviceState *d)
{
    RustVgpuState *s = RUST_VGPU_BASE(d);

    rvg_ops.reset(s->dev);
}

/*
 * The raw GPU model is the host's hardware, not a VM's: it does not
 * migrate. The vGPU does (rust-vgpu-migration.c).
 */
static const VMStateDescription vmstate_rust_vgpu_hw = {
    .name = TYPE_RUST_VGPU_HW,
    .unmigratable = 1,
};

/* Each concrete type has its own table: the limits differ. */
static const Property rust_vgpu_properties[] = {
    DEFINE_PROP_SIZE("vram-size", RustVgpuState, vram_size, 64 * MiB),
    DEFINE_PROP_SIZE("gfx-size", RustVgpuState, gfx_size, 128 * MiB),
    DEFINE_PROP_LINK("gpu", RustVgpuState, gpu, TYPE_RUST_VGPU_GPU,
                     RustVgpuGpu *),
    DEFINE_PROP_UINT32("xres", RustVgpuState, xres, 0),
    DEFINE_PROP_UINT32("yres", RustVgpuState, yres, 0),
    DEFINE_PROP_STRING("host", RustVgpuState, host),
    DEFINE_PROP_STRING("sysfsdev", RustVgpuState, sysfsdev),
    DEFINE_PROP_STRING("vfio-iommu", RustVgpuState, vfio_iommu),
};

static const Property rust_vgpu_hw_properties[] = {
    DEFINE_PROP_SIZE("vram-size", RustVgpuState, vram_size, 64 * MiB),
    DEFINE_PROP_UINT16("vfs", RustVgpuState, vfs, 0),
};

static void rust_vgpu_base_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    PCIDeviceClass *k = PCI_DEVICE_CLASS(klass);

    k->realize = rust_vgpu_realize;
    k->exit = rust_vgpu_exit;
    k->config_write = rust_vgpu_config_write;
    device_class_set_legacy_reset(dc, rust_vgpu_reset);
    set_bit(DEVICE_CATEGORY_DISPLAY, dc->categories);
}

static void rust_vgpu_get_weight(Object *obj, Visitor *v, const char *name,
                                 void *opaque, Error **errp)
{
    visit_type_uint32(v, name, &RUST_VGPU_BASE(obj)->weight, errp);
}

/* Settable at run time (qom-set): a realized vGPU hands it to Rust. */
static void rust_vgpu_set_weight(Object *obj, Visitor *v, const char *name,
                                 void *opaque, Error **errp)
{
    RustVgpuState *s = RUST_VGPU_BASE(obj);
    uint32_t value;

    if (!visit_type_uint32(v, name, &value, errp)) {
        return;
    }
    if (s->dev && !rvg_ops.set_weight(s->dev, value, (RvgErrorSink *)errp)) {
        return;
    }
    s->weight = value;
}

static void rust_vgpu_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);

    RUST_VGPU_BASE_CLASS(klass)->model = RVG_MODEL_VGPU;
    dc->vmsd = &vmstate_rust_vgpu;
    dc->desc = "rust-vgpu mediated virtual GPU (RVG-1)";
    device_class_set_props(dc, rust_vgpu_properties);
    object_class_property_set_description(klass, "vram-size",
        "VRAM size (BAR0): a power of two from 1 MiB to 512 MiB, default 64M");
    object_class_property_set_description(klass, "gfx-size",
        "graphics address space (what the vGPU's GTT maps): a power of two "
        "from 4 MiB to 128 MiB, default 128M; smaller ones fit more vGPUs on "
        "a GPU, or one on an SR-IOV VF");
    object_class_property_set_description(klass, "gpu",
        "id of a rust-vgpu-gpu object to share; default: a GPU of its own");
    object_class_property_set_description(klass, "xres",
        "preferred display width in the EDID: 320 to 4000; unset (0): "
        "1024x768, or the largest of 800x600, 640x480, 320x240 that fits "
        "the VRAM");
    object_class_property_set_description(klass, "yres",
        "preferred display height in the EDID: 200 to 2400; set with xres");
    object_class_property_set_description(klass, "host",
        "GPU: a kernel VFIO device (RVG-1 bound to vfio-pci) by PCI address, "
        "[domain:]bus:slot.function; default: a soft GPU of its own");
    object_class_property_set_description(klass, "sysfsdev",
        "GPU: a kernel VFIO device by sysfs path, e.g. "
        "/sys/bus/pci/devices/0000:00:03.0; instead of host");
    object_class_property_set_description(klass, "vfio-iommu",
        "how to reach a VFIO device's IOMMU: legacy (group and container), "
        "iommufd (device cdev), or auto (iommufd where the kernel offers "
        "it), default auto");
    object_class_property_add(klass, "weight", "uint32",
                              rust_vgpu_get_weight, rust_vgpu_set_weight,
                              NULL, NULL);
    object_class_property_set_description(klass, "weight",
        "the vGPU's share of its GPU's engine under the GPU's fixed-share "
        "policy, against the other vGPUs' weights: 1 to 10000, default 100; "
        "settable at run time with qom-set");
}

static void rust_vgpu_hw_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);

    RUST_VGPU_BASE_CLASS(klass)->model = RVG_MODEL_HW;
    dc->vmsd = &vmstate_rust_vgpu_hw;
    dc->desc = "rust-vgpu RVG-1 GPU model, unmediated (for VFIO hosts)";
    device_class_set_props(dc, rust_vgpu_hw_properties);
    object_class_property_set_description(klass, "vram-size",
        "VRAM size (BAR0): a power of two from 1 MiB to 1 GiB, default 64M");
    object_class_property_set_description(klass, "vfs",
        "SR-IOV VFs the GPU offers (TotalVFs), 0 to 16, default 0: none; "
        "each gets an equal partition of the GTT and VRAM");
}

/* Made by its PF's SR-IOV capability, never by a user. */
static void rust_vgpu_hw_vf_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);

    RUST_VGPU_BASE_CLASS(klass)->model = RVG_MODEL_HW_VF;
    dc->vmsd = &vmstate_rust_vgpu_hw;
    dc->desc = "rust-vgpu RVG-1 GPU model, an SR-IOV VF";
    dc->user_creatable = false;
}

static const TypeInfo rust_vgpu_types[] = {
    {
        .name = TYPE_RUST_VGPU_BASE,
        .parent = TYPE_PCI_DEVICE,
        .instance_size = sizeof(RustVgpuState),
        .instance_init = rust_vgpu_instance_init,
        .instance_finalize = rust_vgpu_instance_finalize,
        .class_size = sizeof(RustVgpuClass),
        .class_init = rust_vgpu_base_class_init,
        .abstract = true,
        .interfaces = (InterfaceInfo[]) {
            { INTERFACE_PCIE_DEVICE },
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
    {
        .name = TYPE_RUST_VGPU_HW_VF,
        .parent = TYPE_RUST_VGPU_BASE,
        .class_init = rust_vgpu_hw_vf_class_init,
    },
};

static void rust_vgpu_register(void)
{
    type_register_static_array(rust_vgpu_types, ARRAY_SIZE(rust_vgpu_types));
}

type_init(rust_vgpu_register)
