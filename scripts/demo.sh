#!/usr/bin/env bash
# Set up .venv and run the demo: train MAKE on the bundled catalog, index it, compare with BM25.
set -euo pipefail
EXTRAS="" source "$(dirname "$0")/setup.sh"
.venv/bin/make-retrieval demo "$@"
echo "(the commands above run inside the environment: source .venv/bin/activate)"
