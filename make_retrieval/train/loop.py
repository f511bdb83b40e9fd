"""The training loop: seeded, with a progress bar, a metrics log (JSONL and TensorBoard), per-epoch
validation over the whole catalog and atomic checkpoints."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from make_retrieval.config import Config, ConfigError
from make_retrieval.data.batches import Batch, BatchBuilder, ClickDataset, EpochBatches, ImageInputs, SimilarQueries
from make_retrieval.data.pairs import DataDir, load_data_dir
from make_retrieval.data.stream import BatchIndices, ShardedClicks
from make_retrieval.data.tables import LoadReport
from make_retrieval.evaluate import evaluate_retriever
from make_retrieval.losses import MAKELoss
from make_retrieval.model.image_cache import image_inputs
from make_retrieval.model.keywords import KeywordExtractor
from make_retrieval.model.make import OBJECTIVES, MAKEModel
from make_retrieval.retrieval import exact_retriever
from make_retrieval.train.checkpoint import clear_checkpoints, latest_state, save_checkpoint, save_state
from make_retrieval.train.distributed import Distributed, init_distributed
from make_retrieval.train.hard_negatives import mine_hard_negatives
from make_retrieval.train.image_warmup import warm_up_image_tower
from make_retrieval.train.metrics import MetricsLog
from make_retrieval.train.step import PRECISIONS, StepOptions, average_gradients, backward


@dataclass
class TrainResult:
    """Where a training run went and how it ended."""

    run_dir: Path
    steps: int
    best_ndcg: float | None
    seconds: float
    #: False on ranks other than 0 of a torchrun job (they write and report nothing)
    main: bool = True


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; the returned generator drives data shuffling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _optimizer(model: MAKEModel, config: Config) -> torch.optim.Optimizer:
    """Pretrained towers get ``lr`` (the text towers, and an image backbone with pretrained weights
    when it trains); the new parts (a from-scratch image tower, fusion, heads) get ``head_lr``."""
    towers: list[torch.nn.Module] = [model.query_encoder, model.title_encoder]
    if model.image_encoder is not None and model.image_encoder.pretrained:
        towers.append(model.image_encoder.backbone)
    pretrained = {id(p) for tower in towers for p in tower.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) in pretrained], "lr": config.train.lr},
        {"params": [p for p in trainable if id(p) not in pretrained], "lr": config.train.head_lr},
    ]
    return torch.optim.AdamW(groups, weight_decay=config.train.weight_decay)


def validate(model: MAKEModel, data: DataDir, max_queries: int) -> dict[str, float]:
    """Metrics of the current model on ``valid`` (the whole catalog is embedded and searched)."""
    judged = data.judgements["valid"]
    if max_queries:
        judged = {q: judged[q] for q in sorted(judged)[:max_queries]}
    result = evaluate_retriever(exact_retriever(model, data.catalog), judged, data.catalog, "valid")
    model.train()
    return result.metrics


def train(
    config: Config,
    data_dir: Path | str,
    run_dir: Path | str,
    skip_bad_rows: bool = False,
    progress: bool = True,
    resume: bool = False,
) -> TrainResult:
    """Train MAKE on ``data_dir`` and leave everything in ``run_dir`` (see train/checkpoint.py).

    Under ``torchrun`` every rank runs this; rank 0 alone writes files and validates. ``resume``
    continues from the run's newest training state (the same config is required), so that the
    metrics log ends as an uninterrupted run's would; without a state it starts afresh."""
    started = time.time()
    context = init_distributed()
    main = context.is_main
    similar = SimilarQueries(config.loss.similar_query_rule, config.loss.similar_query_threshold)
    run_dir = Path(run_dir)
    state = _resumable_state(run_dir, config) if resume else None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if state is None:
            clear_checkpoints(run_dir)
    generator = seed_everything(config.train.seed)
    data = load_data_dir(data_dir, ("train", "valid"), skip_bad_rows=skip_bad_rows)
    epochs = _Epochs.build(data, config, context, generator, skip_bad_rows)
    if state is not None and state.get("data", epochs.fingerprint()) != epochs.fingerprint():
        raise ConfigError(f"{run_dir}: the training data changed since the saved state; cannot resume")
    progress = progress and main
    keywords = None
    clicks = epochs.pairs(data.report)  # from shards this checks every row once, before training
    if config.model.keyword_enhancement:
        keywords = KeywordExtractor.fit(data.catalog.titles, clicks, config.model.num_keywords)
    else:
        for _ in clicks:
            pass
    if main:
        config.save(run_dir / "config.yaml")
        (run_dir / "data_report.json").write_text(json.dumps(data.report.to_dict(), indent=2))
        data.report.announce()
        if keywords is not None:
            keywords.save(run_dir / "keywords.json", data.catalog.product_ids)

    options = _step_options(config, context)
    model = MAKEModel(config.model, config.loss.init_temperature).to(context.device)
    if config.train.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    log = MetricsLog(
        run_dir if main else None,
        keep_lines=state["log_lines"] if state else 0,
        tensorboard=config.train.tensorboard,
        resume_step=state["step"] if state else None,
    )
    images = _image_inputs(model, data, context, progress)
    if state is None:
        warmup = warm_up_image_tower(
            model, data.catalog, images, config.train.image_warmup_steps, config.train.batch_size,
            config.train.head_lr, generator, progress,
        )
        if warmup:
            last = warmup[-10:]
            losses = {"steps": len(warmup), "first": warmup[0], "last10": sum(last) / len(last)}
            log.write({"step": 0, "event": "image_warmup", **losses})
    model.train()
    criterion = MAKELoss(config.loss, config.model.keyword_enhancement)
    collate = BatchBuilder(data.catalog, keywords, similar, images, context.rank, context.world_size)
    loader = epochs.loader(collate, config.train.num_workers)
    steps_per_epoch = len(loader)
    epoch_count = training_epochs(config, steps_per_epoch)
    total = steps_per_epoch * epoch_count
    if config.train.max_steps is not None:
        total = min(total, config.train.max_steps)
    optimizer = _optimizer(model, config)
    scheduler = get_cosine_schedule_with_warmup(optimizer, min(config.train.warmup_steps, total // 5), total)
    has_valid = config.train.validate and "valid" in data.judgements
    best: float | None = None
    step, first_epoch, done_in_epoch, validated_at, stale = 0, 0, 0, 0, 0
    candidates: dict[str, list[int]] = {}
    if state is not None:
        _restore(state, model, optimizer, scheduler, options)
        step, first_epoch, done_in_epoch, best = state["step"], state["epoch"], state["done_in_epoch"], state["best"]
        validated_at, stale = state.get("validated_at", 0), state.get("stale", 0)  # absent before early stopping
        if state.get("stopped"):  # the run had stopped early: resuming finds it finished
            first_epoch = epoch_count
        candidates = state["hard_negatives"]
        generator.set_state(state["epoch_generator"])
    bar = tqdm(total=total, initial=step, desc="train", unit="step", disable=not progress)
    for epoch in range(first_epoch, epoch_count):
        if step >= total:
            break
        epoch_generator = generator.get_state()
        if config.train.hard_negatives:
            # a state saved mid-epoch holds that epoch's candidates; one saved at an epoch end does not
            if not (epoch == first_epoch and state is not None and state["done_in_epoch"] > 0):
                assert data.train is not None  # _Epochs.build refuses mining on streamed shards
                candidates = mine_hard_negatives(model, data.catalog, data.train, config.train.hard_negative_depth)
                model.train()
                log.write({"step": step, "epoch": epoch, "event": "hard_negatives", "queries": len(candidates)})
            collate.set_hard_negatives(candidates, config.train.seed + epoch)
        done_in_epoch = done_in_epoch if epoch == first_epoch else 0
        epochs.start(epoch, done_in_epoch)
        window_start, window_samples = time.time(), 0
        for batch in loader:
            logged = _step(model, criterion, optimizer, scheduler, batch, context, options)
            step += 1
            done_in_epoch += 1
            window_samples += len(batch.queries) * context.world_size
            bar.update(1)
            bar.set_postfix(loss=f"{logged['loss']:.3f}")
            if step % config.train.log_every == 0 or step == total:
                now = time.time()  # the next window starts before this write: logging counts as training time
                elapsed, window_start = max(now - window_start, 1e-9), now
                log.write(
                    {
                        "step": step,
                        "epoch": epoch,
                        **logged,
                        "lr": scheduler.get_last_lr()[0],
                        "temperature": {o: 1 / model.logit_scale(o).item() for o in OBJECTIVES},
                        "samples_per_s": window_samples / elapsed,
                    }
                )
                window_samples = 0
            every = config.train.state_every
            if main and every and step % every == 0 and step < total and done_in_epoch < steps_per_epoch:
                position = {"step": step, "epoch": epoch, "done_in_epoch": done_in_epoch, "best": best}
                position |= {"validated_at": validated_at, "stale": stale, "data": epochs.fingerprint()}
                _save_state(run_dir, config, model, optimizer, scheduler, options, position, epoch_generator,
                            candidates, log)
            if step >= total:
                break
        record: dict[str, Any] = {"step": step, "epoch": epoch, "event": "epoch_end"}
        if not main:
            context.barrier()  # rank 0 validates and writes the checkpoints
            if context.main_says(False):
                break
            continue
        final = epoch == epoch_count - 1 or step >= total
        if has_valid and (final or step - validated_at >= config.train.validate_every):
            metrics = validate(model, data, config.train.max_valid_queries)
            record["valid"], validated_at = metrics, step
            bar.write(f"epoch {epoch}: valid " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        log.write(record)
        info = {"step": step, "epoch": epoch, **({"valid": record["valid"]} if "valid" in record else {})}
        save_checkpoint(run_dir / "last.pt", model, info)
        if "valid" in record:
            score = record["valid"]["ndcg@10"]
            stale = 0 if best is None or score > best else stale + 1
            if stale == 0:
                best = score
                save_checkpoint(run_dir / "best.pt", model, info)
        patience = config.train.patience
        stop = bool(patience) and stale >= patience and not final
        if stop:
            log.write({"step": step, "epoch": epoch, "event": "early_stop", "best_valid_ndcg@10": best})
            bar.write(f"early stop: no better valid NDCG@10 in {patience} validations (best {best:.4f})")
        # the next epoch starts from here: its generator state is the current one
        position = {"step": step, "epoch": epoch + 1, "done_in_epoch": 0, "best": best, "stopped": stop}
        position |= {"validated_at": validated_at, "stale": stale, "data": epochs.fingerprint()}
        _save_state(run_dir, config, model, optimizer, scheduler, options, position, generator.get_state(), {}, log)
        context.barrier()
        if context.main_says(stop):
            break
    bar.close()
    log.close()
    seconds = time.time() - started
    if main:
        summary = {"steps": step, "best_valid_ndcg@10": best, "seconds": seconds, "train_pairs": epochs.pairs_count}
        (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return TrainResult(run_dir, step, best, seconds, main)


def training_epochs(config: Config, steps_per_epoch: int) -> int:
    """``train.epochs``, or (unset) enough epochs for ``train.min_steps`` steps, at least one."""
    if config.train.epochs is not None:
        return config.train.epochs
    return max(1, -(-config.train.min_steps // max(steps_per_epoch, 1)))


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


@dataclass
class _Epochs:
    """Each epoch's global batches: from the in-memory click table (shuffled by the run's generator)
    or from streamed shards (planned from seed and epoch, data/stream.py). Every rank draws the same
    global batches and keeps its slice (train/distributed.py)."""

    sampler: EpochBatches | BatchIndices
    dataset: ClickDataset | ShardedClicks
    generator: torch.Generator
    seed: int
    pairs_count: int

    @classmethod
    def build(
        cls, data: DataDir, config: Config, context: Distributed, generator: torch.Generator, skip_bad_rows: bool
    ) -> _Epochs:
        global_batch = config.train.batch_size * context.world_size
        if data.train is not None:
            count = len(data.train)
            sampler = EpochBatches(count, global_batch, count > global_batch, generator)
            return cls(sampler, ClickDataset(data.train), generator, config.train.seed, count)
        assert data.train_shards is not None
        if config.train.hard_negatives:
            raise ConfigError("train.hard_negatives needs the click table in memory; it is not available with shards")
        stream = ShardedClicks(data.train_shards, data.catalog, global_batch, skip_bad_rows, context.world_size)
        return cls(BatchIndices(len(stream)), stream, generator, config.train.seed, stream.rows)

    def pairs(self, report: LoadReport) -> Iterator[tuple[str, int]]:
        """Every valid (query, product) click, for fitting keywords. From shards every row is read
        and checked here (a bad one raises, or is counted in ``report``), and ``pairs_count`` set."""
        if not isinstance(self.dataset, ShardedClicks):
            yield from zip(self.dataset.clicks.queries, self.dataset.clicks.products, strict=True)
            return
        self.pairs_count = 0
        for pair in self.dataset.scan(report):
            self.pairs_count += 1
            yield pair

    def fingerprint(self) -> int | list[tuple[str, int]]:
        """What a resumed run must find unchanged: the click count, or every shard's row groups."""
        if isinstance(self.dataset, ShardedClicks):
            return self.dataset.fingerprint()
        return self.pairs_count

    def loader(self, collate: BatchBuilder, workers: int) -> DataLoader:
        """Batches collated (images decoded) in ``workers`` processes, in the sampler's order. The
        workers' base seed is drawn from the run's generator, not the global RNG that dropout uses,
        so a resumed run's dropout masks are the uninterrupted run's."""
        common = {"generator": self.generator, "num_workers": workers, "collate_fn": collate}
        if isinstance(self.dataset, ShardedClicks):  # items are whole global batches already
            return DataLoader(self.dataset, batch_size=None, sampler=self.sampler, **common)
        return DataLoader(self.dataset, batch_sampler=self.sampler, **common)

    def start(self, epoch: int, skip: int) -> None:
        """Plan ``epoch`` and begin it after its first ``skip`` batches (a resumed run)."""
        if isinstance(self.dataset, ShardedClicks):
            self.dataset.set_epoch(epoch, self.seed)
        self.sampler.skip = skip


def _resumable_state(run_dir: Path, config: Config) -> dict[str, Any] | None:
    """The newest state of ``run_dir`` if it was trained with ``config`` (else a ConfigError)."""
    state = latest_state(run_dir)
    if state is None:
        return None
    if not config.matches(state["config"], str(run_dir)):
        raise ConfigError(f"{run_dir}: the config differs from the one the run was trained with; cannot resume")
    return state


def _save_state(
    run_dir: Path,
    config: Config,
    model: MAKEModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    options: StepOptions,
    position: dict[str, Any],
    epoch_generator: torch.Tensor,
    candidates: dict[str, list[int]],
    log: MetricsLog,
) -> None:
    """Everything a resumed run needs to continue exactly where this one is."""
    state = {
        **position,
        "config": dataclasses.asdict(config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": options.scaler.state_dict() if options.scaler is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(),
            "numpy": np.random.get_state(),
        },
        "epoch_generator": epoch_generator,
        "hard_negatives": candidates,
        "log_lines": log.lines,
    }
    save_state(run_dir, position["step"], state, config.train.keep_states)


def _restore(
    state: dict[str, Any],
    model: MAKEModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    options: StepOptions,
) -> None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if options.scaler is not None and state["scaler"] is not None:
        options.scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"]:
        torch.cuda.set_rng_state_all(rng["cuda"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])


def _step(
    model: MAKEModel,
    criterion: MAKELoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch: Batch,
    context: Distributed,
    options: StepOptions,
) -> dict[str, float]:
    """One optimisation step over the global batch."""
    batch = batch.to(context.device)
    optimizer.zero_grad(set_to_none=True)
    logged = backward(model, criterion, batch, context, options)
    average_gradients(model, context)
    if options.scaler is not None:
        options.scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    if options.scaler is not None:
        options.scaler.step(optimizer)
        options.scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    return logged


def _step_options(config: Config, context: Distributed) -> StepOptions:
    """Step options from the config; fp16 needs a GPU (its loss scaler is CUDA's)."""
    precision = config.train.precision
    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision: choose one of {sorted(PRECISIONS)}, got '{precision}'")
    if precision == "fp16" and context.device.type != "cuda":
        raise ConfigError("train.precision: fp16 needs a GPU; use bf16 or fp32 on CPU")
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    return StepOptions(config.train.grad_cache_chunk, precision, scaler)
