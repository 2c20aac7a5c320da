//! Finding the vGPU among the PCI devices in sysfs, and the two things we
//! need from its sysfs directory besides the BARs: the BAR table and the
//! command register.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rvg_model::regs::pci;

use crate::error::{bail, Context, Result};

pub const PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// PCI command register bits (config space offset 0x04, 16 bits).
const PCI_COMMAND: u64 = 0x04;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;

/// The IDs sysfs shows for a PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciIds {
    pub vendor: u16,
    pub device: u16,
    pub subsystem_vendor: u16,
    pub subsystem_device: u16,
    pub revision: u8,
}

impl PciIds {
    /// A bochs-compatible display (our vGPU, or QEMU's std VGA, which has
    /// the same vendor:device).
    pub fn is_bochs_display(&self) -> bool {
        self.vendor == pci::VENDOR_ID && self.device == pci::DEVICE_ID_VGPU
    }

    /// An RVG-1 vGPU: the bochs IDs plus RVG-1's subsystem ID.
    pub fn is_rvg_vgpu(&self) -> bool {
        self.is_bochs_display()
            && self.subsystem_vendor == pci::SUBSYSTEM_VENDOR_ID
            && self.subsystem_device == pci::SUBSYSTEM_ID
    }
}

impl std::fmt::Display for PciIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04x}:{:04x} subsystem {:04x}:{:04x} rev {:02x}",
            self.vendor, self.device, self.subsystem_vendor, self.subsystem_device, self.revision
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciDevice {
    /// Domain:bus:device.function, as sysfs names it.
    pub bdf: String,
    pub dir: PathBuf,
    pub ids: PciIds,
}

/// What `find_vgpu` saw: the chosen device and the bochs-compatible
/// devices it passed over (and why), for the report.
#[derive(Debug)]
pub struct Discovery {
    pub device: PciDevice,
    pub skipped: Vec<String>,
}

/// A sysfs ID file's value: "0x1234\n".
pub fn parse_hex(text: &str) -> Option<u32> {
    let t = text.trim();
    u32::from_str_radix(t.strip_prefix("0x").unwrap_or(t), 16).ok()
}

fn read_hex(dir: &Path, name: &str) -> Result<u32> {
    let path = dir.join(name);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_hex(&text).with_context(|| format!("{}: not a hex number: {text:?}", path.display()))
}

fn read_u16(dir: &Path, name: &str) -> Result<u16> {
    let v = read_hex(dir, name)?;
    u16::try_from(v)
        .ok()
        .with_context(|| format!("{}/{name}: {v:#x} is not 16 bits", dir.display()))
}

pub fn read_ids(dir: &Path) -> Result<PciIds> {
    Ok(PciIds {
        vendor: read_u16(dir, "vendor")?,
        device: read_u16(dir, "device")?,
        subsystem_vendor: read_u16(dir, "subsystem_vendor")?,
        subsystem_device: read_u16(dir, "subsystem_device")?,
        // Old kernels lack the file; the revision is only reported.
        revision: read_hex(dir, "revision").map_or(0, |r| r as u8),
    })
}

/// "00:01.0" or "0000:00:01.0" as sysfs names it (domain included,
/// lower case); None when it does not look like one.
pub fn normalize_bdf(text: &str) -> Option<String> {
    let t = text.trim().to_ascii_lowercase();
    let full = if t.matches(':').count() == 1 {
        format!("0000:{t}")
    } else {
        t
    };
    let (domain, rest) = full.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let hex = |s: &str, len: usize| s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit());
    (hex(domain, 4) && hex(bus, 2) && hex(dev, 2) && hex(func, 1)).then_some(full)
}

