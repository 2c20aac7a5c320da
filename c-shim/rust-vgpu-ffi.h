/*
 * rust-vgpu FFI contract: the only interface between the C QOM shim and the
 * Rust staticlib.
 *
 * Two tables cross the boundary:
 *   - RvgOps: defined in Rust (the `rvg_ops` symbol), called by the shim for
 *     every device event (realize, reset, MMIO, config changes).
 *   - RvgHostServices: defined in the shim, handed to Rust at realize; Rust
 *     calls it for everything it needs from QEMU (interrupts, logging).
 *
 * bindgen turns this header into the Rust declarations, and the shim
 * compiles against it, so both sides are type-checked against one text.
 * Only fixed-width C types, opaque pointers and plain structs appear here:
 * no QEMU header is included. See docs/ffi.md for the rules.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RUST_VGPU_FFI_H
#define RUST_VGPU_FFI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bumped whenever a table or struct below changes layout or meaning. */
#define RVG_FFI_ABI_VERSION 12

/* The Rust device. Only ever used through a shared reference on the Rust side. */
typedef struct RvgDevice RvgDevice;

/* A GPU that vGPUs share (the rust-vgpu-gpu object). */
typedef struct RvgGpu RvgGpu;

/* The shim's device state, passed back to every host service. */
typedef struct RvgHost RvgHost;

/* QEMU's Error ** for the call in progress; filled through set_error. */
typedef struct RvgErrorSink RvgErrorSink;

/* Where a text report goes (a GString in the shim); see text_append. */
typedef struct RvgTextSink RvgTextSink;

/* Where saved device state goes (a GByteArray in the shim); see bytes_append. */
typedef struct RvgByteSink RvgByteSink;

/* Memory the GPU wrote behind QEMU's dirty log; see mark_dirty. */
typedef enum RvgDirtyKind {
    RVG_DIRTY_VRAM = 0,      /* BAR0, by offset */
    RVG_DIRTY_GUEST_RAM = 1, /* guest RAM, by guest-physical address */
} RvgDirtyKind;

/* Which QOM type is being realized. */
typedef enum RvgModelKind {
    RVG_MODEL_VGPU = 0, /* rust-vgpu: the mediated vGPU the guest drives */
    RVG_MODEL_HW = 1,   /* rust-vgpu-hw: the raw GPU model (its PF) */
    RVG_MODEL_HW_VF = 2, /* rust-vgpu-hw-vf: one of its SR-IOV VFs */
} RvgModelKind;

/* The guest's interrupt configuration, as PCI config space says. */
typedef enum RvgIrqMode {
    RVG_IRQ_INTX = 0,
    RVG_IRQ_MSI = 1,
    RVG_IRQ_MSIX = 2,
} RvgIrqMode;

/* Log classes for host_services.log; the shim maps them onto QEMU's. */
typedef enum RvgLogKind {
    RVG_LOG_GUEST_ERROR = 0, /* qemu_log_mask(LOG_GUEST_ERROR) */
    RVG_LOG_UNIMP = 1,       /* qemu_log_mask(LOG_UNIMP) */
    RVG_LOG_ERROR = 2,       /* error_report: a device bug, never the guest's */
} RvgLogKind;

/* What a range of guest-physical memory is, as the memory listener saw it. */
typedef enum RvgMemKind {
    RVG_MEM_RAM = 0,    /* guest RAM */
    RVG_MEM_ROM = 1,    /* ROM or read-only RAM */
    RVG_MEM_DEVICE = 2, /* RAM owned by a device: a BAR */
} RvgMemKind;

