"""Image-tower warm-up: align a randomly initialised image tower with the frozen title tower first.

Ours (docs/DESIGN.md, "Image warm-up"). With no pretrained image weights at hand, the image tower
starts as noise; in a short pre-training run Modal Adaptation then learns to ignore the image and
MAKE degenerates into a title-only model. Before the main loop we therefore train the image tower
alone to predict its product's title embedding from the (frozen, pretrained) title tower: an
image-title InfoNCE with the text side locked, as in LiT with the roles swapped. It reads only the
catalog's titles and images (no queries, no judgements), the titles are embedded once, and only the
image tower runs backward, so it costs little next to the main loop. Afterwards the image projection
is set to (title projection) x (warm-up head), so at step 0 a product's image part already sits
near its title part in the space the query tower was initialised to match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from make_retrieval.data.batches import ImageInputs
from make_retrieval.data.catalog import Catalog
from make_retrieval.losses import symmetric_info_nce
from make_retrieval.model.make import MAKEModel

#: Fixed temperature of the warm-up loss (CLIP's learnt value is about this).
TEMPERATURE = 0.05


def warm_up_image_tower(
    model: MAKEModel,
    catalog: Catalog,
    images: ImageInputs,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    progress: bool = True,
) -> list[float]:
    """Train ``model.image_encoder`` for ``steps`` steps against frozen title embeddings; returns the
    loss of every step (for the metrics log). A model without an image tower is left alone."""
    encoder = model.image_encoder
    pictured = [i for i, path in enumerate(catalog.images) if path is not None]
    if encoder is None or steps <= 0 or len(pictured) < 2:
        return []
    targets = _title_targets(model, [catalog.titles[i] for i in pictured])
    title_ids = torch.tensor(_ids([catalog.titles[i] for i in pictured]))
    inputs = torch.stack([images(i) for i in pictured])
    device = targets.device
    head = nn.Linear(encoder.hidden_size, targets.shape[1]).to(device)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=lr, weight_decay=0.01)
    encoder.train()
    losses: list[float] = []
    size = min(batch_size, len(pictured))
    for _ in tqdm(range(steps), desc="image warm-up", unit="step", disable=not progress):
        rows = torch.randperm(len(pictured), generator=generator)[:size]
        image = F.normalize(head(encoder(inputs[rows].to(device)).pooled), dim=-1)
        # products with the same title are each other's positives, not negatives
        same = (title_ids[rows].unsqueeze(0) == title_ids[rows].unsqueeze(1)).float().to(device)
        loss = symmetric_info_nce(image @ targets[rows].T / TEMPERATURE, same)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    _compose_image_projection(model, head)
    return losses


@torch.no_grad()
def _title_targets(model: MAKEModel, titles: list[str], chunk: int = 256) -> torch.Tensor:
    """L2-normalised pooled title-tower features of ``titles`` (the tower is not trained here)."""
    was_training = model.title_encoder.training
    model.title_encoder.eval()
    max_length = model.config.title_encoder.max_length
    chunks = [model.title_encoder(titles[s : s + chunk], max_length).pooled for s in range(0, len(titles), chunk)]
    model.title_encoder.train(was_training)
    return F.normalize(torch.cat(chunks), dim=-1)


def _ids(values: list[str]) -> list[int]:
    """A small integer per distinct value (equal values, equal ids)."""
    index: dict[str, int] = {}
    return [index.setdefault(v, len(index)) for v in values]


@torch.no_grad()
def _compose_image_projection(model: MAKEModel, head: nn.Linear) -> None:
    """product_proj[image] := product_proj[title] o head, when the model has both and widths fit."""
    proj = model.product_proj
    if "image" not in proj or "title" not in proj or proj["title"].in_features != head.out_features:
        return
    title = proj["title"]
    proj["image"].weight.copy_(title.weight @ head.weight)
    proj["image"].bias.copy_(title.weight @ head.bias + title.bias)
