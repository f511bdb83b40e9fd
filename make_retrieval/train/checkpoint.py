"""Run directory layout, model checkpoints and resumable training states (all written atomically).

A run directory holds ``config.yaml`` (the resolved config), ``keywords.json``, ``metrics.jsonl``,
``data_report.json``, ``last.pt`` (after every epoch) and ``best.pt`` (best validation NDCG@10):
weights only, what embed/evaluate read. ``states/step-NNNNNNNNN.pt`` are full training states
(model, optimizer, scheduler, loss scaler, every RNG, data position, metrics-log length) for
``train --resume``; the newest ``train.keep_states`` are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from make_retrieval.config import Config
from make_retrieval.files import replacing
from make_retrieval.model.make import MAKEModel

CHECKPOINTS = ("best.pt", "last.pt")
STATES = "states"


def _atomic_save(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file then rename: a crash never leaves a half-written file."""
    with replacing(path) as temporary:
        torch.save(payload, temporary)


def save_checkpoint(path: Path, model: MAKEModel, info: dict[str, Any]) -> None:
    """Model weights and ``info`` (step, validation metrics), written atomically."""
    _atomic_save({"model": model.state_dict(), "info": info}, path)


def save_state(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """A full training state after ``step``; older states beyond the newest ``keep`` are removed."""
    folder = run_dir / STATES
    folder.mkdir(exist_ok=True)
    path = folder / f"step-{step:09d}.pt"
    _atomic_save(state, path)
    for old in sorted(folder.glob("step-*.pt"))[:-keep]:
        old.unlink()
    return path


def latest_state(run_dir: Path) -> dict[str, Any] | None:
    """The newest training state of a run, or None when it has none."""
    states = sorted((run_dir / STATES).glob("step-*.pt"))
    return torch.load(states[-1], map_location="cpu", weights_only=False) if states else None


class CheckpointError(ValueError):
    """A checkpoint that does not fit its run's config, or an index built from another checkpoint."""


def clear_checkpoints(run_dir: Path) -> None:
    """Remove checkpoints and states of an earlier run in the same folder, so none outlives its training."""
    for name in CHECKPOINTS:
        (run_dir / name).unlink(missing_ok=True)
    for path in (run_dir / STATES).glob("step-*.pt"):
        path.unlink()


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
