//! Host tests of the stage-2 and EL2 stage-1 tables against fakes and a model.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::vec::Vec;

use proptest::prelude::*;

use super::desc::{is_table, OA_MASK};
use super::*;
use crate::addr::{GuestPhysAddr, HostPhysAddr, VirtAddr};

/// One recorded memory or TLB event.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Write {
        table: u64,
        index: usize,
        old: u64,
        new: u64,
    },
    Free(u64),
    DsbIshst,
    DsbIsh,
    Isb,
    TlbiIpa(u8, u64, u8),
    VmallE1(u8),
    VmallS12(u8),
    Vae2(u64),
    Alle2,
}

type Log = Rc<RefCell<Vec<Ev>>>;

/// Fake table memory: frames are `Vec<u64>` keyed by address; tracks live frames.
#[derive(Default)]
struct MmState {
    frames: HashMap<u64, Vec<u64>>,
    next: u64,
    live: usize,
    limit: Option<usize>,
    allocs: usize,
}

#[derive(Clone)]
struct FakeMm {
    st: Rc<RefCell<MmState>>,
    log: Option<Log>,
}

impl FakeMm {
    fn new(log: Option<Log>) -> Self {
        let st = MmState {
            next: 0x8000_0000,
            ..MmState::default()
        };
        Self {
            st: Rc::new(RefCell::new(st)),
            log,
        }
    }
    fn live(&self) -> usize {
        self.st.borrow().live
    }
    fn set_limit(&self, limit: Option<usize>) {
        self.st.borrow_mut().limit = limit;
    }
}

impl PageTableMm for FakeMm {
    fn alloc_zeroed(&mut self, frames: usize) -> Option<HostPhysAddr> {
        assert!(frames.is_power_of_two() && frames <= 16);
        let mut st = self.st.borrow_mut();
        if st.limit.is_some_and(|l| st.live + frames > l) {
            return None;
        }
        let bytes = frames as u64 * PAGE_SIZE;
        let base = (st.next + bytes - 1) & !(bytes - 1);
        st.next = base + bytes;
        st.frames.insert(base, vec![0; 512 * frames]);
        st.live += frames;
        st.allocs += 1;
        Some(HostPhysAddr::new(base))
    }
    fn free(&mut self, pa: HostPhysAddr, frames: usize) {
        let mut st = self.st.borrow_mut();
        let v = st
            .frames
            .remove(&pa.raw())
            .expect("free of an unknown frame");
        assert_eq!(v.len(), 512 * frames, "free with the wrong frame count");
        st.live -= frames;
        if let Some(log) = &self.log {
            log.borrow_mut().push(Ev::Free(pa.raw()));
        }
    }
    fn read_entry(&self, table: HostPhysAddr, index: usize) -> u64 {
        self.st
            .borrow()
            .frames
            .get(&table.raw())
            .expect("read of a freed frame")[index]
    }
    fn write_entry(&mut self, table: HostPhysAddr, index: usize, value: u64) {
        let mut st = self.st.borrow_mut();
        let slot = &mut st
            .frames
            .get_mut(&table.raw())
            .expect("write to a freed frame")[index];
        let old = *slot;
        *slot = value;
        if let Some(log) = &self.log {
            log.borrow_mut().push(Ev::Write {
                table: table.raw(),
                index,
                old,
                new: value,
            });
        }
    }
}

/// Recording TLB fake.
#[derive(Clone)]
struct FakeTlb(Log);

impl FakeTlb {
    fn push(&self, e: Ev) {
        self.0.borrow_mut().push(e)
    }
}

impl TlbMaintenance for FakeTlb {
    fn dsb_ishst(&mut self) {
        self.push(Ev::DsbIshst)
    }
    fn dsb_ish(&mut self) {
        self.push(Ev::DsbIsh)
    }
    fn isb(&mut self) {
        self.push(Ev::Isb)
    }
    fn tlbi_ipas2e1is(&mut self, vmid: u8, ipa: GuestPhysAddr, level: u8) {
        self.push(Ev::TlbiIpa(vmid, ipa.raw(), level))
    }
    fn tlbi_vmalle1is(&mut self, vmid: u8) {
        self.push(Ev::VmallE1(vmid))
    }
    fn tlbi_vmalls12e1is(&mut self, vmid: u8) {
        self.push(Ev::VmallS12(vmid))
    }
    fn tlbi_vae2is(&mut self, va: VirtAddr) {
        self.push(Ev::Vae2(va.raw()))
    }
    fn tlbi_alle2(&mut self) {
        self.push(Ev::Alle2)
    }
}

const VMID: u8 = 7;

type S2 = Stage2PageTable<FakeMm, FakeTlb>;

/// A stage-2 table with fakes; `record_writes` also logs entry writes and frees.
fn s2(geom: Geometry, record_writes: bool) -> (S2, FakeMm, Log) {
    let log: Log = Rc::default();
    let mm = FakeMm::new(record_writes.then(|| log.clone()));
    let pt = Stage2PageTable::new(geom, VMID, mm.clone(), FakeTlb(log.clone())).unwrap();
    (pt, mm, log)
}

fn g40() -> Geometry {
    Geometry::stage2_from_parange(2)
}

fn gpa(a: u64) -> GuestPhysAddr {
    GuestPhysAddr::new(a)
}

fn hpa(a: u64) -> HostPhysAddr {
    HostPhysAddr::new(a)
}

fn is_valid(d: u64) -> bool {
    d & 1 != 0
}

