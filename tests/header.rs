//! The committed C header `include/ivy.h` must be exactly what cbindgen generates
//! from `src/ffi` with `cbindgen.toml`: a C user reads the header, so a change to
//! the ABI that is not in the header would be a silent lie.
//!
//! To regenerate after changing the ABI:
//!     cargo test --release --test header -- --ignored regenerate

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate() -> Vec<u8> {
    let root = root();
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    out
}

fn header_path() -> PathBuf {
    root().join(Path::new("include/ivy.h"))
}

#[test]
fn committed_header_matches_cbindgen() {
    let generated = generate();
    let committed = std::fs::read(header_path()).expect("include/ivy.h exists");
    if generated != committed {
        let g = String::from_utf8_lossy(&generated);
        let c = String::from_utf8_lossy(&committed);
        let first = g
            .lines()
            .zip(c.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(g.lines().count().min(c.lines().count()));
        panic!(
            "include/ivy.h is stale (first difference at line {}).\n  generated: {:?}\n  committed: {:?}\n\
             Regenerate: cargo test --release --test header -- --ignored regenerate",
            first + 1,
            g.lines().nth(first),
            c.lines().nth(first)
        );
    }
}

#[test]
#[ignore = "writes include/ivy.h; run explicitly to regenerate"]
fn regenerate() {
    std::fs::write(header_path(), generate()).expect("write include/ivy.h");
}
