//! An allocator wrapper that measures what a piece of code allocates, so that tests and the fuzz
//! suite can prove a loader never reserves more than a bound (a declared size is checked before
//! anything is allocated for it).
//!
//! A binary opts in with `#[global_allocator] static A: CountingAlloc<System> =
//! CountingAlloc::new(System);`. Counting is off until [`measure`] turns it on, and costs one
//! relaxed atomic load per allocation while off.
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};

static ON: AtomicBool = AtomicBool::new(false);
/// Bytes allocated minus bytes freed since [`measure`] started (frees of older blocks can take it
/// below zero: the peak is then a slight underestimate, never an overestimate of the old blocks).
static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
/// While counting, a single request above this is refused (the process aborts with the size),
/// so a runaway reservation ends the run instead of the machine.
static HARD_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Whether a [`CountingAlloc`] is the global allocator (set by its first allocation).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Wraps an allocator and counts its traffic while [`measure`] runs.
pub struct CountingAlloc<A> {
    inner: A,
}

impl<A> CountingAlloc<A> {
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

fn count(delta: isize) {
    let now = CURRENT.fetch_add(delta, Ordering::Relaxed) + delta;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `inner` unchanged (or refused with a null pointer, which
// the `GlobalAlloc` contract allows); the counters are plain atomics.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Loaded first: a store on every allocation would bounce the cache line between threads.
        if !INSTALLED.load(Ordering::Relaxed) {
            INSTALLED.store(true, Ordering::Relaxed);
        }
        if ON.load(Ordering::Relaxed) {
            if layout.size() > HARD_LIMIT.load(Ordering::Relaxed) {
                return std::ptr::null_mut();
            }
            count(layout.size() as isize);
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { self.inner.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            if layout.size() > HARD_LIMIT.load(Ordering::Relaxed) {
                return std::ptr::null_mut();
            }
            count(layout.size() as isize);
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ON.load(Ordering::Relaxed) {
            count(-(layout.size() as isize));
        }
        // SAFETY: `ptr` came from `inner` with this layout.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            if new_size > HARD_LIMIT.load(Ordering::Relaxed) {
                return std::ptr::null_mut();
            }
            count(new_size as isize - layout.size() as isize);
        }
        // SAFETY: `ptr` came from `inner` with `layout`.
        unsafe { self.inner.realloc(ptr, layout, new_size) }
    }
}

/// Whether allocations are being counted in this process (a [`CountingAlloc`] is installed).
pub fn counting_available() -> bool {
    // The allocator marks itself on its first allocation; this `Box` makes one.
    drop(std::hint::black_box(Box::new(0u64)));
    INSTALLED.load(Ordering::Relaxed)
}

/// Runs `f` and returns its result with the peak of bytes it had allocated at once (0 when no
/// [`CountingAlloc`] is installed). Single requests above `hard_limit` bytes are refused while it
/// runs. Measurements do not nest, and allocations of other threads running at the same time are
/// counted too.
pub fn measure<T>(hard_limit: usize, f: impl FnOnce() -> T) -> (T, usize) {
    CURRENT.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    HARD_LIMIT.store(hard_limit, Ordering::Relaxed);
    ON.store(true, Ordering::SeqCst);
    let out = f();
    ON.store(false, Ordering::SeqCst);
    HARD_LIMIT.store(usize::MAX, Ordering::Relaxed);
    (out, PEAK.load(Ordering::Relaxed).max(0) as usize)
}
