#!/usr/bin/env bash
# setup.sh [build|test|ci] - installs what zili needs, once, and says so in one line; a second run installs nothing.
# The one place that lists what zili depends on (the Makefile's `run`, `test` and `setup` targets and .ci/run call it):
#   build  Debian packages to build zili and run it (compiler, libmicrohttpd, jansson, PCRE2, cmocka, Python to fetch
#          the default model from PyPI);
#   test   build + the test tools (clang and its sanitizer runtime, binutils' objdump) and the Python test packages of
#          requirements-test.txt in the project's virtual environment .venv (git-ignored), with the reference
#          llama.cpp (llama-cpp-python) compiled without GGML_NATIVE (see below);
#   ci     test + the aarch64 cross compiler, qemu-user and the arm64 dev libraries for `make test-arm`.
# Debian packages need root: as another user, the missing ones are named with the exact command to run, and the
# script exits 1 without installing anything. The virtual environment needs no root.
#
# The reference llama.cpp is built with explicit instruction-set flags instead of -march=native: AVX, AVX2, FMA, F16C,
# BMI2, AVX-512 (F/CD/VL/DQ/BW), VBMI, VNNI and BF16 as this CPU has them, and never AMX. llama.cpp built natively on
# a CPU with AMX multiplies repacked weights through its AMX kernels, which crash in llama-cpp-python 0.3.36 and would
# not be bit-identical to anything zili computes; without AMX the same source gives llama.cpp's AVX-512 results on
# Intel and AMD alike. The wheel is built once per flag set into ~/.cache/zili/wheels/ (a wheel in pip's own cache may
# have been built with other flags, so pip's cache is not used for it) and installed from there.
set -euo pipefail
cd "$(dirname "$0")/.."

WHAT=${1:-build}
case "$WHAT" in build|test|ci) ;; *) echo "setup.sh: unknown part '$WHAT' (build, test or ci)" >&2; exit 2 ;; esac

# The Vulkan backend: headers and glslc to build it, libvulkan1 + Mesa (lavapipe runs it on the CPU) to run it.
DEB_BUILD="build-essential pkg-config libcmocka-dev libjansson-dev libmicrohttpd-dev libpcre2-dev libutf8proc-dev python3 python3-pip
           libvulkan-dev glslc mesa-vulkan-drivers"
DEB_TEST="clang libclang-rt-14-dev binutils cmake git ca-certificates python3-venv python3-dev"
DEB_ARM="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libcmocka-dev:arm64 libjansson-dev:arm64
         libmicrohttpd-dev:arm64 libpcre2-dev:arm64 libutf8proc-dev:arm64"
LLAMA_CPP_PYTHON=llama-cpp-python==0.3.36
VENV=${ZILI_VENV:-.venv}
WHEELS=${ZILI_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/zili/wheels}

say() { echo "setup: $*"; }

# --- Debian packages -----------------------------------------------------------------------------------------------
want=$DEB_BUILD
[ "$WHAT" != build ] && want="$want $DEB_TEST"
[ "$WHAT" = ci ] && want="$want $DEB_ARM"
# installed(PKG): an unqualified name means this machine's architecture (once arm64 is added, a bare name would
# also match the arm64 package) or an arch-independent package.
native=$(dpkg --print-architecture 2>/dev/null || echo amd64)
status_has() { local st; st=$(dpkg-query -W -f='${db:Status-Status}\n' "$1" 2>/dev/null || true); [[ $'\n'"$st"$'\n' == *$'\n'installed$'\n'* ]]; }
installed() {
    case "$1" in *:*) status_has "$1" ;; *) status_has "$1:$native" || status_has "$1" ;; esac
}
missing=""
for p in $want; do
    installed "$p" || missing="$missing $p"
done
missing=${missing# }
if [ -n "$missing" ]; then
    arm_arch=""
    case " $missing " in *:arm64*) arm_arch="dpkg --add-architecture arm64 && " ;; esac
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages; run as root:" >&2
        echo "  ${arm_arch}apt-get update && apt-get install -y --no-install-recommends $missing" >&2
        exit 1
    fi
    say "installing Debian packages: $missing"
    export DEBIAN_FRONTEND=noninteractive
    if [ -n "$arm_arch" ]; then dpkg --add-architecture arm64; fi
    log=$(mktemp)
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends $missing; } >"$log" 2>&1; then
        tail -30 "$log" >&2
        rm -f "$log"
        echo "setup: apt-get failed (above)" >&2
        exit 1
    fi
    rm -f "$log"
fi
[ "$WHAT" = build ] && exit 0

