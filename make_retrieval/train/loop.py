"""The training loop: seeded, with a progress bar, a metrics log (JSONL and TensorBoard), validation
over the whole catalog, early stopping and atomic checkpoints. It runs named parts: the clicks
(train/clicks.py), the step (train/step.py), the validator (train/validation.py) and the training
position and state (train/state.py); it knows nothing of the towers or the objectives."""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from make_retrieval.config import Config
from make_retrieval.data.batches import BatchBuilder, ImageInputs, SimilarQueries
from make_retrieval.data.keywords import KeywordExtractor
from make_retrieval.data.pairs import DataDir, load_data_dir
from make_retrieval.distributed import Distributed, init_distributed
from make_retrieval.errors import ConfigError
from make_retrieval.model.checkpoint import save_checkpoint
from make_retrieval.model.image_cache import image_inputs
from make_retrieval.model.make import MAKEModel
from make_retrieval.model.objectives import enabled_objectives
from make_retrieval.train.clicks import ClickSource, click_source
from make_retrieval.train.hard_negatives import mine_hard_negatives
from make_retrieval.train.holdout import ValidationPlan, plan_validation
from make_retrieval.train.image_warmup import warm_up_image_tower
from make_retrieval.train.metrics import MetricsLog
from make_retrieval.train.state import TrainingPosition, clear_checkpoints, resumable_state
from make_retrieval.train.step import TrainingStep
from make_retrieval.train.validation import Validator
from make_retrieval.train.wise_ft import choose_mixture, choose_title_lean, mixture_shares


