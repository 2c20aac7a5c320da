//! The reply of VFIO_DEVICE_GET_REGION_INFO: a `vfio_region_info` header and,
//! if it fit in the caller's `argsz`, a capability chain after it. Pure byte
//! parsing, every offset and count checked against the reply, since the
//! reply is the kernel's (or a variant driver's) word, not ours.
//!
//! Layout (native endian), offsets from the start of the reply:
//! header `argsz u32, flags u32, index u32, cap_offset u32, size u64,
//! offset u64`; each capability starts with `vfio_info_cap_header
//! { id u16, version u16, next u32 }`, `next` 0 ending the chain.

use std::fmt;
use std::mem::size_of;

use vfio_bindings::bindings::vfio::{
    vfio_info_cap_header, vfio_region_info, vfio_region_info_cap_sparse_mmap,
    vfio_region_info_cap_type, vfio_region_sparse_mmap_area,
};

use crate::contract::{
    RegionCap, RegionInfo, SparseArea, VFIO_REGION_INFO_CAP_MSIX_MAPPABLE,
    VFIO_REGION_INFO_CAP_SPARSE_MMAP, VFIO_REGION_INFO_CAP_TYPE, VFIO_REGION_INFO_FLAG_CAPS,
};

/// `sizeof(struct vfio_region_info)`: 32.
pub(crate) const HEADER_SIZE: usize = size_of::<vfio_region_info>();
/// `sizeof(struct vfio_info_cap_header)`: 8.
const CAP_HEADER_SIZE: usize = size_of::<vfio_info_cap_header>();
/// `vfio_region_info_cap_sparse_mmap` without its areas: 16.
const SPARSE_MMAP_SIZE: usize = size_of::<vfio_region_info_cap_sparse_mmap>();
/// `sizeof(struct vfio_region_sparse_mmap_area)`: 16.
const SPARSE_AREA_SIZE: usize = size_of::<vfio_region_sparse_mmap_area>();
/// `sizeof(struct vfio_region_info_cap_type)`: 16.
const TYPE_CAP_SIZE: usize = size_of::<vfio_region_info_cap_type>();
/// The largest reply we will allocate for. Real chains are a few hundred
/// bytes; this only stops a bogus `argsz` from costing gigabytes.
pub(crate) const MAX_REGION_INFO_SIZE: usize = 1 << 20;

/// A malformed reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapError {
    /// Shorter than the fixed header.
    Short { len: usize },
    /// A capability offset inside the fixed header.
    IntoHeader { offset: usize },
    /// A capability header past the end of the reply.
    OutOfBounds { offset: usize, len: usize },
    /// A capability whose body does not fit in the reply.
    Truncated { id: u16, offset: usize, len: usize },
    /// A `next` pointing back at or into an earlier capability.
    BadLink { offset: usize, next: usize },
    /// An `argsz` larger than any real reply.
    TooLarge { argsz: usize },
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CapError::Short { len } => write!(
                f,
                "region info reply is {len} bytes, shorter than its {HEADER_SIZE}-byte header"
            ),
            CapError::IntoHeader { offset } => {
                write!(
                    f,
                    "region capability offset {offset} points into the header"
                )
            }
            CapError::OutOfBounds { offset, len } => write!(
                f,
                "region capability at offset {offset} lies outside the {len}-byte reply"
            ),
            CapError::Truncated { id, offset, len } => write!(
                f,
                "region capability {id} at offset {offset} does not fit in the {len}-byte reply"
            ),
            CapError::BadLink { offset, next } => write!(
                f,
                "region capability at offset {offset} links back to offset {next}"
            ),
            CapError::TooLarge { argsz } => {
                write!(f, "region info argsz {argsz} is implausibly large")
            }
        }
    }
}

impl std::error::Error for CapError {}

/// `N` bytes at `at`, if they are all inside `b`.
fn bytes_at<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    bytes_at(b, at).map(u32::from_ne_bytes)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    bytes_at(b, at).map(u64::from_ne_bytes)
}

/// The request: a zeroed `argsz`-byte buffer whose header asks for region
/// `index`.
pub(crate) fn region_info_request(index: u32, argsz: u32) -> Vec<u8> {
    let mut buf = vec![0u8; (argsz as usize).max(HEADER_SIZE)];
    buf[0..4].copy_from_slice(&argsz.to_ne_bytes());
    buf[8..12].copy_from_slice(&index.to_ne_bytes());
    buf
}

