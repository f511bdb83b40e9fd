"""Validation during training: exact search of the whole catalog for the ``valid`` queries, at an
epoch end once ``train.validate_every`` steps have passed (and after the last epoch). Its primary
metric (``train.valid_metric``) picks ``best.pt`` and drives early stopping."""

from __future__ import annotations

from make_retrieval.config import TrainConfig
from make_retrieval.data.pairs import DataDir
from make_retrieval.errors import ConfigError
from make_retrieval.evaluate import METRICS, ExactRetriever, evaluate_retriever
from make_retrieval.model.make import MAKEModel
from make_retrieval.train.state import TrainingPosition


class Validator:
    """Scores a model on the ``valid`` judgements; ``enabled`` is False when the run does not validate."""

    def __init__(self, data: DataDir, config: TrainConfig):
        if config.valid_metric not in METRICS:
            raise ConfigError(f"train.valid_metric: choose one of {list(METRICS)}, got '{config.valid_metric}'")
        self.data, self.metric = data, config.valid_metric
        self.every, self.patience = config.validate_every, config.patience
        self.enabled = config.validate and "valid" in data.judgements
        judged = data.judgements.get("valid", {})
        if config.max_valid_queries:
            judged = {q: judged[q] for q in sorted(judged)[: config.max_valid_queries]}
        self.judged = judged

    def due(self, position: TrainingPosition, final: bool) -> bool:
        """Whether to validate at this epoch end."""
        return self.enabled and (final or position.step - position.validated_at >= self.every)

    def __call__(self, model: MAKEModel) -> dict[str, float]:
        """Every metric of ``model`` on ``valid``; the model is put back in training mode."""
        result = evaluate_retriever(ExactRetriever(model, self.data.catalog), self.judged, self.data.catalog, "valid")
        model.train()
        return result.metrics

    def observe(self, position: TrainingPosition, metrics: dict[str, float]) -> bool:
        """Record a validation in ``position``; True when it is the best so far (save best.pt)."""
        score = metrics[self.metric]
        position.validated_at = position.step
        position.stale = 0 if position.best is None or score > position.best else position.stale + 1
        if position.stale == 0:
            position.best = score
        return position.stale == 0

    def should_stop(self, position: TrainingPosition, final: bool) -> bool:
        """Early stop: ``patience`` validations in a row without a better score (never after the last epoch)."""
        return bool(self.patience) and position.stale >= self.patience and not final
