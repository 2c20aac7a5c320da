/* Generated from c-shim/trace-events by QEMU's tracetool. */
#include "trace/trace-hw_display_rust_vgpu_c_shim.h"
