use super::*;

fn all_kinds() -> Vec<Command> {
    vec![
        Command::Noop,
        Command::StoreDw {
            addr: 0x1_2345_6788,
            value: 0xdead_beef,
        },
        Command::Fence {
            seqno: 7,
            interrupt: true,
        },
        Command::Fence {
            seqno: 8,
            interrupt: false,
        },
        Command::BatchStart {
            addr: 0x4000,
            len: 64,
        },
        Command::BatchEnd,
        Command::FillRect {
            dst: 0x10_0000,
            pitch: 4096,
            width: 1024,
            height: 768,
            color: 0xff00ff,
        },
        Command::CopyRect {
            src: 0x1000,
            src_pitch: 64,
            dst: 0x1010,
            dst_pitch: 64,
            width: 8,
            height: 8,
        },
        Command::LoadReg {
            reg: 0x18,
            value: 3,
        },
    ]
}

#[test]
fn every_command_round_trips() {
    let stream: Vec<u32> = all_kinds().iter().flat_map(|c| c.encode()).collect();
    let mut at = 0;
    for expect in all_kinds() {
        let (cmd, len) = decode(&stream[at..]).unwrap();
        assert_eq!(cmd, expect);
        assert_eq!(len, expect.encode().len());
        at += len;
    }
    assert_eq!(at, stream.len());
}

#[test]
fn bad_streams_are_refused() {
    assert_eq!(
        decode(&[]),
        Err(DecodeError::Truncated { need: 1, have: 0 })
    );
    assert_eq!(
        decode(&[0x7f00_0000]),
        Err(DecodeError::UnknownOpcode(0x7f))
    );
    assert_eq!(decode(&[0x0000_0001]), Err(DecodeError::ReservedBits(1)));
    // A flag NOOP does not define.
    assert_eq!(
        decode(&[0x0001_0000]),
        Err(DecodeError::ReservedBits(0x0001_0000))
    );
    // FENCE defines only bit 0.
    assert_eq!(
        decode(&[0x0202_0000, 1]),
        Err(DecodeError::ReservedBits(0x0202_0000))
    );
    let fill = Command::FillRect {
        dst: 0,
        pitch: 4,
        width: 1,
        height: 1,
        color: 0,
    }
    .encode();
    assert_eq!(
        decode(&fill[..6]),
        Err(DecodeError::Truncated { need: 7, have: 6 })
    );
}

#[test]
fn every_opcode_byte_either_decodes_or_is_refused() {
    for op in 0..=255u8 {
        let mut dw = vec![u32::from(op) << 24];
        dw.resize(16, 0);
        match decode(&dw) {
            Ok((_, len)) => assert_eq!(Some(len), length(op)),
            Err(e) => assert_eq!(e, DecodeError::UnknownOpcode(op)),
        }
    }
}

#[test]
fn rect_spans() {
    assert_eq!(
        rect_span(0x1000, 4096, 1024, 2),
        Some((0x1000, 4096 + 4096))
    );
    assert_eq!(rect_span(0, 16, 8, 2), None, "pitch smaller than a row");
    assert_eq!(
        rect_span(0, 16, 8, 1),
        Some((0, 32)),
        "one row needs no pitch"
    );
    assert_eq!(rect_span(u64::MAX - 8, 4, 4, 1), None);
    assert_eq!(
        rect_span(0, u32::MAX, 1, u32::MAX).map(|s| s.1),
        Some(u64::from(u32::MAX) * u64::from(u32::MAX - 1) + 4)
    );
    assert_eq!(rect_span(5, 4, 0, 9), Some((5, 0)));
}

#[test]
fn the_table_describes_every_command() {
    for (i, row) in COMMANDS.iter().enumerate() {
        assert!(
            COMMANDS[..i].iter().all(|r| r.opcode != row.opcode),
            "{} listed twice",
            row.name
        );
        assert!(
            row.addrs.iter().all(|r| r.at() + 1 < row.len),
            "{}",
            row.name
        );
    }
    for c in all_kinds() {
        let dw = c.encode();
        assert_eq!(dw.len(), c.info().len, "{c:?}");
        assert_eq!(opcode_of(dw[0]), c.opcode());
        assert_eq!(header_info(dw[0]), Some(c.info()));
    }
    let privileged: Vec<_> = COMMANDS.iter().filter(|c| c.privileged).collect();
    assert_eq!(privileged, [info(opcode::LOAD_REG).unwrap()]);
}

#[test]
fn relocation_moves_exactly_the_graphics_addresses() {
    let by = 0x40_0000_0000;
    let moved: Vec<Command> = all_kinds().into_iter().map(|c| c.relocated(by)).collect();
    let want = [
        Command::Noop,
        Command::StoreDw {
            addr: 0x1_2345_6788 + by,
            value: 0xdead_beef,
        },
        Command::Fence {
            seqno: 7,
            interrupt: true,
        },
        Command::Fence {
            seqno: 8,
            interrupt: false,
        },
        Command::BatchStart {
            addr: 0x4000 + by,
            len: 64,
        },
        Command::BatchEnd,
        Command::FillRect {
            dst: 0x10_0000 + by,
            pitch: 4096,
            width: 1024,
            height: 768,
            color: 0xff00ff,
        },
        Command::CopyRect {
            src: 0x1000 + by,
            src_pitch: 64,
            dst: 0x1010 + by,
            dst_pitch: 64,
            width: 8,
            height: 8,
        },
        Command::LoadReg {
            reg: 0x18,
            value: 3,
        },
    ];
    assert_eq!(moved, want);
    let wrapped = Command::StoreDw {
        addr: u64::MAX - 3,
        value: 0,
    }
    .relocated(8);
    assert_eq!(wrapped, Command::StoreDw { addr: 4, value: 0 });
}

#[test]
fn accepted_dwords_are_exactly_what_encoding_gives_back() {
    // The scanner copies a guest command's dwords rather than re-encoding
    // it: the two must agree for everything `decode` accepts.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u32
    };
    for row in COMMANDS {
        for flags in 0..=row.flags {
            if flags & !row.flags != 0 {
                continue;
            }
            for _ in 0..64 {
                let mut dw: Vec<u32> = (0..row.len).map(|_| next()).collect();
                dw[0] = header(row.opcode, flags);
                let (c, len) = decode(&dw).unwrap();
                assert_eq!((c.encode(), len), (dw, row.len), "{}", row.name);
            }
        }
    }
}

#[test]
fn bytes_touched_counts_rectangles_and_stores() {
    let fill = Command::FillRect {
        dst: 0x1000,
        pitch: 4096,
        width: 1024,
        height: 16,
        color: 0,
    };
    assert_eq!(bytes_touched(&fill.encode()), 1024 * 16 * 4);
    let copy = Command::CopyRect {
        src: 0,
        src_pitch: 256,
        dst: 0x8000,
        dst_pitch: 256,
        width: 64,
        height: 2,
    };
    // Read and written.
    assert_eq!(bytes_touched(&copy.encode()), 2 * 64 * 2 * 4);
    let store = Command::StoreDw { addr: 8, value: 1 };
    assert_eq!(bytes_touched(&store.encode()), 4);
    assert_eq!(bytes_touched(&Command::Noop.encode()), 0);
    // Cut short or unknown: nothing, no panic.
    assert_eq!(bytes_touched(&fill.encode()[..5]), 0);
    assert_eq!(bytes_touched(&[0xff00_0000]), 0);
    assert_eq!(bytes_touched(&[]), 0);
}
