//! The calling thread's `errno`.

/// Sets `errno`.
#[inline]
pub(crate) fn set(e: libc::c_int) {
    // SAFETY: `__errno_location` returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = e }
}

/// Reads `errno`.
#[inline]
pub(crate) fn get() -> libc::c_int {
    // SAFETY: as in `set`.
    unsafe { *libc::__errno_location() }
}
