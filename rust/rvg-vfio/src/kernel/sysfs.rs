//! Finding the device in sysfs and checking it can be opened through VFIO:
//! bound to a vfio driver, in an IOMMU group, and which interfaces
//! (group / cdev) it offers. Every path is taken relative to a [`Paths`], so
//! tests run against a directory tree of their own.

use std::io;
use std::path::{Path, PathBuf};

use super::{DeviceSpec, IommuBackend, OpenError};

/// Where sysfs and /dev are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    pub sysfs_root: PathBuf,
    pub dev_root: PathBuf,
}

impl Default for Paths {
    fn default() -> Paths {
        Paths {
            sysfs_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
        }
    }
}

impl Paths {
    /// `/dev/iommu`: present when the kernel has iommufd.
    pub(crate) fn iommufd(&self) -> PathBuf {
        self.dev_root.join("iommu")
    }

    /// `/dev/vfio/vfio`: the legacy container.
    pub(crate) fn container(&self) -> PathBuf {
        self.dev_root.join("vfio").join("vfio")
    }

    /// `/dev/vfio/N`: a legacy group.
    pub(crate) fn group(&self, id: u32) -> PathBuf {
        self.dev_root.join("vfio").join(id.to_string())
    }

    /// `/dev/vfio/devices/vfioX`: a device cdev.
    pub(crate) fn cdev(&self, name: &str) -> PathBuf {
        self.dev_root.join("vfio").join("devices").join(name)
    }
}

/// A device as sysfs describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SysfsDevice {
    /// The name VFIO knows it by: "0000:00:03.0", or an mdev's UUID.
    pub name: String,
    /// Its sysfs directory.
    pub dir: PathBuf,
    pub iommu_group: u32,
    /// Its VFIO device cdev ("vfio0"), if the kernel made one.
    pub cdev: Option<String>,
}

/// The interface to open the device through, `Auto` resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chosen {
    Legacy,
    Iommufd,
}

/// Parse `[domain:]bus:slot.function` (hex; domain 0000 if absent) into
/// the kernel's name for it, "dddd:bb:ss.f".
pub(crate) fn parse_pci_address(s: &str) -> Option<String> {
    fn hex(s: &str, max_digits: usize) -> Option<u32> {
        if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(s, 16).ok()
    }
    let parts: Vec<&str> = s.split(':').collect();
    let (domain, bus, slot_fn) = match parts.as_slice() {
        [bus, slot_fn] => (0, *bus, *slot_fn),
        [domain, bus, slot_fn] => (hex(domain, 8)?, *bus, *slot_fn),
        _ => return None,
    };
    let (slot, function) = slot_fn.split_once('.')?;
    let (bus, slot, function) = (hex(bus, 2)?, hex(slot, 2)?, hex(function, 1)?);
    if slot > 0x1f || function > 7 {
        return None;
    }
    Some(format!("{domain:04x}:{bus:02x}:{slot:02x}.{function:x}"))
}

/// The last component of a symlink's target: a driver's, group's or bus's
/// name. `Ok(None)` if there is no such link.
fn link_name(link: &Path) -> Result<Option<String>, OpenError> {
    match std::fs::read_link(link) {
        Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(OpenError::new(format!(
            "cannot read {}: {e}",
            link.display()
        ))),
    }
}

