#!/usr/bin/env bash
# Install everything dapframe needs into .venv (uv, then the locked dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv >/dev/null 2>&1 \
    || python3 -m pip install --quiet --user --disable-pip-version-check uv
  export PATH="$HOME/.local/bin:$PATH"
fi
uv sync --quiet --all-extras --group dev --locked
