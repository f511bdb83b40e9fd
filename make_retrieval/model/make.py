"""The MAKE model: query, title and image encoders, fusion, Modal Adaptation, one index vector each.

A query vector is [sqrt(a_m(q)) q_m]_m and a product vector [sqrt(b_m(p)) p_m]_m over the modalities
(title, image, fused), so their inner product is the Modal-Adaptation score
s(q, p) = sum_m sqrt(a_m(q) b_m(p)) <q_m, p_m> and a single ANN search serves the whole catalog.
Ours, changed from docs/METHOD.md's sum_m a_m b_m <q_m, p_m> (docs/DESIGN.md, "Unit-norm MA vectors"):
with plain weights the score's range grows when a and b concentrate on one modality, so training
rewards collapsing onto whichever modality is best at step 0 whatever the product. With square
roots both vectors have unit norm for any weights, the range is [-1, 1] and only information moves
the weights. Keyword Enhancement lives in training (losses and
batches): at inference the query encoder alone runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from make_retrieval.config import ModelConfig
from make_retrieval.errors import ConfigError
from make_retrieval.model.adaptation import ModalAdaptation
from make_retrieval.model.encoders import TextEncoder
from make_retrieval.model.fusion import FusionEncoder
from make_retrieval.model.image import ImageEncoder
from make_retrieval.model.objectives import model_objectives


@dataclass
class Embedded:
    """Index vectors, modality weights and the normalised per-modality vectors behind them."""

    vectors: torch.Tensor  # (B, M*E): concatenation of weight * modality vector
    weights: torch.Tensor  # (B, M), rows sum to 1
    parts: dict[str, torch.Tensor]  # modality -> (B, E), L2-normalised

    def rows(self, start: int, stop: int) -> Embedded:
        """Rows ``start:stop`` (one encoder pass can embed two batches of text at once)."""
        return self.select(slice(start, stop))

    def select(self, index: slice | torch.Tensor) -> Embedded:
        """The rows picked by ``index`` (a slice or a tensor of row numbers)."""
        return Embedded(self.vectors[index], self.weights[index], {m: v[index] for m, v in self.parts.items()})


class MAKEModel(nn.Module):
    """Two-tower retrieval model over the product modalities chosen by the config.

    The full MAKE model uses (title, image, fused); the switches also build the baselines of
    ``model/baselines.py`` in the same code path (one shared text tower, fewer modalities).
    """

    def __init__(self, config: ModelConfig, init_temperature: float = 0.05, objectives: Sequence[str] | None = None):
        """``objectives``: names of the objectives whose temperatures the model learns (default: every
        one it can train, model/objectives.py); a checkpoint is rebuilt with the ones it saved."""
        super().__init__()
        self.config = config
        self.modalities = config.modalities
        if not config.title_modality and not config.fusion:
            raise ConfigError("model: a product needs its title or fused modality (image-less products exist)")
        self.query_encoder = TextEncoder(config.query_encoder)
        # a shared tower (text-dual, CLIP-style) is one module under two names; parameters() counts it once
        self.title_encoder = self.query_encoder if config.share_text_encoder else TextEncoder(config.title_encoder)
        needs_image = config.image_modality or config.fusion
        self.image_encoder = ImageEncoder(config.image_encoder) if needs_image else None
        text_dim = self.title_encoder.hidden_size
        image_dim = self.image_encoder.hidden_size if self.image_encoder is not None else 0
        dim, count = self.embed_dim, len(self.modalities)
        #: The title projections start as the identity (see ModelConfig.embed_dim).
        self.identity_start = "title" in self.modalities and dim == text_dim == self.query_encoder.hidden_size
        self.fusion = FusionEncoder(text_dim, image_dim, config.fusion_layers) if config.fusion else None
        widths = {"title": text_dim, "image": image_dim, "fused": text_dim}
        self.product_proj = nn.ModuleDict({m: nn.Linear(widths[m], dim) for m in self.modalities})
        self.query_proj = nn.ModuleDict({m: nn.Linear(self.query_encoder.hidden_size, dim) for m in self.modalities})
        if "title" in self.modalities and self.query_encoder.hidden_size == text_dim:
            # Ours: every query projection starts as a copy of the title projection (the identity when
            # the widths allow), so the pretrained query-title similarity survives the heads at step 0.
            if self.identity_start:
                _identity(self.product_proj["title"])
            for proj in self.query_proj.values():
                proj.load_state_dict(self.product_proj["title"].state_dict())
        enabled, hidden = config.modal_adaptation, config.adaptation_hidden
        title = self.modalities.index("title") if "title" in self.modalities else None
        prior = None if title is None or config.initial_title_weight is None else (title, config.initial_title_weight)
        self.product_adaptation = ModalAdaptation(dim * count, count, hidden, enabled, prior)
        # "product-only MA" (docs/METHOD.md ablation): b(p) learned, a(q) uniform
        query_enabled = enabled and config.query_adaptation
        self.query_adaptation = ModalAdaptation(self.query_encoder.hidden_size, count, hidden, query_enabled, prior)
        #: Ours (issue 21): how far both sides' weights move onto the title after training,
        #: w' = (1 - s) w + s e_title, with s chosen on validation (train/wise_ft.py ``choose_title_lean``)
        #: and saved with the weights; 0 while training. Where the image and fused parts do not carry
        #: over to the queries validated on (product types never trained), the title alone ranks better.
        self.register_buffer("title_lean", torch.zeros(()))
        self._title = self.modalities.index("title") if "title" in self.modalities and count > 1 else None
        start = math.log(1.0 / init_temperature)
        if objectives is None:
            objectives = [o.name for o in model_objectives(config)]
        self.logit_scales = nn.ParameterDict({o: nn.Parameter(torch.tensor(start)) for o in objectives})

    @property
    def embed_dim(self) -> int:
        """Dimension of each modality's vector: the config's, or the text towers' width."""
        return self.config.embed_dim or self.title_encoder.hidden_size

    @property
    def dim(self) -> int:
        """Dimension of the index vectors."""
        return self.embed_dim * len(self.modalities)

    @property
    def image_size(self) -> int:
        """Side of the square images the image tower reads (what data loaders must produce)."""
        return self.image_encoder.image_size if self.image_encoder is not None else self.config.image_encoder.image_size

    def pretrained_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters that start from pretrained weights, by state-dict name: the text towers, an
        image backbone with pretrained weights, and title projections that start as the identity.
        They train at ``train.lr`` (the rest at ``head_lr``) and are what WiSE-FT interpolates."""
        parts: list[str] = ["query_encoder.", "title_encoder."]
        if self.image_encoder is not None and self.image_encoder.pretrained:
            parts.append("image_encoder.backbone.")
        if self.identity_start:
            parts += ["product_proj.title.", "query_proj.title."]
        return {n: p for n, p in self.named_parameters() if n.startswith(tuple(parts))}

    def enable_gradient_checkpointing(self) -> None:
        """Recompute the Hugging Face towers' activations in backward (less memory, more time)."""
        towers = [self.query_encoder.model, self.title_encoder.model]
        if self.image_encoder is not None:
            towers.append(self.image_encoder.backbone)
        for tower in towers:
            if getattr(tower, "supports_gradient_checkpointing", False):
                tower.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            elif hasattr(tower, "set_grad_checkpointing"):  # timm
                tower.set_grad_checkpointing(True)

    def logit_scale(self, objective: str) -> torch.Tensor:
        """exp of the learnable log-scale, capped at 100 as in CLIP."""
        return self.logit_scales[objective].clamp(max=math.log(100.0)).exp()

    def encode_queries(self, queries: list[str]) -> Embedded:
        """Index-side query vectors [sqrt(a_m(q)) q_m]_m; only the query tower runs."""
        return self.encode_query_tokens(*self.query_encoder.tokenize(queries, self.config.query_encoder.max_length))

    def encode_query_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Embedded:
        """``encode_queries`` after tokenization (the part exported to ONNX)."""
        pooled = self.query_encoder.encode(input_ids, attention_mask).pooled
        parts = {m: F.normalize(self.query_proj[m](pooled), dim=-1) for m in self.modalities}
        return combine(parts, self._leaned(self.query_adaptation(pooled)), self.modalities)

    def encode_products(self, titles: list[str], images: torch.Tensor, has_image: torch.Tensor) -> Embedded:
        """``images``: pixels (B,3,S,S), or cached trunk features for a frozen image tower
        (data/batches.py ImageInputs); rows with ``has_image`` False are ignored (image weight 0)."""
        text = self.title_encoder(titles, self.config.title_encoder.max_length)
        features = {"title": text.pooled}
        if self.image_encoder is not None:
            image = self.image_encoder(images)
            features["image"] = image.pooled
            if self.fusion is not None:
                features["fused"] = self.fusion(text.tokens, text.mask, image.patches, has_image)
        parts = {m: F.normalize(self.product_proj[m](features[m]), dim=-1) for m in self.modalities}
        available = torch.ones(len(titles), len(self.modalities), dtype=torch.bool, device=images.device)
        if "image" in self.modalities:
            available[:, self.modalities.index("image")] = has_image
        # the MA MLP must not read the image part of a product that has none (it is the image of zeros)
        seen = {m: parts[m] * has_image.unsqueeze(1) if m == "image" else parts[m] for m in self.modalities}
        weights = self.product_adaptation(torch.cat([seen[m] for m in self.modalities], -1), available)
        return combine(parts, self._leaned(weights), self.modalities)

    @property
    def leans(self) -> bool:
        """Whether ``title_lean`` can act: the model has a title and another modality."""
        return self._title is not None

    def _leaned(self, weights: torch.Tensor) -> torch.Tensor:
        """Modality weights moved ``title_lean`` of the way onto the title (unchanged at 0)."""
        if self._title is None:
            return weights
        title = torch.zeros_like(weights)
        title[:, self._title] = 1.0
        return weights + self.title_lean.to(weights.dtype) * (title - weights)


def _identity(layer: nn.Linear) -> None:
    """A square projection that starts as the identity (the pretrained space, unchanged)."""
    with torch.no_grad():
        layer.weight.copy_(torch.eye(layer.out_features, layer.in_features))
        layer.bias.zero_()


def combine(parts: dict[str, torch.Tensor], weights: torch.Tensor, modalities: tuple[str, ...]) -> Embedded:
    """Unit-norm index vectors [sqrt(w_m) v_m]_m; a weight of exactly 0 (no image) stays 0 with a
    zero gradient (sqrt's slope at 0 is infinite)."""
    roots = torch.where(weights > 0, weights.clamp_min(1e-12).sqrt(), torch.zeros_like(weights))
    vectors = torch.cat([roots[:, i : i + 1] * parts[m] for i, m in enumerate(modalities)], dim=-1)
    return Embedded(vectors, weights, parts)
