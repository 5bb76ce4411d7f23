#!/usr/bin/env bash
# Builds and runs the C test suite and the C examples against BOTH libivy.so and
# libivy.a, with gcc and clang (-Wall -Wextra -Werror -std=c99 -pedantic), the
# C++ tests (tests/c/test_*.cpp) with g++ and clang++, checks that ivy.h compiles
# as C++, then runs the suite under valgrind (memcheck, leak check) and under
# ASan+UBSan. Called by ./test.sh. Prints "N passed, N failed" at the end.
#
#   tests/c/run.sh            everything
#   IVY_C_NO_VALGRIND=1 ...   skip the valgrind pass
#   IVY_C_NO_SANITIZE=1 ...   skip the ASan+UBSan pass
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

cargo build --release --lib
libdir=$root/target/release
# The shared library's SONAME is libivy.so.MAJOR[.MINOR]; programs linked with
# -livy look for that name at run time, as after scripts/install.sh.
soname=$(readelf -d "$libdir/libivy.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ -n "$soname" ] && ln -sf libivy.so "$libdir/$soname"
out=$root/target/c-tests
rm -rf "$out"
mkdir -p "$out/pkgconfig"

# The build tree's own pkg-config file: everything below compiles through it.
scripts/ivy-pc.sh "$root" "$libdir" "$root/include" > "$out/pkgconfig/ivy.pc"
export PKG_CONFIG_PATH=$out/pkgconfig
cflags="$(pkg-config --cflags ivy) -I$root/tests/c -Wall -Wextra -Werror -std=c99 -pedantic -O1 -g"
shared_libs="$(pkg-config --libs ivy) -Wl,-rpath,$libdir -pthread"
static_libs="$libdir/libivy.a $(pkg-config --libs-only-l --static ivy | sed 's/-livy//') -pthread"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
ko() { failed=$((failed + 1)); echo "FAIL $*"; }

compilers="gcc"
if command -v clang >/dev/null 2>&1; then
    compilers="gcc clang"
elif [ -n "${CI:-}" ]; then
    ko "clang is not installed (.ci/run installs it)"
else
    echo "warning: clang not found; C files compiled with gcc only" >&2
fi

cxx_compilers=""
for cxx in g++ clang++; do
    if command -v $cxx >/dev/null 2>&1; then
        cxx_compilers="$cxx_compilers $cxx"
    elif [ -n "${CI:-}" ]; then
        ko "$cxx is not installed (.ci/run installs it)"
    fi
done
cxxflags="$(pkg-config --cflags ivy) -I$root/tests/c -Wall -Wextra -Werror -std=c++17 -pedantic -O1 -g"

# Compiles SRC with compiler CC against LINK (shared|static) into target BIN; a
# .cpp file with CC's C++ flags. EXTRA: more flags (the sanitizer pass).
build() {
    local cc=$1 link=$2 src=$3 bin=$4 extra=${5:-} libs flags=$cflags
    if [ "$link" = shared ]; then libs=$shared_libs; else libs=$static_libs; fi
    case $src in *.cpp) flags=$cxxflags ;; esac
    # shellcheck disable=SC2086
    $cc $flags $extra "$src" -o "$bin" $libs
}

# 0. The shared library names its ABI: SONAME libivy.so.MAJOR (.MINOR before 1.0).
major=$(sed -n 's/^#define IVY_VERSION_MAJOR \([0-9]*\)/\1/p' include/ivy.h)
minor=$(sed -n 's/^#define IVY_VERSION_MINOR \([0-9]*\)/\1/p' include/ivy.h)
if [ "$major" = 0 ]; then want=libivy.so.0.$minor; else want=libivy.so.$major; fi
if [ "$soname" = "$want" ]; then ok "SONAME $soname"; else ko "SONAME is '$soname', want $want"; fi

# 1. The header alone, as C (both compilers) and C++ (extern "C" guards).
for cc in $compilers; do
    if $cc $cflags -fsyntax-only -x c include/ivy.h; then ok "header compiles as C99 with $cc"; else ko "header as C with $cc"; fi
