#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine (Python 3.11), then run all of it.
# This is exactly what CI runs (.ci/run). Extra arguments go to pytest, e.g. `bash scripts/test.sh -k decompose`.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q -r requirements-dev.txt

# Browser tests drive Debian's Chromium through Playwright (never `playwright install`); the fused
# CAKD loss kernel (cakd_viz/native.py) is built with the system C compiler, and its tests expect one.
packages=""
[ -x /usr/bin/chromium ] || packages="chromium"
command -v cc >/dev/null 2>&1 || packages="$packages gcc libc6-dev"
if [ -n "$packages" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages >/dev/null
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -ra "$@"