/* Property values, as the user set them. */
typedef struct RvgConfig {
    RvgModelKind model;
    uint64_t vram_size; /* bytes; validated by Rust */
    uint64_t gfx_size;  /* vGPU: graphics address space, bytes; validated by Rust */
    RvgGpu *gpu;        /* vGPU: the GPU to attach to; NULL for a private one */
    uint32_t xres;      /* vGPU: the EDID's preferred mode; validated by Rust */
    uint32_t yres;
    /*
     * vGPU: a kernel VFIO device as the GPU, by PCI address (host) or sysfs
     * path (sysfsdev), and how to reach its IOMMU (vfio_iommu: "auto",
     * "legacy" or "iommufd"). NULL when unset; validated by Rust.
     */
    const char *host;
    const char *sysfsdev;
    const char *vfio_iommu;
    uint32_t weight; /* vGPU: engine share under fixed-share; validated by Rust */
    uint16_t vfs;    /* rust-vgpu-hw: TotalVFs, 0 for none; validated by Rust */
    /* rust-vgpu-hw-vf: its PF's device (realized, alive longer) and index */
    RvgDevice *pf;
    uint16_t vf_index;
} RvgConfig;

/* The console's surface: 32-bit x:R:G:B pixels, little endian. */
typedef struct RvgSurface {
    uint8_t *pixels; /* stride * height bytes, valid until the next resize */
    uint32_t width;
    uint32_t height;
    uint32_t stride; /* bytes per line */
} RvgSurface;

typedef struct RvgGpuConfig {
    uint64_t vram_size;    /* bytes; validated by Rust */
    uint32_t timeslice_us; /* scheduler time slice; validated by Rust */
    uint32_t watchdog_ms;  /* scheduler watchdog; validated by Rust */
    uint32_t preempt_timeout_ms; /* scheduler preemption timeout; validated by Rust */
    /* "best-effort", "equal-share" or "fixed-share"; NULL: best-effort */
    const char *policy;
} RvgGpuConfig;

/* A vGPU's state for x-query-rust-vgpu. */
typedef struct RvgReport {
    const char *policy;   /* its GPU's policy: a static NUL-terminated name */
    uint32_t vgpus_on_gpu;
    uint32_t weight;
    uint64_t engine_time_us;
    uint64_t slices;
    uint64_t submitted_dwords;
    uint64_t engine_faults;
    uint64_t hangs;
    uint64_t preemptions;
    uint64_t preempt_timeouts;
    uint64_t scanned_commands;
    uint64_t rejected_streams;
    uint64_t gtt_faults;
    uint64_t pinned_pages;
} RvgReport;

/* What the shim needs to build the PCI device once Rust accepted the config. */
typedef struct RvgDeviceInfo {
    uint16_t vendor_id;
    uint16_t device_id;
    uint16_t subsystem_vendor_id;
    uint16_t subsystem_id;
    uint8_t revision;
    uint32_t class_code;   /* 24-bit class, subclass, prog-if */
    uint64_t vram_size;    /* BAR0 size */
    uint8_t *vram_ptr;     /* BAR0 memory, page-aligned, owned by Rust */
    uint64_t mmio_size;    /* BAR2 size */
    uint32_t msix_vectors; /* BAR4 table entries */
    uint32_t msi_vectors;  /* MSI capability vectors; 0: no MSI capability */
    bool intx;             /* has an INTx pin (a VF has none) */
    /* rust-vgpu-hw with VFs: the SR-IOV capability's VF device ID and each
     * VF's BAR0 (VRAM partition) size; 0 without VFs */
    uint16_t vf_device_id;
    uint64_t vf_vram_size;
} RvgDeviceInfo;

