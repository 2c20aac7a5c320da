//! What the mediator's physical ring holds: the chunks written into it, the
//! fences whose completion is progress for a context, and where each command
//! came from in its guest's ring. Pure bookkeeping: the scheduler thread
//! does the writing.

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
#[derive(Debug)]
struct Mark {
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
    chunks: usize,
}

impl Flight {
    pub fn new() -> Flight {
        Flight {
            written: 0,
            next_tag: 1,
            marks: VecDeque::new(),
            origins: VecDeque::new(),
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
        dwords.extend(
            Command::Fence {
                seqno: tag,
                interrupt: true,
            }
            .encode(),
        );
        self.marks.push_back(Mark {
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
        self.written += dwords.len() as u64;
        self.chunks += 1;
        Chunk { at, dwords }
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
            return;
        }
        let completed = self.position_of(head, ring_size);
        while self.origins.len() > 1 && self.origins[1].0 <= completed {
            self.origins.pop_front();
        }
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
