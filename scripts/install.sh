#!/usr/bin/env bash
# Builds libivy (shared and static) and libivy_hook (the libc hook layer) and
# installs them with the header and pkg-config files:
#                    scripts/install.sh PREFIX   (default /usr/local)
# Then:              cc prog.c $(pkg-config --cflags --libs ivy)
# or, hooked:        cc prog.c $(pkg-config --cflags --libs ivy-hook)
#                    (or LD_PRELOAD=PREFIX/lib/libivy_hook.so ./prog)
# (with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig if PREFIX is not a system prefix).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/usr/local}
cargo build --release --lib
install -d "$prefix/lib/pkgconfig" "$prefix/include"
# libivy.so.X.Y.Z, with the SONAME link (libivy.so.0.2 before 1.0) and the
# development link libivy.so that -livy finds.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
soname=$(readelf -d target/release/libivy.so | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
install -m 0755 target/release/libivy.so "$prefix/lib/libivy.so.$version"
ln -sf "libivy.so.$version" "$prefix/lib/$soname"
ln -sf "$soname" "$prefix/lib/libivy.so"
install -m 0644 target/release/libivy.a "$prefix/lib/libivy.a"
install -m 0644 include/ivy.h "$prefix/include/ivy.h"
scripts/ivy-pc.sh "$prefix" > "$prefix/lib/pkgconfig/ivy.pc"
# The hook library has no ABI of its own beyond libc's names (and
# ivy_hook_attach, versioned by its table): one unversioned name.
install -m 0755 target/release/libivy_hook.so "$prefix/lib/libivy_hook.so"
scripts/ivy-hook-pc.sh "$prefix" > "$prefix/lib/pkgconfig/ivy-hook.pc"
echo "installed ivy into $prefix"