/// True if `needle` occurs as a subsequence of `hay`.
fn has_subsequence(hay: &[Ev], needle: &[fn(&Ev) -> bool]) -> bool {
    let mut it = hay.iter();
    needle.iter().all(|pred| it.any(pred))
}

/// Checks break-before-make and freeing rules over the log of one operation
/// (stage 2): no valid→valid write; a slot invalidated from valid and made valid
/// again saw `dsb ishst, tlbi ipas2e1is, dsb ish, tlbi vmalle1is, dsb ish` in
/// between; a freed table was unlinked and invalidated (`dsb ishst, tlbi, dsb ish`)
/// first; the operation ends with `isb`.
fn check_bbm(log: &[Ev]) {
    let mut broken: HashMap<(u64, usize), usize> = HashMap::new();
    let mut unlinked: HashMap<u64, usize> = HashMap::new();
    for (i, e) in log.iter().enumerate() {
        match *e {
            Ev::Write {
                table,
                index,
                old,
                new,
            } => {
                assert!(
                    !(is_valid(old) && is_valid(new)),
                    "valid→valid write at {i}: {e:?}"
                );
                if is_valid(old) && new == 0 {
                    broken.insert((table, index), i);
                    if old & 3 == 3 {
                        // Could be a table (levels 0..=2) or a page; remember both ways.
                        unlinked.insert(old & OA_MASK, i);
                    }
                }
                if is_valid(new) {
                    if let Some(at) = broken.remove(&(table, index)) {
                        let between = &log[at..i];
                        assert!(
                            has_subsequence(
                                between,
                                &[
                                    |e| *e == Ev::DsbIshst,
                                    |e| matches!(e, Ev::TlbiIpa(VMID, ..)),
                                    |e| *e == Ev::DsbIsh,
                                    |e| *e == Ev::VmallE1(VMID),
                                    |e| *e == Ev::DsbIsh,
                                ]
                            ),
                            "make without complete break at {i}: {between:?}"
                        );
                    }
                }
            }
            Ev::Free(pa) => {
                let at = *unlinked
                    .get(&pa)
                    .expect("freed a table that was never unlinked");
                assert!(
                    has_subsequence(
                        &log[at..i],
                        &[
                            |e| *e == Ev::DsbIshst,
                            |e| matches!(e, Ev::TlbiIpa(VMID, ..)),
                            |e| *e == Ev::DsbIsh
                        ]
                    ),
                    "table freed before its invalidation completed"
                );
            }
            _ => {}
        }
    }
    if !log.is_empty() {
        assert_eq!(
            log.last(),
            Some(&Ev::Isb),
            "operation does not end with isb"
        );
    }
}

// ---------------------------------------------------------------------------
// Block versus page choice.

#[test]
fn gib_aligned_uses_1g_block() {
    let (mut pt, mm, _) = s2(g40(), false);
    pt.map(gpa(0x4000_0000), hpa(0x8_0000_0000), BLOCK_1G, Prot::RWX)
        .unwrap();
    let m = pt.query(gpa(0x4123_4567)).unwrap();
    assert_eq!((m.level, m.size), (1, BLOCK_1G));
    assert_eq!(m.pa, hpa(0x8_0123_4567));
    assert_eq!(m.prot, Prot::RWX);
    // Root only: a 1 GiB block needs no further table.
    assert_eq!(mm.live(), 2);
    assert_eq!(pt.table_frames(), 2);
}

#[test]
fn mib_aligned_uses_2m_blocks() {
    let (mut pt, mm, _) = s2(g40(), false);
    // IPA 1 GiB aligned but the host address only 2 MiB aligned: 2 MiB blocks.
    pt.map(gpa(0x4000_0000), hpa(0x8_0020_0000), BLOCK_1G, Prot::RW)
        .unwrap();
    for off in [0, BLOCK_2M, BLOCK_1G - PAGE_SIZE] {
        let m = pt.query(gpa(0x4000_0000 + off)).unwrap();
        assert_eq!((m.level, m.size), (2, BLOCK_2M));
        assert_eq!(m.pa, hpa(0x8_0020_0000 + off));
    }
    assert_eq!(mm.live(), 3);
}

#[test]
fn misaligned_host_uses_pages() {
    let (mut pt, mm, _) = s2(g40(), false);
    pt.map(gpa(0x4000_0000), hpa(0x8_0000_1000), BLOCK_2M, Prot::RW)
        .unwrap();
    let m = pt.query(gpa(0x4010_0000)).unwrap();
    assert_eq!((m.level, m.size, m.pa), (3, PAGE_SIZE, hpa(0x8_0010_1000)));
    assert_eq!(mm.live(), 4);
}

#[test]
fn mixed_range_picks_largest_fitting() {
    let (mut pt, _, _) = s2(g40(), false);
    // [1 GiB - 2 MiB - 4 KiB, 2 GiB + 2 MiB + 4 KiB): page, 2 MiB block, 1 GiB block,
    // 2 MiB block, page.
    let start = BLOCK_1G - BLOCK_2M - PAGE_SIZE;
    let size = BLOCK_1G + 2 * BLOCK_2M + 2 * PAGE_SIZE;
    pt.map(gpa(start), hpa(start + 0x10_0000_0000), size, Prot::RW)
        .unwrap();
    let expect = [
        (start, 3),
        (BLOCK_1G - BLOCK_2M, 2),
        (BLOCK_1G, 1),
        (2 * BLOCK_1G - PAGE_SIZE, 1),
        (2 * BLOCK_1G, 2),
        (2 * BLOCK_1G + BLOCK_2M, 3),
    ];
    for (ipa, level) in expect {
        let m = pt.query(gpa(ipa)).unwrap();
        assert_eq!(m.level, level, "at {ipa:#x}");
        assert_eq!(m.pa, hpa(ipa + 0x10_0000_0000));
    }
    assert!(pt.query(gpa(start - PAGE_SIZE)).is_none());
    assert!(pt.query(gpa(start + size)).is_none());
}