@dataclass
class TrainResult:
    """Where a training run went and how it ended."""

    run_dir: Path
    steps: int
    #: Best validation value of ``train.valid_metric`` (None without validation).
    best: float | None
    seconds: float
    #: False on ranks other than 0 of a torchrun job (they write and report nothing)
    main: bool = True


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; the returned generator drives data shuffling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def training_epochs(config: Config, steps_per_epoch: int) -> int:
    """``train.epochs``, or (unset) enough epochs for ``train.min_steps`` steps, at least one."""
    if config.train.epochs is not None:
        return config.train.epochs
    return max(1, -(-config.train.min_steps // max(steps_per_epoch, 1)))


def train(
    config: Config,
    data_dir: Path | str,
    run_dir: Path | str,
    skip_bad_rows: bool = False,
    progress: bool = True,
    resume: bool = False,
) -> TrainResult:
    """Train MAKE on ``data_dir`` and leave everything in ``run_dir`` (model/checkpoint.py).

    Under ``torchrun`` every rank runs this; rank 0 alone writes files and validates. ``resume``
    continues from the run's newest training state (the same config is required), so that the
    metrics log ends as an uninterrupted run's would; without a state it starts afresh."""
    started = time.time()
    context = init_distributed()
    run_dir = Path(run_dir)
    state = resumable_state(run_dir, config) if resume else None
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if state is None:
            clear_checkpoints(run_dir)
    generator = seed_everything(config.train.seed)
    data = load_data_dir(data_dir, ("train", "valid"), skip_bad_rows=skip_bad_rows)
    data, plan = plan_validation(data, config.train)
    # parsed now: a bad setting fails before training
    shares = mixture_shares(config.train.wise_ft)
    leans = mixture_shares(config.train.title_lean, "title_lean", include_one=True)
    validator = Validator(data, config.train)
    clicks = click_source(data, config, context.world_size, generator, skip_bad_rows)
    position = TrainingPosition.from_state(state) if state is not None else TrainingPosition()
    if state is not None and position.data not in (None, clicks.fingerprint()):
        raise ConfigError(f"{run_dir}: the training data changed since the saved state; cannot resume")
    keywords = _keywords(config, data, clicks)
    position.data = clicks.fingerprint()
    if context.is_main:
        _write_run_files(run_dir, config, data, keywords, plan)

    progress = progress and context.is_main
    objectives = [o.name for o in enabled_objectives(config.model, config.loss)]
    model = MAKEModel(config.model, config.loss.init_temperature, objectives).to(context.device)
    if config.train.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    log = MetricsLog(
        run_dir if context.is_main else None,
        keep_lines=state["log_lines"] if state else 0,
        tensorboard=config.train.tensorboard,
        resume_step=position.step if state else None,
    )
    images = _image_inputs(model, data, context, progress)
    if state is None:
        _warm_up(model, data, images, config, generator, log, progress)
    model.train()
    similar = SimilarQueries(config.loss.similar_query_rule, config.loss.similar_query_threshold)
    collate = BatchBuilder(data.catalog, keywords, similar, images, context.rank, context.world_size)
    loader = clicks.loader(collate, config.train.num_workers)
    steps_per_epoch = len(loader)
    epoch_count = training_epochs(config, steps_per_epoch)
    total = steps_per_epoch * epoch_count
    if config.train.max_steps is not None:
        total = min(total, config.train.max_steps)
    step = TrainingStep(model, config, context, total)
    candidates: dict[str, list[int]] = {}
    if state is not None:
        step.resumable().restore(state)
        candidates = state["hard_negatives"]
        generator.set_state(state["epoch_generator"])
    run = _Run(run_dir, config, context, step, validator, log, generator, candidates)
    if state is None:
        run.begin(position, total)
    first_epoch = epoch_count if position.stopped else position.epoch  # a run that stopped early stays stopped
    bar = tqdm(total=total, initial=position.step, desc="train", unit="step", disable=not progress)
    for epoch in range(first_epoch, epoch_count):
        if position.step >= total:
            break
        resumed_mid_epoch = epoch == first_epoch and position.done_in_epoch > 0
        if not resumed_mid_epoch:
            position.done_in_epoch = 0
        if config.train.hard_negatives:
            run.mine(clicks, collate, position, epoch, fresh=not resumed_mid_epoch)
        position.epoch = epoch
        clicks.start(epoch, position.done_in_epoch)
        run.epoch(loader, position, total, steps_per_epoch, bar)
        if run.end_epoch(position, final=epoch == epoch_count - 1 or position.step >= total, bar=bar):
            break
    bar.close()
    if context.is_main and validator.enabled and shares:
        _mix_with_pretrained(run, position, objectives, shares)
    if context.is_main and validator.enabled and leans:
        _lean_on_title(run, position, leans)
    log.close()
    seconds = time.time() - started
    if context.is_main:
        summary = {"steps": position.step, f"best_valid_{validator.metric}": position.best, "seconds": seconds}
        summary["train_pairs"] = clicks.pairs_count
        (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return TrainResult(run_dir, position.step, position.best, seconds, context.is_main)


@dataclass
class _Run:
    """The parts of a running training that its epochs share."""

    run_dir: Path
    config: Config
    context: Distributed
    step: TrainingStep
    validator: Validator
    log: MetricsLog
    generator: torch.Generator
    candidates: dict[str, list[int]]

    def mine(
        self, clicks: ClickSource, collate: BatchBuilder, position: TrainingPosition, epoch: int, fresh: bool
    ) -> None:
        """Hard negatives for ``epoch`` (a state saved mid-epoch already holds that epoch's)."""
        table = clicks.table()
        assert table is not None  # click_source refuses mining on streamed shards
        if fresh:
            model, depth = self.step.model, self.config.train.hard_negative_depth
            self.candidates = mine_hard_negatives(model, collate.catalog, table, depth)
            model.train()
            event = {"event": "hard_negatives", "queries": len(self.candidates)}
            self.log.write({"step": position.step, "epoch": epoch, **event})
        collate.set_hard_negatives(self.candidates, self.config.train.seed + epoch)

    def epoch(
        self, loader: torch.utils.data.DataLoader, position: TrainingPosition, total: int, steps: int, bar: tqdm
    ) -> None:
        """Train one epoch's batches, logging every ``log_every`` steps and saving a state every
        ``state_every`` steps (one is saved at the epoch end anyway)."""
        train = self.config.train
        epoch_generator = self.generator.get_state()
        window_start, window_samples = time.time(), 0
        for batch in loader:
            logged = self.step(batch)
            position.step += 1
            position.done_in_epoch += 1
            window_samples += len(batch.queries) * self.context.world_size
            bar.update(1)
            bar.set_postfix(loss=f"{logged['loss']:.3f}")
            if position.step % train.log_every == 0 or position.step == total:
                now = time.time()  # the next window starts before this write: logging counts as training time
                elapsed, window_start = max(now - window_start, 1e-9), now
                where = {"step": position.step, "epoch": position.epoch}
                self.log.write({**where, **logged, **self.step.state(), "samples_per_s": window_samples / elapsed})
                window_samples = 0
            every = train.state_every
            mid_epoch = position.step < total and position.done_in_epoch < steps
            if self.context.is_main and every and position.step % every == 0 and mid_epoch:
                self._save_state(position, epoch_generator, self.candidates)
            if position.step >= total:
                break

    def begin(self, position: TrainingPosition, total: int) -> None:
        """Step 0 of a fresh run: the untrained model is validated and saved as the best.pt to beat, so
        training that only overfits keeps the pretrained model; with no step to train it is last.pt too."""
        if not self.context.is_main:
            self.context.barrier()
            return
        record: dict[str, Any] = {"step": 0, "epoch": 0, "event": "start"}
        if self.validator.enabled:
            record["valid"] = self.validator(self.step.model)
            self.validator.observe(position, record["valid"])
            tqdm.write("step 0: valid " + " ".join(f"{k}={v:.4f}" for k, v in record["valid"].items()))
            save_checkpoint(self.run_dir / "best.pt", self.step.model, {"step": 0, "valid": record["valid"]})
        self.log.write(record)
        if total == 0:
            save_checkpoint(self.run_dir / "last.pt", self.step.model, {"step": 0})
        self.context.barrier()

    def end_epoch(self, position: TrainingPosition, final: bool, bar: tqdm) -> bool:
        """Validate if due, write last.pt (and best.pt), save a state; True when training stops early."""
        if not self.context.is_main:
            self.context.barrier()  # rank 0 validates and writes the checkpoints
            return self.context.main_says(False)
        record: dict[str, Any] = {"step": position.step, "epoch": position.epoch, "event": "epoch_end"}
        improved = False
        if self.validator.due(position, final):
            metrics = self.validator(self.step.model)
            record["valid"] = metrics
            improved = self.validator.observe(position, metrics)
            bar.write(f"epoch {position.epoch}: valid " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        self.log.write(record)
        info = {k: v for k, v in record.items() if k != "event"}
        save_checkpoint(self.run_dir / "last.pt", self.step.model, info)
        if improved:
            save_checkpoint(self.run_dir / "best.pt", self.step.model, info)
        stop = self.validator.should_stop(position, final)
        if stop:
            metric, patience = self.validator.metric, self.validator.patience
            event = {"event": "early_stop", f"best_valid_{metric}": position.best}
            self.log.write({"step": position.step, "epoch": position.epoch, **event})
            bar.write(f"early stop: no better valid {metric} in {patience} validations (best {position.best:.4f})")
        # the next epoch starts from here: its generator state is the current one
        position.epoch, position.done_in_epoch, position.stopped = position.epoch + 1, 0, stop
        self._save_state(position, self.generator.get_state(), {})
        self.context.barrier()
        return self.context.main_says(stop)

    def _save_state(self, position: TrainingPosition, epoch_generator: torch.Tensor, candidates: dict) -> None:
        extra = {"hard_negatives": candidates, "log_lines": self.log.lines}
        self.step.resumable().save(self.run_dir, self.config, position, epoch_generator, extra)


def _mix_with_pretrained(run: _Run, position: TrainingPosition, objectives: list[str], shares: list[float]) -> None:
    """WiSE-FT over ``shares`` of the tuned weights, against a freshly built (untrained) model, which
    is built only when best.pt is a trained model to mix."""
    model, config = run.step.model, run.config
    fresh = partial(MAKEModel, config.model, config.loss.init_temperature, objectives)
    metric, best = run.validator.metric, position.best
    event = choose_mixture(model, fresh, run.run_dir / "best.pt", shares, run.validator, metric, best)
    if event is not None:
        position.best = event[f"valid_{metric}"]
        run.log.write({"step": position.step, **event})
        tqdm.write(f"WiSE-FT: {event['tried']} -> share of the tuned weights {event['alpha']}")


def _lean_on_title(run: _Run, position: TrainingPosition, shares: list[float]) -> None:
    """The title lean of best.pt over ``shares``, chosen on validation (train/wise_ft.py)."""
    metric = run.validator.metric
    event = choose_title_lean(run.step.model, run.run_dir / "best.pt", shares, run.validator, metric, position.best)
    if event is not None:
        position.best = event[f"valid_{metric}"]
        run.log.write({"step": position.step, **event})
        tqdm.write(f"title lean: {event['tried']} -> {event['share']}")


def _keywords(config: Config, data: DataDir, clicks: ClickSource) -> KeywordExtractor | None:
    """Keyword Enhancement's keywords, mined from every click; the clicks are read through either
    way, which checks every row of streamed shards once before training."""
    pairs = clicks.pairs(data.report)
    if config.model.keyword_enhancement:
        return KeywordExtractor.fit(data.catalog.titles, pairs, config.model.num_keywords)
    for _ in pairs:
        pass
    return None


def _write_run_files(
    run_dir: Path, config: Config, data: DataDir, keywords: KeywordExtractor | None, plan: ValidationPlan
) -> None:
    """The run's resolved config, data report, validation plan and keywords (what embed and
    evaluate read back; the plan says what best.pt was chosen on)."""
    config.save(run_dir / "config.yaml")
    (run_dir / "data_report.json").write_text(json.dumps(data.report.to_dict(), indent=2))
    (run_dir / "validation.json").write_text(json.dumps(plan.record(), indent=2))
    data.report.announce()
    for message in plan.messages:
        tqdm.write(f"validation: {message}", file=sys.stderr)
    if keywords is not None:
        keywords.save(run_dir / "keywords.json", data.catalog.product_ids)


def _warm_up(
    model: MAKEModel,
    data: DataDir,
    images: ImageInputs,
    config: Config,
    generator: torch.Generator,
    log: MetricsLog,
    progress: bool,
) -> None:
    """The image-tower warm-up of a fresh run (train/image_warmup.py), logged as one event."""
    train = config.train
    warmup = warm_up_image_tower(
        model, data.catalog, images, train.image_warmup_steps, train.batch_size, train.head_lr, generator, progress
    )
    if warmup:
        last = warmup[-10:]
        losses = {"steps": len(warmup), "first": warmup[0], "last10": sum(last) / len(last)}
        log.write({"step": 0, "event": "image_warmup", **losses})


def _image_inputs(model: MAKEModel, data: DataDir, context: Distributed, progress: bool) -> ImageInputs:
    """The training images: a frozen tower's features are computed (once, cached on disk) by rank 0
    while the other ranks wait, then every rank reads them from the cache."""
    if not context.is_main:
        context.barrier()
    images = image_inputs(model, data.catalog, progress=progress)
    if context.is_main:
        context.barrier()
    counts = getattr(images, "counts", None)
    if counts is not None and progress:
        tqdm.write(f"image features: {counts.hits} cached, {counts.computed} computed")
    return images
