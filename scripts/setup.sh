#!/usr/bin/env bash
# Create .venv/ at the repo root and install everything into it. Idempotent: a second run on a
# machine already set up only compares a fingerprint of the install inputs and returns.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_SPEC="torch==2.13.0"   # resolves to the CPU wheel this machine carries; never a bare "torch"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python

stamp=.venv/.dssm-setup-stamp
# the build switches count too: changing one rebuilds the extension
fingerprint=$( (cat requirements.txt setup.py pyproject.toml scripts/setup.sh $(find csrc -type f 2>/dev/null | sort);
               echo "DSSM_NO_EXTENSION=${DSSM_NO_EXTENSION:-} DSSM_CPU_ARCH=${DSSM_CPU_ARCH:-}") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ] && "$VPY" -c "import dssm_kernels" 2>/dev/null; then
  exit 0
fi

pip_install() { "$VPY" -m pip install --disable-pip-version-check -q "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }
pip_install "$TORCH_SPEC"
pip_install -r requirements.txt
"$VPY" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 'torch was replaced: ' + torch.__version__)"
# --no-build-isolation: setup.py imports the torch installed above; an isolated build would fetch another.
pip_install --no-build-isolation --no-deps -e .
"$VPY" -c "import dssm_kernels" || { echo "setup: dssm_kernels does not import" >&2; exit 1; }
echo "$fingerprint" > "$stamp"
