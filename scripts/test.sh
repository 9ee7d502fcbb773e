#!/usr/bin/env bash
# Install everything, then run the checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$HOME/.local/bin:$PATH"
echo "== ruff";   .venv/bin/ruff check dapframe tests bench
echo "== mypy";   .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest -q -ra "$@"
