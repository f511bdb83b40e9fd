"""One training step's forward and backward: encode the batch, gather it across ranks, the MAKE
loss, backward; either in one pass or with gradient caching for batches larger than memory.

Gradient caching (GradCache, Gao et al. 2021): a contrastive loss couples every row of the batch, so
the batch cannot simply be split. Instead (1) every chunk is encoded without gradients and its RNG
state kept, (2) the loss is computed over the whole (gathered) batch from detached copies, giving
d(loss)/d(embedding) for every row, (3) every chunk is encoded again, with the same RNG state so
dropout repeats, and back-propagated with those cached gradients. Activation memory is one chunk's,
and loss and gradients equal the one-pass step's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from transformers import get_cosine_schedule_with_warmup

from make_retrieval.config import Config
from make_retrieval.data.batches import Batch
from make_retrieval.distributed import Distributed, gather_with_grad
from make_retrieval.errors import ConfigError
from make_retrieval.losses import MAKELoss
from make_retrieval.model.make import Embedded, MAKEModel, combine
from make_retrieval.train.state import Resumable

#: autocast dtypes by ``train.precision``; fp32 runs without autocast.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class StepOptions:
    """How a step runs: gradient-cache chunk (0 = one pass), autocast precision, fp16 loss scaler."""

    grad_cache_chunk: int = 0
    precision: str = "fp32"
    scaler: torch.amp.GradScaler | None = None

    def autocast(self, device: torch.device) -> AbstractContextManager[object]:
        """Mixed precision for the forward passes and the loss (a no-op in fp32)."""
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def scaled(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to back-propagate: scaled for fp16, so small gradients do not underflow."""
        return loss if self.scaler is None else self.scaler.scale(loss)


@dataclass
class Encoded:
    """A rank's share of a batch: its queries, their keyword pseudo-queries (KE) and its products."""

    queries: Embedded
    keywords: Embedded | None
    products: Embedded


def query_texts(batch: Batch) -> list[str]:
    """Queries and keyword pseudo-queries go through the query tower in one pass."""
    return batch.queries + batch.keywords


def encode_batch(model: MAKEModel, batch: Batch) -> Encoded:
    """Embed a batch in one pass (with gradients). Products first: dropout then draws its masks in
    the order earlier versions did, so a seed gives the numbers it gave before."""
    products = _products(model, batch, 0, len(batch.titles))
    return _split(model.encode_queries(query_texts(batch)), batch, products)


