#!/usr/bin/env bash
# Set up .venv (fast when already done) and run the main job: `dssm demo` (train a DSS model, reduce it
# with balanced truncation, modal and h2 reduction, retrain, time full against reduced). Extra
# arguments go to `dssm demo` (see `dssm demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/dssm demo "$@"
