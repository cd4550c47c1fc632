//! What the daemon asks of glibc's allocator, so that its resident set follows its
//! live heap: a long re-signing campaign must not hold more memory than a short one.

/// Blocks of this size and above come from their own mappings and go back to the
/// system when freed. glibc otherwise raises this threshold to the size of the largest
/// such block freed so far (up to 32 MiB), after which those blocks come from the
/// arenas and the pages they leave stay resident: a 2,000-image campaign's daemon
/// peaked 1.5-2 MiB higher with the threshold left to move.
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Fixes the allocator's settings; called once at start, before other threads exist.
pub fn settle() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt takes no pointers; called before any other thread runs, it
    // changes only where later allocations come from.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Returns the free pages of every malloc arena to the kernel.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes no pointers and has no preconditions; it only
    // releases memory that is already free.
    unsafe {
        libc::malloc_trim(0);
    }
}
