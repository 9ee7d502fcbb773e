#!/usr/bin/env bash
# Install everything, then the main job on the embedded default: start the DAP API emulator,
# sync every canvas table into a local DuckDB file (initdb the first time, syncdb after), and
# print the rows per table and where the file is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/dapframe demo-sync "$@"
