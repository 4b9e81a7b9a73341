#!/usr/bin/env bash
# The README's "run the product" command: builds what is missing, migrates, loads the demo project
# and runs web + worker + beat in the foreground. Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(bash scripts/bootstrap.sh)
export PATH="$VENV/bin:$PATH"
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-labelstudio_app.settings.dev}"
export PORT="${PORT:-8000}"
bash scripts/services.sh --optional || true

python scripts/ensure_database.py
python manage.py migrate --noinput
python manage.py collectstatic --noinput -v 0
python manage.py load_demo

# The model: the vLLM CPU server with the bundled model, unless MODEL_BASE_URL points elsewhere.
case "${MODEL_BASE_URL:-http://127.0.0.1:8001/v1}" in
  *127.0.0.1*|*localhost*)
    if [ "${MODEL_BACKEND:-vllm}" != transformers ]; then
      if VLLM_VENV=$(bash scripts/vllm_venv.sh | tail -n 1); then
        export LSW_VLLM_PYTHON="$VLLM_VENV/bin/python"
      else
        echo "*** vLLM could not be installed: using the in-process transformers backend instead ***" >&2
        export MODEL_BACKEND=transformers
      fi
    fi
    python manage.py prepare_model ;;
esac

echo
echo "Labelwork on http://127.0.0.1:$PORT/  (API docs: /api/docs/, admin: /admin/). Ctrl-C stops everything."
exec honcho -f Procfile.dev start
