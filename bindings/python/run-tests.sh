#!/usr/bin/env bash
# The Python package's test runner (test.sh's Python line calls it; so does CI).
#
#   bindings/python/run-tests.sh            # build, install, pytest, examples
#   bindings/python/run-tests.sh -k gather  # extra arguments go to pytest
#
# 1. A venv in target/pyvenv (python3 -m venv; reused between runs, created
#    afresh on a clean checkout such as CI's), with pytest in it.
# 2. `pip install ./bindings/python` into it: exactly what a user types. pip
#    builds a wheel through the PEP 517 backend (maturin, fetched by build
#    isolation) and installs that wheel, so this one step proves both that a
#    wheel builds and that a plain pip install works. Cargo's target directory
#    (bindings/python/target) persists, so a rebuild after a small change only
#    recompiles the binding crate.
# 3. The built wheel is also written to target/pywheels (`pip wheel`), the
#    artefact a release would upload; the check is that exactly one
#    ivyrt-*.whl comes out and that it holds the compiled extension.
# 4. pytest over bindings/python/tests, run from a scratch directory with
#    IVYRT_TEST_INSTALLED=1: nothing puts bindings/python/python on sys.path,
#    so the tests import the INSTALLED package, and test_examples.py asserts
#    that ivyrt.__file__ is inside the venv. test_examples.py also runs every
#    examples/python/*.py with the venv's python and checks what it prints.
#
# Environment: PYTHON (the interpreter that makes the venv; default python3),
# IVYRT_VENV (default target/pyvenv), IVYRT_FRESH_VENV=1 (delete the venv
# first: the clean-machine check, which CI gets by starting from nothing).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

PYTHON=${PYTHON:-python3}
VENV=${IVYRT_VENV:-$ROOT/target/pyvenv}
WHEELS=$ROOT/target/pywheels
SCRATCH=$ROOT/target/pytest-scratch

if [ "${IVYRT_FRESH_VENV:-0}" = 1 ]; then
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating the venv $VENV ($($PYTHON --version))"
    "$PYTHON" -m venv "$VENV"
fi
VPY=$VENV/bin/python
"$VPY" -c 'import pytest' 2>/dev/null || "$VPY" -m pip install -q pytest

echo "== pip install ./bindings/python (PEP 517: maturin builds the wheel, pip installs it)"
start=$(date +%s)
"$VPY" -m pip install -q --force-reinstall --no-deps ./bindings/python
echo "   installed in $(($(date +%s) - start)) s"

echo "== pip wheel ./bindings/python -> target/pywheels (cargo's build is reused)"
rm -rf "$WHEELS"
"$VPY" -m pip wheel -q --no-deps --wheel-dir "$WHEELS" ./bindings/python
shopt -s nullglob
wheels=("$WHEELS"/ivyrt-*.whl)
if [ ${#wheels[@]} -ne 1 ]; then
    echo "expected one ivyrt wheel in $WHEELS, found: ${wheels[*]:-none}" >&2
    exit 1
fi
"$VPY" - "${wheels[0]}" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ["ivyrt/__init__.py", "ivyrt/py.typed"]
missing = [n for n in need if n not in names]
if missing or not any(n.startswith("ivyrt/_ivyrt.") and n.endswith(".so") for n in names):
    sys.exit(f"wheel {sys.argv[1]} lacks {missing or 'the extension ivyrt/_ivyrt*.so'}: {names}")
print(f"   {sys.argv[1].rsplit('/', 1)[-1]}: {len(names)} files")
EOF

echo "== pytest over the installed package (from $SCRATCH, not the source tree)"
mkdir -p "$SCRATCH"
cd "$SCRATCH"
IVYRT_TEST_INSTALLED=1 IVYRT_REPO="$ROOT" \
    "$VPY" -m pytest -q -p no:cacheprovider "$ROOT/bindings/python/tests" "$@"
