# Sourced by demo.sh and test.sh: create/update .venv and install the package.
# EXTRAS selects optional dependencies (e.g. "[dev]").
# torch goes in first, pinned to the CPU wheel, so that the package's torch range is already met
# and pip never pulls a multi-GB CUDA build; set TORCH_SPEC to install another build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check "$TORCH_SPEC"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${EXTRAS:-}"
