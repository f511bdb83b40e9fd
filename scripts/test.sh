#!/usr/bin/env bash
# Set up .venv with the dev extras and run the linter and the test suite.
set -euo pipefail
EXTRAS="[dev]" source "$(dirname "$0")/setup.sh"
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
