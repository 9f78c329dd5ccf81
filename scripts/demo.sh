#!/usr/bin/env bash
# Set up .venv (fast when already done) and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/s4d_conv.py "$@"
