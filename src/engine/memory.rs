//! How the process's allocator treats the engine's large, short-lived arrays.
//!
//! A forward pass returns its attention maps in fresh memory (72 MB for MiniLM at 512 tokens)
//! and frees the previous run's. glibc's defaults hand every array over 128 KB back to the
//! kernel on free and map new, zeroed pages for the next one: about 18,000 page faults per run
//! there, a fifth of the forward time. [`keep_freed_memory`] lets the allocator keep up to
//! 256 MB of freed memory for reuse instead. Only programs call it (the `attnviz` binary and
//! the benchmarks), once at start-up; the library never changes process-wide settings itself.
#![allow(unsafe_code)]

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
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, as_int(OWN_MAPPING_ABOVE)) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, as_int(KEEP_BYTES)) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
