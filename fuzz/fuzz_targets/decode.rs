//! `cmd::decode` on arbitrary dwords: it never panics; whatever it accepts
//! encodes back to the very dwords it came from, and relocation there and
//! back changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvg_model::cmd::{self, DecodeError};

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes: a relocation distance; the rest: the stream.
    let (by, stream) = match data.split_first_chunk::<8>() {
        Some((by, rest)) => (u64::from_le_bytes(*by), rest),
        None => (0, data),
    };
    let dw = cmd::dwords(stream);
    let mut at = 0;
    while at <= dw.len() {
        match cmd::decode(&dw[at..]) {
            Ok((c, len)) => {
                let info = c.info();
                assert_eq!(len, info.len);
                assert_eq!(cmd::opcode_of(dw[at]), info.opcode);
                assert_eq!(c.encode(), &dw[at..at + len], "{c:?} encodes back");
                assert_eq!(cmd::decode(&c.encode()), Ok((c, len)));
                assert_eq!(c.relocated(by).relocated(by.wrapping_neg()), c);
                let mut moved = dw[at..at + len].to_vec();
                cmd::relocate(&mut moved, by);
                assert_eq!(cmd::decode(&moved), Ok((c.relocated(by), len)));
                at += len;
            }
            Err(DecodeError::Truncated { need, have }) => {
                assert!(need > have && have == dw.len() - at);
                break;
            }
            Err(DecodeError::UnknownOpcode(op)) => {
                assert!(cmd::info(op).is_none());
                break;
            }
            Err(DecodeError::ReservedBits(h)) => {
                assert_eq!(h, dw[at]);
                break;
            }
        }
    }
});
