//! Device properties as the user gave them, and their validation.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// `rust-vgpu`: the mediated vGPU.
    Vgpu,
    /// `rust-vgpu-hw`: the raw GPU model.
    Hw,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    pub model: ModelKind,
    pub vram_size: u64,
}

pub const VRAM_SIZE_MIN: u64 = 1 << 20;
pub const VRAM_SIZE_MAX: u64 = 1 << 30;
pub const VRAM_SIZE_DEFAULT: u64 = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A property value outside what the device supports.
    BadProperty {
        property: &'static str,
        value: String,
        expected: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::BadProperty {
                property,
                value,
                expected,
            } => write!(f, "property '{property}' is {value}: {expected}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// `bytes` in the largest binary unit that divides it, as QEMU's size
/// properties are written (`3M`, `64M`, `1G`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{bytes} ({} {name})", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

impl DeviceConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let v = self.vram_size;
        if !v.is_power_of_two() || !(VRAM_SIZE_MIN..=VRAM_SIZE_MAX).contains(&v) {
            return Err(ConfigError::BadProperty {
                property: "vram-size",
                value: human_size(v),
                expected: format!(
                    "it must be a power of two from {} to {}",
                    human_size(VRAM_SIZE_MIN),
                    human_size(VRAM_SIZE_MAX)
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vram_size: u64) -> DeviceConfig {
        DeviceConfig {
            model: ModelKind::Vgpu,
            vram_size,
        }
    }

    #[test]
    fn powers_of_two_in_range_are_accepted() {
        for shift in 20..=30 {
            assert_eq!(cfg(1 << shift).validate(), Ok(()));
        }
    }

    #[test]
    fn bad_vram_size_names_property_and_value() {
        let err = cfg(3 << 20).validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "property 'vram-size' is 3145728 (3 MiB): it must be a power of two \
             from 1048576 (1 MiB) to 1073741824 (1 GiB)"
        );
        for bad in [0, 1, 4096, 512 << 10, 2 << 30, u64::MAX] {
            assert!(cfg(bad).validate().is_err(), "{bad} accepted");
        }
    }
}
