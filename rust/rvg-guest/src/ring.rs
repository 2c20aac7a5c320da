//! Command streams: building them from `rvg_model::cmd::Command`s, and
//! placing them in the ring, which wraps at its end (a command may
//! straddle it: the hardware reads dwords modulo the ring size).

use rvg_model::cmd::Command;

/// Where ring dwords go: the ring's memory, as byte offsets into the ring.
pub trait DwordSink {
    fn write_dword(&mut self, offset: u32, value: u32);
}

impl DwordSink for Vec<u32> {
    fn write_dword(&mut self, offset: u32, value: u32) {
        self[offset as usize / 4] = value;
    }
}

/// Commands encoded back to back.
pub fn encode(cmds: &[Command]) -> Vec<u32> {
    cmds.iter().flat_map(Command::encode).collect()
}

/// Our side of the ring: the tail we write and what wrapping happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    size: u32,
    tail: u32,
    wraps: u32,
    straddles: u32,
}

impl Ring {
    pub fn new(size: u32) -> Ring {
        assert!(size.is_power_of_two() && size >= 4096, "ring size {size}");
        Ring {
            size,
            tail: 0,
            wraps: 0,
            straddles: 0,
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn tail(&self) -> u32 {
        self.tail
    }

    /// Times the tail went past the end and back to the start.
    pub fn wraps(&self) -> u32 {
        self.wraps
    }

    /// Commands that began before the end and continued at the start.
    pub fn straddles(&self) -> u32 {
        self.straddles
    }

    /// Start over at offset 0 (after the engine's RESET and a tail of 0).
    pub fn restart(&mut self) {
        self.tail = 0;
    }

    /// Bytes we may write without catching up with `head`: one dword is
    /// kept free so a full ring never looks empty (head == tail).
    pub fn free_bytes(&self, head: u32) -> u32 {
        let used = self.tail.wrapping_sub(head) & (self.size - 1);
        self.size - 4 - used
    }

    /// Write one command at the tail, wrapping; the caller checked there
    /// is room. The tail register is not touched here.
    pub fn push(&mut self, sink: &mut impl DwordSink, command: &[u32]) {
        let start = self.tail;
        for &dw in command {
            sink.write_dword(self.tail, dw);
            self.tail = (self.tail + 4) & (self.size - 1);
            if self.tail == 0 {
                self.wraps += 1;
            }
        }
        let ends_before_size = start + 4 * command.len() as u32 <= self.size;
        if !ends_before_size {
            self.straddles += 1;
        }
    }
}

/// The ring-wrap exercise: submissions of 2 NOOPs, `WRAP_STORES` stores
/// and a fence, 768 bytes each. Started on a 16-byte boundary, every
/// submission starts on one and its stores sit 8 bytes off it, so the
/// ring's end falls inside a store unless it falls exactly between two
/// submissions; with a ring a multiple of 256 but not of 768 bytes that
/// happens on at most one wrap in three.
pub const WRAP_STORES: u32 = 47;
pub const WRAP_SUBMISSION_BYTES: u32 = 768;

/// NOOPs that bring `tail` to a 16-byte boundary.
pub fn pad_to_16(tail: u32) -> usize {
    ((16 - tail % 16) % 16 / 4) as usize
}

/// Submission `n` of the wrap exercise, its fence not included: `pad`
/// NOOPs, 2 NOOPs, then `WRAP_STORES` stores. Store `i` of the whole
/// exercise writes `first_value + i` to dword slot `i % slots`; addresses
/// are offsets in the slots' page (relocate them by its graphics address).
pub fn wrap_submission(n: u32, pad: usize, slots: u32, first_value: u32) -> Vec<Command> {
    let mut cmds = vec![Command::Noop; pad + 2];
    cmds.extend((0..WRAP_STORES).map(|k| {
        let i = n * WRAP_STORES + k;
        Command::StoreDw {
            addr: 4 * u64::from(i % slots),
            value: first_value.wrapping_add(i),
        }
    }));
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvg_model::cmd::decode;

    struct Discard;

    impl DwordSink for Discard {
        fn write_dword(&mut self, _: u32, _: u32) {}
    }

    #[test]
    fn the_wrap_exercise_wraps_and_straddles_from_any_start() {
        let fence = Command::Fence {
            seqno: 1,
            interrupt: false,
        }
        .encode();
        let plain: usize = encode(&wrap_submission(0, 0, 256, 0)).len() + fence.len();
        assert_eq!(4 * plain as u32, WRAP_SUBMISSION_BYTES);
        let size: u32 = 16384;
        let submissions = (4 * size).div_ceil(WRAP_SUBMISSION_BYTES);
        // Stores differ only in operands: one submission stands for all.
        let stream: Vec<Vec<u32>> = wrap_submission(0, 0, 256, 0)
            .iter()
            .map(Command::encode)
            .chain(std::iter::once(fence))
            .collect();
        for start in (0..size).step_by(4) {
            let mut ring = Ring::new(size);
            ring.tail = start;
            for _ in 0..pad_to_16(start) {
                ring.push(&mut Discard, &Command::Noop.encode());
            }
            for _ in 0..submissions {
                for cmd in &stream {
                    ring.push(&mut Discard, cmd);
                }
            }
            assert!(
                ring.wraps() >= 3 && ring.straddles() >= 1,
                "start {start}: {ring:?}"
            );
        }
    }

    #[test]
    fn wrap_submissions_number_their_stores() {
        let s = wrap_submission(2, 1, 10, 100);
        assert_eq!(s.len(), 3 + WRAP_STORES as usize);
        assert_eq!(s[2], Command::Noop);
        // Store 94 of the exercise: slot 4, value 194.
        assert_eq!(
            s[3],
            Command::StoreDw {
                addr: 16,
                value: 194
            }
        );
    }

    #[test]
    fn pushes_wrap_and_decode_in_ring_order() {
        let mut mem = vec![0u32; 1024];
        let mut ring = Ring::new(4096);
        let store = Command::StoreDw {
            addr: 0x1000_0000,
            value: 7,
        };
        let fill = Command::FillRect {
            dst: 0x2000_0000,
            pitch: 4096,
            width: 10,
            height: 20,
            color: 0xff00ff,
        };
        // 4092 bytes from the start: a FILL (28 bytes) straddles the end.
        ring.tail = 4096 - 8;
        let head = ring.tail;
        assert_eq!(ring.free_bytes(head), 4092);
        ring.push(&mut mem, &fill.encode());
        ring.push(&mut mem, &store.encode());
        assert_eq!(ring.tail(), 20 + 16);
        assert_eq!((ring.wraps(), ring.straddles()), (1, 1));
        // Read back the way the engine does: dwords modulo the size.
        let from_head: Vec<u32> = (0..(7 + 4))
            .map(|i| mem[((head / 4 + i) % 1024) as usize])
            .collect();
        assert_eq!(decode(&from_head).unwrap(), (fill, 7));
        assert_eq!(decode(&from_head[7..]).unwrap(), (store, 4));
        assert_eq!(ring.free_bytes(head), 4096 - 4 - 44);
    }

    #[test]
    fn ending_exactly_at_the_end_is_a_wrap_not_a_straddle() {
        let mut mem = vec![0u32; 1024];
        let mut ring = Ring::new(4096);
        ring.tail = 4096 - 16;
        ring.push(&mut mem, &Command::StoreDw { addr: 0, value: 1 }.encode());
        assert_eq!((ring.tail(), ring.wraps(), ring.straddles()), (0, 1, 0));
    }

    #[test]
    fn free_space_accounts_for_wrapped_tails() {
        let mut ring = Ring::new(4096);
        assert_eq!(ring.free_bytes(0), 4092);
        ring.tail = 100;
        assert_eq!(ring.free_bytes(100), 4092);
        assert_eq!(ring.free_bytes(0), 3992);
        ring.tail = 40;
        assert_eq!(ring.free_bytes(4000), 4092 - 136);
        ring.restart();
        assert_eq!(ring.tail(), 0);
    }

    #[test]
    fn encode_concatenates() {
        let cmds = [
            Command::Noop,
            Command::Fence {
                seqno: 3,
                interrupt: false,
            },
            Command::BatchEnd,
        ];
        assert_eq!(encode(&cmds), vec![0, 0x0200_0000, 3, 0x0400_0000]);
    }
}
