"""A run directory's model checkpoints: written atomically by training, read by everything after it.

A run directory holds ``config.yaml`` (the resolved config), ``keywords.json``, ``metrics.jsonl``,
``data_report.json``, ``last.pt`` (after every epoch) and ``best.pt`` (best validation metric):
weights only, what embed, evaluate and serve read. Full training states for ``train --resume`` are
training's business (train/state.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from make_retrieval.config import Config
from make_retrieval.errors import CheckpointError
from make_retrieval.files import replacing
from make_retrieval.model.make import MAKEModel

CHECKPOINTS = ("best.pt", "last.pt")
#: State-dict prefix of the objectives' temperatures: a checkpoint rebuilds the model with the ones it saved.
_TEMPERATURES = "logit_scales."


def atomic_save(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file then rename: a crash never leaves a half-written file."""
    with replacing(path) as temporary:
        torch.save(payload, temporary)


def save_checkpoint(path: Path, model: MAKEModel, info: dict[str, Any]) -> None:
    """Model weights and ``info`` (step, validation metrics), written atomically."""
    atomic_save({"model": model.state_dict(), "info": info}, path)


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
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    # checkpoints saved before temperatures followed the enabled objectives hold all six: still loadable
    objectives = [key.removeprefix(_TEMPERATURES) for key in state if key.startswith(_TEMPERATURES)]
    model = MAKEModel(config.model, config.loss.init_temperature, objectives)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit {config_path}: {str(error).splitlines()[0]}") from error
    model.eval()
    return model, config, path
