#!/usr/bin/env bash
# Set up the app on a fresh machine (Python 3.11) and start it on the shipped sample checkpoints.
# It listens on 127.0.0.1 only; CAKD_VIZ_ADDRESS=0.0.0.0 (or an interface's address) serves it to others
# (read "Serving cakd-viz to others" in README.md first). Extra arguments go to `cakd-viz app`, e.g.
# `bash scripts/start.sh --port 8600` or `bash scripts/start.sh path/to/bundles`.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q -r requirements.txt
# The sample bundles ship with the repo; rebuild them only if they are missing.
[ -f sample_checkpoints/glyphs/bundle/meta.json ] || .venv/bin/python -m cakd_viz samples build
exec .venv/bin/python -m cakd_viz app "$@"