done
for cxx in g++ clang++; do
    command -v $cxx >/dev/null 2>&1 || continue
    # shellcheck disable=SC2086
    if $cxx -std=c++11 -Wall -Wextra -Werror -pedantic $(pkg-config --cflags ivy) tests/c/header_cpp.cpp \
        -o "$out/header_cpp_$cxx" $shared_libs && "$out/header_cpp_$cxx"; then
        ok "header compiles and links as C++ with $cxx"
    else
        ko "header as C++ with $cxx"
    fi
done

# 1b. The C++ binding (bindings/cpp/ivy.hpp) and its test, with both C++ compilers.
for cxx in g++ clang++; do
    command -v $cxx >/dev/null 2>&1 || continue
    bin=$out/cpp_test_$cxx
    # shellcheck disable=SC2086
    if $cxx -std=c++17 -Wall -Wextra -Werror -pedantic $(pkg-config --cflags ivy) -Ibindings/cpp \
        bindings/cpp/test_ivy.cpp -o "$bin" $shared_libs && "$bin" > "$bin.log" 2>&1; then
        ok "C++ binding ($cxx): $(tail -n 1 "$bin.log")"
    else
        ko "C++ binding ($cxx)"
        cat "$bin.log" 2>/dev/null || true
    fi
done

# 2. The C suite: every test file, every compiler, shared and static.
for src in tests/c/test_*.c; do
    name=$(basename "$src" .c)
    for cc in $compilers; do
        for link in shared static; do
            bin=$out/${name}_${cc}_${link}
            if ! build "$cc" "$link" "$src" "$bin"; then
                ko "$name ($cc, $link): does not compile"
                continue
            fi
            log=$bin.log
            if "$bin" > "$log" 2>&1; then
                ok "$name ($cc, $link): $(tail -n 1 "$log")"
            else
                ko "$name ($cc, $link)"
                cat "$log"
            fi
        done
    done
done

# 2b. The C++ tests (tests/c/test_*.cpp: what only C++ programs do, such as
#     exceptions across task switches): both C++ compilers, shared and static.
for src in tests/c/test_*.cpp; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .cpp)
    for cxx in $cxx_compilers; do
        for link in shared static; do
            bin=$out/${name}_${cxx}_${link}
            if ! build "$cxx" "$link" "$src" "$bin"; then
                ko "$name ($cxx, $link): does not compile"
                continue
            fi
            if "$bin" > "$bin.log" 2>&1; then
                ok "$name ($cxx, $link): $(tail -n 1 "$bin.log")"
            else
                ko "$name ($cxx, $link)"
                cat "$bin.log"
            fi
        done
    done
done