#[test]
fn split_keeps_rest_of_block() {
    let (mut pt, _, _) = s2(g40(), false);
    pt.map(gpa(0), hpa(0x4000_0000), BLOCK_1G, Prot::RWX)
        .unwrap();
    pt.protect(gpa(0x20_3000), PAGE_SIZE, Prot::R).unwrap();
    let m = pt.query(gpa(0x20_3000)).unwrap();
    assert_eq!((m.level, m.prot, m.pa), (3, Prot::R, hpa(0x4020_3000)));
    let m = pt.query(gpa(0x20_4000)).unwrap();
    assert_eq!((m.level, m.prot), (3, Prot::RWX));
    let m = pt.query(gpa(0x40_0000)).unwrap();
    assert_eq!((m.level, m.prot, m.pa), (2, Prot::RWX, hpa(0x4040_0000)));
    pt.unmap(gpa(0x20_0000), BLOCK_2M).unwrap();
    assert!(pt.query(gpa(0x20_3000)).is_none());
    assert_eq!(pt.query(gpa(0x3f_f000)), None);
    assert_eq!(pt.query(gpa(0x40_0000)).unwrap().level, 2);
}

// ---------------------------------------------------------------------------
// Contracts and errors.

#[test]
fn argument_errors() {
    let (mut pt, mm, _) = s2(g40(), false);
    let e = PageTableError::Misaligned;
    assert_eq!(pt.map(gpa(0x1001), hpa(0), PAGE_SIZE, Prot::R), Err(e));
    assert_eq!(pt.map(gpa(0x1000), hpa(0x10), PAGE_SIZE, Prot::R), Err(e));
    assert_eq!(pt.map(gpa(0x1000), hpa(0), 0x800, Prot::R), Err(e));
    assert_eq!(pt.unmap(gpa(0x1000), 1), Err(e));
    assert_eq!(pt.protect(gpa(0x800), PAGE_SIZE, Prot::R), Err(e));
    let e = PageTableError::OutOfRange;
    assert_eq!(pt.map(gpa(1 << 40), hpa(0), PAGE_SIZE, Prot::R), Err(e));
    assert_eq!(
        pt.map(gpa((1 << 40) - PAGE_SIZE), hpa(0), 2 * PAGE_SIZE, Prot::R),
        Err(e)
    );
    assert_eq!(
        pt.map(gpa(0), hpa((1 << 40) - PAGE_SIZE), 2 * PAGE_SIZE, Prot::R),
        Err(e)
    );
    assert_eq!(pt.map(gpa(!0xfff), hpa(0), PAGE_SIZE, Prot::R), Err(e));
    assert_eq!(pt.unmap(gpa(0x1000), !0xfff), Err(e));
    assert_eq!(pt.protect(gpa(!0xfff), PAGE_SIZE, Prot::R), Err(e));
    let e = PageTableError::InvalidProt;
    assert_eq!(pt.map(gpa(0), hpa(0), PAGE_SIZE, Prot::NONE), Err(e));
    assert_eq!(pt.map(gpa(0), hpa(0), PAGE_SIZE, Prot::DEVICE), Err(e));
    assert_eq!(
        pt.map(gpa(0), hpa(0), PAGE_SIZE, Prot::DEVICE_RW | Prot::X),
        Err(e)
    );
    assert_eq!(
        pt.protect(gpa(0), PAGE_SIZE, Prot::DEVICE | Prot::X),
        Err(e)
    );
    // Empty ranges are no-ops; the last page of the IPA space is usable.
    assert_eq!(pt.map(gpa(0x1000), hpa(0), 0, Prot::R), Ok(()));
    pt.map(
        gpa((1 << 40) - PAGE_SIZE),
        hpa((1 << 40) - PAGE_SIZE),
        PAGE_SIZE,
        Prot::RW,
    )
    .unwrap();
    assert_eq!(pt.query(gpa(u64::MAX)), None);
    assert_eq!(pt.query(gpa((1 << 40) - 1)).unwrap().pa, hpa((1 << 40) - 1));
    pt.unmap(gpa(0), 1 << 40).unwrap();
    assert_eq!(mm.live(), 2);
    assert_eq!(
        Stage2PageTable::new(
            Geometry::stage1_el2(48, 48).unwrap(),
            1,
            mm.clone(),
            FakeTlb(Rc::default())
        )
        .err(),
        Some(PageTableError::InvalidGeometry)
    );
}

#[test]
fn map_over_existing_is_refused_and_atomic() {
    let (mut pt, mm, _) = s2(g40(), false);
    pt.map(gpa(0x40_5000), hpa(0x9000_0000), PAGE_SIZE, Prot::RW)
        .unwrap();
    let frames = mm.live();
    assert_eq!(
        pt.map(gpa(0x20_0000), hpa(0x20_0000), 4 * BLOCK_2M, Prot::RW),
        Err(PageTableError::AlreadyMapped)
    );
    assert_eq!(mm.live(), frames);
    assert!(pt.query(gpa(0x20_0000)).is_none());
    assert_eq!(pt.query(gpa(0x40_5000)).unwrap().pa, hpa(0x9000_0000));
}

