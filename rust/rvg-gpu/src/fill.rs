//! Fills of memory others access concurrently (VRAM the guest maps): 32-bit
//! patterns stored through a raw pointer, never through a Rust reference.

/// From this many bytes a fill takes the string-store path (`rep stosd`,
/// fast strings): a row of a rectangle is usually longer, and a loop of
/// single stores runs at a quarter of memset's speed there.
const LARGE_FILL_BYTES: usize = 256;

/// Store `value` to the `count` dwords from `dst` upwards.
///
/// # Safety
///
/// `dst` must be 4-aligned and valid for writes of `count` dwords. The
/// memory may be accessed concurrently by code outside Rust (a guest
/// through its BAR mapping), but no Rust reference to it may exist.
pub(crate) unsafe fn fill32(dst: *mut u32, count: usize, value: u32) {
    #[cfg(target_arch = "x86_64")]
    if count * 4 >= LARGE_FILL_BYTES {
        // SAFETY: `rep stosd` stores EAX to RCX dwords from RDI upwards (the
        // direction flag is clear per the ABI): exactly the `count` dwords
        // from `dst` the caller vouches for. Fast-string stores write whole
        // lines without reading them first.
        unsafe {
            std::arch::asm!(
                "rep stosd",
                inout("rcx") count => _,
                inout("rdi") dst => _,
                in("eax") value,
                options(nostack, preserves_flags)
            );
        }
        return;
    }
    for i in 0..count {
        // SAFETY: dword `i < count` from `dst`: inside the range the caller
        // vouches for, and 4-aligned.
        unsafe { dst.add(i).write(value) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_fills_store_exactly_their_dwords() {
        for count in [0, 1, 7, LARGE_FILL_BYTES / 4 + 3] {
            let mut buf = vec![0u32; count + 2];
            // SAFETY: `count` dwords from index 1 lie inside `buf`.
            unsafe { fill32(buf.as_mut_ptr().add(1), count, 0xa1b2_c3d4) };
            assert_eq!(buf[0], 0);
            assert_eq!(buf[count + 1], 0);
            assert!(buf[1..=count].iter().all(|&w| w == 0xa1b2_c3d4));
        }
    }
}
