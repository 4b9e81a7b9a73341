#!/usr/bin/env bash
# The README's "run the whole test suite" command (and what CI runs): builds what is missing, makes
# sure PostgreSQL and Redis are up, and runs pytest. pytest's own exit code is the answer: a failure
# or an empty run (exit 5) fails the command.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(bash scripts/bootstrap.sh)
export PATH="$VENV/bin:$PATH"
bash scripts/services.sh
bash scripts/system_packages.sh
# The model tests run the real vLLM CPU server: its own venv and the converted bundled model,
# both cached under ~/.cache/labelwork and rebuilt only when missing.
export LSW_VLLM_PYTHON="$(bash scripts/vllm_venv.sh | tail -n 1)/bin/python"
python -m models_service.model_files prepare >/dev/null
exec python -m pytest "$@"
