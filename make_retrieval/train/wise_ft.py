"""Two choices made on validation after training, each kept in best.pt only when it validates better
than the model it starts from (issue 21: a small click log, queries unlike the training ones).

WiSE-FT (Wortsman et al., 2022): the pretrained parts of the best model are interpolated toward
their pretrained weights, theta = (1 - alpha) theta_0 + alpha theta_tuned. Fine-tuning on a small
click log moves the text towers toward the training queries; a mixture keeps what the pretrained
encoder knew of queries unlike them. Only the pretrained parts are mixed
(MAKEModel.pretrained_parameters): the new heads, fusion and Modal Adaptation have no meaningful
step-0 weights and keep their trained values.

Title lean (Ours): both sides' modality weights are moved a share of the way onto the title
(MAKEModel.title_lean). The image and fused heads learn from the products that were clicked; on
product types no training query named (docs/RESULTS.md, category-held-out) they did not carry
over, and the title alone ranked better on validation and test alike; where the photo carries the
answer (colour-from-photo) validation keeps the learnt weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from make_retrieval.errors import ConfigError
from make_retrieval.model.checkpoint import save_checkpoint
from make_retrieval.model.make import MAKEModel

Validate = Callable[[MAKEModel], dict[str, float]]


def mixture_shares(setting: str, key: str = "wise_ft", include_one: bool = False) -> list[float]:
    """A ``train.<key>`` setting ("0.25,0.5,0.75"; "" = off) as shares, each strictly between 0 and
    1 (or equal to 1 with ``include_one``)."""
    try:
        shares = [float(part) for part in setting.split(",") if part.strip()]
    except ValueError:
        shares = [-1.0]
    if any(not (0 < share < 1 or (include_one and share == 1)) for share in shares):
        bounds = "in (0, 1]" if include_one else "strictly between 0 and 1"
        raise ConfigError(f"train.{key}: comma-separated shares {bounds}, got '{setting}'")
    return shares


def interpolate(
    model: MAKEModel,
    pretrained: dict[str, torch.Tensor],
    tuned: dict[str, torch.Tensor],
    alpha: float,
) -> None:
    """Set ``model``'s pretrained parts to (1 - alpha) pretrained + alpha tuned, in place."""
    with torch.no_grad():
        for name, parameter in model.pretrained_parameters().items():
            parameter.copy_(torch.lerp(pretrained[name].to(parameter), tuned[name].to(parameter), alpha))


def choose_mixture(
    model: MAKEModel,
    fresh: Callable[[], MAKEModel],
    best_path: Path,
    alphas: Sequence[float],
    validate: Validate,
    metric: str,
    best: float,
) -> dict[str, object] | None:
    """Validate each mixture of the untrained model's (built by ``fresh``) pretrained weights and those
    of ``best_path``, and write best.pt back with the winner (the tuned weights, alpha 1, unless a
    mixture beats ``best``). ``model`` ends as best.pt. Returns the choice's event; None when best.pt
    is the untrained model (nothing to mix)."""
    saved = torch.load(best_path, map_location="cpu", weights_only=True)
    if saved["info"].get("step", 0) == 0:
        return None
    if "wise_ft" in saved["info"]:
        return saved["info"]["wise_ft"]
    model.load_state_dict(saved["model"])
    tuned = {n: p.detach().clone() for n, p in model.pretrained_parameters().items()}
    pretrained = {n: p.detach() for n, p in fresh().pretrained_parameters().items()}
    scores: dict[float, float] = {}
    chosen, chosen_score = 1.0, best
    for alpha in alphas:
        interpolate(model, pretrained, tuned, alpha)
        scores[alpha] = validate(model)[metric]
        if scores[alpha] > chosen_score:
            chosen, chosen_score = alpha, scores[alpha]
    interpolate(model, pretrained, tuned, chosen)
    event = {"event": "wise_ft", "alpha": chosen, f"valid_{metric}": chosen_score, "tried": scores}
    return _kept(best_path, model, saved, event)


def choose_title_lean(
    model: MAKEModel, best_path: Path, shares: Sequence[float], validate: Validate, metric: str, best: float
) -> dict[str, object] | None:
    """Validate best.pt with its modality weights leaned onto the title by each share, and write it
    back with the share that beats ``best`` (0 when none does). ``model`` ends as best.pt. Returns
    the choice's event; None when the model has no title and other modality to lean between."""
    if not model.leans:
        return None
    saved = torch.load(best_path, map_location="cpu", weights_only=True)
    if "title_lean" in saved["info"]:
        return saved["info"]["title_lean"]
    model.load_state_dict(saved["model"])
    scores: dict[float, float] = {}
    chosen, chosen_score = 0.0, best
    for share in shares:
        model.title_lean.fill_(share)
        scores[share] = validate(model)[metric]
        if scores[share] > chosen_score:
            chosen, chosen_score = share, scores[share]
    model.title_lean.fill_(chosen)
    event = {"event": "title_lean", "share": chosen, f"valid_{metric}": chosen_score, "tried": scores}
    return _kept(best_path, model, saved, event)


def _kept(best_path: Path, model: MAKEModel, saved: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """Write ``model`` over best.pt with ``event`` in its info, whatever was chosen: a finished run
    that is resumed reads the choice back (and logs it again) instead of choosing again."""
    save_checkpoint(best_path, model, {**saved["info"], event["event"]: event})
    return event