def batch_loss(
    model: MAKEModel,
    criterion: MAKELoss,
    encoded: Encoded,
    batch: Batch,
    context: Distributed,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss over the global batch: every rank's rows gathered, product columns put in the
    targets' order (data/batches.py BatchLayout)."""
    queries = _gather(encoded.queries, context)
    keywords = None if encoded.keywords is None else _gather(encoded.keywords, context)
    layout = batch.layout
    products = _gather(encoded.products, context, layout.pad)
    order = layout.gather_order()
    if order is not None:
        products = products.select(order.to(products.vectors.device))
    loss, logged = criterion(model, queries, products, batch.targets, keywords)
    # Modal Adaptation at work: the batch's mean product weight and query weight per modality
    for i, modality in enumerate(model.modalities):
        logged[f"b_{modality}"] = float(products.weights[layout.clicked, i].detach().mean())
        logged[f"a_{modality}"] = float(queries.weights[:, i].detach().mean())
    return loss, logged


def training_forward(
    model: MAKEModel, criterion: MAKELoss, batch: Batch, context: Distributed
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one global batch in one pass (with gradients) and the values to log."""
    return batch_loss(model, criterion, encode_batch(model, batch), batch, context)


def backward(
    model: MAKEModel, criterion: MAKELoss, batch: Batch, context: Distributed, options: StepOptions | None = None
) -> dict[str, float]:
    """Forward and backward of one step (gradient-cached if ``options`` say so); returns the logged
    loss values."""
    options = options or StepOptions()
    if options.grad_cache_chunk:
        return _backward_grad_cache(model, criterion, batch, context, options)
    with options.autocast(context.device):
        loss, logged = training_forward(model, criterion, batch, context)
    options.scaled(loss).backward()
    return logged


class TrainingStep:
    """One optimisation step over a global batch, and what it owns: the loss, the optimiser, the
    learning-rate schedule and the step options. The training loop hands it batches and logs what
    it returns; the towers, the objectives and gradient caching stay behind this class."""

    def __init__(self, model: MAKEModel, config: Config, context: Distributed, total_steps: int):
        self.model, self.context = model, context
        self.criterion = MAKELoss.for_config(config.model, config.loss)
        self.options = step_options(config, context)
        self.optimizer = build_optimizer(model, config)
        warmup = min(config.train.warmup_steps, total_steps // 5)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, warmup, total_steps)

    def __call__(self, batch: Batch) -> dict[str, float]:
        """Forward and backward, gradients averaged over the ranks and clipped, optimiser and
        schedule stepped; returns the loss values to log."""
        batch = batch.to(self.context.device)
        self.optimizer.zero_grad(set_to_none=True)
        logged = backward(self.model, self.criterion, batch, self.context, self.options)
        average_gradients(self.model, self.context)
        scaler = self.options.scaler
        if scaler is not None:
            scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return logged

    def state(self) -> dict[str, Any]:
        """Learning rate and each objective's temperature, for the metrics log."""
        temperatures = {o.name: 1 / self.model.logit_scale(o.name).item() for o in self.criterion.objectives}
        return {"lr": self.scheduler.get_last_lr()[0], "temperature": temperatures}

    def resumable(self) -> Resumable:
        """What a training state saves and restores of this step."""
        return Resumable(self.model, self.optimizer, self.scheduler, self.options.scaler)


def build_optimizer(model: MAKEModel, config: Config) -> torch.optim.Optimizer:
    """AdamW. Pretrained parts get ``lr`` (the text towers, title projections that start as the
    identity, and an image backbone with pretrained weights when it trains); the new parts (a
    from-scratch image tower, fusion, the other heads) ``head_lr``."""
    pretrained = {id(p) for p in model.pretrained_parameters().values()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) in pretrained], "lr": config.train.lr},
        {"params": [p for p in trainable if id(p) not in pretrained], "lr": config.train.head_lr},
    ]
    return torch.optim.AdamW(groups, weight_decay=config.train.weight_decay)


def step_options(config: Config, context: Distributed) -> StepOptions:
    """Step options from the config; fp16 needs a GPU (its loss scaler is CUDA's)."""
    precision = config.train.precision
    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision: choose one of {sorted(PRECISIONS)}, got '{precision}'")
    if precision == "fp16" and context.device.type != "cuda":
        raise ConfigError("train.precision: fp16 needs a GPU; use bf16 or fp32 on CPU")
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    return StepOptions(config.train.grad_cache_chunk, precision, scaler)


def _backward_grad_cache(
    model: MAKEModel, criterion: MAKELoss, batch: Batch, context: Distributed, options: StepOptions
) -> dict[str, float]:
    """The same gradients as the one-pass step with the activations of at most ``chunk`` rows at a time."""
    chunk, texts = options.grad_cache_chunk, query_texts(batch)
    # the query side (queries, then keyword pseudo-queries) and the product side, each in chunks
    sides: list[tuple[Callable[[int, int], Embedded], int]] = [
        (lambda start, stop: model.encode_queries(texts[start:stop]), len(texts)),
        (lambda start, stop: _products(model, batch, start, stop), len(batch.titles)),
    ]
    chunks = [[(s, min(s + chunk, size)) for s in range(0, size, chunk)] for _, size in sides]
    states: list[list[tuple[torch.Tensor, list[torch.Tensor]]]] = [[] for _ in sides]
    cached = []
    with torch.no_grad(), options.autocast(context.device):
        for (encode, _), ranges, saved in zip(sides, chunks, states, strict=True):
            parts = []
            for start, stop in ranges:
                saved.append(_rng_state())
                parts.append(encode(start, stop))
            cached.append(_cat(parts))
    leaves = [_leaf(embedded, model) for embedded in cached]  # outside no_grad: vectors track the leaves
    with options.autocast(context.device):
        loss, logged = batch_loss(model, criterion, _split(leaves[0], batch, leaves[1]), batch, context)
    options.scaled(loss).backward()  # the cached gradients carry the fp16 scale into the towers
    for (encode, _), ranges, saved, leaf in zip(sides, chunks, states, leaves, strict=True):
        for (start, stop), state in zip(ranges, saved, strict=True):
            with _replay(state), options.autocast(context.device):
                fresh = encode(start, stop)
            _backward_rows(fresh, leaf, start, stop)
    return logged


