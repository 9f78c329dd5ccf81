#!/usr/bin/env bash
# Set up .venv (fast when already done) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest python_tests "$@"