#[test]
fn no_memory_leaves_tables_unchanged() {
    let (mut pt, mm, log) = s2(g40(), true);
    pt.map(gpa(0x7000_0000), hpa(0x7000_0000), PAGE_SIZE, Prot::RW)
        .unwrap();
    let before = mm.live();
    // Needs an L2 and two L3 tables; allow only one more frame.
    mm.set_limit(Some(before + 2));
    log.borrow_mut().clear();
    let r = pt.map(gpa(0x1f_f000), hpa(0x1f_f000), 2 * PAGE_SIZE, Prot::RW);
    assert_eq!(r, Err(PageTableError::NoMemory));
    check_bbm(&log.borrow());
    assert_eq!(mm.live(), before);
    assert!(pt.query(gpa(0x1f_f000)).is_none());
    assert!(pt.query(gpa(0x20_0000)).is_none());
    // A split that cannot allocate fails cleanly and leaves the block in place.
    mm.set_limit(None);
    pt.map(gpa(0x8000_0000), hpa(0x4000_0000), BLOCK_1G, Prot::RW)
        .unwrap();
    mm.set_limit(Some(mm.live()));
    log.borrow_mut().clear();
    assert_eq!(
        pt.unmap(gpa(0x8000_1000), PAGE_SIZE),
        Err(PageTableError::NoMemory)
    );
    assert_eq!(
        pt.protect(gpa(0x8000_1000), PAGE_SIZE, Prot::R),
        Err(PageTableError::NoMemory)
    );
    check_bbm(&log.borrow());
    let m = pt.query(gpa(0x8000_1000)).unwrap();
    assert_eq!((m.level, m.prot), (1, Prot::RW));
    mm.set_limit(None);
    pt.unmap(gpa(0x8000_1000), PAGE_SIZE).unwrap();
    assert!(pt.query(gpa(0x8000_1000)).is_none());
    assert_eq!(pt.query(gpa(0x8000_2000)).unwrap().level, 3);
    assert_eq!(pt.query(gpa(0x8020_0000)).unwrap().level, 2);
}

// ---------------------------------------------------------------------------
// TLB maintenance order.

#[test]
fn protect_page_bbm_order() {
    let (mut pt, _, log) = s2(g40(), true);
    pt.map(gpa(0x4000_0000), hpa(0x8000_1000), PAGE_SIZE, Prot::RW)
        .unwrap();
    log.borrow_mut().clear();
    pt.protect(gpa(0x4000_0000), PAGE_SIZE, Prot::R).unwrap();
    let l = log.borrow().clone();
    assert_eq!(l.len(), 9, "{l:?}");
    let Ev::Write {
        table,
        index,
        old,
        new: 0,
    } = l[0]
    else {
        panic!("{l:?}")
    };
    assert!(is_valid(old));
    assert_eq!(
        l[1..6],
        [
            Ev::DsbIshst,
            Ev::TlbiIpa(VMID, 0x4000_0000, 3),
            Ev::DsbIsh,
            Ev::VmallE1(VMID),
            Ev::DsbIsh
        ]
    );
    let Ev::Write {
        table: t2,
        index: i2,
        old: 0,
        new,
    } = l[6]
    else {
        panic!("{l:?}")
    };
    assert_eq!((t2, i2), (table, index));
    assert_eq!(new, (old & !(1 << 7)), "only S2AP[1] changes");
    assert_eq!(l[7..], [Ev::DsbIshst, Ev::Isb]);
    // No change, no maintenance beyond the closing barriers.
    log.borrow_mut().clear();
    pt.protect(gpa(0x4000_0000), PAGE_SIZE, Prot::R).unwrap();
    assert_eq!(*log.borrow(), [Ev::DsbIshst, Ev::Isb]);
}

#[test]
fn unmap_in_block_splits_with_bbm() {
    let (mut pt, _, log) = s2(g40(), true);
    pt.map(gpa(0x4020_0000), hpa(0x8020_0000), BLOCK_2M, Prot::RW)
        .unwrap();
    log.borrow_mut().clear();
    pt.unmap(gpa(0x4020_5000), PAGE_SIZE).unwrap();
    let l = log.borrow().clone();
    check_bbm(&l);
    let tlb: Vec<Ev> = l
        .iter()
        .filter(|e| !matches!(e, Ev::Write { .. }))
        .cloned()
        .collect();
    assert_eq!(
        tlb,
        [
            // Break the block.
            Ev::DsbIshst,
            Ev::TlbiIpa(VMID, 0x4020_0000, 2),
            Ev::DsbIsh,
            Ev::VmallE1(VMID),
            Ev::DsbIsh,
            // Unmap the page of the new table.
            Ev::DsbIshst,
            Ev::TlbiIpa(VMID, 0x4020_5000, 3),
            // Finish.
            Ev::DsbIsh,
            Ev::VmallE1(VMID),
            Ev::DsbIsh,
            Ev::Isb,
        ]
    );
    // The 512 child entries were written before the block entry was broken.
    let first_break = l.iter().position(|e| *e == Ev::DsbIshst).unwrap();
    assert_eq!(
        l[..first_break]
            .iter()
            .filter(|e| matches!(e, Ev::Write { .. }))
            .count(),
        513
    );
    let m = pt.query(gpa(0x4020_6000)).unwrap();
    assert_eq!((m.level, m.pa), (3, hpa(0x8020_6000)));
}

