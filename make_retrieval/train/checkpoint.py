"""Run directory layout and model checkpoints (weights only, written atomically).

A run directory holds ``config.yaml`` (the resolved config), ``keywords.json``, ``metrics.jsonl``,
``data_report.json``, ``last.pt`` (after every epoch) and ``best.pt`` (best validation NDCG@10).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from make_retrieval.config import Config
from make_retrieval.model.make import MAKEModel

CHECKPOINTS = ("best.pt", "last.pt")


def save_checkpoint(path: Path, model: MAKEModel, info: dict[str, Any]) -> None:
    """Write to a temporary file then rename: a crash never leaves a half-written checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"model": model.state_dict(), "info": info}, tmp)
    os.replace(tmp, path)


class CheckpointError(ValueError):
    """A checkpoint that does not fit its run's config, or an index built from another checkpoint."""


def clear_checkpoints(run_dir: Path) -> None:
    """Remove checkpoints of an earlier run in the same folder, so none outlives its training."""
    for name in CHECKPOINTS:
        (run_dir / name).unlink(missing_ok=True)


def load_model(run_dir: Path | str) -> tuple[MAKEModel, Config, Path]:
    """Rebuild the trained model of a run (best checkpoint, else last)."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml); run 'train' first")
    config = Config.load(config_path)
    for name in CHECKPOINTS:
        path = run_dir / name
        if path.is_file():
            break
    else:
        raise FileNotFoundError(f"no checkpoint ({' or '.join(CHECKPOINTS)}) in {run_dir}")
    model = MAKEModel(config.model, config.loss.init_temperature)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit {config_path}: {str(error).splitlines()[0]}") from error
    model.eval()
    return model, config, path
