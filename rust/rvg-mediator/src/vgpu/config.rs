//! The vGPU's properties as the user set them, and their checks.

use rvg_model::config::{check_gfx_size, check_vgpu_vram_size, human_size, ConfigError};
use rvg_model::gtt::PAGE_SHIFT;

use super::VGPU_GFX_SPACE;
use crate::display::edid;
use crate::shared::sched::{DEFAULT_WEIGHT, WEIGHTS};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VgpuConfig {
    pub vram_size: u64,
    /// Its graphics address space in bytes, what its GTT maps: a power
    /// of two, 128 MiB by default (smaller ones fit more vGPUs on a GPU,
    /// or one on an SR-IOV VF's partition).
    pub gfx_size: u64,
    /// The monitor's preferred mode, as its EDID says; 0 and 0 pick the
    /// first of [`AUTO_MODES`] that fits the VRAM.
    pub xres: u32,
    pub yres: u32,
    /// Its engine share's weight under the GPU's `fixed-share` policy.
    pub weight: u32,
}

/// Preferred modes to pick from when none is given, best first.
pub const AUTO_MODES: [(u32, u32); 4] = [(1024, 768), (800, 600), (640, 480), (320, 240)];

/// Bytes a mode takes at the 32 bits per pixel drivers use.
fn mode_bytes(xres: u32, yres: u32) -> u64 {
    u64::from(xres) * u64::from(yres) * 4
}

impl VgpuConfig {
    /// `vram_size` bytes of VRAM, the preferred mode picked to fit.
    pub fn new(vram_size: u64) -> VgpuConfig {
        VgpuConfig {
            vram_size,
            gfx_size: VGPU_GFX_SPACE,
            xres: 0,
            yres: 0,
            weight: DEFAULT_WEIGHT,
        }
    }

    /// The EDID's preferred mode.
    pub fn preferred_mode(&self) -> (u32, u32) {
        if (self.xres, self.yres) != (0, 0) {
            return (self.xres, self.yres);
        }
        AUTO_MODES
            .into_iter()
            .find(|&(x, y)| mode_bytes(x, y) <= self.vram_size)
            .unwrap_or(AUTO_MODES[AUTO_MODES.len() - 1])
    }

    /// Its GTT entries, one per page of its graphics space.
    pub fn gtt_entries(&self) -> u32 {
        (self.gfx_size >> PAGE_SHIFT) as u32
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check_vgpu_vram_size(self.vram_size)?;
        check_gfx_size(self.gfx_size)?;
        check_weight(self.weight)?;
        // 0 is "unset"; a value that is set must be in range.
        let side = |property, value: u32, min, max| {
            if value == 0 || (min..=max).contains(&value) {
                return Ok(());
            }
            Err(ConfigError::BadProperty {
                property,
                value: value.to_string(),
                expected: format!("it must be {min} to {max}"),
            })
        };
        side("xres", self.xres, edid::XRES_MIN, edid::XRES_MAX)?;
        side("yres", self.yres, edid::YRES_MIN, edid::YRES_MAX)?;
        if (self.xres == 0) != (self.yres == 0) {
            let (property, other) = match self.xres {
                0 => ("xres", "yres"),
                _ => ("yres", "xres"),
            };
            return Err(ConfigError::BadProperty {
                property,
                value: "0".into(),
                expected: format!("set it with '{other}', or leave both unset"),
            });
        }
        if (self.xres, self.yres) == (0, 0) {
            return Ok(());
        }
        // A driver sets the preferred mode at 32 bits per pixel.
        let bytes = mode_bytes(self.xres, self.yres);
        if bytes > self.vram_size {
            return Err(ConfigError::BadProperty {
                property: "xres",
                value: format!("{} (with yres {})", self.xres, self.yres),
                expected: format!(
                    "a {}x{} mode needs {bytes} bytes of VRAM at 32 bits per pixel; vram-size is {}",
                    self.xres,
                    self.yres,
                    human_size(self.vram_size)
                ),
            });
        }
        Ok(())
    }

    /// A GPU of its own: twice the vGPU's VRAM, the slice in the upper half,
    /// the reserved area (scratch page, ring) at the bottom.
    pub fn private_gpu_vram(&self) -> u64 {
        2 * self.vram_size
    }
}

/// A vGPU's weight: one of `WEIGHTS`.
pub fn check_weight(weight: u32) -> Result<(), ConfigError> {
    if WEIGHTS.contains(&weight) {
        return Ok(());
    }
    Err(ConfigError::BadProperty {
        property: "weight",
        value: weight.to_string(),
        expected: format!(
            "it must be {} to {} (default {DEFAULT_WEIGHT})",
            WEIGHTS.start(),
            WEIGHTS.end()
        ),
    })
}