#[test]
fn unmap_frees_tables_after_invalidation() {
    let (mut pt, mm, log) = s2(g40(), true);
    pt.map(gpa(0x4000_3000), hpa(0x8000_3000), PAGE_SIZE, Prot::RW)
        .unwrap();
    assert_eq!(mm.live(), 4);
    log.borrow_mut().clear();
    pt.unmap(gpa(0x4000_3000), PAGE_SIZE).unwrap();
    let l = log.borrow().clone();
    check_bbm(&l);
    let tlb: Vec<Ev> = l
        .iter()
        .filter(|e| !matches!(e, Ev::Write { .. } | Ev::Free(_)))
        .cloned()
        .collect();
    assert_eq!(
        tlb,
        [
            Ev::DsbIshst,
            Ev::TlbiIpa(VMID, 0x4000_3000, 3),
            // L3 table unlinked.
            Ev::DsbIshst,
            Ev::TlbiIpa(VMID, 0x4000_0000, 0),
            Ev::DsbIsh,
            // L2 table unlinked.
            Ev::DsbIshst,
            Ev::TlbiIpa(VMID, 0x4000_0000, 0),
            Ev::DsbIsh,
            Ev::DsbIsh,
            Ev::VmallE1(VMID),
            Ev::DsbIsh,
            Ev::Isb,
        ]
    );
    assert_eq!(l.iter().filter(|e| matches!(e, Ev::Free(_))).count(), 2);
    assert_eq!(mm.live(), 2);
}

#[test]
fn destroy_flushes_then_frees_everything() {
    let (mut pt, mm, log) = s2(g40(), true);
    pt.map(gpa(0x1000), hpa(0x1000), 3 * BLOCK_2M, Prot::RW)
        .unwrap();
    pt.map(gpa(0x80_0000_0000 - BLOCK_1G), hpa(0), BLOCK_1G, Prot::RW)
        .unwrap();
    assert_eq!(pt.vttbr(), pt.root().raw() | (7 << 48));
    assert_eq!(pt.vttbr() & 0x1fff, 0, "concatenated root aligned to 8 KiB");
    assert_eq!(pt.vtcr(), 0x8002_3558);
    log.borrow_mut().clear();
    pt.destroy();
    let l = log.borrow().clone();
    assert_eq!(
        l[..4],
        [Ev::DsbIshst, Ev::VmallS12(VMID), Ev::DsbIsh, Ev::Isb]
    );
    assert!(l[4..]
        .iter()
        .all(|e| matches!(e, Ev::Write { .. } | Ev::Free(_))));
    assert_eq!(mm.live(), 0);
}

// ---------------------------------------------------------------------------
// EL2 stage 1.

#[test]
fn stage1_identity_map() {
    let log: Log = Rc::default();
    let mm = FakeMm::new(None);
    let geom = Geometry::stage1_el2(40, 40).unwrap();
    let mut pt = Stage1PageTable::new(geom, mm.clone(), FakeTlb(log.clone())).unwrap();
    pt.map_identity(hpa(0x4000_0000), 2 * BLOCK_1G, MemType::Normal, Prot::RWX)
        .unwrap();
    pt.map_identity(hpa(0x0900_0000), PAGE_SIZE, MemType::Device, Prot::RW)
        .unwrap();
    assert_eq!(
        pt.map_identity(hpa(0x0800_0000), PAGE_SIZE, MemType::Device, Prot::RX),
        Err(PageTableError::InvalidProt)
    );
    assert_eq!(
        pt.map(
            VirtAddr::new(0),
            hpa(0),
            PAGE_SIZE,
            MemType::Normal,
            Prot::W
        ),
        Err(PageTableError::InvalidProt)
    );
    let m = pt.query(VirtAddr::new(0x4567_8000)).unwrap();
    assert_eq!((m.pa, m.level, m.prot), (hpa(0x4567_8000), 1, Prot::RWX));
    let m = pt.query(VirtAddr::new(0x0900_0004)).unwrap();
    assert_eq!(
        (m.pa, m.level, m.prot),
        (hpa(0x0900_0004), 3, Prot::DEVICE_RW)
    );
    assert!(pt.query(VirtAddr::new(0x0900_1000)).is_none());
    assert_eq!(pt.mair(), 0x04ff);
    assert_eq!(pt.tcr() & 0x3f, 24);
    assert_eq!(pt.ttbr0() & 0xfff, 0);
    // Read-only text: split the 1 GiB block, stage-1 BBM uses tlbi vae2is.
    log.borrow_mut().clear();
    pt.protect(
        VirtAddr::new(0x4008_0000),
        PAGE_SIZE,
        MemType::Normal,
        Prot::RX,
    )
    .unwrap();
    let l = log.borrow().clone();
    assert_eq!(
        l[..4],
        [Ev::DsbIshst, Ev::Vae2(0x4000_0000), Ev::DsbIsh, Ev::Isb]
    );
    assert!(l.contains(&Ev::Vae2(0x4000_0000 + BLOCK_2M - BLOCK_2M)));
    assert_eq!(pt.query(VirtAddr::new(0x4008_0000)).unwrap().prot, Prot::RX);
    assert_eq!(
        pt.query(VirtAddr::new(0x4008_1000)).unwrap().prot,
        Prot::RWX
    );
    pt.unmap(VirtAddr::new(0), 1 << 40).unwrap();
    assert_eq!(mm.live(), 1);
    log.borrow_mut().clear();
    pt.destroy();
    assert_eq!(
        log.borrow()[..4],
        [Ev::DsbIshst, Ev::Alle2, Ev::DsbIsh, Ev::Isb]
    );
    assert_eq!(mm.live(), 0);
    assert_eq!(
        Stage1PageTable::new(g40(), mm.clone(), FakeTlb(log)).err(),
        Some(PageTableError::InvalidGeometry)
    );
}

