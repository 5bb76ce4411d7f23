#!/usr/bin/env bash
# Writes a pkg-config file for ivy to stdout.
#   scripts/ivy-pc.sh PREFIX [LIBDIR] [INCLUDEDIR]
# LIBDIR defaults to PREFIX/lib and INCLUDEDIR to PREFIX/include. Libs.private
# lists what the static library needs (rustc --print native-static-libs).
set -euo pipefail
prefix=${1:?usage: ivy-pc.sh PREFIX [LIBDIR] [INCLUDEDIR]}
libdir=${2:-$prefix/lib}
includedir=${3:-$prefix/include}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml" | head -n 1)
cat <<PC
prefix=$prefix
libdir=$libdir
includedir=$includedir

Name: ivy
Description: Green threads (stackful coroutines on a work-stealing scheduler) with a C ABI
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -livy
Libs.private: -lgcc_s -lutil -lrt -lpthread -lm -ldl
PC
