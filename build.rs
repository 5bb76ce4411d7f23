//! Gives the shared library a SONAME, so a C program linked against one ABI of
//! libivy never loads an incompatible one. Before 1.0 every minor release may
//! break the ABI (Cargo's semver rule for 0.x), so the SONAME carries
//! `MAJOR.MINOR` there (`libivy.so.0.2`); from 1.0 on it carries `MAJOR`.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("set by cargo");
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").expect("set by cargo");
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libivy.so.{abi}");
    println!("cargo:rerun-if-changed=build.rs");
}