#[test]
fn armv7_hyp_stage1() {
    let mm = FakeMm::new(None);
    let geom = Geometry::stage1_armv7_hyp();
    let mut pt = Stage1PageTable::new(geom, mm.clone(), FakeTlb(Rc::default())).unwrap();
    pt.map_identity(hpa(0x4000_0000), BLOCK_1G, MemType::Normal, Prot::RWX)
        .unwrap();
    pt.map_identity(hpa(0x1c09_0000), PAGE_SIZE, MemType::Device, Prot::RW)
        .unwrap();
    assert_eq!(pt.query(VirtAddr::new(0x4000_0010)).unwrap().level, 1);
    assert_eq!(
        pt.query(VirtAddr::new(0x1c09_0000)).unwrap().prot,
        Prot::DEVICE_RW
    );
    assert_eq!(
        pt.map_identity(hpa(1 << 32), PAGE_SIZE, MemType::Normal, Prot::R),
        Err(PageTableError::OutOfRange)
    );
    assert_eq!(pt.tcr(), 0x8080_3500);
    pt.destroy();
    assert_eq!(mm.live(), 0);
}

#[test]
fn armv7_and_small_geometries() {
    for geom in [
        Geometry::stage2_armv7(),
        Geometry::stage2(32, 40).unwrap(),
        Geometry::stage2_from_parange(5),
    ] {
        let (mut pt, mm, _) = s2(geom, false);
        assert_eq!(mm.live(), geom.concat_tables());
        let top = geom.ia_limit() - BLOCK_1G;
        pt.map(gpa(top), hpa(0x8000_0000), BLOCK_1G, Prot::RW)
            .unwrap();
        // A 32-bit IPA space starts at level 2 (four concatenated tables): no 1 GiB blocks.
        assert_eq!(
            pt.query(gpa(top + 0x1234)).unwrap().level,
            geom.start_level().max(1)
        );
        pt.map(gpa(0x1000), hpa(0x1000), PAGE_SIZE, Prot::RW)
            .unwrap();
        assert_eq!(pt.query(gpa(0x1000)).unwrap().level, 3);
        assert_eq!(pt.table_frames(), mm.live());
        pt.unmap(gpa(0), geom.ia_limit()).unwrap();
        assert_eq!(mm.live(), geom.concat_tables());
        pt.destroy();
        assert_eq!(mm.live(), 0);
    }
}

// ---------------------------------------------------------------------------
// Randomized sequences against a model.

#[derive(Clone, Debug)]
enum Op {
    Map {
        unit: u64,
        units: u64,
        pa_unit: u64,
        prot: Prot,
    },
    Unmap {
        unit: u64,
        units: u64,
    },
    Protect {
        unit: u64,
        units: u64,
        prot: Prot,
    },
}

fn prot_strategy() -> impl Strategy<Value = Prot> {
    prop_oneof![
        Just(Prot::R),
        Just(Prot::RW),
        Just(Prot::RX),
        Just(Prot::RWX),
        Just(Prot::W),
        Just(Prot::X),
        Just(Prot::DEVICE_RW),
        Just(Prot::DEVICE | Prot::R),
        Just(Prot::DEVICE | Prot::X),
        Just(Prot::NONE),
    ]
}

/// Ops over a window of `window` units; starts and lengths biased towards
/// multiples of `align` units (the next block size), host addresses towards
/// congruence with the IPA modulo the block size.
fn op_strategy(window: u64, align: u64) -> impl Strategy<Value = Op> {
    let start = prop_oneof![0..window, (0..window / align).prop_map(move |c| c * align)];
    let len = prop_oneof![
        1..=16u64,
        1..=window / 4,
        (1..=2u64).prop_map(move |k| k * align)
    ];
    let skew = prop_oneof![3 => Just(0u64), 1 => 1..align];
    let range = (start, len).prop_map(move |(s, l)| (s, l.min(window - s).max(1)));
    prop_oneof![
        2 => (range.clone(), skew, 0..64u64, prot_strategy()).prop_map(move |((unit, units), skew, chunk, prot)| {
            Op::Map { unit, units, pa_unit: chunk * align + (unit + skew) % align, prot }
        }),
        1 => range.clone().prop_map(|(unit, units)| Op::Unmap { unit, units }),
        1 => (range, prot_strategy()).prop_map(|((unit, units), prot)| Op::Protect { unit, units, prot }),
    ]
}

fn valid_map_prot(p: Prot) -> bool {
    p.has_access() && !(p.contains(Prot::DEVICE) && p.contains(Prot::X))
}

/// The operations the model test drives, for stage 2 and stage 1 alike (input
/// addresses passed as `GuestPhysAddr` for both).
trait UnderTest {
    fn valid(&self, p: Prot) -> bool;
    fn map(
        &mut self,
        ia: GuestPhysAddr,
        pa: HostPhysAddr,
        size: u64,
        prot: Prot,
    ) -> Result<(), PageTableError>;
    fn unmap(&mut self, ia: GuestPhysAddr, size: u64) -> Result<(), PageTableError>;
    fn protect(&mut self, ia: GuestPhysAddr, size: u64, prot: Prot) -> Result<(), PageTableError>;
    fn query(&self, ia: GuestPhysAddr) -> Option<Mapping>;
    fn table_frames(&self) -> usize;
    fn destroy(self);
}