def average_gradients(model: torch.nn.Module, context: Distributed) -> None:
    """Mean of every parameter's gradient over the ranks, in one flat all-reduce (a missing gradient
    counts as zero, so every rank reduces the same buffer)."""
    if not context.enabled:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    torch.distributed.all_reduce(flat)
    flat /= context.world_size
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def _products(model: MAKEModel, batch: Batch, start: int, stop: int) -> Embedded:
    return model.encode_products(batch.titles[start:stop], batch.images[start:stop], batch.has_image[start:stop])


def _split(queries: Embedded, batch: Batch, products: Embedded) -> Encoded:
    size = len(batch.queries)
    keywords = queries.rows(size, len(queries.vectors)) if batch.keywords else None
    return Encoded(queries.rows(0, size), keywords, products)


def _gather(embedded: Embedded, context: Distributed, pad: int = 0) -> Embedded:
    """Every rank's rows (each padded with ``pad`` zero rows first), in rank order."""
    if not context.enabled:
        return embedded

    def one(tensor: torch.Tensor) -> torch.Tensor:
        if pad:
            tensor = torch.cat([tensor, tensor.new_zeros(pad, *tensor.shape[1:])])
        return gather_with_grad(tensor, context)

    return Embedded(one(embedded.vectors), one(embedded.weights), {m: one(v) for m, v in embedded.parts.items()})


def _cat(chunks: list[Embedded]) -> Embedded:
    return Embedded(
        torch.cat([c.vectors for c in chunks]),
        torch.cat([c.weights for c in chunks]),
        {m: torch.cat([c.parts[m] for c in chunks]) for m in chunks[0].parts},
    )


def _leaf(embedded: Embedded, model: MAKEModel) -> Embedded:
    """Detached copies that collect d(loss)/d(weights, parts); vectors are rebuilt from them."""
    parts = {m: v.detach().requires_grad_() for m, v in embedded.parts.items()}
    return combine(parts, embedded.weights.detach().requires_grad_(), model.modalities)


def _backward_rows(fresh: Embedded, leaf: Embedded, start: int, stop: int) -> None:
    """Back-propagate the cached gradients of rows ``start:stop`` through a fresh forward pass."""
    outputs, grads = [], []
    for fresh_tensor, leaf_tensor in [(fresh.weights, leaf.weights)] + [
        (fresh.parts[m], leaf.parts[m]) for m in fresh.parts
    ]:
        if leaf_tensor.grad is not None and fresh_tensor.requires_grad:
            outputs.append(fresh_tensor)
            grads.append(leaf_tensor.grad[start:stop].to(fresh_tensor.dtype))
    if outputs:
        torch.autograd.backward(outputs, grads)


def _rng_state() -> tuple[torch.Tensor, list[torch.Tensor]]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return torch.get_rng_state(), cuda


@contextmanager
def _replay(state: tuple[torch.Tensor, list[torch.Tensor]]) -> Iterator[None]:
    """Run with the RNG as it was at the first pass (dropout draws the same masks), then restore."""
    with torch.random.fork_rng(devices=range(len(state[1]))):
        torch.set_rng_state(state[0])
        if state[1]:
            torch.cuda.set_rng_state_all(state[1])
        yield
