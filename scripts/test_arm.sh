#!/usr/bin/env bash
# test_arm.sh [BUILD] - runs the aarch64 cross build (made by `make test-arm`) under qemu-user.
#
# 1. The unit tests test_dtype, test_kquant, test_ops (kernels), test_threadpool, test_gguf and test_tokenizer
#    (ARM_TESTS overrides) three times: with the
#    NEON set using the dot-product instructions (qemu's default "max" CPU has them), with ZILI_CPU=scalar, and on
#    an emulated Cortex-A72 (ARMv8.0, no SDOT), which takes the plain-NEON set ("neon-nodot"); an ARMv8.2
#    instruction slipping into that path would die there with SIGILL.
# 2. A 16-token greedy generation on SmolLM2 (one thread) whose text is compared with the same command on the x86
#    build in BUILD_X86 (default build), when the model file is present; it says how many tokens match.
# Each binary gets ARM_TIMEOUT seconds (default 600). Exit status 0 only when everything ran and passed.
#
# Loader: with Debian's multiarch arm64 libraries installed (libc6:arm64 comes with the :arm64 dev packages), the
# binaries must run with that libc's own /lib/ld-linux-aarch64.so.1, so QEMU_LD_PREFIX stays unset. Pointing it at
# the cross toolchain's /usr/aarch64-linux-gnu pairs that tree's ld.so with the multiarch libc.so.6 (found through
# /lib/aarch64-linux-gnu), two builds whose private loader/libc structures differ: the first pthread_create then
# spins forever. The prefix is used only where there is no multiarch loader.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

BUILD=${1:-build-arm64}
BUILD_X86=${BUILD_X86:-build}
TESTS=${ARM_TESTS:-test_dtype test_kquant test_ops test_threadpool test_gguf test_tokenizer}
TIMEOUT=${ARM_TIMEOUT:-600}
MODEL=${ARM_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
PROMPT=${ARM_PROMPT:-The capital of France is}
if [ -z "${QEMU_LD_PREFIX+x}" ] && [ ! -e /lib/ld-linux-aarch64.so.1 ]; then
    export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
fi
QEMU=${QEMU:-qemu-aarch64}

command -v "$QEMU" >/dev/null || { echo "test_arm: $QEMU not found (apt-get install qemu-user)" >&2; exit 2; }
fail=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_one() { # label, env assignments..., binary
    local label=$1; shift
    local start=$EPOCHREALTIME
    env "$@" >"$log" 2>&1
    local rc=$?
    local secs
    secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    local p f s
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    if [ "$rc" -eq 0 ] && [ "$f" -eq 0 ]; then
        printf 'PASS %-34s %3d passed, %d skipped (%ss)\n' "$label" "$p" "$s" "$secs"
    else
        tail -30 "$log"
        printf 'FAIL %-34s %3d passed, %d failed (exit %d%s, %ss)\n' "$label" "$p" "$f" "$rc" \
            "$([ "$rc" -eq 124 ] && echo ", timed out after ${TIMEOUT}s")" "$secs"
        fail=1
    fi
}

for t in $TESTS; do
    bin="$BUILD/tests/$t"
    [ -x "$bin" ] || { echo "FAIL $t: $bin missing (make test-arm builds it)"; fail=1; continue; }
    run_one "$t (neon)" timeout "$TIMEOUT" "$QEMU" "$bin"
    run_one "$t (ZILI_CPU=scalar)" ZILI_CPU=scalar timeout "$TIMEOUT" "$QEMU" "$bin"
    run_one "$t (cortex-a72, neon-nodot)" timeout "$TIMEOUT" "$QEMU" -cpu cortex-a72 "$bin"
done

if [ -f "$MODEL" ] && [ -x "$BUILD_X86/zili" ]; then
    # --exact: the x86 prompt would otherwise go through AMX tiles where the CPU has them (bf16 rounding, not the
    # exact kernels the ARM build is compared with).
    args=(run -m "$MODEL" --temp 0 -n 16 -t 1 --exact -p "$PROMPT")
    want=$("$BUILD_X86/zili" "${args[@]}" 2>/dev/null)
    for cpu in max cortex-a72; do
        got=$(timeout "$TIMEOUT" "$QEMU" -cpu "$cpu" "$BUILD/zili" "${args[@]}" 2>"$log")
        rc=$?
        # Compare token by token: both texts through the x86 tokenizer (the same vocabulary either way).
        read -r n_same n_want < <(python3 - "$BUILD_X86/zili" "$MODEL" "$want" "$got" <<'EOF'
import subprocess, sys
zili, model, want, got = sys.argv[1:]
def ids(text):
    r = subprocess.run([zili, "tokenize", "-m", model, "--no-bos"], input=text.encode(), capture_output=True)
    return r.stdout.split()
a, b = ids(want), ids(got)
same = 0
for x, y in zip(a, b):
    if x != y: break
    same += 1
print(same, len(a))
EOF
)
        if [ "$rc" -eq 0 ] && [ "$got" = "$want" ]; then
            echo "PASS greedy SmolLM2 16 tokens (qemu -cpu $cpu): identical to x86 ($n_same/$n_want tokens)"
        else
            echo "FAIL greedy SmolLM2 (qemu -cpu $cpu, exit $rc): first $n_same of $n_want tokens match"
            printf '  x86: %q\n  arm: %q\n' "$want" "$got"
            tail -3 "$log"
            fail=1
        fi
    done
else
    echo "SKIP greedy comparison: $MODEL or $BUILD_X86/zili missing (make models; make)"
fi

[ "$fail" -eq 0 ] && echo "test-arm: all passed" || echo "test-arm: FAILED"
exit "$fail"