/// Find the RVG-1 vGPU under `root` (normally `/sys/bus/pci/devices`):
/// the one named `wanted`, or the first one in BDF order.
pub fn find_vgpu(root: &Path, wanted: Option<&str>) -> Result<Discovery> {
    let wanted_text = "1234:1111 with subsystem 1234:5256";
    if let Some(w) = wanted {
        let bdf = normalize_bdf(w)
            .with_context(|| format!("--device {w:?}: expected a PCI address like 0000:00:02.0"))?;
        let dir = root.join(&bdf);
        if !dir.exists() {
            bail!("no PCI device {bdf} in {}", root.display());
        }
        let ids = read_ids(&dir)?;
        if !ids.is_rvg_vgpu() {
            bail!("PCI device {bdf} is {ids}, not an RVG-1 vGPU ({wanted_text})");
        }
        return Ok(Discovery {
            device: PciDevice { bdf, dir, ids },
            skipped: Vec::new(),
        });
    }

    let entries = fs::read_dir(root).with_context(|| format!("listing {}", root.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();

    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for bdf in names {
        let dir = root.join(&bdf);
        // Devices whose ID files we cannot read are not ours to judge.
        let Ok(ids) = read_ids(&dir) else { continue };
        if ids.is_rvg_vgpu() {
            found.push(PciDevice { bdf, dir, ids });
        } else if ids.is_bochs_display() {
            skipped.push(format!("{bdf} ({ids}: not RVG-1, e.g. QEMU's std VGA)"));
        }
    }
    let mut found = found.into_iter();
    let Some(device) = found.next() else {
        let also = if skipped.is_empty() {
            String::new()
        } else {
            format!("; skipped {}", skipped.join(", "))
        };
        bail!("no RVG-1 vGPU ({wanted_text}) in {}{also}", root.display());
    };
    skipped.extend(found.map(|d| format!("{} (another RVG-1 vGPU; pick it with --device)", d.bdf)));
    Ok(Discovery { device, skipped })
}

/// One line of the sysfs `resource` file: a BAR's bus address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    pub start: u64,
    pub size: u64,
    pub flags: u64,
}

/// IORESOURCE flag bits shown in `resource`.
const IORESOURCE_MEM: u64 = 0x200;
const IORESOURCE_PREFETCH: u64 = 0x2000;
const IORESOURCE_MEM_64: u64 = 0x10_0000;

impl Resource {
    pub fn is_memory(&self) -> bool {
        self.flags & IORESOURCE_MEM != 0
    }

    /// "64-bit prefetchable memory" and the like, for the report.
    pub fn describe(&self) -> String {
        let width = if self.flags & IORESOURCE_MEM_64 != 0 {
            "64-bit"
        } else {
            "32-bit"
        };
        let pf = if self.flags & IORESOURCE_PREFETCH != 0 {
            " prefetchable"
        } else {
            ""
        };
        format!("{width}{pf} memory")
    }
}

/// The `resource` file: "start end flags" in hex, one line per resource
/// (BARs 0-5 first); an unused one is all zero.
pub fn parse_resources(text: &str) -> Result<Vec<Resource>> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let nums: Vec<u64> = line
                .split_whitespace()
                .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16))
                .collect::<std::result::Result<_, _>>()
                .with_context(|| format!("resource line {i}: {line:?}"))?;
            let [start, end, flags] = nums[..] else {
                bail!("resource line {i}: expected 3 numbers, got {line:?}");
            };
            let size = if end > start { end - start + 1 } else { 0 };
            Ok(Resource { start, size, flags })
        })
        .collect()
}

pub fn read_resources(dev: &PciDevice) -> Result<Vec<Resource>> {
    let path = dev.dir.join("resource");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_resources(&text).with_context(|| path.display().to_string())
}

