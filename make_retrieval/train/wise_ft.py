"""WiSE-FT (Wortsman et al., 2022) after training: the pretrained parts of the best model are
interpolated toward their pretrained weights, theta = (1 - alpha) theta_0 + alpha theta_tuned, and
the mixture that validates best is kept in best.pt. Fine-tuning on a small click log moves the text
towers toward the training queries; a mixture keeps what the pretrained encoder knew of queries
unlike them. Only the pretrained parts are mixed (MAKEModel.pretrained_parameters): the new heads,
fusion and Modal Adaptation have no meaningful step-0 weights and keep their trained values."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from make_retrieval.errors import ConfigError
from make_retrieval.model.checkpoint import save_checkpoint
from make_retrieval.model.make import MAKEModel

Validate = Callable[[MAKEModel], dict[str, float]]


def mixture_shares(setting: str) -> list[float]:
    """``train.wise_ft`` ("0.25,0.5,0.75"; "" = off) as shares of the tuned weights, each in (0, 1)."""
    try:
        shares = [float(part) for part in setting.split(",") if part.strip()]
    except ValueError:
        shares = [-1.0]
    if any(not 0 < share < 1 for share in shares):
        raise ConfigError(f"train.wise_ft: comma-separated shares strictly between 0 and 1, got '{setting}'")
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
    """Validate each mixture of the untrained model's (built by ``fresh``) pretrained weights and those of
    ``best_path``; write the winner over best.pt when it beats ``best``. ``model`` ends as best.pt.
    None when there is nothing to mix: best.pt is the untrained model, or a mixture already."""
    saved = torch.load(best_path, map_location="cpu", weights_only=True)
    if saved["info"].get("step", 0) == 0 or "wise_ft_alpha" in saved["info"]:
        return None  # the untrained model won (nothing to mix), or the mixture is chosen already
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
    if chosen != 1.0:
        save_checkpoint(best_path, model, {**saved["info"], "wise_ft_alpha": chosen, f"valid_{metric}": chosen_score})
    return {"event": "wise_ft", "alpha": chosen, f"valid_{metric}": chosen_score, "tried": scores}
