#!/usr/bin/env bash
# Writes the pkg-config file of libivy_hook (the libc hook layer: README,
# "Hooked libc calls") to stdout.
#   scripts/ivy-hook-pc.sh PREFIX [LIBDIR]
# `pkg-config --libs ivy-hook` gives `-livy_hook -livy`: the hook library
# first, so that its libc-named symbols come before libc's.
set -euo pipefail
prefix=${1:?usage: ivy-hook-pc.sh PREFIX [LIBDIR]}
libdir=${2:-$prefix/lib}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml" | head -n 1)
cat <<PC
prefix=$prefix
libdir=$libdir

Name: ivy-hook
Description: Interposes libc's blocking calls so that they park the calling ivy task
Version: $version
Requires: ivy = $version
Libs: -L\${libdir} -livy_hook
PC