/// Find the device `spec` names and check it is usable through VFIO.
pub(crate) fn resolve(spec: &DeviceSpec, paths: &Paths) -> Result<SysfsDevice, OpenError> {
    let (name, dir, on_pci) = match spec {
        DeviceSpec::Host(addr) => {
            let name = parse_pci_address(addr.trim()).ok_or_else(|| {
                OpenError::new("not a PCI address (expected [domain:]bus:slot.function)")
            })?;
            let dir = paths
                .sysfs_root
                .join("bus")
                .join("pci")
                .join("devices")
                .join(&name);
            if !dir.is_dir() {
                return Err(OpenError::new(format!(
                    "no such PCI device ({} does not exist)",
                    dir.display()
                )));
            }
            (name, dir, true)
        }
        DeviceSpec::Sysfs(path) => {
            let dir = match path.canonicalize() {
                Ok(dir) if dir.is_dir() => dir,
                Ok(_) => {
                    return Err(OpenError::new(format!(
                        "no such device ({} is not a directory)",
                        path.display()
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(OpenError::new(format!(
                        "no such device ({} does not exist)",
                        path.display()
                    )))
                }
                Err(e) => {
                    return Err(OpenError::new(format!(
                        "cannot resolve {}: {e}",
                        path.display()
                    )))
                }
            };
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    OpenError::new(format!("no such device ({} is no device)", path.display()))
                })?;
            // An mdev (or another bus's device) has a vfio driver of its own
            // kind; only a PCI function must be bound to vfio-pci.
            let on_pci = match link_name(&dir.join("subsystem"))? {
                Some(bus) => bus == "pci",
                None => parse_pci_address(&name).as_deref() == Some(name.as_str()),
            };
            (name, dir, on_pci)
        }
    };
    if on_pci {
        check_driver(&dir)?;
    }
    let iommu_group = iommu_group(&dir)?;
    let cdev = vfio_cdev(&dir);
    Ok(SysfsDevice {
        name,
        dir,
        iommu_group,
        cdev,
    })
}

/// vfio-pci, or a vfio-pci variant driver ("mlx5_vfio_pci", ...).
fn check_driver(dir: &Path) -> Result<(), OpenError> {
    match link_name(&dir.join("driver"))? {
        None => Err(OpenError::new("not bound to vfio-pci (no driver is bound)")),
        Some(driver) if driver.contains("vfio") => Ok(()),
        Some(driver) => Err(OpenError::new(format!(
            "not bound to vfio-pci (bound to '{driver}')"
        ))),
    }
}

fn iommu_group(dir: &Path) -> Result<u32, OpenError> {
    let link = dir.join("iommu_group");
    let name = link_name(&link)?.ok_or_else(|| {
        OpenError::new(
            "the device has no IOMMU group (boot the host with the IOMMU on, e.g. intel_iommu=on)",
        )
    })?;
    name.parse().map_err(|_| {
        OpenError::new(format!(
            "{} names no IOMMU group number ('{name}')",
            link.display()
        ))
    })
}

/// The "vfioX" entry of `<dir>/vfio-dev`, present when the kernel has
/// VFIO_DEVICE_CDEV.
fn vfio_cdev(dir: &Path) -> Option<String> {
    let entries = std::fs::read_dir(dir.join("vfio-dev")).ok()?;
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| {
            n.strip_prefix("vfio")
                .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Resolve the backend: `Auto` takes iommufd when the kernel has it and the
/// device has a cdev, else the legacy group; an explicit choice must be
/// available.
pub(crate) fn choose_backend(
    requested: IommuBackend,
    paths: &Paths,
    dev: &SysfsDevice,
) -> Result<Chosen, OpenError> {
    let has_iommufd = paths.iommufd().exists();
    match requested {
        IommuBackend::Legacy => Ok(Chosen::Legacy),
        IommuBackend::Auto if has_iommufd && dev.cdev.is_some() => Ok(Chosen::Iommufd),
        IommuBackend::Auto => Ok(Chosen::Legacy),
        IommuBackend::Iommufd if !has_iommufd => Err(OpenError::new(format!(
            "the kernel offers no iommufd ({} does not exist)",
            paths.iommufd().display()
        ))),
        IommuBackend::Iommufd if dev.cdev.is_none() => Err(OpenError::new(format!(
            "the device has no VFIO device cdev ({})",
            dev.dir.join("vfio-dev").display()
        ))),
        IommuBackend::Iommufd => Ok(Chosen::Iommufd),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory under the system temp dir, removed on drop.
    pub(crate) struct TempTree(pub PathBuf);

    impl TempTree {
        pub(crate) fn new() -> TempTree {
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "rvg-vfio-sysfs-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TempTree(path)
        }

        pub(crate) fn paths(&self) -> Paths {
            Paths {
                sysfs_root: self.0.join("sys"),
                dev_root: self.0.join("dev"),
            }
        }

        pub(crate) fn mkdir(&self, rel: &str) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::create_dir_all(&p).unwrap();
            p
        }

        pub(crate) fn touch(&self, rel: &str) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"").unwrap();
            p
        }

        /// A PCI function as sysfs shows it: the real directory under
        /// devices/, the bus/pci/devices link, and `subsystem`, `driver`
        /// and `iommu_group` links as asked.
        pub(crate) fn pci_device(&self, name: &str, driver: Option<&str>, group: Option<u32>) {
            let dir = self.mkdir(&format!("sys/devices/pci0000:00/{name}"));
            self.mkdir("sys/bus/pci/devices");
            symlink(&dir, self.0.join("sys/bus/pci/devices").join(name)).unwrap();
            symlink(self.mkdir("sys/bus/pci"), dir.join("subsystem")).unwrap();
            if let Some(driver) = driver {
                let d = self.mkdir(&format!("sys/bus/pci/drivers/{driver}"));
                symlink(d, dir.join("driver")).unwrap();
            }
            if let Some(group) = group {
                let g = self.mkdir(&format!("sys/kernel/iommu_groups/{group}"));
                symlink(g, dir.join("iommu_group")).unwrap();
            }
        }

        pub(crate) fn device_dir(&self, name: &str) -> PathBuf {
            self.0.join("sys/devices/pci0000:00").join(name)
        }
    }

    impl Drop for TempTree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn host(s: &str) -> DeviceSpec {
        DeviceSpec::Host(s.into())
    }

    fn err(r: Result<SysfsDevice, OpenError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn pci_addresses() {
        let ok = [
            ("0000:00:03.0", "0000:00:03.0"),
            ("00:03.0", "0000:00:03.0"),
            ("0:3.0", "0000:00:03.0"),
            ("0001:AF:1f.7", "0001:af:1f.7"),
            ("10000:00:00.1", "10000:00:00.1"),
        ];
        for (s, want) in ok {
            assert_eq!(parse_pci_address(s).as_deref(), Some(want), "{s}");
        }
        let bad = [
            "",
            "00:03",
            "03.0",
            "0000:00:20.0",
            "0000:00:03.8",
            "0000:100:03.0",
            "0000:00:03.0.1",
            "x:00:03.0",
            "0000:00:+3.0",
            "0:0000:00:03.0",
            "000000000:00:03.0",
            "0000:00:03.",
            "0000::03.0",
            "0000:00:03.-1",
        ];
        for s in bad {
            assert_eq!(parse_pci_address(s), None, "{s}");
        }
    }

    #[test]
    fn resolves_a_vfio_pci_device() {
        let t = TempTree::new();
        t.pci_device("0000:00:03.0", Some("vfio-pci"), Some(5));
        let dev = resolve(&host("00:03.0"), &t.paths()).unwrap();
        assert_eq!(dev.name, "0000:00:03.0");
        assert_eq!(dev.iommu_group, 5);
        assert_eq!(dev.cdev, None);
        assert_eq!(
            dev.dir,
            t.0.join("sys/bus/pci/devices/0000:00:03.0"),
            "host= uses the bus/pci/devices path"
        );
        // The same through sysfsdev=, canonicalized.
        let dev2 = resolve(
            &DeviceSpec::Sysfs(t.0.join("sys/bus/pci/devices/0000:00:03.0")),
            &t.paths(),
        )
        .unwrap();
        assert_eq!(dev2.name, "0000:00:03.0");
        assert_eq!(
            dev2.dir,
            t.device_dir("0000:00:03.0").canonicalize().unwrap()
        );
    }

    #[test]
    fn variant_drivers_are_accepted() {
        let t = TempTree::new();
        t.pci_device("0000:00:04.0", Some("mlx5_vfio_pci"), Some(2));
        assert!(resolve(&host("0000:00:04.0"), &t.paths()).is_ok());
    }

    #[test]
    fn bad_address() {
        let t = TempTree::new();
        assert_eq!(
            err(resolve(&host("03.0"), &t.paths())),
            "not a PCI address (expected [domain:]bus:slot.function)"
        );
    }

    #[test]
    fn missing_device() {
        let t = TempTree::new();
        let want = format!(
            "no such PCI device ({} does not exist)",
            t.0.join("sys/bus/pci/devices/0000:00:09.0").display()
        );
        assert_eq!(err(resolve(&host("00:09.0"), &t.paths())), want);
        let missing = t.0.join("sys/bus/mdev/devices/nothing");
        assert_eq!(
            err(resolve(&DeviceSpec::Sysfs(missing.clone()), &t.paths())),
            format!("no such device ({} does not exist)", missing.display())
        );
    }

    #[test]
    fn no_driver() {
        let t = TempTree::new();
        t.pci_device("0000:00:03.0", None, Some(5));
        assert_eq!(
            err(resolve(&host("00:03.0"), &t.paths())),
            "not bound to vfio-pci (no driver is bound)"
        );
    }

    #[test]
    fn wrong_driver() {
        let t = TempTree::new();
        t.pci_device("0000:00:03.0", Some("rvg"), Some(5));
        assert_eq!(
            err(resolve(&host("00:03.0"), &t.paths())),
            "not bound to vfio-pci (bound to 'rvg')"
        );
        // sysfsdev= checks the same for a PCI device.
        let dir = t.device_dir("0000:00:03.0");
        assert_eq!(
            err(resolve(&DeviceSpec::Sysfs(dir), &t.paths())),
            "not bound to vfio-pci (bound to 'rvg')"
        );
    }

    #[test]
    fn no_iommu_group() {
        let t = TempTree::new();
        t.pci_device("0000:00:03.0", Some("vfio-pci"), None);
        assert_eq!(
            err(resolve(&host("00:03.0"), &t.paths())),
            "the device has no IOMMU group (boot the host with the IOMMU on, e.g. intel_iommu=on)"
        );
    }

    #[test]
    fn mdev_skips_the_driver_check() {
        let t = TempTree::new();
        let uuid = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001";
        let dir = t.mkdir(&format!("sys/devices/pci0000:00/0000:00:02.0/{uuid}"));
        t.mkdir("sys/bus/mdev/devices");
        let link = t.0.join("sys/bus/mdev/devices").join(uuid);
        symlink(&dir, &link).unwrap();
        symlink(t.mkdir("sys/bus/mdev"), dir.join("subsystem")).unwrap();
        symlink(
            t.mkdir("sys/bus/mdev/drivers/some_mdev_driver"),
            dir.join("driver"),
        )
        .unwrap();
        symlink(
            t.mkdir("sys/kernel/iommu_groups/7"),
            dir.join("iommu_group"),
        )
        .unwrap();
        t.mkdir(&format!(
            "sys/devices/pci0000:00/0000:00:02.0/{uuid}/vfio-dev/vfio3"
        ));
        let dev = resolve(&DeviceSpec::Sysfs(link), &t.paths()).unwrap();
        assert_eq!(dev.name, uuid);
        assert_eq!(dev.iommu_group, 7);
        assert_eq!(dev.cdev.as_deref(), Some("vfio3"));
    }

    #[test]
    fn backend_choice() {
        let t = TempTree::new();
        t.pci_device("0000:00:03.0", Some("vfio-pci"), Some(5));
        let paths = t.paths();
        let mut dev = resolve(&host("00:03.0"), &paths).unwrap();
        // No /dev/iommu, no cdev.
        assert_eq!(
            choose_backend(IommuBackend::Auto, &paths, &dev).unwrap(),
            Chosen::Legacy
        );
        assert_eq!(
            choose_backend(IommuBackend::Iommufd, &paths, &dev)
                .unwrap_err()
                .to_string(),
            format!(
                "the kernel offers no iommufd ({} does not exist)",
                t.0.join("dev/iommu").display()
            )
        );
        t.touch("dev/iommu");
        assert_eq!(
            choose_backend(IommuBackend::Auto, &paths, &dev).unwrap(),
            Chosen::Legacy
        );
        assert_eq!(
            choose_backend(IommuBackend::Iommufd, &paths, &dev)
                .unwrap_err()
                .to_string(),
            format!(
                "the device has no VFIO device cdev ({})",
                dev.dir.join("vfio-dev").display()
            )
        );
        // A cdev appears.
        t.mkdir("sys/devices/pci0000:00/0000:00:03.0/vfio-dev/vfio0");
        dev = resolve(&host("00:03.0"), &paths).unwrap();
        assert_eq!(dev.cdev.as_deref(), Some("vfio0"));
        assert_eq!(
            choose_backend(IommuBackend::Auto, &paths, &dev).unwrap(),
            Chosen::Iommufd
        );
        assert_eq!(
            choose_backend(IommuBackend::Legacy, &paths, &dev).unwrap(),
            Chosen::Legacy
        );
        assert_eq!(
            choose_backend(IommuBackend::Iommufd, &paths, &dev).unwrap(),
            Chosen::Iommufd
        );
    }
}
