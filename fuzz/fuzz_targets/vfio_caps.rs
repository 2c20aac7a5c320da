//! The VFIO region-info reply parser on arbitrary bytes: it never panics
//! and never reads past the reply (the input is an exactly sized copy, so
//! a read past it would be an out-of-bounds panic); what it accepts is
//! consistent with the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvg_vfio::contract::RegionCap;
use rvg_vfio::kernel::parse_region_info;

fuzz_target!(|data: &[u8]| {
    let reply = data.to_vec();
    if let Ok(info) = parse_region_info(&reply) {
        let argsz = u32::from_ne_bytes(reply[0..4].try_into().unwrap()) as usize;
        let len = reply.len().min(argsz);
        assert!(len >= 32, "a header of 32 bytes");
        assert_eq!(
            info.flags,
            u32::from_ne_bytes(reply[4..8].try_into().unwrap())
        );
        assert_eq!(
            info.index,
            u32::from_ne_bytes(reply[8..12].try_into().unwrap())
        );
        // Each capability takes at least its 8-byte header, laid forward
        // after the fixed header.
        assert!(info.caps.len() <= (len - 32) / 8);
        let areas: usize = info
            .caps
            .iter()
            .map(|c| match c {
                RegionCap::SparseMmap(a) => a.len(),
                _ => 0,
            })
            .sum();
        assert!(areas * 16 <= len);
    }
});
