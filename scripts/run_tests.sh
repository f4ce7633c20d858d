#!/usr/bin/env bash
# run_tests.sh BUILD - every test: the models first (so that the unit tests that load SmolLM2 or the random models run
# instead of skipping), the unit tests (scripts/run_unit.sh), then the Python tests: tests/ref (zili
# against our float reference and against llama.cpp), tests/server (zili serve through the openai SDK and raw
# HTTP) and tests/hostile (malformed files and requests), with the models they need fetched (SmolLM2,
# scripts/fetch_models.sh) or generated (random models, tools/gen_gguf.py) when missing.
#
# The last line is the total over test cases: "N passed, N failed" (", N skipped" if any). Exit status 1 if anything
# failed, including a stage that could not run at all (no model, no pytest, no llama-cpp-python: the llama.cpp
# tests are not optional and fail, not skip, without it).
# Environment: PYTHON (default python3), PYTEST_ARGS (extra pytest arguments, e.g. "-k float").
set -uo pipefail

BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 2
PYTHON=${PYTHON:-python3}

counts=$(mktemp)
junit=$(mktemp --suffix=.xml)
trap 'rm -f "$counts" "$junit"' EXIT
extra_fail=0

echo "== models"
if ! scripts/fetch_models.sh models; then
    echo "run_tests: FAIL: could not fetch the default model" >&2
    extra_fail=$((extra_fail + 1))
fi
if ! "$PYTHON" tests/ref/common.py; then
    echo "run_tests: FAIL: could not generate the random test models" >&2
    extra_fail=$((extra_fail + 1))
fi

echo "== unit tests ($BUILD)"
ZILI_COUNTS=$counts scripts/run_unit.sh "$BUILD"

# The x86 kernel sets are chosen by CPUID; an instruction from an extension no set checks for would fault on some
# CPUs and not others (VEX-encoded VPDPBUSD is AVX-VNNI, which many AVX512-VNNI CPUs lack). One counted case.
# (No `objdump | grep -q` here: with pipefail, grep's early exit fails objdump with SIGPIPE and skipped the check.)
fmt=$(objdump -f "$BUILD/libzili.a" 2>/dev/null)
if [[ "$fmt" == *x86-64* ]]; then
    vex=$(objdump -d "$BUILD/libzili.a" | grep -c '{vex} vpdpbusd')
    if [ "$vex" -eq 0 ]; then
        echo "PASS isa check: no AVX-VNNI (VEX) dot instructions in $BUILD/libzili.a"
        echo "isa 1 0 0" >>"$counts"
    else
        echo "run_tests: FAIL: $vex VEX-encoded vpdpbusd (AVX-VNNI, not checked at run time) in $BUILD/libzili.a" >&2
        echo "isa 0 1 0" >>"$counts"
    fi
elif [ "$(uname -m)" = x86_64 ]; then
    echo "run_tests: FAIL: isa check: objdump could not read $BUILD/libzili.a (binutils missing?)" >&2
    echo "isa 0 1 0" >>"$counts"
fi

PY_DIRS="tests/ref tests/server"
[ -d tests/hostile ] && PY_DIRS="$PY_DIRS tests/hostile"
echo "== Python tests ($PY_DIRS)"
if ! "$PYTHON" -c "import pytest" 2>/dev/null; then
    echo "run_tests: FAIL: pytest is not installed (pip install -r requirements-test.txt)" >&2
    extra_fail=$((extra_fail + 1))
else
    # shellcheck disable=SC2086
    ZILI="$BUILD/zili" "$PYTHON" -m pytest -q --tb=short -p no:cacheprovider --junitxml="$junit" \
        ${PYTEST_ARGS:-} $PY_DIRS
    rc=$?
    # pytest: 0 all passed, 1 some failed, 5 nothing collected; anything else is an internal/usage error.
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
        echo "run_tests: FAIL: pytest exited with status $rc" >&2
        extra_fail=$((extra_fail + 1))
    fi
    if [ -s "$junit" ]; then
        "$PYTHON" - "$junit" >>"$counts" <<'EOF'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
n = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
k = sum(int(s.get("skipped", 0)) for s in suites)
print(f"python {n - f - k} {f} {k}")
EOF
    fi
fi

read -r pass fail skip < <(awk '{p+=$2; f+=$3; s+=$4} END {print p+0, f+0, s+0}' "$counts")
fail=$((fail + extra_fail))
summary="$pass passed, $fail failed"
[ "$skip" -gt 0 ] && summary="$summary, $skip skipped"
echo "$summary"
[ "$fail" -eq 0 ]