/// Whether to ask again with a bigger buffer: when the kernel has a
/// capability chain that did not fit in `reply` (our whole buffer), it sets
/// FLAG_CAPS, leaves cap_offset 0 and raises `argsz` to the size needed.
/// Returns that size.
pub(crate) fn retry_size(reply: &[u8]) -> Result<Option<usize>, CapError> {
    let short = CapError::Short { len: reply.len() };
    if reply.len() < HEADER_SIZE {
        return Err(short);
    }
    let argsz = u32_at(reply, 0).ok_or(short.clone())? as usize;
    let flags = u32_at(reply, 4).ok_or(short)?;
    if flags & VFIO_REGION_INFO_FLAG_CAPS == 0 || argsz <= reply.len() {
        return Ok(None);
    }
    if argsz > MAX_REGION_INFO_SIZE {
        return Err(CapError::TooLarge { argsz });
    }
    Ok(Some(argsz))
}

/// Parse a reply: the header, then the capability chain if FLAG_CAPS is set
/// and cap_offset is not 0. Only the first `min(reply.len(), argsz)` bytes
/// count. Offsets must move strictly forward past each capability (as the
/// kernel lays them out), so a looping chain ends in an error.
pub fn parse_region_info(reply: &[u8]) -> Result<RegionInfo, CapError> {
    let short = CapError::Short { len: reply.len() };
    let argsz = u32_at(reply, 0).ok_or(short.clone())? as usize;
    let end = reply.len().min(argsz);
    let data = &reply[..end];
    let short = CapError::Short { len: end };
    let flags = u32_at(data, 4).ok_or(short.clone())?;
    let index = u32_at(data, 8).ok_or(short.clone())?;
    let cap_offset = u32_at(data, 12).ok_or(short.clone())? as usize;
    let size = u64_at(data, 16).ok_or(short.clone())?;
    let offset = u64_at(data, 24).ok_or(short)?;

    let mut caps = Vec::new();
    if flags & VFIO_REGION_INFO_FLAG_CAPS != 0 && cap_offset != 0 {
        if cap_offset < HEADER_SIZE {
            return Err(CapError::IntoHeader { offset: cap_offset });
        }
        let mut at = cap_offset;
        loop {
            let Some(hdr) = bytes_at::<CAP_HEADER_SIZE>(data, at) else {
                return Err(CapError::OutOfBounds {
                    offset: at,
                    len: end,
                });
            };
            let id = u16::from_ne_bytes([hdr[0], hdr[1]]);
            let version = u16::from_ne_bytes([hdr[2], hdr[3]]);
            let next = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
            let (cap, cap_len) = parse_cap(data, at, id, version)?;
            caps.push(cap);
            let next = next as usize;
            if next == 0 {
                break;
            }
            // `at + cap_len` cannot overflow: the capability lies in `data`.
            if next < at + cap_len {
                return Err(CapError::BadLink { offset: at, next });
            }
            at = next;
        }
    }
    Ok(RegionInfo {
        index,
        flags,
        size,
        offset,
        caps,
    })
}

