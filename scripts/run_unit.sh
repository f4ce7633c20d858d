#!/usr/bin/env bash
# run_unit.sh BUILD - runs every unit test binary BUILD/tests/test_* from the repository root and counts test cases.
#
# Counting: cmocka prints "[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s)..." / "[  SKIPPED ] N test(s)." per
# group; those are summed. A binary that exits non-zero without a cmocka failure count (a crash, a sanitizer
# report, a timeout) counts as one failed case; one that prints no cmocka summary and exits 0 counts as one pass.
# Output: one line per binary, then "unit: N passed, N failed[, N skipped]". The full output of a failing binary is
# shown. If ZILI_COUNTS is set, "unit P F S" is appended to that file (run_tests.sh adds these up).
# Exit status: 0 when nothing failed, 1 otherwise. Each binary gets UNIT_TIMEOUT seconds (default 900).
set -uo pipefail

BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 2
TIMEOUT=${UNIT_TIMEOUT:-900}

pass=0 fail=0 skip=0 nbin=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for bin in "$BUILD"/tests/test_*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    case "$bin" in *.d|*.o) continue ;; esac
    nbin=$((nbin + 1))
    name=$(basename "$bin")
    start=$EPOCHREALTIME
    timeout "$TIMEOUT" "$bin" >"$log" 2>&1
    rc=$?
    secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1   # crashed, sanitizer abort, timeout (124) or failed before cmocka's summary
    fi
    if [ "$rc" -eq 0 ] && [ $((p + f + s)) -eq 0 ]; then
        p=1   # not a cmocka binary, or one without a summary: one case, judged by its exit status
    fi
    pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
    if [ "$rc" -eq 0 ] && [ "$f" -eq 0 ]; then
        printf 'PASS %-24s %3d passed%s (%ss)\n' "$name" "$p" "$([ "$s" -gt 0 ] && echo ", $s skipped")" "$secs"
    else
        echo "---- $name (exit $rc) ----"
        cat "$log"
        printf 'FAIL %-24s %3d passed, %d failed (exit %d%s)\n' "$name" "$p" "$f" "$rc" \
            "$([ "$rc" -eq 124 ] && echo ", timed out after ${TIMEOUT}s")"
    fi
done

if [ "$nbin" -eq 0 ]; then
    echo "run_unit: no test binaries in $BUILD/tests (build them first: make)" >&2
    fail=$((fail + 1))
fi
summary="$pass passed, $fail failed"
[ "$skip" -gt 0 ] && summary="$summary, $skip skipped"
echo "unit: $summary"
[ -n "${ZILI_COUNTS:-}" ] && echo "unit $pass $fail $skip" >>"$ZILI_COUNTS"
[ "$fail" -eq 0 ]
