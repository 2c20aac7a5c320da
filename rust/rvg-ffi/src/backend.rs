//! Which GPU a vGPU gets, from its properties: a soft GPU of its own (the
//! default), a shared `rust-vgpu-gpu`, or a kernel VFIO device (`host` or
//! `sysfsdev`, reached as `vfio-iommu` says).

use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::sync::Arc;

use rvg_mediator::shared::{HostLog, SchedConfig};
use rvg_mediator::SharedGpu;
use rvg_vfio::kernel::{DeviceSpec, IommuBackend, KernelDevice};

/// The GPU properties of a vGPU, as strings the user gave (None: unset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuChoice {
    pub shared: bool,
    pub host: Option<String>,
    pub sysfsdev: Option<String>,
    pub vfio_iommu: Option<String>,
}

/// Where a vGPU's GPU comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A soft GPU of its own.
    Soft,
    /// The `rust-vgpu-gpu` named by the `gpu` property.
    Shared,
    /// A kernel VFIO device; `property` is the one that named it.
    Kernel {
        property: &'static str,
        value: String,
        spec: DeviceSpec,
        iommu: IommuBackend,
    },
}

/// A property string from the shim: NULL is unset.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
pub unsafe fn c_property(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the function contract.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

impl GpuChoice {
    /// Check the properties together and say which backend they select.
    pub fn backend(&self) -> Result<Backend, String> {
        let device = match (&self.host, &self.sysfsdev) {
            (Some(h), Some(s)) => {
                return Err(format!(
                    "properties 'host' ('{h}') and 'sysfsdev' ('{s}') both name the VFIO \
                     device: give one"
                ))
            }
            (Some(h), None) => Some(("host", h.clone(), DeviceSpec::Host(h.clone()))),
            (None, Some(s)) => Some(("sysfsdev", s.clone(), DeviceSpec::Sysfs(PathBuf::from(s)))),
            (None, None) => None,
        };
        let iommu = match &self.vfio_iommu {
            None => IommuBackend::Auto,
            Some(v) => v
                .parse::<IommuBackend>()
                .map_err(|e| format!("property 'vfio-iommu' is '{v}': {e}"))?,
        };
        match device {
            Some((property, _, _)) if self.shared => Err(format!(
                "properties 'gpu' and '{property}' both choose the GPU: give one"
            )),
            Some((property, value, spec)) => {
                if value.is_empty() {
                    return Err(format!("property '{property}' is empty"));
                }
                Ok(Backend::Kernel {
                    property,
                    value,
                    spec,
                    iommu,
                })
            }
            None if self.vfio_iommu.is_some() => Err(
                "property 'vfio-iommu' applies to a VFIO device: set 'host' or 'sysfsdev' too"
                    .to_string(),
            ),
            None if self.shared => Ok(Backend::Shared),
            None => Ok(Backend::Soft),
        }
    }
}

/// Open the kernel VFIO device and take it over as the vGPU's own GPU.
/// Errors name the property, its value and the cause.
pub fn kernel_gpu(
    property: &str,
    value: &str,
    spec: &DeviceSpec,
    iommu: IommuBackend,
    log: HostLog,
) -> Result<SharedGpu, String> {
    let fail = |cause: String| format!("property '{property}' is '{value}': {cause}");
    let dev = KernelDevice::open(spec, iommu).map_err(|e| fail(e.to_string()))?;
    SharedGpu::private(Arc::new(dev), SchedConfig::default(), log).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(host: Option<&str>, sysfsdev: Option<&str>, iommu: Option<&str>) -> GpuChoice {
        GpuChoice {
            shared: false,
            host: host.map(str::to_string),
            sysfsdev: sysfsdev.map(str::to_string),
            vfio_iommu: iommu.map(str::to_string),
        }
    }

    #[test]
    fn unset_is_a_soft_gpu_and_gpu_is_shared() {
        assert_eq!(choice(None, None, None).backend(), Ok(Backend::Soft));
        let shared = GpuChoice {
            shared: true,
            ..GpuChoice::default()
        };
        assert_eq!(shared.backend(), Ok(Backend::Shared));
    }

    #[test]
    fn host_or_sysfsdev_selects_the_kernel_device() {
        let b = choice(Some("0000:00:03.0"), None, Some("legacy")).backend();
        assert_eq!(
            b,
            Ok(Backend::Kernel {
                property: "host",
                value: "0000:00:03.0".into(),
                spec: DeviceSpec::Host("0000:00:03.0".into()),
                iommu: IommuBackend::Legacy,
            })
        );
        let b = choice(None, Some("/sys/bus/pci/devices/0000:00:03.0"), None).backend();
        assert!(matches!(
            b,
            Ok(Backend::Kernel {
                property: "sysfsdev",
                iommu: IommuBackend::Auto,
                ..
            })
        ));
    }

    #[test]
    fn conflicting_or_bad_properties_are_named() {
        let e = choice(Some("00:03.0"), Some("/sys/x"), None)
            .backend()
            .unwrap_err();
        assert!(
            e.contains("'host' ('00:03.0') and 'sysfsdev' ('/sys/x')"),
            "{e}"
        );
        let e = choice(Some("00:03.0"), None, Some("vfio2"))
            .backend()
            .unwrap_err();
        assert!(e.starts_with("property 'vfio-iommu' is 'vfio2': "), "{e}");
        let e = choice(None, None, Some("legacy")).backend().unwrap_err();
        assert!(e.contains("'vfio-iommu' applies to a VFIO device"), "{e}");
        let e = choice(Some(""), None, None).backend().unwrap_err();
        assert_eq!(e, "property 'host' is empty");
        let both = GpuChoice {
            shared: true,
            ..choice(None, Some("/sys/x"), None)
        };
        assert!(both.backend().unwrap_err().contains("'gpu' and 'sysfsdev'"));
    }

    #[test]
    fn a_missing_device_fails_naming_the_property_and_value() {
        let log: HostLog = Arc::new(|_| {});
        let e = kernel_gpu(
            "host",
            "0000:7f:1f.7",
            &DeviceSpec::Host("0000:7f:1f.7".into()),
            IommuBackend::Auto,
            log,
        )
        .err()
        .expect("no such device here");
        assert!(e.starts_with("property 'host' is '0000:7f:1f.7': "), "{e}");
    }
}
