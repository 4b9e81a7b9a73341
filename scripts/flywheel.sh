#!/usr/bin/env bash
# `make flywheel`: builds what is missing (app venv, vLLM venv, converted model), makes sure
# PostgreSQL and Redis answer, then runs scripts/flywheel.py on a fresh database of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(bash scripts/bootstrap.sh)
export PATH="$VENV/bin:$PATH"
bash scripts/services.sh
VLLM_VENV=$(bash scripts/vllm_venv.sh | tail -n 1)
export LSW_VLLM_PYTHON="$VLLM_VENV/bin/python"
exec python scripts/flywheel.py --fresh "$@"
