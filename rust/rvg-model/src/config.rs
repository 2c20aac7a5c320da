//! Property validation shared by the devices.

use std::fmt;

pub const VRAM_SIZE_MIN: u64 = 1 << 20;
/// The physical GPU's limit.
pub const VRAM_SIZE_MAX: u64 = 1 << 30;
/// A vGPU's limit: its private GPU holds twice its VRAM (see the mediator).
pub const VGPU_VRAM_SIZE_MAX: u64 = 512 << 20;
pub const VRAM_SIZE_DEFAULT: u64 = 64 << 20;

/// The physical GPU's properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuConfig {
    pub vram_size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A property value outside what the device supports.
    BadProperty {
        property: &'static str,
        value: String,
        expected: String,
    },
    /// The host could not provide a resource.
    Host(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::BadProperty {
                property,
                value,
                expected,
            } => write!(f, "property '{property}' is {value}: {expected}"),
            ConfigError::Host(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ConfigError {}

/// `bytes` in the largest binary unit that divides it, as QEMU's size
/// properties are written (`3M`, `64M`, `1G`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{bytes} ({} {name})", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

/// A power of two in `min..=max`, or an error naming `property` and `value`.
fn check_pow2(property: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value.is_power_of_two() && (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::BadProperty {
        property,
        value: human_size(value),
        expected: format!(
            "it must be a power of two from {} to {}",
            human_size(min),
            human_size(max)
        ),
    })
}

/// Check the physical GPU's `vram-size`.
pub fn check_vram_size(value: u64) -> Result<(), ConfigError> {
    check_pow2("vram-size", value, VRAM_SIZE_MIN, VRAM_SIZE_MAX)
}

/// Check a vGPU's `vram-size`.
pub fn check_vgpu_vram_size(value: u64) -> Result<(), ConfigError> {
    check_pow2("vram-size", value, VRAM_SIZE_MIN, VGPU_VRAM_SIZE_MAX)
}

/// A vGPU's graphics address space: what its GTT maps.
pub const GFX_SIZE_MIN: u64 = 4 << 20;
pub const GFX_SIZE_MAX: u64 = 128 << 20;

/// Check a vGPU's `gfx-size`.
pub fn check_gfx_size(value: u64) -> Result<(), ConfigError> {
    check_pow2("gfx-size", value, GFX_SIZE_MIN, GFX_SIZE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_two_in_range_are_accepted() {
        for shift in 20..=30 {
            assert_eq!(check_vram_size(1 << shift), Ok(()));
        }
    }

    #[test]
    fn bad_vram_size_names_property_and_value() {
        let err = check_vram_size(3 << 20).unwrap_err().to_string();
        assert_eq!(
            err,
            "property 'vram-size' is 3145728 (3 MiB): it must be a power of two \
             from 1048576 (1 MiB) to 1073741824 (1 GiB)"
        );
        for bad in [0, 1, 4096, 512 << 10, 2 << 30, u64::MAX] {
            assert!(check_vram_size(bad).is_err(), "{bad} accepted");
        }
        assert!(check_vgpu_vram_size(512 << 20).is_ok());
        assert!(check_vgpu_vram_size(1 << 30).is_err());
    }
}
