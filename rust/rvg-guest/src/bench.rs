//! rvg-bench: the cost of a trapped register access, from guest user space,
//! on the RVG-1 vGPU against QEMU's `edu` device in the same guest.
//!
//! Runs as root in the demo guest (`guest/bench.py` boots it with
//! `-device rust-vgpu -device edu`). It maps the vGPU's BAR2 and edu's
//! BAR0 through sysfs (`resource2`, `resource0`; bochs-drm holds BAR2, the
//! guest's `iomem=relaxed` lets the mapping through) and times loops of N
//! accesses with the monotonic clock (`Instant`, `clock_gettime(CLOCK_MONOTONIC)`):
//!
//! - `vgpu-read`: 4-byte read of the global `ID` register;
//! - `vgpu-write`: 4-byte write to the low half of `SCRATCH`;
//! - `gtt-write`: 8-byte write to the vGPU's last GTT entry, alternately
//!   the first page of its VRAM (`LOCAL | VALID`) and 0: every write
//!   changes the entry, so the whole shadow path runs (validation, the
//!   physical entry written); nothing is pinned, and the entry ends at 0;
//! - `doorbell`: 4-byte write of 0 to `RING_TAIL` with the engine disabled
//!   (as after reset): the register decode and the submission check run,
//!   nothing is scanned (an enabled engine with head == tail takes the same
//!   early return);
//! - `edu-read`, `edu-write`: edu's `ID` (0x00) and its liveness register
//!   (0x04: stores the inverse of what is written), 4 bytes;
//! - `ram-read`: the same loop on a page of guest RAM: the loop's own cost.
//!
//! Each case runs in two placements of its loop. `last`: the access is the
//! last instruction of its translation block, because it ends exactly at a
//! 4 KiB page boundary (the block stops there, the loop's branch is on the
//! next page); QEMU's TCG lets only the last instruction of a block touch
//! MMIO directly, so this is the device's cost plus two unchained block
//! transitions. `inline`: the plain `sub; mov; jnz` loop inside one
//! 256-byte-aligned block, where every MMIO access first costs an
//! `io_recompile` (what an ordinary driver loop pays).
//!
//! Rounds interleave all cases, the order rotated each round. Output, one
//! line per round and placement (ns per access):
//!
//! `rvg-bench: round R PLACEMENT CASE NS CASE NS ...`
//!
//! then `rvg-bench: done` (exit 0) or `rvg-bench: FAIL reason` (exit 1).
//! Usage: `rvg-bench [--rounds R] [--accesses N]`.

#[allow(dead_code)]
#[path = "bar.rs"]
mod bar;
#[allow(dead_code)]
#[path = "error.rs"]
mod error;
#[allow(dead_code)]
#[path = "sysfs.rs"]
mod sysfs;

use std::arch::asm;
use std::path::Path;
use std::time::Instant;

use rvg_model::gtt::GttEntry;
use rvg_model::regs::{bar2, pci, EngineReg, GlobalReg, Register, RVG_ID};

use crate::bar::MappedBar;
use crate::error::{bail, Context, Result};
use crate::sysfs::{PciDevice, PCI_DEVICES};

macro_rules! say {
    ($($arg:tt)*) => {
        println!("rvg-bench: {}", format_args!($($arg)*))
    };
}

const USAGE: &str = "usage: rvg-bench [--rounds R] [--accesses N]\n\
    Times trapped register accesses on the RVG-1 vGPU and QEMU's edu device (as root).";

/// QEMU's `edu` device: vendor 1234, device 11e8; `ID` reads 0x010000ed.
const EDU_DEVICE_ID: u16 = 0x11e8;
const EDU_ID: u64 = 0x00;
const EDU_LIVENESS: u64 = 0x04;
const EDU_ID_LOW_BYTE: u32 = 0xed;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read32,
    Write32,
    Write64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    Last,
    Inline,
}

impl Placement {
    const ALL: [Placement; 2] = [Placement::Last, Placement::Inline];

