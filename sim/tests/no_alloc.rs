//! The simulated Klarna and the closed loop run without touching the heap, like the library they
//! test: a counting global allocator counts per thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn simulating_and_driving_hostile_scenarios_does_not_allocate() {
    use hpp_sim::{SimConfig, Simulator, drive::drive, oracle::expected};
    let config = SimConfig {
        forged: 1000,
        read_failure: 200,
        ..SimConfig::DEFAULT
    };
    let simulator = Simulator::new(config, 7);
    let mut matched = 0;
    let n = allocations_in(|| {
        for i in 0..50 {
            let mut scenario = simulator.scenario(i);
            let want = expected(&scenario.history);
            let (_, run) = drive(&mut scenario, hpp_session::TrackerConfig::DEFAULT, |_| {});
            matched += usize::from(run.actions.as_slice() == [want]);
        }
    });
    assert_eq!(n, 0);
    assert_eq!(matched, 50);
}
