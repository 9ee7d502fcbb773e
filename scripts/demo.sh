#!/usr/bin/env bash
# Install everything, start the embedded DAP API emulator, then list and describe its tables.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/dapframe demo "$@"