    fn name(self) -> &'static str {
        match self {
            Placement::Last => "last",
            Placement::Inline => "inline",
        }
    }
}

/// Defines `$name(ptr, n, value, toggle)`: `n` (at least 1) accesses
/// `$insn` at `ptr` (in `%rdx`, the value in `%rax`, XORed with `toggle`
/// in `%r8` before each access), counted down in `%rcx` (after the XOR:
/// `jnz` tests the count's flags, which the access leaves alone).
///
/// `last`: the loop's first block is `xor; sub; access` and ends exactly at a
/// page boundary (`$len` is the access's encoded length; the assembler
/// checks it), so the access is the block's last instruction; `jnz` is the
/// first instruction of the next page. `inline`: `xor; sub; access; jnz` in one
/// 256-byte-aligned block, which no page boundary cuts.
macro_rules! timed_loop {
    ($name:ident, last, $insn:literal, $len:literal) => {
        /// # Safety
        /// `ptr` must be valid for `n` volatile accesses of the loop's width.
        unsafe fn $name(ptr: *mut u8, n: u64, value: u64, toggle: u64) {
            // SAFETY: the caller vouches for `ptr`; the loop touches no
            // other memory, keeps the stack alone and restores nothing but
            // the registers declared here.
            unsafe {
                asm!(
                    "jmp 3f",
                    ".p2align 12",
                    concat!(".skip 4096 - 7 - ", $len, ", 0xcc"),
                    "3:",
                    "xor %r8, %rax",
                    "sub $1, %rcx",
                    $insn,
                    "4:",
                    concat!(".if 4b - 3b - 7 - ", $len),
                    ".error \"the timed access does not end the page\"",
                    ".endif",
                    "jnz 3b",
                    inout("rcx") n => _,
                    inout("rax") value => _,
                    in("rdx") ptr,
                    in("r8") toggle,
                    options(nostack, att_syntax),
                )
            }
        }
    };
    ($name:ident, inline, $insn:literal) => {
        /// # Safety
        /// `ptr` must be valid for `n` volatile accesses of the loop's width.
        unsafe fn $name(ptr: *mut u8, n: u64, value: u64, toggle: u64) {
            // SAFETY: as for the `last` loops.
            unsafe {
                asm!(
                    "jmp 3f",
                    ".p2align 8",
                    "3:",
                    "xor %r8, %rax",
                    "sub $1, %rcx",
                    $insn,
                    "jnz 3b",
                    inout("rcx") n => _,
                    inout("rax") value => _,
                    in("rdx") ptr,
                    in("r8") toggle,
                    options(nostack, att_syntax),
                )
            }
        }
    };
}

timed_loop!(read32_last, last, "movl (%rdx), %eax", 2);
timed_loop!(write32_last, last, "movl %eax, (%rdx)", 2);
timed_loop!(write64_last, last, "movq %rax, (%rdx)", 3);
timed_loop!(read32_inline, inline, "movl (%rdx), %eax");
timed_loop!(write32_inline, inline, "movl %eax, (%rdx)");
timed_loop!(write64_inline, inline, "movq %rax, (%rdx)");

/// One thing to time: an access of one width at one address.
struct Case {
    name: &'static str,
    access: Access,
    ptr: *mut u8,
    value: u64,
    /// XORed into the value before each access (0: the same value).
    toggle: u64,
}

impl Case {
    /// Nanoseconds per access over `n` (at least 1) accesses.
    fn time(&self, placement: Placement, n: u64) -> f64 {
        let run = match (self.access, placement) {
            (Access::Read32, Placement::Last) => read32_last,
            (Access::Write32, Placement::Last) => write32_last,
            (Access::Write64, Placement::Last) => write64_last,
            (Access::Read32, Placement::Inline) => read32_inline,
            (Access::Write32, Placement::Inline) => write32_inline,
            (Access::Write64, Placement::Inline) => write64_inline,
        };
        let start = Instant::now();
        // SAFETY: every case's pointer comes from `MappedBar::at` (in bounds
        // and aligned for its width, the mapping alive until the end of
        // `run`) or points into the `ram` vector `run` keeps alive.
        unsafe { run(self.ptr, n.max(1), self.value, self.toggle) };
        start.elapsed().as_nanos() as f64 / n.max(1) as f64
    }
}

