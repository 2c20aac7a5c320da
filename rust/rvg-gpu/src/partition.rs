//! SR-IOV partitions: which part of the GPU's GTT and VRAM each function
//! reaches. The PF reaches all of it (it is the host's); VF *k* reaches
//! the *k*-th equal partition of each, sized by TotalVFs when the PF is
//! made, so its BARs never change size.

use rvg_model::config::{human_size, ConfigError, VRAM_SIZE_MIN};

/// VFs a GPU can offer: routing IDs stay within ARI's 256 functions, and
/// each VF keeps at least 1 MiB of VRAM and 8192 GTT entries.
pub const MAX_VFS: u16 = 16;

/// A function's window on the GPU's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Physical GTT entry of the function's entry 0.
    pub gtt_base: u32,
    pub gtt_entries: u32,
    /// VRAM offset of the function's VRAM offset 0 (its BAR0).
    pub vram_base: u64,
    pub vram_size: u64,
}

impl Partition {
    /// The whole GPU: the PF's window.
    pub fn whole(gtt_entries: u32, vram_size: u64) -> Partition {
        Partition {
            gtt_base: 0,
            gtt_entries,
            vram_base: 0,
            vram_size,
        }
    }

    pub fn gtt_range(&self) -> std::ops::Range<usize> {
        self.gtt_base as usize..(self.gtt_base + self.gtt_entries) as usize
    }
}

/// The partitions of `total_vfs` VFs on a GPU of `gtt_entries` entries and
/// `vram_size` bytes of VRAM: equal, each a power of two (a VF BAR's size
/// must be), laid out in VF order. An empty list for no VFs.
pub fn vf_partitions(
    total_vfs: u16,
    gtt_entries: u32,
    vram_size: u64,
) -> Result<Vec<Partition>, ConfigError> {
    if total_vfs > MAX_VFS {
        return Err(ConfigError::BadProperty {
            property: "vfs",
            value: total_vfs.to_string(),
            expected: format!("a GPU offers at most {MAX_VFS} VFs"),
        });
    }
    if total_vfs == 0 {
        return Ok(Vec::new());
    }
    let n = u64::from(total_vfs);
    let vram = pow2_floor(vram_size / n);
    if vram < VRAM_SIZE_MIN {
        return Err(ConfigError::BadProperty {
            property: "vfs",
            value: total_vfs.to_string(),
            expected: format!(
                "each VF needs at least {} of VRAM, and vram-size {} gives it {}",
                human_size(VRAM_SIZE_MIN),
                human_size(vram_size),
                human_size(vram)
            ),
        });
    }
    let gtt = pow2_floor(u64::from(gtt_entries) / n) as u32;
    Ok((0..total_vfs)
        .map(|k| Partition {
            gtt_base: u32::from(k) * gtt,
            gtt_entries: gtt,
            vram_base: u64::from(k) * vram,
            vram_size: vram,
        })
        .collect())
}

/// The largest power of two not above `x` (0 for 0).
fn pow2_floor(x: u64) -> u64 {
    match x {
        0 => 0,
        x => 1 << (63 - x.leading_zeros()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn partitions_are_equal_disjoint_powers_of_two_inside_the_gpu() {
        for vfs in 1..=MAX_VFS {
            let parts = vf_partitions(vfs, 131072, 256 * MIB).unwrap();
            assert_eq!(parts.len(), usize::from(vfs));
            for (k, p) in parts.iter().enumerate() {
                assert!(p.vram_size.is_power_of_two() && p.gtt_entries.is_power_of_two());
                assert_eq!(p.vram_size, parts[0].vram_size);
                assert!(p.vram_base + p.vram_size <= 256 * MIB);
                assert!(p.gtt_base + p.gtt_entries <= 131072);
                // Aligned to its own size: a VF BAR is.
                assert_eq!(p.vram_base % p.vram_size, 0);
                for q in &parts[k + 1..] {
                    assert!(p.vram_base + p.vram_size <= q.vram_base);
                    assert!(p.gtt_base + p.gtt_entries <= q.gtt_base);
                }
            }
            // Nothing is left over that a power of two twice the size
            // would have fitted.
            assert!(parts[0].vram_size * 2 * u64::from(vfs) > 256 * MIB);
        }
        let four = vf_partitions(4, 131072, 256 * MIB).unwrap();
        assert_eq!(
            four[3],
            Partition {
                gtt_base: 3 * 32768,
                gtt_entries: 32768,
                vram_base: 192 * MIB,
                vram_size: 64 * MIB
            }
        );
        let three = vf_partitions(3, 131072, 64 * MIB).unwrap();
        assert_eq!(
            (three[2].vram_base, three[2].vram_size),
            (32 * MIB, 16 * MIB)
        );
        assert_eq!(three[2].gtt_entries, 32768);
    }

    #[test]
    fn no_vfs_no_partitions_and_bad_counts_are_named() {
        assert!(vf_partitions(0, 131072, MIB).unwrap().is_empty());
        let e = vf_partitions(17, 131072, 1 << 30).unwrap_err().to_string();
        assert_eq!(e, "property 'vfs' is 17: a GPU offers at most 16 VFs");
        let e = vf_partitions(16, 131072, 8 * MIB).unwrap_err().to_string();
        assert_eq!(
            e,
            "property 'vfs' is 16: each VF needs at least 1048576 (1 MiB) of VRAM, \
             and vram-size 8388608 (8 MiB) gives it 524288 (512 KiB)"
        );
    }
}
