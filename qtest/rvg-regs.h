/*
 * The RVG-1 register map as docs/hardware.md specifies it, for the tests.
 *
 * Written from the document, not from the Rust definitions, so a test
 * catches an implementation that drifts from the specification.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RVG_REGS_H
#define RVG_REGS_H

#define RVG_PCI_VENDOR_ID            0x1234
#define RVG_PCI_DEVICE_ID_VGPU       0x1111
#define RVG_PCI_DEVICE_ID_HW         0x5256
#define RVG_PCI_SUBSYSTEM_VENDOR_ID  0x1234
#define RVG_PCI_SUBSYSTEM_ID         0x5256
#define RVG_MSIX_VECTORS             4

#define RVG_BAR_VRAM 0
#define RVG_BAR_MMIO 2
#define RVG_BAR_MSIX 4

#define RVG_MMIO_SIZE      (2 * MiB)
#define RVG_GLOBAL         0x1000

#define RVG_REG_ID          0x00
#define RVG_REG_VERSION     0x04
#define RVG_REG_CAPS        0x08
#define RVG_REG_VRAM_SIZE   0x10
#define RVG_REG_GTT_ENTRIES 0x18
#define RVG_REG_SCRATCH     0x20
#define RVG_REG_INT_STATUS  0x30
#define RVG_REG_INT_MASK    0x34
#define RVG_REG_INT_ENABLE  0x38
#define RVG_REG_INT_TRIGGER 0x3c
#define RVG_REG_FAULT_ADDR  0x40
#define RVG_REG_FAULT_REASON 0x48
#define RVG_REG_RESET       0x4c
#define RVG_REG_GTT_FAULTS  0x50

/* Other blocks of BAR2. */
#define RVG_EDID            0x0000
#define RVG_VGA_PORTS       0x0400
#define RVG_DISPI           0x0500
#define RVG_QEMU_EXT        0x0600
#define RVG_ENGINE          0x2000
#define RVG_DISPLAY         0x3000
#define RVG_GTT             0x100000
/* A PF's SR-IOV block (rust-vgpu-hw,vfs=N only; not on a VF) */
#define RVG_SRIOV           0x4000
#define RVG_SRIOV_TOTAL_VFS      0x00
#define RVG_SRIOV_VF_GTT_ENTRIES 0x04
#define RVG_SRIOV_VF_VRAM_SIZE   0x08
/* Function f's engine quantum in us: f = 0 the PF, 1 + n VF n */
#define RVG_SRIOV_QUANTUM(f)     (0x10 + 4 * (f))
#define RVG_SRIOV_PREEMPT_TIMEOUT_US 0x54

#define RVG_DISPI_ID              0x00
#define RVG_DISPI_XRES            0x02
#define RVG_DISPI_YRES            0x04
#define RVG_DISPI_BPP             0x06
#define RVG_DISPI_ENABLE          0x08
#define RVG_DISPI_VIRT_WIDTH      0x0c
#define RVG_DISPI_VIRT_HEIGHT     0x0e
#define RVG_DISPI_X_OFFSET        0x10
#define RVG_DISPI_Y_OFFSET        0x12
#define RVG_DISPI_VIDEO_MEMORY_64K 0x14
#define RVG_DISPI_ID5             0xb0c5
#define RVG_DISPI_ENABLED         0x01
#define RVG_DISPI_LFB_ENABLED     0x40
#define RVG_QEXT_SIZE             0x00
#define RVG_QEXT_ENDIAN           0x04

#define RVG_ENGINE_RING_BASE  0x00
#define RVG_ENGINE_RING_SIZE  0x08
#define RVG_ENGINE_RING_HEAD  0x0c
#define RVG_ENGINE_RING_TAIL  0x10
#define RVG_ENGINE_RING_CTL   0x14
#define RVG_ENGINE_SEQNO      0x18
#define RVG_ENGINE_ERROR      0x1c
#define RVG_ENGINE_ERROR_ADDR 0x20
#define RVG_ENGINE_RING_RESUME 0x28 /* the physical engine arbiter's */

#define RVG_RING_CTL_ENABLE   (1u << 0)
#define RVG_RING_CTL_RESET    (1u << 1)
#define RVG_RING_CTL_PREEMPT  (1u << 2) /* the physical engine arbiter's */

/* ERROR codes. */
#define RVG_ERR_UNKNOWN_OPCODE 1
#define RVG_ERR_RESERVED_BITS  2
#define RVG_ERR_TRUNCATED      3
#define RVG_ERR_BAD_ADDRESS    4
#define RVG_ERR_BATCH_NESTING  5
#define RVG_ERR_BAD_RECT       6
#define RVG_ERR_MISALIGNED     7
#define RVG_ERR_BAD_RING       8
#define RVG_ERR_BAD_REGISTER   9
#define RVG_ERR_PRIVILEGED     10
#define RVG_ERR_HANG           11
#define RVG_ERR_PREEMPT_TIMEOUT 12

/* Command opcodes (header bits 31:24). */
#define RVG_OP_NOOP        0x00
#define RVG_OP_STORE_DW    0x01
#define RVG_OP_FENCE       0x02
#define RVG_OP_BATCH_START 0x03
#define RVG_OP_BATCH_END   0x04
#define RVG_OP_FILL_RECT   0x05
#define RVG_OP_COPY_RECT   0x06
#define RVG_OP_LOAD_REG    0x07

#define RVG_DISPLAY_PLANE_CTL    0x00
#define RVG_DISPLAY_PLANE_FORMAT 0x04
#define RVG_DISPLAY_PLANE_BASE   0x08
#define RVG_DISPLAY_PLANE_WIDTH  0x10
#define RVG_DISPLAY_PLANE_HEIGHT 0x14
#define RVG_DISPLAY_PLANE_STRIDE 0x18
#define RVG_DISPLAY_FLIP_COUNT   0x1c

#define RVG_PLANE_CTL_ENABLE     (1u << 0)
/* PLANE_FORMAT: DRM fourcc codes, "XR24" and "RG16" in memory order. */
#define RVG_FORMAT_XRGB8888      0x34325258u
#define RVG_FORMAT_RGB565        0x36314752u

#define RVG_EDID_SIZE            128

/* GTT entries. */
#define RVG_GTT_ENTRIES_VGPU 32768
#define RVG_GTT_VALID        (1ull << 0)
#define RVG_GTT_LOCAL        (1ull << 1)

/* FAULT_REASON codes. */
#define RVG_FAULT_GTT_RESERVED_BITS 0x10
#define RVG_FAULT_GTT_NOT_GUEST_RAM 0x11
#define RVG_FAULT_GTT_OUTSIDE_VRAM  0x12
#define RVG_FAULT_GTT_RAM_REMOVED   0x13

#define RVG_ID_VALUE        0x52564731u /* "RVG1" */
#define RVG_VERSION_VALUE   0x00010000u
#define RVG_RESET_MAGIC     0x52560001u

#define RVG_INT_FENCE        (1u << 0)
#define RVG_INT_ENGINE_ERROR (1u << 1)
#define RVG_INT_GTT_FAULT    (1u << 2)
#define RVG_INT_DISPLAY_FLIP (1u << 3)
#define RVG_INT_PREEMPTED    (1u << 4) /* the physical GPU's only */
#define RVG_INT_SOFTWARE     (1u << 31)

#endif
