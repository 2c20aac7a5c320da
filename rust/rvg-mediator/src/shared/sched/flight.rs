//! What the mediator's physical ring holds: the chunks written into it, the
//! fences whose completion is progress for a context, and where each command
//! came from in its guest's ring; and, when a preemption stops the engine
//! inside them, what is left of them for their context to run later. Pure
//! bookkeeping: the scheduler thread does the writing.

use std::collections::VecDeque;

use rvg_model::cmd::{self, Command};
use rvg_model::irq::IntSource;

use super::core::Ctx;
use super::{CtxId, Progress};

/// Guest commands per chunk at most: the unit of preemption.
pub(crate) const CHUNK_COMMANDS: usize = 32;
/// A chunk also ends once its commands touch this much memory (fewer
/// than 32 long commands), at least one command: a slice then overruns by
/// at most two chunks of about a third of a millisecond of the soft
/// engine, or two single commands however long.
pub(crate) const CHUNK_BYTES: u64 = 8 << 20;
/// Chunks in the ring at once: the engine has the next while the scheduler
/// learns about the last.
pub(crate) const CHUNKS_IN_FLIGHT: usize = 2;

/// A fence in the ring and what its completion means.
#[derive(Clone, Debug)]
struct Mark {
    /// Its position: dwords written into the ring before it.
    at: u64,
    tag: u32,
    ctx: CtxId,
    progress: Progress,
    /// The fence that closes a chunk.
    closes_chunk: bool,
}

/// A chunk taken from a context, ready for the ring.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// Where it goes: dwords written into the ring before it.
    pub at: u64,
    pub dwords: Vec<u32>,
    /// Rows of its first command a preemption left done: `RING_RESUME`
    /// before the tail moves (0: none).
    pub resume: u32,
}

/// What a preemption left of a context's work in the ring: its commands
/// from the one the engine stopped on, with their fences and origins, to be
/// written into the ring again when the context's turn comes.
#[derive(Debug)]
pub(crate) struct Saved {
    dwords: Vec<u32>,
    /// Marks with `at` relative to the first dword.
    marks: Vec<Mark>,
    /// `(relative position, guest head)`, the first at 0.
    origins: Vec<(u64, u32)>,
    resume: u32,
}

/// Progress for one context, to hand to its sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub ctx: CtxId,
    pub progress: Progress,
}

/// The ring's contents.
#[derive(Debug)]
pub(crate) struct Flight {
    /// Dwords written since the ring was last reset; the tail is this
    /// modulo the ring size.
    written: u64,
    next_tag: u32,
    marks: VecDeque<Mark>,
    /// `(position, guest head)` of the commands in the ring, oldest first.
    origins: VecDeque<(u64, u32)>,
    /// The dwords in the ring from position `kept_from` to `written`: what
    /// a preemption may have to take out again.
    kept: VecDeque<u32>,
    kept_from: u64,
    chunks: usize,
}

impl Flight {
    pub fn new() -> Flight {
        Flight {
            written: 0,
            next_tag: 1,
            marks: VecDeque::new(),
            origins: VecDeque::new(),
            kept: VecDeque::new(),
            kept_from: 0,
            chunks: 0,
        }
    }

    /// Nothing in the ring that the scheduler waits for.
    pub fn idle(&self) -> bool {
        self.marks.is_empty()
    }

    /// Whether the engine may be given another chunk.
    pub fn has_room(&self) -> bool {
        self.chunks < CHUNKS_IN_FLIGHT
    }

    /// The engine was reset: the ring is empty and starts over at offset 0.
    /// Tags go on counting, so a late completion can never match new work.
    pub fn clear(&mut self) {
        self.written = 0;
        self.chunks = 0;
        self.marks.clear();
        self.origins.clear();
        self.kept.clear();
        self.kept_from = 0;
    }

    /// Take up to a chunk of `ctx`'s front work; stamp its fences with tags
    /// and close it with a fence of its own.
    pub fn take_chunk(&mut self, id: CtxId, ctx: &mut Ctx) -> Chunk {
        let work = ctx.queue.front().expect("a runnable context has work");
        let start = ctx.offset;
        let mut end = start;
        let mut bytes = 0;
        for _ in 0..CHUNK_COMMANDS {
            if end >= work.dwords.len() || bytes >= CHUNK_BYTES {
                break;
            }
            bytes += cmd::bytes_touched(&work.dwords[end..]);
            let info = cmd::header_info(work.dwords[end]);
            end += info.expect("the scanner emits known commands").len;
        }
        let at = self.written;
        let mut dwords = work.dwords[start..end].to_vec();
        self.origins.push_back((at, work.head_at(start)));
        for c in work
            .cmds
            .iter()
            .filter(|c| (start + 1..end).contains(&c.at))
        {
            self.origins.push_back((at + (c.at - start) as u64, c.head));
        }
        for fence in work.fences.iter().filter(|m| (start..end).contains(&m.at)) {
            let tag = self.next_tag();
            dwords[fence.at - start + 1] = tag;
            let raise = if fence.interrupt {
                IntSource::FENCE
            } else {
                IntSource::empty()
            };
            self.marks.push_back(Mark {
                at: at + (fence.at - start) as u64,
                tag,
                ctx: id,
                progress: Progress {
                    generation: ctx.generation,
                    head: Some(work.head_at(fence.at + 2)),
                    seqno: Some(fence.seqno),
                    raise,
                    error: None,
                },
                closes_chunk: false,
            });
        }
        let tag = self.next_tag();
        let closing = at + dwords.len() as u64;
        dwords.extend(
            Command::Fence {
                seqno: tag,
                interrupt: true,
            }
            .encode(),
        );
        self.marks.push_back(Mark {
            at: closing,
            tag,
            ctx: id,
            progress: Progress {
                generation: ctx.generation,
                head: Some(work.head_at(end)),
                ..Progress::default()
            },
            closes_chunk: true,
        });
        ctx.stats.submitted += (end - start) as u64;
        if end >= work.dwords.len() {
            ctx.queue.pop_front();
            ctx.offset = 0;
        } else {
            ctx.offset = end;
        }
        self.keep(&dwords);
        self.chunks += 1;
        Chunk {
            at,
            dwords,
            resume: 0,
        }
    }

