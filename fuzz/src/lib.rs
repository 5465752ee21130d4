//! Support shared by the fuzz targets: a global allocator that enforces a
//! memory bound, so that a session buffering more than it should is a
//! crash the fuzzer reports rather than a slow leak nobody sees.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Live heap bytes allowed to the Rust side of a fuzz target. The inputs
/// are a few KiB; a session holding more than this is a bug.
pub const HEAP_LIMIT: usize = 32 << 20;

/// The system allocator, failing any allocation that would take the live
/// heap beyond [`HEAP_LIMIT`] (which aborts with "memory allocation of N
/// bytes failed", a crash libFuzzer records).
pub struct BoundedAlloc {
    live: AtomicUsize,
}

impl BoundedAlloc {
    /// A new allocator with nothing allocated.
    pub const fn new() -> Self {
        BoundedAlloc {
            live: AtomicUsize::new(0),
        }
    }

    fn reserve(&self, size: usize) -> bool {
        let before = self.live.fetch_add(size, Ordering::Relaxed);
        // A panic's backtrace loads the binary's debug information (tens
        // of MiB): refusing it made the process die before libFuzzer
        // wrote the crashing input out. The input's own allocations are
        // over by then; the limit is for them.
        if before.saturating_add(size) > HEAP_LIMIT && !std::thread::panicking() {
            self.live.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl Default for BoundedAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// and only adds bookkeeping; a refused allocation returns null, which the
// `GlobalAlloc` contract allows.
unsafe impl GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            self.live.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            self.live.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        self.live.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !self.reserve(new_size - old) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                self.live.fetch_sub(new_size - old, Ordering::Relaxed);
            }
        } else if new_size < old {
            self.live.fetch_sub(old - new_size, Ordering::Relaxed);
        }
        p
    }
}