# 3. The examples: each builds with both compilers and both libraries, and runs
#    (each example checks its own output and exits non-zero on a mismatch).
for src in examples/c/*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c)
    for cc in $compilers; do
        for link in shared static; do
            bin=$out/example_${name}_${cc}_${link}
            if build "$cc" "$link" "$src" "$bin" && "$bin" > "$bin.log" 2>&1; then
                ok "example $name ($cc, $link)"
            else
                ko "example $name ($cc, $link)"
                cat "$bin.log" 2>/dev/null || true
            fi
        done
    done
done

# 4. Installation: install into a scratch prefix, then the README's one-liner.
prefix=$out/prefix
if scripts/install.sh "$prefix" >/dev/null 2>&1 &&
    PKG_CONFIG_PATH=$prefix/lib/pkgconfig gcc examples/c/hello.c -o "$out/hello_installed" \
        $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs ivy) -Wl,-rpath,"$prefix/lib" &&
    "$out/hello_installed" >/dev/null; then
    ok "install + cc hello.c \$(pkg-config --cflags --libs ivy)"
else
    ko "install + pkg-config build of hello.c"
fi

# 5. valgrind: memcheck with leak check over the gcc/shared build of the suite.
if [ -z "${IVY_C_NO_VALGRIND:-}" ]; then
    if command -v valgrind >/dev/null 2>&1; then
        for src in tests/c/test_*.c tests/c/test_*.cpp; do
            [ -e "$src" ] || continue
            case $src in
                *.cpp) name=$(basename "$src" .cpp) bin=$out/${name}_g++_shared ;;
                *) name=$(basename "$src" .c) bin=$out/${name}_gcc_shared ;;
            esac
            [ -x "$bin" ] || continue
            if valgrind -q --error-exitcode=1 --leak-check=full \
                --suppressions=tests/c/valgrind.supp "$bin" > "$bin.vg.log" 2>&1; then
                ok "$name under valgrind: $(grep -E '^[0-9]+ passed' "$bin.vg.log" | tail -n 1)"
            else
                ko "$name under valgrind"
                tail -n 80 "$bin.vg.log"
            fi
        done
    else
        ko "valgrind is not installed (apt-get install -y valgrind)"
    fi
fi

# 6. ASan + UBSan: every C test with each C compiler, every C++ test and the C++
#    binding's test with each C++ compiler, linked against libivy.so.
#
#    Only the test programs are instrumented; libivy itself is Rust, built as
#    usual (its memory safety is the Rust suite's and valgrind's business). ivy
#    runs the instrumented code on stacks it mmaps (one per task and per
#    generator), and tells ASan about every switch between them when the ASan
#    runtime is in the process (__sanitizer_start/finish_switch_fiber, see
#    src/task/thread_state.rs). Without that, a C++ throw in a task printed "ASan
#    is ignoring requested __asan_handle_no_return ... False positive error
#    reports may follow", and they did (test_cxx_exceptions.cpp,
#    test_ivy_calls_after_a_deep_throw). What the options below are for:
#    - detect_stack_use_after_return=0: with it, ASan moves locals to a "fake
#      stack" per thread, freed in LIFO order, which task switches break; ivy
#      keeps one fake stack per thread, so the check is not supported with ivy.
#      It is off by default in gcc 12 / clang 14; set here so that a newer
#      default or a user's ASAN_OPTIONS cannot turn it on.
#    - Leak checking (LeakSanitizer, on by default) stays on; it does not scan
#      suspended tasks' stacks for roots, which is fine for a suite whose tasks
#      all finish (valgrind, above, does scan them).
#    - Any "WARNING:" or "runtime error" in a test's output fails it, even when
#      the test itself passed.
if [ -z "${IVY_C_NO_SANITIZE:-}" ]; then
    san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    asan_options="detect_stack_use_after_return=0:detect_leaks=1:halt_on_error=1:abort_on_error=0"
    ubsan_options="print_stacktrace=1:halt_on_error=1"
    san_run() { # NAME BIN
        local name=$1 bin=$2 log=$2.log
        if ASAN_OPTIONS=$asan_options UBSAN_OPTIONS=$ubsan_options "$bin" > "$log" 2>&1 &&
            ! grep -q -e 'WARNING:' -e 'runtime error' "$log"; then
            ok "$name under ASan+UBSan: $(tail -n 1 "$log")"
        else
            ko "$name under ASan+UBSan"
            tail -n 80 "$log"
        fi
    }
    san_targets=()
    for src in tests/c/test_*.c; do
        for cc in $compilers; do san_targets+=("$cc:$src"); done
    done
    for src in tests/c/test_*.cpp bindings/cpp/test_ivy.cpp; do
        [ -e "$src" ] || continue
        for cxx in $cxx_compilers; do san_targets+=("$cxx:$src"); done
    done
    for target in "${san_targets[@]}"; do
        cc=${target%%:*} src=${target#*:}
        name=$(basename "${src%.*}")
        [ "$src" = bindings/cpp/test_ivy.cpp ] && name=cpp_binding
        bin=$out/${name}_${cc}_asan
        extra=$san
        [ "$src" = bindings/cpp/test_ivy.cpp ] && extra="$san -Ibindings/cpp"
        if build "$cc" shared "$src" "$bin" "$extra"; then
            san_run "$name ($cc)" "$bin"
        else
            ko "$name ($cc) with -fsanitize=address,undefined: does not compile"
        fi
    done
fi

echo "c: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