# --- Python test packages in .venv -------------------------------------------------------------------------------
# The CPU's flags for the reference build (x86-64); other CPUs build llama.cpp as its defaults say.
cpu_flags() {
    local f out=""
    f=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
    has() { case "$f" in *" $1 "*) return 0 ;; esac; return 1; }
    [ "$(uname -m)" = x86_64 ] || { echo ""; return; }
    out="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
    has sse4_2 && out="$out -DGGML_SSE42=ON" || out="$out -DGGML_SSE42=OFF"
    has avx && out="$out -DGGML_AVX=ON" || out="$out -DGGML_AVX=OFF"
    has avx2 && out="$out -DGGML_AVX2=ON" || out="$out -DGGML_AVX2=OFF"
    has fma && out="$out -DGGML_FMA=ON" || out="$out -DGGML_FMA=OFF"
    has f16c && out="$out -DGGML_F16C=ON" || out="$out -DGGML_F16C=OFF"
    has bmi2 && out="$out -DGGML_BMI2=ON" || out="$out -DGGML_BMI2=OFF"
    has avx_vnni && out="$out -DGGML_AVX_VNNI=ON" || out="$out -DGGML_AVX_VNNI=OFF"
    if has avx512f && has avx512cd && has avx512vl && has avx512dq && has avx512bw; then
        out="$out -DGGML_AVX512=ON"
        has avx512vbmi && out="$out -DGGML_AVX512_VBMI=ON" || out="$out -DGGML_AVX512_VBMI=OFF"
        has avx512_vnni && out="$out -DGGML_AVX512_VNNI=ON" || out="$out -DGGML_AVX512_VNNI=OFF"
        has avx512_bf16 && out="$out -DGGML_AVX512_BF16=ON" || out="$out -DGGML_AVX512_BF16=OFF"
    else
        out="$out -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF"
    fi
    echo "$out"
}
CMAKE_FLAGS=$(cpu_flags)
# The wheel depends only on the llama-cpp-python version and the flags; the stamp also on requirements-test.txt, so
# adding a test package installs it without rebuilding llama.cpp.
wkey=$(printf '%s\n' "$LLAMA_CPP_PYTHON $CMAKE_FLAGS" | sha256sum | cut -c1-16)
key=$(printf '%s\n%s\n' "$LLAMA_CPP_PYTHON $CMAKE_FLAGS" "$(cat requirements-test.txt)" | sha256sum | cut -c1-16)
stamp=$VENV/.zili-setup
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
    exit 0
fi

PY=${PYTHON_FOR_VENV:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
log=$(mktemp)
fail() { tail -40 "$log" >&2; rm -f "$log"; echo "setup: $1 (log above)" >&2; exit 1; }
whl_dir=$WHEELS/$wkey
whl=$(ls "$whl_dir"/llama_cpp_python-*.whl 2>/dev/null | head -1 || true)
if [ -n "$whl" ]; then
    say "installing the Python test packages into $VENV (reference llama.cpp from $whl_dir)"
else
    say "installing the Python test packages into $VENV; building the reference llama.cpp ($LLAMA_CPP_PYTHON," \
        "without GGML_NATIVE or AMX: 10-30 minutes on 2 cores, once)"
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV" >"$log" 2>&1 || fail "could not create the virtual environment $VENV"
fi
VPY=$VENV/bin/python
if [ -z "$whl" ]; then
    mkdir -p "$whl_dir"
    CMAKE_ARGS="$CMAKE_FLAGS" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
        "$VPY" -m pip wheel --no-cache-dir --no-deps -w "$whl_dir.tmp" "$LLAMA_CPP_PYTHON" >"$log" 2>&1 \
        || fail "building $LLAMA_CPP_PYTHON failed"
    mv "$whl_dir.tmp"/llama_cpp_python-*.whl "$whl_dir"/
    rm -rf "$whl_dir.tmp"
    echo "$LLAMA_CPP_PYTHON $CMAKE_FLAGS" >"$whl_dir/FLAGS"
    whl=$(ls "$whl_dir"/llama_cpp_python-*.whl | head -1)
fi
"$VPY" -m pip install -q --force-reinstall --no-deps "$whl" >"$log" 2>&1 || fail "installing $whl failed"
"$VPY" -m pip install -q "$whl" >"$log" 2>&1 && "$VPY" -m pip install -q -r requirements-test.txt >"$log" 2>&1 \
    || fail "pip install -r requirements-test.txt failed"
"$VPY" -c "import numpy, gguf, jinja2, pytest, openai, llama_cpp" >"$log" 2>&1 || fail "the test packages do not import"
rm -f "$log"
echo "$key" >"$stamp"