    /// Account for `dwords` written at the ring's write position.
    fn keep(&mut self, dwords: &[u32]) {
        if self.kept.is_empty() {
            self.kept_from = self.written;
        }
        self.kept.extend(dwords);
        self.written += dwords.len() as u64;
    }

    /// The engine stopped for a preemption with head on ring offset `head`,
    /// `resume` rows into that command: take out what is left (everything
    /// from that command on; the marks before it have retired) and empty
    /// the ring. None if nothing is left.
    pub fn take_remainder(&mut self, head: u32, ring_size: u32, resume: u32) -> Option<Saved> {
        let from = self.position_of(head, ring_size);
        let guest_head = self.guest_head_at(head, ring_size);
        let skip = from.saturating_sub(self.kept_from) as usize;
        let saved = (from < self.written).then(|| Saved {
            dwords: self.kept.iter().skip(skip).copied().collect(),
            marks: (self.marks.iter())
                .filter(|m| m.at >= from)
                .map(|m| Mark {
                    at: m.at - from,
                    ..m.clone()
                })
                .collect(),
            origins: std::iter::once((0, guest_head))
                .chain(
                    (self.origins.iter())
                        .filter(|&&(p, _)| p > from)
                        .map(|&(p, h)| (p - from, h)),
                )
                .collect(),
            resume,
        });
        self.clear();
        saved
    }

    /// Put what a preemption took out back into the ring at the write
    /// position, its fences stamped with new tags: the engine's `SEQNO`
    /// has moved past the old ones meanwhile.
    pub fn restore(&mut self, saved: Saved) -> Chunk {
        let at = self.written;
        let mut dwords = saved.dwords;
        for mut m in saved.marks {
            m.tag = self.next_tag();
            dwords[m.at as usize + 1] = m.tag;
            m.at += at;
            self.chunks += usize::from(m.closes_chunk);
            self.marks.push_back(m);
        }
        (self.origins).extend(saved.origins.into_iter().map(|(p, h)| (at + p, h)));
        self.keep(&dwords);
        Chunk {
            at,
            dwords,
            resume: saved.resume,
        }
    }

    /// Retire every mark the engine's `seqno` has passed, oldest first.
    pub fn retire(&mut self, seqno: u32) -> Vec<Delivery> {
        let mut done = Vec::new();
        while let Some(m) = self.marks.front() {
            if (seqno.wrapping_sub(m.tag) as i32) < 0 {
                break;
            }
            let m = self.marks.pop_front().expect("front exists");
            if m.closes_chunk {
                self.chunks -= 1;
            }
            done.push(Delivery {
                ctx: m.ctx,
                progress: m.progress,
            });
        }
        done
    }

    /// The guest head of the command at physical ring offset `head`.
    pub fn guest_head_at(&self, head: u32, ring_size: u32) -> u32 {
        let position = self.position_of(head, ring_size);
        self.origins
            .iter()
            .take_while(|&&(p, _)| p <= position)
            .last()
            .map_or(0, |&(_, h)| h)
    }

    /// Forget where commands before ring offset `head` came from: they ran.
    pub fn forget_before(&mut self, head: u32, ring_size: u32) {
        if self.idle() {
            self.origins.clear();
            self.kept.clear();
            return;
        }
        let completed = self.position_of(head, ring_size);
        while self.origins.len() > 1 && self.origins[1].0 <= completed {
            self.origins.pop_front();
        }
        let ran = completed
            .saturating_sub(self.kept_from)
            .min(self.kept.len() as u64);
        self.kept.drain(..ran as usize);
        self.kept_from += ran;
    }

    /// The write position (dwords since the ring was reset) of ring offset
    /// `head`, among what is in the ring.
    fn position_of(&self, head: u32, ring_size: u32) -> u64 {
        let size = u64::from(ring_size);
        let oldest = self.origins.front().map_or(self.written, |&(p, _)| p);
        let delta = (u64::from(head) + size - (oldest * 4) % size) % size;
        (oldest + delta / 4).min(self.written)
    }

    fn next_tag(&mut self) -> u32 {
        let t = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        t
    }
}
