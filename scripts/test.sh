#!/usr/bin/env bash
# Install everything, then run the checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$HOME/.local/bin:$PATH"
# tests/test_browser.py drives Debian's chromium (never a Playwright-downloaded browser).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== apt-get install chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# The MySQL sync tests start Debian's MariaDB (no MySQL 8 server installs here); its package
# start is blocked by policy-rc.d, so no stray service runs.
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ] && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null 2>&1; then
  echo "== apt-get install mariadb-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
fi
echo "== ruff";   .venv/bin/ruff check dapframe tests bench
echo "== mypy";   .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest -q -ra "$@"
