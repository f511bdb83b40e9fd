"""Resumable training: where a run stands (``TrainingPosition``) and the full training state saved
under ``RUN_DIR/states/step-NNNNNNNNN.pt`` (model, optimizer, scheduler, loss scaler, every RNG, the
data position, the metrics-log length), of which the newest ``train.keep_states`` are kept."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from make_retrieval.config import Config
from make_retrieval.errors import ConfigError
from make_retrieval.model.checkpoint import CHECKPOINTS, atomic_save

STATES = "states"


@dataclass
class TrainingPosition:
    """How far a run got: what ``--resume`` continues from and early stopping reads."""

    step: int = 0
    #: The epoch to run next, and the batches of it already done (a state saved mid-epoch).
    epoch: int = 0
    done_in_epoch: int = 0
    #: Best validation value of the primary metric so far, and the step of the last validation.
    best: float | None = None
    validated_at: int = 0
    #: Validations in a row without a better value; ``stopped``: the run stopped early.
    stale: int = 0
    stopped: bool = False
    #: What the run's click data looked like (a resumed run must find it unchanged).
    data: int | list[Any] | None = None

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TrainingPosition:
        """The position saved in a state (keys a state of an older version lacks keep their defaults)."""
        return cls(**{f.name: state[f.name] for f in dataclasses.fields(cls) if f.name in state})


@dataclass
class Resumable:
    """The live objects a training state captures and restores."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None

    def save(
        self,
        run_dir: Path,
        config: Config,
        position: TrainingPosition,
        epoch_generator: torch.Tensor,
        extra: dict[str, Any],
    ) -> Path:
        """Everything a resumed run needs to continue exactly where this one is (plus ``extra``:
        hard-negative candidates, metrics-log length)."""
        state = {
            **dataclasses.asdict(position),
            "config": dataclasses.asdict(config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python": random.getstate(),
                "numpy": np.random.get_state(),
            },
            "epoch_generator": epoch_generator,
            **extra,
        }
        return save_state(run_dir, position.step, state, config.train.keep_states)

    def restore(self, state: dict[str, Any]) -> None:
        """Load the saved weights, optimiser, schedule, scaler and every RNG."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])


def save_state(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """A full training state after ``step``; older states beyond the newest ``keep`` are removed."""
    folder = run_dir / STATES
    folder.mkdir(exist_ok=True)
    path = folder / f"step-{step:09d}.pt"
    atomic_save(state, path)
    for old in sorted(folder.glob("step-*.pt"))[:-keep]:
        old.unlink()
    return path


def latest_state(run_dir: Path) -> dict[str, Any] | None:
    """The newest training state of a run, or None when it has none."""
    states = sorted((run_dir / STATES).glob("step-*.pt"))
    return torch.load(states[-1], map_location="cpu", weights_only=False) if states else None


def resumable_state(run_dir: Path, config: Config) -> dict[str, Any] | None:
    """The newest state of ``run_dir`` if it was trained with ``config`` (else a ConfigError)."""
    state = latest_state(run_dir)
    if state is None:
        return None
    if not config.matches(state["config"], str(run_dir)):
        raise ConfigError(f"{run_dir}: the config differs from the one the run was trained with; cannot resume")
    return state


def clear_checkpoints(run_dir: Path) -> None:
    """Remove checkpoints and states of an earlier run in the same folder, so none outlives its training."""
    for name in CHECKPOINTS:
        (run_dir / name).unlink(missing_ok=True)
    for path in (run_dir / STATES).glob("step-*.pt"):
        path.unlink()