impl UnderTest for S2 {
    fn valid(&self, p: Prot) -> bool {
        valid_map_prot(p)
    }
    fn map(
        &mut self,
        ia: GuestPhysAddr,
        pa: HostPhysAddr,
        size: u64,
        prot: Prot,
    ) -> Result<(), PageTableError> {
        Stage2PageTable::map(self, ia, pa, size, prot)
    }
    fn unmap(&mut self, ia: GuestPhysAddr, size: u64) -> Result<(), PageTableError> {
        Stage2PageTable::unmap(self, ia, size)
    }
    fn protect(&mut self, ia: GuestPhysAddr, size: u64, prot: Prot) -> Result<(), PageTableError> {
        Stage2PageTable::protect(self, ia, size, prot)
    }
    fn query(&self, ia: GuestPhysAddr) -> Option<Mapping> {
        Stage2PageTable::query(self, ia)
    }
    fn table_frames(&self) -> usize {
        Stage2PageTable::table_frames(self)
    }
    fn destroy(self) {
        Stage2PageTable::destroy(self)
    }
}

type S1 = Stage1PageTable<FakeMm, FakeTlb>;

/// Stage 1 takes the memory type separately: DEVICE in the model's `Prot` selects it.
fn s1_split(p: Prot) -> (MemType, Prot) {
    let mem = if p.contains(Prot::DEVICE) {
        MemType::Device
    } else {
        MemType::Normal
    };
    (mem, p.difference(Prot::DEVICE))
}

fn va(ia: GuestPhysAddr) -> VirtAddr {
    VirtAddr::new(ia.raw())
}

impl UnderTest for S1 {
    fn valid(&self, p: Prot) -> bool {
        p.contains(Prot::R) && !(p.contains(Prot::DEVICE) && p.contains(Prot::X))
    }
    fn map(
        &mut self,
        ia: GuestPhysAddr,
        pa: HostPhysAddr,
        size: u64,
        prot: Prot,
    ) -> Result<(), PageTableError> {
        let (mem, p) = s1_split(prot);
        Stage1PageTable::map(self, va(ia), pa, size, mem, p)
    }
    fn unmap(&mut self, ia: GuestPhysAddr, size: u64) -> Result<(), PageTableError> {
        Stage1PageTable::unmap(self, va(ia), size)
    }
    fn protect(&mut self, ia: GuestPhysAddr, size: u64, prot: Prot) -> Result<(), PageTableError> {
        let (mem, p) = s1_split(prot);
        Stage1PageTable::protect(self, va(ia), size, mem, p)
    }
    fn query(&self, ia: GuestPhysAddr) -> Option<Mapping> {
        Stage1PageTable::query(self, va(ia))
    }
    fn table_frames(&self) -> usize {
        Stage1PageTable::table_frames(self)
    }
    fn destroy(self) {
        Stage1PageTable::destroy(self)
    }
}

/// Runs `ops` on fresh stage-2 tables; see [`run_model_on`].
fn run_model(
    geom: Geometry,
    base: u64,
    unit: u64,
    ops: &[Op],
    check_log: bool,
) -> Result<(), TestCaseError> {
    let (pt, mm, log) = s2(geom, check_log);
    run_model_on(pt, geom, &mm, &log, base, unit, ops, check_log)
}

/// Runs `ops` on `pt` and on a model keyed by unit (`unit` bytes each, starting at
/// input address `base`) and checks every touched unit, block use, that no table
/// frame leaks and (with `check_log`, stage 2 only) the break-before-make rules.
#[allow(clippy::too_many_arguments)]
fn run_model_on<P: UnderTest>(
    mut pt: P,
    geom: Geometry,
    mm: &FakeMm,
    log: &Log,
    base: u64,
    unit: u64,
    ops: &[Op],
    check_log: bool,
) -> Result<(), TestCaseError> {
    let mut model: HashMap<u64, (u64, Prot)> = HashMap::new();
    let mut touched = BTreeSet::new();
    let pa_base = 0x10_0000_0000u64 >> (40 - geom.oa_bits().min(40));
    let pa_base = pa_base & !(BLOCK_1G - 1);
    for op in ops {
        log.borrow_mut().clear();
        let (first, n) = match *op {
            Op::Map {
                unit: u,
                units,
                pa_unit,
                prot,
            } => {
                let r = pt.map(
                    gpa(base + u * unit),
                    hpa(pa_base + pa_unit * unit),
                    units * unit,
                    prot,
                );
                let expect = if !pt.valid(prot) {
                    Err(PageTableError::InvalidProt)
                } else if (u..u + units).any(|i| model.contains_key(&i)) {
                    Err(PageTableError::AlreadyMapped)
                } else {
                    for i in 0..units {
                        model.insert(u + i, (pa_base + (pa_unit + i) * unit, prot));
                    }
                    Ok(())
                };
                prop_assert_eq!(r, expect, "{:?}", op);
                if r.is_ok() {
                    // Every block-sized, block-aligned piece with a congruent host
                    // address must be a block.
                    for (bsize, level) in [(BLOCK_1G, 1u8), (BLOCK_2M, 2)] {
                        let (ipa0, pa0) = (base + u * unit, pa_base + pa_unit * unit);
                        if (ipa0 ^ pa0) % bsize != 0 {
                            continue;
                        }
                        let mut b = ipa0.div_ceil(bsize) * bsize;
                        while b + bsize <= ipa0 + units * unit {
                            prop_assert!(
                                pt.query(gpa(b)).unwrap().level <= level,
                                "no block at {:#x}",
                                b
                            );
                            b += bsize;
                        }
                    }
                }
                (u, units)
            }
            Op::Unmap { unit: u, units } => {
                pt.unmap(gpa(base + u * unit), units * unit).unwrap();
                for i in u..u + units {
                    model.remove(&i);
                }
                (u, units)
            }
            Op::Protect {
                unit: u,
                units,
                prot,
            } => {
                let r = pt.protect(gpa(base + u * unit), units * unit, prot);
                if pt.valid(prot) {
                    prop_assert_eq!(r, Ok(()));
                    for i in u..u + units {
                        if let Some(e) = model.get_mut(&i) {
                            e.1 = prot;
                        }
                    }
                } else {
                    prop_assert_eq!(r, Err(PageTableError::InvalidProt));
                }
                (u, units)
            }
        };
        if check_log {
            check_bbm(&log.borrow());
        }
        touched.extend(first..first + n);
        if first > 0 {
            touched.insert(first - 1);
        }
        touched.insert(first + n);
    }
    // Translate every touched unit (start, last page and a middle page).
    for &i in &touched {
        for off in [0, unit / 2, unit - PAGE_SIZE] {
            let off = off & !(PAGE_SIZE - 1);
            let got = pt.query(gpa(base + i * unit + off + 8));
            match model.get(&i) {
                None => prop_assert!(got.is_none(), "unit {} mapped: {:?}", i, got),
                Some(&(pa, prot)) => {
                    let m = got.ok_or_else(|| TestCaseError::fail(format!("unit {i} unmapped")))?;
                    prop_assert_eq!(m.pa, hpa(pa + off + 8), "unit {}", i);
                    prop_assert_eq!(m.prot, prot, "unit {}", i);
                    prop_assert!(m.size >= unit.min(BLOCK_2M));
                }
            }
        }
    }
    // Every live frame is reachable, and nothing is left once all is unmapped.
    prop_assert_eq!(pt.table_frames(), mm.live());
    pt.unmap(gpa(0), geom.ia_limit()).unwrap();
    prop_assert_eq!(mm.live(), geom.concat_tables());
    for &i in &touched {
        prop_assert!(pt.query(gpa(base + i * unit)).is_none());
    }
    pt.destroy();
    prop_assert_eq!(mm.live(), 0);
    Ok(())
}

