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
exec python -m pytest "$@"
