//! How the process's allocator treats the engine's large, short-lived arrays.
//!
//! A forward pass returns its attention maps in fresh memory (72 MB for MiniLM at 512 tokens)
//! and frees the previous run's. glibc's defaults hand every array over 128 KB back to the
//! kernel on free and map new, zeroed pages for the next one: about 18,000 page faults per run
//! there, a fifth of the forward time. [`keep_freed_memory`] lets the allocator keep up to
//! 256 MB of freed memory for reuse instead. Only programs call it (the `attnviz` binary and
//! the benchmarks), once at start-up; the library never changes process-wide settings itself.
//!
//! A one-shot process (the CLI) has no previous run to reuse: its first forward faults in every
//! page of its maps, a third more time at 512 tokens. [`fault_in`] touches such memory ahead
//! of time, on the thread that will allocate it, and frees it for the allocator to keep; the
//! CLI does it as part of its load (`Transformer::reserve`), where it is paid once and shown.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

/// Set once [`keep_freed_memory`] has succeeded: before that, memory freed by [`fault_in`]
/// would go back to the kernel, and touching it would be wasted.
static KEEPING: AtomicBool = AtomicBool::new(false);
/// The pieces [`fault_in`] allocates: well below [`OWN_MAPPING_ABOVE`], so that they come from
/// the allocator's heap and stay there once freed.
const PIECE_BYTES: usize = 8 << 20;
/// The kernel's page size on the machines the engine runs on; a smaller real page only means
/// some pages are left for the forward to fault in.
const PAGE_BYTES: usize = 4096;

/// Freed memory kept for reuse before it is returned to the kernel.
pub const KEEP_BYTES: usize = 256 << 20;
/// Allocations above this size still get their own mapping (glibc's largest allowed value).
const OWN_MAPPING_ABOVE: usize = 32 << 20;

/// Asks glibc's allocator to serve arrays up to 32 MB from its heap and to keep up to
/// [`KEEP_BYTES`] of freed memory. Returns false where that is not possible (other C
/// libraries), which only costs speed.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let as_int = |n: usize| libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes allocator parameters; glibc documents it as callable at
        // any time, and both values are within the documented ranges.
        let kept = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, as_int(OWN_MAPPING_ABOVE)) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, as_int(KEEP_BYTES)) == 1
        };
        KEEPING.store(kept, Ordering::Relaxed);
        kept
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Whether freed memory stays with the allocator ([`keep_freed_memory`] succeeded).
pub fn keeping_freed_memory() -> bool {
    KEEPING.load(Ordering::Relaxed)
}

/// Allocates `bytes` on the calling thread (in pieces of at most 8 MB), writes one byte per
/// page so that the kernel maps every page, and frees it all. With [`keep_freed_memory`] in
/// force, the allocator keeps those pages for the thread's next allocations, which then find
/// them mapped; without it this does nothing. Returns the bytes touched.
pub fn fault_in(bytes: usize) -> usize {
    if !keeping_freed_memory() {
        return 0;
    }
    let bytes = bytes.min(KEEP_BYTES);
    let mut pieces = Vec::with_capacity(bytes.div_ceil(PIECE_BYTES));
    let mut left = bytes;
    while left > 0 {
        let len = left.min(PIECE_BYTES);
        let mut piece = Vec::<u8>::with_capacity(len);
        // Writing into the spare capacity needs no initialised bytes, so the allocation
        // is not zeroed first.
        for byte in piece.spare_capacity_mut().iter_mut().step_by(PAGE_BYTES) {
            byte.write(1);
        }
        pieces.push(std::hint::black_box(piece));
        left -= len;
    }
    drop(pieces);
    bytes
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Minor page faults of the calling thread so far.
    fn thread_faults() -> i64 {
        // SAFETY: getrusage writes into the struct it is given, which is zeroed and ours.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) },
            0
        );
        usage.ru_minflt
    }

    #[test]
    fn memory_faulted_in_is_found_mapped_by_the_next_allocations() {
        // Changing the allocator's parameters only changes speed, so the test binary may.
        assert!(keep_freed_memory());
        assert_eq!(
            fault_in(KEEP_BYTES + 1),
            KEEP_BYTES,
            "capped at what is kept"
        );
        assert_eq!(fault_in(32 << 20), 32 << 20);
        // 16 MB written in 2 MB arrays: 4,096 pages, which would all fault if fresh.
        let before = thread_faults();
        let arrays: Vec<Vec<u8>> = (0..8).map(|i| vec![i as u8 + 1; 2 << 20]).collect();
        let faults = thread_faults() - before;
        assert_eq!(std::hint::black_box(arrays)[7][12345], 8);
        assert!(
            faults < 400,
            "{faults} page faults on memory faulted in beforehand"
        );
    }
}
