//! An incoming migration stream: a valid vGPU state with arbitrary fields
//! changed, cut short or with a byte flipped, loaded into a vGPU on a soft
//! GPU. Nothing panics; a stream that is taken saves back byte for byte;
//! a refused one leaves the vGPU exactly as it was (it saves as before).
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rvg_mediator::shared::SchedConfig;
use rvg_mediator::vgpu::VGPU_GTT_ENTRIES;
use rvg_mediator::{MemKind, SavedVgpu, SharedGpu, Vgpu, VgpuConfig};
use rvg_model::GpuConfig;
use rvg_vfio::{HostRange, SoftGpu};

const VRAM: u64 = 4 << 20;
const RAM_GPA: u64 = 0x10_0000;
const RAM_PAGES: u64 = 4;

#[derive(Debug, Arbitrary)]
struct Engine {
    ring_base: u64,
    ring_size: u32,
    head: u32,
    tail: u32,
    ctl: u32,
    seqno: u32,
    error: u32,
    error_addr: u64,
}

#[derive(Debug, Arbitrary)]
struct Changes {
    int_status: Option<u32>,
    int_mask: Option<u32>,
    int_enable: Option<u32>,
    fault_reason: Option<u32>,
    engine: Option<Engine>,
    scan_head: Option<u32>,
    display: Vec<(u8, u64)>,
    dispi: Vec<(u8, u64)>,
    message_pending: bool,
    gtt: Vec<(u16, u64)>,
    partial: Vec<(u32, u8)>,
    cut: Option<u32>,
    flip: Option<(u32, u8)>,
}

fn vgpu() -> &'static Mutex<Vgpu> {
    static V: OnceLock<Mutex<Vgpu>> = OnceLock::new();
    V.get_or_init(|| {
        let config = VgpuConfig::new(VRAM);
        let soft = SoftGpu::new(
            GpuConfig {
                vram_size: config.private_gpu_vram(),
            },
            Box::new(|m| panic!("soft GPU: {m}")),
        )
        .unwrap();
        let gpu = SharedGpu::new(
            Arc::new(soft),
            SchedConfig::default(),
            Arc::new(|m| panic!("scheduler: {m}")),
        )
        .unwrap();
        let mut v = Vgpu::new(config, Arc::new(gpu)).unwrap();
        let ram = HostRange::anonymous(RAM_PAGES * 4096).unwrap();
        v.guest_ram_add(RAM_GPA, RAM_PAGES * 4096, Some(ram), MemKind::Ram);
        Mutex::new(v)
    })
}

fn save(v: &mut Vgpu) -> Vec<u8> {
    v.quiesce(Duration::from_secs(5)).unwrap();
    v.save().unwrap()
}

fuzz_target!(|c: Changes| {
    let mut v = vgpu().lock().unwrap();
    let before = save(&mut v);
    let mut s = SavedVgpu::decode(&before, VGPU_GTT_ENTRIES).unwrap();
    let g = &mut s.global;
    g.int_status = c.int_status.unwrap_or(g.int_status);
    g.int_mask = c.int_mask.unwrap_or(g.int_mask);
    g.int_enable = c.int_enable.unwrap_or(g.int_enable);
    g.fault_reason = c.fault_reason.unwrap_or(g.fault_reason);
    if let Some(n) = c.engine {
        let e = &mut s.engine;
        (e.ring_base, e.ring_size, e.head, e.tail) = (n.ring_base, n.ring_size, n.head, n.tail);
        (e.ctl, e.seqno, e.error, e.error_addr) = (n.ctl, n.seqno, n.error, n.error_addr);
        s.scan_head = n.head;
    }
    s.scan_head = c.scan_head.unwrap_or(s.scan_head);
    for &(i, value) in c.display.iter().take(16) {
        let n = s.display.len();
        s.display[usize::from(i) % n] = value;
    }
    for &(i, value) in c.dispi.iter().take(16) {
        let n = s.dispi.len();
        s.dispi[usize::from(i) % n] = value;
    }
    s.message_pending = c.message_pending;
    for &(i, value) in c.gtt.iter().take(64) {
        let n = s.gtt.len();
        s.gtt[usize::from(i) % n] = value;
    }
    s.gtt_partial = c.partial.into_iter().take(8).collect();
    let mut stream = s.encode();
    if let Some(cut) = c.cut {
        stream.truncate(cut as usize % (stream.len() + 1));
    }
    if let Some((at, bits)) = c.flip {
        let n = stream.len().max(1);
        if let Some(b) = stream.get_mut(at as usize % n) {
            *b ^= bits;
        }
    }
    match v.load(&stream, true) {
        Ok(_) => assert_eq!(save(&mut v), stream, "a loaded state saves back as it came"),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert_eq!(save(&mut v), before, "refused ({e}), and changed nothing");
        }
    }
});