typedef struct RvgHostServices {
    /* Current interrupt mode from config space (MSI-X beats MSI beats INTx). */
    RvgIrqMode (*irq_mode)(RvgHost *host);
    /* Whether the command register's Bus Master Enable is set. */
    bool (*bus_master)(RvgHost *host);
    /* Send MSI-X message `vector` (QEMU's msix code honours masks and PBA). */
    void (*msix_notify)(RvgHost *host, uint32_t vector);
    /* Send MSI message `vector` (QEMU's msi code honours the mask bits). */
    void (*msi_notify)(RvgHost *host, uint32_t vector);
    /* Drive the INTx pin to `level`. */
    void (*intx_set)(RvgHost *host, bool level);
    /* Log a NUL-terminated message of the given kind. */
    void (*log)(RvgHost *host, RvgLogKind kind, const char *msg);
    /* Fill QEMU's Error for the current call with a NUL-terminated message. */
    void (*set_error)(RvgErrorSink *errp, const char *msg);
    /*
     * DMA through the device's bus-master address space (pci_dma_rw, so an
     * IOMMU applies). Returns false if any part failed.
     */
    bool (*dma_rw)(RvgHost *host, uint64_t addr, void *buf, uint64_t len,
                   bool is_write);
    /* Call ops.fd_ready(dev, fd) from the main loop when `fd` is readable. */
    void (*watch_fd)(RvgHost *host, int fd);
    /* Stop watching `fd`; no fd_ready for it runs after this returns. */
    void (*unwatch_fd)(RvgHost *host, int fd);
    /* Append NUL-terminated text to a report. */
    void (*text_append)(RvgTextSink *sink, const char *text);
    /* Append `len` bytes to saved state. */
    void (*bytes_append)(RvgByteSink *sink, const uint8_t *data, size_t len);
    /*
     * [addr, addr + len) of `kind` changed behind QEMU's dirty log (the GPU
     * wrote it): mark it dirty for every client, migration included.
     * Main loop, BQL held.
     */
    void (*mark_dirty)(RvgHost *host, RvgDirtyKind kind, uint64_t addr,
                       uint64_t len);

    /*
     * Display services, only during ops.display_refresh (main loop, BQL
     * held). None of them calls back into Rust.
     */
    /* Whether guest CPU writes touched BAR0 [offset, offset + len) since
     * the previous refresh (QEMU's dirty log of the VRAM). */
    bool (*vram_dirty)(RvgHost *host, uint64_t offset, uint64_t len);
    /* Give the console a new surface of width x height. */
    void (*display_resize)(RvgHost *host, uint32_t width, uint32_t height);
    /* The console's surface; false if it has none in RvgSurface's format. */
    bool (*display_surface)(RvgHost *host, RvgSurface *out);
    /* Lines [y, y + height) of the surface changed. */
    void (*display_update)(RvgHost *host, uint32_t y, uint32_t height);
} RvgHostServices;