fn geometries() -> [Geometry; 4] {
    [
        g40(),
        Geometry::stage2_armv7(),
        Geometry::stage2(32, 40).unwrap(),
        Geometry::stage2_from_parange(5),
    ]
}

fn model_cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(model_cfg(2000))]

    /// 4 KiB units over 8 MiB straddling the 1 GiB boundary: pages, 2 MiB blocks,
    /// splits, table allocation and freeing, in four geometries.
    #[test]
    fn random_page_sequences(
        ops in prop::collection::vec(op_strategy(2048, 512), 1..10),
        g in 0..4usize,
        check_log in any::<bool>(),
    ) {
        run_model(geometries()[g], BLOCK_1G - 2 * BLOCK_2M, PAGE_SIZE, &ops, check_log)?;
    }
}

proptest! {
    #![proptest_config(model_cfg(1000))]

    /// 2 MiB units over 8 GiB: 1 GiB blocks, their splits into 2 MiB blocks.
    #[test]
    fn random_block_sequences(
        ops in prop::collection::vec(op_strategy(4096, 512), 1..10),
        g in prop::sample::select(vec![0usize, 1, 3]),
    ) {
        // Not the 32-bit geometry: its IPA space is smaller than the window.
        run_model(geometries()[g], 0, BLOCK_2M, &ops, true)?;
    }
}

proptest! {
    #![proptest_config(model_cfg(600))]

    /// The EL2 stage-1 wrapper on the same walker: pages and 2 MiB blocks around
    /// the 1 GiB boundary, with `tlbi vae2is` maintenance.
    #[test]
    fn random_stage1_sequences(ops in prop::collection::vec(op_strategy(2048, 512), 1..10)) {
        let geom = Geometry::stage1_el2(40, 40).unwrap();
        let log: Log = Rc::default();
        let mm = FakeMm::new(None);
        let pt = Stage1PageTable::new(geom, mm.clone(), FakeTlb(log.clone())).unwrap();
        run_model_on(pt, geom, &mm, &log, BLOCK_1G - 2 * BLOCK_2M, PAGE_SIZE, &ops, false)?;
    }
}

#[test]
fn table_desc_sanity() {
    assert!(is_table(desc::table(0x1000), 0));
    assert!(!is_table(desc::table(0x1000), 3));
}

#[test]
fn prot_attribute_round_trip() {
    for bits in 0..16u8 {
        let p = Prot::from_bits(bits).unwrap();
        match stage2::prot_to_attrs(p) {
            Ok(a) => {
                assert!(valid_map_prot(p));
                assert!(a.af && a.sh == 3);
                assert_eq!(stage2::attrs_to_prot(&a), p);
            }
            Err(e) => {
                assert!(!valid_map_prot(p));
                assert_eq!(e, PageTableError::InvalidProt);
            }
        }
        for mem in [MemType::Normal, MemType::Device] {
            if let Ok(a) = stage1::s1_attrs(mem, p) {
                let dev = if mem == MemType::Device {
                    Prot::DEVICE
                } else {
                    Prot::NONE
                };
                assert_eq!(stage1::s1_prot(&a), p | dev);
                assert_eq!(
                    a.attr_indx,
                    if mem == MemType::Device {
                        MAIR_IDX_DEVICE
                    } else {
                        MAIR_IDX_NORMAL
                    }
                );
            } else {
                assert!(
                    !p.contains(Prot::R)
                        || p.contains(Prot::DEVICE)
                        || (mem == MemType::Device && p.contains(Prot::X))
                );
            }
        }
    }
    assert_eq!(Prot::from_bits(16), None);
    assert_eq!(format!("{:?}", Prot::DEVICE_RW), "rw-+dev");
}
