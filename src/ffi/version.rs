//! The library's version, as macros for the compiler (`IVY_VERSION_*`) and as
//! functions for the library actually loaded (`ivy_version`), which can differ
//! when a program runs against another build than it was compiled with.
//!
//! The constants are literals because cbindgen turns only literals into
//! `#define`s; a unit test keeps them equal to `Cargo.toml`'s version.

use std::os::raw::c_char;

/// Major version of the ivy C ABI this header describes.
pub const IVY_VERSION_MAJOR: u32 = 0;
/// Minor version. Before 1.0, a new minor version may change the ABI (and the
/// shared library's SONAME, `libivy.so.0.MINOR`, changes with it).
pub const IVY_VERSION_MINOR: u32 = 2;
/// Patch version.
pub const IVY_VERSION_PATCH: u32 = 0;
/// The version as one number, `(MAJOR << 16) | (MINOR << 8) | PATCH`, the same
/// encoding `ivy_version()` returns.
pub const IVY_VERSION: u32 =
    (IVY_VERSION_MAJOR << 16) | (IVY_VERSION_MINOR << 8) | IVY_VERSION_PATCH;

/// The version of the loaded library, encoded as `IVY_VERSION` is. Compare it
/// with `IVY_VERSION` to detect a program running against another build.
#[no_mangle]
pub extern "C" fn ivy_version() -> u32 {
    IVY_VERSION
}

/// The version of the loaded library as a static string, `"MAJOR.MINOR.PATCH"`.
/// Never `NULL`; must not be freed.
#[no_mangle]
pub extern "C" fn ivy_version_string() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_the_package_version() {
        let v = |s: &str| s.parse::<u32>().unwrap();
        assert_eq!(IVY_VERSION_MAJOR, v(env!("CARGO_PKG_VERSION_MAJOR")));
        assert_eq!(IVY_VERSION_MINOR, v(env!("CARGO_PKG_VERSION_MINOR")));
        assert_eq!(IVY_VERSION_PATCH, v(env!("CARGO_PKG_VERSION_PATCH")));
        assert_eq!(ivy_version(), 0x0200);
        // SAFETY: a static NUL-terminated string.
        let s = unsafe { std::ffi::CStr::from_ptr(ivy_version_string()) };
        assert_eq!(s.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
