#!/usr/bin/env bash
# Set up .venv and run the demo: train MAKE on the bundled catalog, index it, compare with BM25.
# The [serve] extra comes along so that `make-retrieval serve` works on the demo's index afterwards.
set -euo pipefail
EXTRAS="[serve]" source "$(dirname "$0")/setup.sh"
.venv/bin/make-retrieval demo "$@"
echo "(the commands above run inside the environment: source .venv/bin/activate)"