struct Options {
    rounds: u32,
    accesses: u64,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>> {
    let mut opts = Options {
        rounds: 11,
        accesses: 200_000,
    };
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> Result<u64> {
            let v = args
                .next()
                .with_context(|| format!("{what} needs a number"))?;
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("{what} {v:?}: expected a positive integer"))
        };
        match arg.as_str() {
            "--rounds" => opts.rounds = u32::try_from(number("--rounds")?).context("--rounds")?,
            "--accesses" => opts.accesses = number("--accesses")?,
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(Some(opts))
}

fn main() {
    let status = match parse_args(std::env::args().skip(1)) {
        Ok(None) => {
            println!("{USAGE}");
            0
        }
        Ok(Some(opts)) => match run(&opts) {
            Ok(()) => {
                say!("done");
                0
            }
            Err(e) => {
                say!("FAIL {e}");
                1
            }
        },
        Err(e) => {
            say!("FAIL {e}");
            1
        }
    };
    std::process::exit(status);
}

/// The first PCI function under `root` with these IDs, in address order.
fn find_function(root: &Path, vendor: u16, device: u16) -> Result<PciDevice> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .with_context(|| format!("listing {}", root.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for bdf in names {
        let dir = root.join(&bdf);
        let Ok(ids) = sysfs::read_ids(&dir) else {
            continue;
        };
        if (ids.vendor, ids.device) == (vendor, device) {
            return Ok(PciDevice { bdf, dir, ids });
        }
    }
    bail!(
        "no PCI device {vendor:04x}:{device:04x} in {}",
        root.display()
    )
}

/// Memory decoding on, and BAR `index` mapped through `resource<index>`;
/// with its size.
fn map_bar(dev: &PciDevice, index: usize) -> Result<(MappedBar, u64)> {
    sysfs::enable_memory_and_bus_master(dev)?;
    let res = sysfs::read_resources(dev)?;
    let bar = res
        .get(index)
        .filter(|r| r.is_memory() && r.size > 0)
        .with_context(|| format!("{}: BAR{index} is not a memory BAR", dev.bdf))?;
    let path = dev.dir.join(format!("resource{index}"));
    Ok((MappedBar::map(&path, bar.size)?, bar.size))
}

fn run(opts: &Options) -> Result<()> {
    let root = Path::new(PCI_DEVICES);
    let vgpu = sysfs::find_vgpu(root, None)?.device;
    let edu = find_function(root, pci::VENDOR_ID, EDU_DEVICE_ID)
        .context("finding edu (is -device edu missing?)")?;
    let (mmio, mmio_size) = map_bar(&vgpu, 2)?;
    let (edu_bar, edu_size) = map_bar(&edu, 0)?;

    let global = |reg: GlobalReg| bar2::GLOBAL + reg.offset();
    let engine = |reg: EngineReg| bar2::ENGINE + reg.offset();
    let id = mmio.read32(global(GlobalReg::Id));
    if id != RVG_ID {
        bail!("vGPU ID reads {id:#010x}, expected {RVG_ID:#010x}");
    }
    let edu_id = edu_bar.read32(EDU_ID);
    edu_bar.write32(EDU_LIVENESS, 0x1234_5678);
    let inverse = edu_bar.read32(EDU_LIVENESS);
    if edu_id & 0xff != EDU_ID_LOW_BYTE || inverse != !0x1234_5678 {
        bail!("edu ID {edu_id:#010x}, liveness {inverse:#010x}: not QEMU's edu");
    }
    // The doorbell case must not start the engine.
    let ctl = mmio.read32(engine(EngineReg::RingCtl));
    if ctl & 1 != 0 {
        bail!("the vGPU's engine is enabled (RING_CTL {ctl:#x}): the doorbell would scan");
    }
    let entries = mmio.read32(global(GlobalReg::GttEntries));
    let gtt_index = u64::from(entries.checked_sub(1).context("GTT_ENTRIES is 0")?);
    let gtt_offset = bar2::GTT + 8 * gtt_index;
    if mmio.read64(gtt_offset) != 0 {
        bail!("GTT entry {gtt_index} is in use: the benchmark writes 0 to it");
    }
    let faults = mmio.read32(global(GlobalReg::GttFaults));
    let ram = vec![0u32; 1024];
    say!(
        "vgpu {} BAR2 {} KiB, edu {} BAR0 {} KiB; {} rounds of {} accesses; GTT entry {gtt_index}",
        vgpu.bdf,
        mmio_size >> 10,
        edu.bdf,
        edu_size >> 10,
        opts.rounds,
        opts.accesses
    );

    let cases = [
        Case {
            name: "vgpu-read",
            access: Access::Read32,
            ptr: mmio.at(global(GlobalReg::Id)),
            value: 0,
            toggle: 0,
        },
        Case {
            name: "vgpu-write",
            access: Access::Write32,
            ptr: mmio.at::<u32>(global(GlobalReg::Scratch)).cast(),
            value: 0x5a5a_5a5a,
            toggle: 0,
        },
        Case {
            name: "gtt-write",
            access: Access::Write64,
            ptr: mmio.at::<u64>(gtt_offset).cast(),
            value: 0,
            toggle: GttEntry::new(0, true).0,
        },
        Case {
            name: "doorbell",
            access: Access::Write32,
            ptr: mmio.at::<u32>(engine(EngineReg::RingTail)).cast(),
            value: 0,
            toggle: 0,
        },
        Case {
            name: "edu-read",
            access: Access::Read32,
            ptr: edu_bar.at::<u32>(EDU_ID).cast(),
            value: 0,
            toggle: 0,
        },
        Case {
            name: "edu-write",
            access: Access::Write32,
            ptr: edu_bar.at::<u32>(EDU_LIVENESS).cast(),
            value: 0x5a5a_5a5a,
            toggle: 0,
        },
        Case {
            name: "ram-read",
            access: Access::Read32,
            ptr: ram.as_ptr().cast_mut().cast(),
            value: 0,
            toggle: 0,
        },
    ];
    let runs: Vec<(Placement, &Case)> = Placement::ALL
        .iter()
        .flat_map(|p| cases.iter().map(move |c| (*p, c)))
        .collect();
    // Translate every loop (and touch every page) before timing.
    for (placement, case) in &runs {
        case.time(*placement, 1000);
    }
    for round in 0..opts.rounds {
        let mut ns = vec![0.0; runs.len()];
        let start = round as usize % runs.len();
        for i in (start..runs.len()).chain(0..start) {
            ns[i] = runs[i].1.time(runs[i].0, opts.accesses);
        }
        for placement in Placement::ALL {
            let figures: Vec<String> = runs
                .iter()
                .zip(&ns)
                .filter(|((p, _), _)| *p == placement)
                .map(|((_, c), t)| format!("{} {t:.1}", c.name))
                .collect();
            say!("round {round} {} {}", placement.name(), figures.join(" "));
        }
    }

    // Nothing may have happened but the stores.
    mmio.write64(gtt_offset, 0);
    let error = mmio.read32(engine(EngineReg::Error));
    let after = mmio.read32(global(GlobalReg::GttFaults));
    let scratch = mmio.read32(global(GlobalReg::Scratch));
    if error != 0 || after != faults || scratch != 0x5a5a_5a5a {
        bail!("after the rounds: engine ERROR {error}, GTT_FAULTS {faults} -> {after}, SCRATCH {scratch:#x}");
    }
    Ok(())
}
