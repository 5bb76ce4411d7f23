//! Chooses how Python tasks get their interpreter state (`tstate.rs`):
//! on CPython 3.11, the one this package is tested on, every task of a
//! worker shares the worker's thread state and swaps its own frame-stack
//! fields in and out at each park (`src/pystate.c`, compiled here against
//! the headers of the interpreter being built for, so that the compiler
//! checks every field it touches; cfg `ivyrt_swap`). On other versions, whose
//! thread-state layouts differ and are not tested here, each running task
//! takes a whole thread state from a per-worker pool (the previous design).

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ivyrt_swap)");
    println!("cargo::rustc-check-cfg=cfg(ivyrt_free_threaded)");
    println!("cargo::rerun-if-changed=src/pystate.c");
    println!("cargo::rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo::rerun-if-env-changed=IVYRT_NO_SWAP");
    let config = pyo3_build_config::get();
    if config.is_free_threaded() {
        // No GIL to guard `GilCell`s with (gil_cell.rs): they become mutexes.
        println!("cargo::rustc-cfg=ivyrt_free_threaded");
    }
    let is_311 = config.implementation == pyo3_build_config::PythonImplementation::CPython
        && config.version.major == 3
        && config.version.minor == 11
        && !config.abi3;
    if !is_311 || std::env::var_os("IVYRT_NO_SWAP").is_some() {
        return;
    }
    let python = config
        .executable
        .clone()
        .unwrap_or_else(|| "python3".to_string());
    let out = Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('include'))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("ivyrt: running {python} for its include directory: {e}"));
    assert!(
        out.status.success(),
        "ivyrt: {python} could not name its include directory"
    );
    let include = String::from_utf8(out.stdout)
        .expect("a UTF-8 path")
        .trim()
        .to_string();
    if !std::path::Path::new(&include).join("Python.h").exists() {
        // No headers (a python3 without its -dev package): the pooled
        // design, which needs none, rather than no build at all.
        println!(
            "cargo::warning=ivyrt: no Python.h in {include} (install python3.11-dev): \
             building the pooled thread-state design instead of the per-task state swap"
        );
        return;
    }
    cc::Build::new()
        .file("src/pystate.c")
        .include(&include)
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-missing-field-initializers")
        .flag_if_supported("-fno-stack-clash-protection")
        .compile("ivyrt_pystate");
    println!("cargo::rustc-cfg=ivyrt_swap");
}
