"""A model on disk: a run directory's checkpoints, written atomically by training, and the
self-contained model folder that ``save_model`` writes; ``load_model`` reads either.

A run directory holds ``config.yaml`` (the resolved config), ``keywords.json``, ``metrics.jsonl``,
``data_report.json``, ``last.pt`` (after every epoch) and ``best.pt`` (best validation metric):
weights only, what embed, evaluate and serve read. Its config names the pretrained folders the
towers started from, so it works where those folders are. Full training states for
``train --resume`` are training's business (train/state.py).

A saved model folder (``save_model``, ``make_retrieval.MAKE.save``) names no path outside itself, so
it can be copied to another directory or machine (sentence-transformers' folder, in our terms):

    config.yaml          the config; its tower paths name the subfolders below
    model.safetensors    every weight of the model
    query_encoder/       the query tower's Hugging Face config and tokenizer (no weights)
    title_encoder/       the same for the title tower (absent when the towers are shared)
    image_encoder/       a Hugging Face vision backbone's config (only for ``hf:`` backbones)
    keywords.json        the run's mined keywords, when saved from a run (inspection only)
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors

from make_retrieval.config import BUNDLED_MINILM, Config
from make_retrieval.errors import CheckpointError
from make_retrieval.files import replacing
from make_retrieval.model.make import MAKEModel
from make_retrieval.model.objectives import enabled_objectives

CHECKPOINTS = ("best.pt", "last.pt")
#: The weights of a saved model folder.
WEIGHTS = "model.safetensors"
#: Subfolders of a saved model folder that hold the towers' configs and tokenizers.
QUERY_FOLDER, TITLE_FOLDER, IMAGE_FOLDER = "query_encoder", "title_encoder", "image_encoder"


def atomic_save(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file then rename: a crash never leaves a half-written file."""
    with replacing(path) as temporary:
        torch.save(payload, temporary)


def save_checkpoint(path: Path, model: MAKEModel, info: dict[str, Any]) -> None:
    """Model weights and ``info`` (step, validation metrics), written atomically."""
    atomic_save({"model": model.state_dict(), "info": info}, path)


def save_model(model: MAKEModel, config: Config, folder: Path, keywords: Path | None = None) -> Path:
    """Write ``model`` as a self-contained folder (see the module's docstring); returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    towers = dataclasses.replace(config.model)
    model.query_encoder.save_architecture(folder / QUERY_FOLDER)
    towers.query_encoder = dataclasses.replace(towers.query_encoder, path=QUERY_FOLDER)
    if towers.share_text_encoder:
        towers.title_encoder = dataclasses.replace(towers.title_encoder, path=QUERY_FOLDER)
    else:
        model.title_encoder.save_architecture(folder / TITLE_FOLDER)
        towers.title_encoder = dataclasses.replace(towers.title_encoder, path=TITLE_FOLDER)
    image = towers.image_encoder
    if model.image_encoder is not None and image.backbone.startswith("hf:"):
        model.image_encoder.backbone.config.save_pretrained(folder / IMAGE_FOLDER)
        image = dataclasses.replace(image, backbone=f"hf:{IMAGE_FOLDER}")
    towers.image_encoder = dataclasses.replace(image, weights=None)  # model.safetensors holds them
    dataclasses.replace(config, model=towers).save(folder / "config.yaml")
    with replacing(folder / WEIGHTS) as temporary:
        save_safetensors(model, str(temporary))
    if keywords is not None and keywords.is_file():
        shutil.copyfile(keywords, folder / "keywords.json")
    return folder


def load_model(path: Path | str) -> tuple[MAKEModel, Config, Path]:
    """Rebuild the model of a run (best checkpoint, else last) or of a saved model folder; returns
    the model (in eval mode), its config and the weights file read."""
    path = Path(path)
    config_path = path / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{path} is neither a run directory nor a saved model (no config.yaml)")
    config = Config.load(config_path)
    saved = path / WEIGHTS
    if saved.is_file():
        config = _inside(config, path)
        model = _built(config)
        try:
            load_safetensors(model, str(saved))
        except RuntimeError as error:
            raise CheckpointError(f"{saved} does not fit {config_path}: {str(error).splitlines()[0]}") from error
        return model.eval(), config, saved
    checkpoint = next((path / name for name in CHECKPOINTS if (path / name).is_file()), None)
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint ({' or '.join(CHECKPOINTS)}) or {WEIGHTS} in {path}")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    model = _built(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{checkpoint} does not fit {config_path}: {str(error).splitlines()[0]}") from error
    return model.eval(), config, checkpoint


def _built(config: Config) -> MAKEModel:
    """The model of ``config``, with a temperature for each objective that training ran."""
    objectives = [o.name for o in enabled_objectives(config.model, config.loss)]
    return MAKEModel(config.model, config.loss.init_temperature, objectives)


def _inside(config: Config, folder: Path) -> Config:
    """A saved folder's config with its tower subfolders made absolute (they are relative to it)."""

    def located(path: str) -> str:
        return path if path == BUNDLED_MINILM or Path(path).is_absolute() else str(folder.resolve() / path)

    model = config.model
    query = dataclasses.replace(model.query_encoder, path=located(model.query_encoder.path))
    title = dataclasses.replace(model.title_encoder, path=located(model.title_encoder.path))
    image = model.image_encoder
    if image.backbone.startswith("hf:"):
        image = dataclasses.replace(image, backbone="hf:" + located(image.backbone.removeprefix("hf:")))
    towers = dataclasses.replace(model, query_encoder=query, title_encoder=title, image_encoder=image)
    return dataclasses.replace(config, model=towers)