/// One capability at `at` (its header known to be in `data`), and its
/// length in bytes.
fn parse_cap(
    data: &[u8],
    at: usize,
    id: u16,
    version: u16,
) -> Result<(RegionCap, usize), CapError> {
    let truncated = CapError::Truncated {
        id,
        offset: at,
        len: data.len(),
    };
    // The body must fit before anything in it is believed.
    let fits = |len: usize| at.checked_add(len).is_some_and(|e| e <= data.len());
    match u32::from(id) {
        VFIO_REGION_INFO_CAP_SPARSE_MMAP => {
            if !fits(SPARSE_MMAP_SIZE) {
                return Err(truncated);
            }
            let nr_areas = u32_at(data, at + CAP_HEADER_SIZE).ok_or(truncated.clone())? as usize;
            let len = nr_areas
                .checked_mul(SPARSE_AREA_SIZE)
                .and_then(|n| n.checked_add(SPARSE_MMAP_SIZE))
                .filter(|&len| fits(len))
                .ok_or(truncated.clone())?;
            let areas = (0..nr_areas)
                .map(|i| {
                    let a = at + SPARSE_MMAP_SIZE + i * SPARSE_AREA_SIZE;
                    Some(SparseArea {
                        offset: u64_at(data, a)?,
                        size: u64_at(data, a + 8)?,
                    })
                })
                .collect::<Option<Vec<_>>>()
                .ok_or(truncated)?;
            Ok((RegionCap::SparseMmap(areas), len))
        }
        VFIO_REGION_INFO_CAP_TYPE => {
            let ty = u32_at(data, at + CAP_HEADER_SIZE);
            let subtype = u32_at(data, at + CAP_HEADER_SIZE + 4);
            match (ty, subtype) {
                (Some(ty), Some(subtype)) if fits(TYPE_CAP_SIZE) => {
                    Ok((RegionCap::Type { ty, subtype }, TYPE_CAP_SIZE))
                }
                _ => Err(truncated),
            }
        }
        VFIO_REGION_INFO_CAP_MSIX_MAPPABLE => Ok((RegionCap::MsixMappable, CAP_HEADER_SIZE)),
        _ => Ok((RegionCap::Unknown { id, version }, CAP_HEADER_SIZE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{
        VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
    };

    const RW_MMAP: u32 =
        VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP;

    /// A reply as vfio_pci_core lays it out: header, then the chain at 32,
    /// `argsz` the total, cap_offset 32 if there are caps.
    struct Reply(Vec<u8>);

    impl Reply {
        fn new(flags: u32, index: u32, size: u64, offset: u64) -> Reply {
            let mut b = Vec::new();
            b.extend(32u32.to_ne_bytes());
            b.extend(flags.to_ne_bytes());
            b.extend(index.to_ne_bytes());
            b.extend(0u32.to_ne_bytes());
            b.extend(size.to_ne_bytes());
            b.extend(offset.to_ne_bytes());
            Reply(b)
        }

        fn put_u32(&mut self, at: usize, v: u32) {
            self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        }

        /// Append a capability (header + body), linking the previous last
        /// one to it as vfio_info_cap_add does.
        fn cap(mut self, id: u16, version: u16, body: &[u8]) -> Reply {
            let at = self.0.len();
            let flags = u32_at(&self.0, 4).unwrap();
            self.put_u32(4, flags | VFIO_REGION_INFO_FLAG_CAPS);
            if u32_at(&self.0, 12).unwrap() == 0 {
                self.put_u32(12, at as u32);
            } else {
                let mut cur = u32_at(&self.0, 12).unwrap() as usize;
                while u32_at(&self.0, cur + 4).unwrap() != 0 {
                    cur = u32_at(&self.0, cur + 4).unwrap() as usize;
                }
                self.put_u32(cur + 4, at as u32);
            }
            self.0.extend(id.to_ne_bytes());
            self.0.extend(version.to_ne_bytes());
            self.0.extend(0u32.to_ne_bytes());
            self.0.extend(body);
            let len = self.0.len() as u32;
            self.put_u32(0, len);
            self
        }

        fn sparse(self, areas: &[(u64, u64)]) -> Reply {
            let mut body = Vec::new();
            body.extend((areas.len() as u32).to_ne_bytes());
            body.extend(0u32.to_ne_bytes());
            for &(o, s) in areas {
                body.extend(o.to_ne_bytes());
                body.extend(s.to_ne_bytes());
            }
            self.cap(VFIO_REGION_INFO_CAP_SPARSE_MMAP as u16, 1, &body)
        }

        fn ty(self, ty: u32, subtype: u32) -> Reply {
            let mut body = Vec::new();
            body.extend(ty.to_ne_bytes());
            body.extend(subtype.to_ne_bytes());
            self.cap(VFIO_REGION_INFO_CAP_TYPE as u16, 1, &body)
        }

        fn msix(self) -> Reply {
            self.cap(VFIO_REGION_INFO_CAP_MSIX_MAPPABLE as u16, 1, &[])
        }
    }

    #[test]
    fn no_caps() {
        let r = Reply::new(RW_MMAP, 0, 0x100_0000, 0);
        assert_eq!(r.0.len(), 32);
        let info = parse_region_info(&r.0).unwrap();
        assert_eq!(
            info,
            RegionInfo {
                index: 0,
                flags: RW_MMAP,
                size: 0x100_0000,
                offset: 0,
                caps: vec![],
            }
        );
    }

    #[test]
    fn sparse_mmap_with_two_areas() {
        let r = Reply::new(RW_MMAP, 2, 0x4000, 2 << 40).sparse(&[(0, 0x1000), (0x3000, 0x1000)]);
        assert_eq!(r.0.len(), 32 + 16 + 32);
        let info = parse_region_info(&r.0).unwrap();
        assert_eq!(info.index, 2);
        assert_eq!(info.offset, 2 << 40);
        assert_eq!(info.flags, RW_MMAP | VFIO_REGION_INFO_FLAG_CAPS);
        assert_eq!(
            info.caps,
            vec![RegionCap::SparseMmap(vec![
                SparseArea {
                    offset: 0,
                    size: 0x1000
                },
                SparseArea {
                    offset: 0x3000,
                    size: 0x1000
                },
            ])]
        );
        assert!(info.can_mmap(0x3000, 0x1000));
        assert!(!info.can_mmap(0x1000, 0x1000));
    }

    #[test]
    fn type_cap() {
        let r = Reply::new(1, 9, 0x2000, 9 << 40).ty((1 << 31) | 0x8086, 1);
        let info = parse_region_info(&r.0).unwrap();
        assert_eq!(
            info.caps,
            vec![RegionCap::Type {
                ty: (1 << 31) | 0x8086,
                subtype: 1
            }]
        );
    }

    #[test]
    fn msix_mappable_and_unknown() {
        let r = Reply::new(RW_MMAP, 4, 0x1000, 4 << 40)
            .msix()
            .cap(77, 3, &[0xaa; 8]);
        let info = parse_region_info(&r.0).unwrap();
        assert_eq!(
            info.caps,
            vec![
                RegionCap::MsixMappable,
                RegionCap::Unknown { id: 77, version: 3 }
            ]
        );
    }

    #[test]
    fn chain_of_three() {
        let r = Reply::new(RW_MMAP, 0, 0x10000, 0)
            .sparse(&[(0x8000, 0x8000)])
            .msix()
            .ty(1, 1);
        let info = parse_region_info(&r.0).unwrap();
        assert_eq!(
            info.caps,
            vec![
                RegionCap::SparseMmap(vec![SparseArea {
                    offset: 0x8000,
                    size: 0x8000
                }]),
                RegionCap::MsixMappable,
                RegionCap::Type { ty: 1, subtype: 1 },
            ]
        );
    }

    #[test]
    fn caps_flag_without_offset_means_no_chain() {
        // What a too-small buffer gets back: FLAG_CAPS, cap_offset 0.
        let r = Reply::new(RW_MMAP | VFIO_REGION_INFO_FLAG_CAPS, 0, 0x1000, 0);
        assert!(parse_region_info(&r.0).unwrap().caps.is_empty());
    }

    #[test]
    fn cap_offset_past_the_end() {
        let mut r = Reply::new(RW_MMAP, 0, 0x1000, 0).msix();
        r.put_u32(12, 200);
        assert_eq!(
            parse_region_info(&r.0),
            Err(CapError::OutOfBounds {
                offset: 200,
                len: 40
            })
        );
        r.put_u32(12, u32::MAX);
        assert!(matches!(
            parse_region_info(&r.0),
            Err(CapError::OutOfBounds { .. })
        ));
        r.put_u32(12, 36); // header straddles the end
        assert!(matches!(
            parse_region_info(&r.0),
            Err(CapError::OutOfBounds { .. })
        ));
        r.put_u32(12, 8);
        assert_eq!(
            parse_region_info(&r.0),
            Err(CapError::IntoHeader { offset: 8 })
        );
    }

    #[test]
    fn next_past_the_end() {
        let mut r = Reply::new(RW_MMAP, 0, 0x1000, 0).msix();
        r.put_u32(36, 4096);
        assert!(matches!(
            parse_region_info(&r.0),
            Err(CapError::OutOfBounds { offset: 4096, .. })
        ));
    }

    #[test]
    fn truncated_sparse_area_list() {
        let mut r = Reply::new(RW_MMAP, 0, 0x1000, 0).sparse(&[(0, 0x1000), (0x2000, 0x1000)]);
        r.0.truncate(r.0.len() - 8);
        let len = r.0.len() as u32;
        r.put_u32(0, len);
        assert_eq!(
            parse_region_info(&r.0),
            Err(CapError::Truncated {
                id: 1,
                offset: 32,
                len: len as usize
            })
        );
    }

    #[test]
    fn argsz_limits_the_reply() {
        // The bytes are there, but argsz says the chain was not written.
        let mut r = Reply::new(RW_MMAP, 0, 0x1000, 0).sparse(&[(0, 0x1000)]);
        r.put_u32(0, 40);
        assert!(matches!(
            parse_region_info(&r.0),
            Err(CapError::Truncated { .. })
        ));
        r.put_u32(0, 16);
        assert_eq!(parse_region_info(&r.0), Err(CapError::Short { len: 16 }));
    }

    #[test]
    fn huge_nr_areas() {
        for nr in [u32::MAX, 1 << 28, 3] {
            let mut r = Reply::new(RW_MMAP, 0, 0x1000, 0).sparse(&[(0, 0x1000)]);
            r.put_u32(40, nr);
            assert!(matches!(
                parse_region_info(&r.0),
                Err(CapError::Truncated { id: 1, .. })
            ));
        }
    }

    #[test]
    fn truncated_type_cap() {
        let mut r = Reply::new(1, 9, 0x2000, 0).ty(1, 1);
        r.0.truncate(r.0.len() - 4);
        let len = r.0.len() as u32;
        r.put_u32(0, len);
        assert!(matches!(
            parse_region_info(&r.0),
            Err(CapError::Truncated { id: 2, .. })
        ));
    }

    #[test]
    fn loops_end_in_an_error() {
        // A capability linking to itself.
        let mut r = Reply::new(RW_MMAP, 0, 0x1000, 0).msix();
        r.put_u32(36, 32);
        assert_eq!(
            parse_region_info(&r.0),
            Err(CapError::BadLink {
                offset: 32,
                next: 32
            })
        );
        // Two linking to each other.
        let mut r = Reply::new(RW_MMAP, 0, 0x1000, 0).msix().msix();
        r.put_u32(44, 32);
        assert_eq!(
            parse_region_info(&r.0),
            Err(CapError::BadLink {
                offset: 40,
                next: 32
            })
        );
        // Into the body of the current one.
        let mut r = Reply::new(RW_MMAP, 0, 0x1000, 0).ty(1, 1).msix();
        r.put_u32(36, 40);
        assert_eq!(
            parse_region_info(&r.0),
            Err(CapError::BadLink {
                offset: 32,
                next: 40
            })
        );
    }

    #[test]
    fn short_replies() {
        assert_eq!(parse_region_info(&[]), Err(CapError::Short { len: 0 }));
        assert_eq!(
            parse_region_info(&[0xff; 31]),
            Err(CapError::Short { len: 31 })
        );
        assert!(retry_size(&[0; 8]).is_err());
    }

    #[test]
    fn retry_decision() {
        let mut r = Reply::new(RW_MMAP, 0, 0x1000, 0);
        // No caps: never retry.
        assert_eq!(retry_size(&r.0), Ok(None));
        // Caps that did not fit: argsz raised, cap_offset 0.
        r.put_u32(4, RW_MMAP | VFIO_REGION_INFO_FLAG_CAPS);
        r.put_u32(0, 80);
        assert_eq!(retry_size(&r.0), Ok(Some(80)));
        // A bigger argsz without FLAG_CAPS is not a request to retry.
        r.put_u32(4, RW_MMAP);
        assert_eq!(retry_size(&r.0), Ok(None));
        // Caps that fitted.
        let r = Reply::new(RW_MMAP, 0, 0x1000, 0).msix();
        assert_eq!(retry_size(&r.0), Ok(None));
        // An absurd argsz.
        let mut r = Reply::new(RW_MMAP | VFIO_REGION_INFO_FLAG_CAPS, 0, 0x1000, 0);
        r.put_u32(0, u32::MAX);
        assert!(matches!(retry_size(&r.0), Err(CapError::TooLarge { .. })));
    }

    #[test]
    fn request_layout() {
        let req = region_info_request(7, 80);
        assert_eq!(req.len(), 80);
        assert_eq!(u32_at(&req, 0), Some(80));
        assert_eq!(u32_at(&req, 8), Some(7));
        assert!(req[12..].iter().all(|&b| b == 0));
    }
}