typedef struct RvgOps {
    uint32_t abi_version; /* RVG_FFI_ABI_VERSION the library was built with */

    /*
     * Validate `config` and build the device. On success returns the device
     * and fills `info`; on failure returns NULL and reports through
     * services->set_error(errp, ...). `host` and `services` must outlive
     * the device.
     */
    RvgDevice *(*realize)(const RvgConfig *config, RvgHost *host,
                          const RvgHostServices *services,
                          RvgDeviceInfo *info, RvgErrorSink *errp);
    /* Free the device. No other op may run concurrently or afterwards. */
    void (*unrealize)(RvgDevice *dev);
    /*
     * The device is leaving the bus (PCI exit; main loop, BQL held). When
     * this returns no fd_ready is due for it, and Rust calls no host
     * service that reaches the PCI device (interrupts, DMA, config space)
     * again; log still works. Only unrealize may follow.
     */
    void (*exit)(RvgDevice *dev);
    /* Back to power-on state (system reset, FLR). */
    void (*reset)(RvgDevice *dev);
    /* Guest access to BAR2; `size` is 1, 2, 4 or 8, offset < mmio_size. */
    uint64_t (*mmio_read)(RvgDevice *dev, uint64_t offset, uint32_t size);
    void (*mmio_write)(RvgDevice *dev, uint64_t offset, uint64_t value,
                       uint32_t size);
    /*
     * The guest wrote config space: interrupt configuration (MSI/MSI-X
     * enable, masks) or the command register (Bus Master Enable).
     */
    void (*config_changed)(RvgDevice *dev);
    /*
     * The memory listener: guest-physical [gpa, gpa + size) appeared, at host
     * address `hva`, or went away. Page-aligned; called under the BQL. For
     * guest RAM, `hva` is QEMU's read-write mapping of the section and stays
     * mapped until memory_del of the section has returned.
     */
    void (*memory_add)(RvgDevice *dev, uint64_t gpa, uint64_t size,
                       void *hva, RvgMemKind kind);
    void (*memory_del)(RvgDevice *dev, uint64_t gpa, uint64_t size);
    /* A watched fd is readable (main loop, BQL held). */
    void (*fd_ready)(RvgDevice *dev, int fd);
    /* The report for `info rust-vgpu`. */
    void (*describe)(RvgDevice *dev, RvgTextSink *sink);
    /*
     * The report for `info rust-vgpu-gtt`: entries [first, first + count).
     * On a bad range, appends the reason and returns false.
     */
    bool (*gtt_dump)(RvgDevice *dev, uint32_t first, uint32_t count,
                     RvgTextSink *sink);

    /*
     * Create a GPU for vGPUs to share. On failure returns NULL and reports
     * through set_error(errp, ...). `log_error` reports host-side failures
     * later, from any thread.
     */
    RvgGpu *(*gpu_new)(const RvgGpuConfig *config,
                       void (*log_error)(const char *msg),
                       void (*set_error)(RvgErrorSink *errp, const char *msg),
                       RvgErrorSink *errp);
    /* Drop the creator's reference; vGPUs attached keep the GPU alive. */
    void (*gpu_free)(RvgGpu *gpu);
    /*
     * Test hook: while `hold` is true the GPU's engine starts no command
     * (the one in flight finishes). Lets a test put work in flight and
     * choose when it completes.
     */
    void (*gpu_set_engine_hold)(RvgGpu *gpu, bool hold);

    /*
     * vGPU: bring the console up to date with the guest's scanout (QEMU's
     * display refresh or a screendump; main loop, BQL held).
     */
    void (*display_refresh)(RvgDevice *dev);
    /* vGPU: the next refresh redraws the whole surface. */
    void (*display_invalidate)(RvgDevice *dev);

    /*
     * vGPU: its engine share's weight under the GPU's fixed-share policy,
     * from now on (main loop, BQL held). On a bad weight returns false and
     * reports through services->set_error(errp, ...).
     */
    bool (*set_weight)(RvgDevice *dev, uint32_t weight, RvgErrorSink *errp);
    /*
     * How the GPU shares its engine from now on: "best-effort",
     * "equal-share" or "fixed-share". On another name returns false and
     * reports through set_error(errp, ...).
     */
    bool (*gpu_set_policy)(RvgGpu *gpu, const char *policy,
                           void (*set_error)(RvgErrorSink *errp,
                                             const char *msg),
                           RvgErrorSink *errp);
    /*
     * vGPU: its state for x-query-rust-vgpu into `out`, the description of
     * its GPU appended to `backend`. False (and nothing filled) for a
     * device that is no vGPU.
     */
    bool (*report)(RvgDevice *dev, RvgReport *out, RvgTextSink *backend);

    /*
     * Migration (vGPU only; main loop, BQL held). A migration begins:
     * from now on the vGPU notes whether the GPU writes memory for it.
     */
    void (*migration_begin)(RvgDevice *dev);
    /*
     * The VM stopped: stop feeding the GPU and wait, bounded, for the
     * vGPU's work in it to finish; then mark dirty (mark_dirty) what the
     * GPU may have written since migration_begin. The outcome is kept for
     * save_state.
     */
    void (*quiesce)(RvgDevice *dev);
    /*
     * The vGPU's state, appended to `out` (docs/migration.md has the
     * format). False, with the reason through set_error(errp, ...), when
     * it did not quiesce.
     */
    bool (*save_state)(RvgDevice *dev, RvgByteSink *out, RvgErrorSink *errp);
    /*
     * Become the vGPU saved in [data, data + len), config space already
     * loaded. False, with the field refused through set_error(errp, ...),
     * and the vGPU unchanged, for a stream it refuses.
     */
    bool (*load_state)(RvgDevice *dev, const uint8_t *data, size_t len,
                       RvgErrorSink *errp);
} RvgOps;

/* Defined by the Rust staticlib. */
extern const RvgOps rvg_ops;

#endif /* RUST_VGPU_FFI_H */
