#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine (Python 3.11), then run all of it.
# This is exactly what CI runs (.ci/run). Extra arguments go to pytest, e.g. `bash scripts/test.sh -k decompose`.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q -r requirements-dev.txt

# Browser tests drive Debian's Chromium through Playwright (never `playwright install`).
if [ ! -x /usr/bin/chromium ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

.venv/bin/ruff check .
.venv/bin/python -m pytest -ra "$@"
