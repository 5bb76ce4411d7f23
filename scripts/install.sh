#!/usr/bin/env bash
# Builds libivy (shared and static) and installs it with its header and
# pkg-config file:   scripts/install.sh PREFIX   (default /usr/local)
# Then:              cc prog.c $(pkg-config --cflags --libs ivy)
# (with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig if PREFIX is not a system prefix).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/usr/local}
cargo build --release --lib
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 target/release/libivy.so "$prefix/lib/libivy.so"
install -m 0644 target/release/libivy.a "$prefix/lib/libivy.a"
install -m 0644 include/ivy.h "$prefix/include/ivy.h"
scripts/ivy-pc.sh "$prefix" > "$prefix/lib/pkgconfig/ivy.pc"
echo "installed ivy into $prefix"