/// Turn on Memory Space and Bus Master in the command register through the
/// `config` file; bochs-drm enables memory decoding but not bus mastering,
/// which the engine's DMA into guest RAM needs. Returns (before, after).
pub fn enable_memory_and_bus_master(dev: &PciDevice) -> Result<(u16, u16)> {
    let path = dev.dir.join("config");
    let config = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {} (root needed)", path.display()))?;
    let read_command = || -> Result<u16> {
        let mut word = [0u8; 2];
        config
            .read_exact_at(&mut word, PCI_COMMAND)
            .with_context(|| format!("reading the command register from {}", path.display()))?;
        Ok(u16::from_le_bytes(word))
    };
    let before = read_command()?;
    let wanted = before | COMMAND_MEMORY | COMMAND_BUS_MASTER;
    if wanted != before {
        config
            .write_all_at(&wanted.to_le_bytes(), PCI_COMMAND)
            .with_context(|| format!("writing the command register to {}", path.display()))?;
    }
    let after = read_command()?;
    if after & (COMMAND_MEMORY | COMMAND_BUS_MASTER) != COMMAND_MEMORY | COMMAND_BUS_MASTER {
        bail!("command register is {after:#06x} after writing {wanted:#06x}: memory or bus master did not stick");
    }
    Ok((before, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway sysfs-like tree with the given devices.
    struct FakeSysfs(PathBuf);

    impl FakeSysfs {
        fn new(tag: &str, devices: &[(&str, [u16; 4])]) -> FakeSysfs {
            let root =
                std::env::temp_dir().join(format!("rvg-guest-sysfs-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            for (bdf, [v, d, sv, sd]) in devices {
                let dir = root.join(bdf);
                fs::create_dir_all(&dir).unwrap();
                for (name, val) in [
                    ("vendor", v),
                    ("device", d),
                    ("subsystem_vendor", sv),
                    ("subsystem_device", sd),
                ] {
                    fs::write(dir.join(name), format!("{val:#06x}\n")).unwrap();
                }
                fs::write(dir.join("revision"), "0x02\n").unwrap();
            }
            FakeSysfs(root)
        }
    }

    impl Drop for FakeSysfs {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const RVG: [u16; 4] = [0x1234, 0x1111, 0x1234, 0x5256];
    const STD_VGA: [u16; 4] = [0x1234, 0x1111, 0x1af4, 0x1100];
    const NIC: [u16; 4] = [0x8086, 0x10d3, 0x8086, 0x0000];

    #[test]
    fn finds_the_vgpu_and_skips_the_std_vga() {
        let sys = FakeSysfs::new(
            "find",
            &[
                ("0000:00:01.0", STD_VGA),
                ("0000:00:02.0", NIC),
                ("0000:00:03.0", RVG),
            ],
        );
        let d = find_vgpu(&sys.0, None).unwrap();
        assert_eq!(d.device.bdf, "0000:00:03.0");
        assert_eq!(d.device.ids.revision, 2);
        assert_eq!(d.skipped.len(), 1);
        assert!(d.skipped[0].starts_with("0000:00:01.0"));
    }

    #[test]
    fn none_found_is_a_clear_error() {
        let sys = FakeSysfs::new("none", &[("0000:00:01.0", STD_VGA), ("0000:00:02.0", NIC)]);
        let e = find_vgpu(&sys.0, None).unwrap_err().to_string();
        assert!(
            e.starts_with("no RVG-1 vGPU (1234:1111 with subsystem 1234:5256)"),
            "{e}"
        );
        assert!(e.contains("skipped 0000:00:01.0"), "{e}");
    }

    #[test]
    fn device_option_picks_or_refuses() {
        let sys = FakeSysfs::new(
            "opt",
            &[
                ("0000:00:01.0", STD_VGA),
                ("0000:00:03.0", RVG),
                ("0000:00:04.0", RVG),
            ],
        );
        assert_eq!(
            find_vgpu(&sys.0, Some("00:04.0")).unwrap().device.bdf,
            "0000:00:04.0"
        );
        let e = find_vgpu(&sys.0, Some("0000:00:01.0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an RVG-1 vGPU"), "{e}");
        let e = find_vgpu(&sys.0, Some("0000:00:09.0"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("no PCI device 0000:00:09.0"), "{e}");
        assert!(find_vgpu(&sys.0, Some("nonsense")).is_err());
        // Two vGPUs: the first is used, the other named in the report.
        let d = find_vgpu(&sys.0, None).unwrap();
        assert_eq!(d.device.bdf, "0000:00:03.0");
        assert!(d.skipped.iter().any(|s| s.starts_with("0000:00:04.0")));
    }

    #[test]
    fn bdf_forms() {
        assert_eq!(normalize_bdf("00:02.0").as_deref(), Some("0000:00:02.0"));
        assert_eq!(
            normalize_bdf("0000:0A:1f.7").as_deref(),
            Some("0000:0a:1f.7")
        );
        assert_eq!(normalize_bdf("0:2.0"), None);
        assert_eq!(normalize_bdf("0000:00:02"), None);
        assert_eq!(normalize_bdf("zz:00.0"), None);
    }

    #[test]
    fn hex_ids() {
        assert_eq!(parse_hex("0x1234\n"), Some(0x1234));
        assert_eq!(parse_hex("5256"), Some(0x5256));
        assert_eq!(parse_hex("0xg"), None);
    }

    #[test]
    fn resource_lines() {
        let text = "0x00000000f8000000 0x00000000fbffffff 0x000000000014220c\n\
                    0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
                    0x00000000fe800000 0x00000000fe9fffff 0x0000000000140204\n";
        let r = parse_resources(text).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].start, r[0].size), (0xf800_0000, 64 << 20));
        assert_eq!(r[0].describe(), "64-bit prefetchable memory");
        assert!(r[0].is_memory() && !r[1].is_memory());
        assert_eq!(r[1].size, 0);
        assert_eq!(
            (r[2].size, r[2].describe().as_str()),
            (2 << 20, "64-bit memory")
        );
        assert!(parse_resources("0x1 0x2\n").is_err());
        assert!(parse_resources("0x1 0x2 zz\n").is_err());
    }
}
