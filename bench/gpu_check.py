"""The GPU path in one short run: torchrun with NCCL on every GPU, fp32 / bf16 / fp16 autocast and
gradient caching on the demo config for a few hundred steps, then the demo catalog embedded over
the ranks and the test split evaluated, beside the CPU figures of docs/BENCHMARKS.md.

    bash bench/gpu_check.sh [OUT_DIR]          # what to run on a GPU machine (see that script)

Each training run is ``python -m torch.distributed.run --standalone --nproc_per_node N -m
make_retrieval.cli train`` on a copy of ``configs/demo.yaml`` with ``train.precision`` and
``train.grad_cache_chunk`` set and ``--max-steps``; samples/s is the median of its metrics log's
windows after the first. Prints one JSON line per run and writes them all to OUT_DIR/gpu_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "make_retrieval" / "configs" / "demo.yaml"
DATA = ROOT / "data" / "demo"
#: (name, train.precision, train.grad_cache_chunk): one-pass steps in each precision, then
#: gradient caching (a batch encoded 16 rows at a time) in bf16.
RUNS = [("fp32", "fp32", 0), ("bf16", "bf16", 0), ("fp16", "fp16", 0), ("bf16-gradcache", "bf16", 16)]


def torchrun(gpus: int, *args: str) -> list[str]:
    """A torchrun command line for the CLI on ``gpus`` ranks (NCCL is chosen on CUDA devices)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
    return [*launcher, "-m", "make_retrieval.cli", *args]


def run(command: list[str], log: Path) -> float:
    """Run ``command`` with its output in ``log``; seconds taken (raises with the log's end on failure)."""
    started = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n" + log.read_text()[-4000:])
    return time.perf_counter() - started


def samples_per_s(run_dir: Path) -> float:
    """Median samples/s over the metrics log's windows, the first (start-up) left out."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    speeds = [line["samples_per_s"] for line in lines if "samples_per_s" in line]
    return statistics.median(speeds[1:] or speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for a GPU machine (CPU figures are in docs/BENCHMARKS.md)")
    gpus = torch.cuda.device_count()
    args.out.mkdir(parents=True, exist_ok=True)
    results = [{"gpus": gpus, "device": torch.cuda.get_device_name(0), "torch": torch.__version__}]
    print(json.dumps(results[0]), flush=True)
    demo = yaml.safe_load(DEMO.read_text())
    for name, precision, chunk in RUNS:
        config = {**demo, "train": {**demo["train"], "precision": precision, "grad_cache_chunk": chunk}}
        config_path = args.out / f"{name}.yaml"
        config_path.write_text(yaml.safe_dump(config))
        run_dir = args.out / name
        command = torchrun(gpus, "train", "--data", str(DATA), "--out", str(run_dir), "--config", str(config_path))
        seconds = run([*command, "--max-steps", str(args.steps)], args.out / f"{name}.log")
        record = {"run": name, "steps": args.steps, "seconds": round(seconds, 1)}
        record["samples_per_s"] = round(samples_per_s(run_dir), 1)
        results.append(record)
        print(json.dumps(record), flush=True)
    index = args.out / "index"
    embed = torchrun(gpus, "embed", "--run-dir", str(args.out / "bf16"), "--data", str(DATA), "--out", str(index))
    seconds = run([*embed, "--workers", "4"], args.out / "embed.log")
    evaluate = [sys.executable, "-m", "make_retrieval.cli", "evaluate", "--run", str(args.out / "bf16")]
    done = subprocess.run([*evaluate, "--data", str(DATA), "--json"], capture_output=True, text=True, cwd=ROOT)
    metrics = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {"error": done.stderr}
    record = {"run": "embed+evaluate (bf16 model)", "embed_seconds": round(seconds, 1)}
    record |= {k: v for k, v in metrics.items() if k != "per_category"}
    results.append(record)
    print(json.dumps(record), flush=True)
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
