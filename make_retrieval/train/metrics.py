"""The run's metrics: ``metrics.jsonl`` (one object per logged step or event) and the same numbers as
TensorBoard scalars, so a run can be followed live in ``tensorboard --logdir RUN_DIR``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

#: Subfolder of the run directory with the TensorBoard event files.
TENSORBOARD = "tensorboard"


class MetricsLog:
    """Append-only JSONL log, mirrored to TensorBoard if asked. ``run_dir`` None: a rank other than 0,
    which writes nothing. A resumed run passes ``keep_lines`` (the lines written up to its state, the
    rest are dropped) and ``resume_step``: TensorBoard then purges the killed run's later events."""

    def __init__(
        self, run_dir: Path | None, keep_lines: int = 0, tensorboard: bool = False, resume_step: int | None = None
    ):
        self.path, self.lines, self.writer = None if run_dir is None else run_dir / "metrics.jsonl", keep_lines, None
        if self.path is None:
            return
        kept = self.path.read_text().splitlines(keepends=True)[:keep_lines] if keep_lines else []
        self.path.write_text("".join(kept))
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when used

            folder = run_dir / TENSORBOARD
            if resume_step is None:  # a fresh run: an earlier run's curves in this folder would mix in
                shutil.rmtree(folder, ignore_errors=True)
            purge = None if resume_step is None else resume_step + 1
            self.writer = SummaryWriter(str(folder), purge_step=purge)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (it has a ``step``); its numbers go to TensorBoard as ``<event>/<key>``."""
        if self.path is None:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.lines += 1
        if self.writer is not None:
            prefix = record.get("event", "train")
            for tag, value in _scalars(record, prefix):
                self.writer.add_scalar(tag, value, record["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _scalars(record: dict[str, Any], prefix: str) -> list[tuple[str, float]]:
    """Every number of ``record`` (nested dicts flattened with ``/``), except its step and epoch."""
    found = []
    for key, value in record.items():
        if key in ("step", "epoch", "event"):
            continue
        if isinstance(value, dict):
            found += _scalars(value, f"{prefix}/{key}")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found.append((f"{prefix}/{key}", float(value)))
    return found
