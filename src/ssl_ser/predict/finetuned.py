"""A fine-tuned model folder from ``ser finetune`` as a predictor.

The folder holds ``finetune.json`` (the training settings), ``labels.json``
(the classes in the order of the head's outputs), ``head.safetensors`` and the
backbone: a ``save_pretrained`` folder (``backbone/``), or LoRA adapter weights
for the base model the settings name, and ``integrity.json`` over all of them
(:mod:`ssl_ser.predict.integrity`), checked before anything loads.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ssl_ser.errors import ConfigError
from ssl_ser.extract.preprocess import Segment
from ssl_ser.finetune import model as finetune_model
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.predict import integrity
from ssl_ser.predict.predictor import Predictor
from ssl_ser.versions import warn_other_majors

RUN_FILE = "finetune.json"
LABELS_FILE = "labels.json"
HEAD_FILE = "head.safetensors"
ADAPTER_FILE = "adapter_model.safetensors"
KIND = "finetuned"


def is_finetuned(folder: Path) -> bool:
    """Whether `folder` is a model folder written by ``ser finetune``."""
    return (folder / RUN_FILE).is_file() and (folder / HEAD_FILE).is_file()


class FinetunedPredictor(Predictor):
    """Backbone, pooling and head of a fine-tuned fold, in eval mode."""

    def __init__(
        self, folder: str | Path, device: str = "auto", seal: integrity.Seal | None = None
    ):
        folder = Path(folder)
        seal = seal or integrity.verify(folder)
        described, labels = _descriptions(folder, seal)
        self.classes = tuple(labels["classes"])
        self.reading = dict(seal.audio)
        warn_other_majors(folder, described.get("versions", {}))
        config = FinetuneConfig(**described["finetune"])
        meaning = finetune_model.output_meaning(self.classes, labels.get("label_set", ""), config)
        integrity.check_outputs(seal, meaning, folder / RUN_FILE)
        trained = described.get("backbone", {})
        saved = {"model": str(folder / "backbone"), "revision": None, "freeze": "base"}
        if config.adapter != "none":  # the base model the adapter was trained on: path, commit
            saved = {"model": str(trained.get("model", config.model)), "revision": _commit(trained)}
        # prediction never masks; a saved backbone no longer draws masks of its own
        config = dataclasses.replace(
            config, **saved, top_layers=None, gradient_checkpointing=False, spec_augment=False
        )
        with integrity.loading(folder / "backbone" if config.adapter == "none" else folder):
            self.model, backbone = finetune_model.build_model(config, len(self.classes), device, 0)
        if config.adapter == "lora":
            _check_base(backbone.identity, trained, folder)
            with integrity.loading(folder / ADAPTER_FILE):
                _load_adapter(self.model, folder / ADAPTER_FILE)
        with integrity.loading(folder / HEAD_FILE):
            _load_head(self.model, folder / HEAD_FILE)
        self.model.eval()
        self.preprocessor = backbone.preprocessor
        self.backbone = backbone
        self.check_reading(folder)

    @torch.no_grad()
    def probabilities(self, utterances: Sequence[Sequence[Segment]]) -> np.ndarray:
        """Softmax of the head's logits."""
        logits = self.model(utterances)
        return torch.softmax(logits.float(), 1).cpu().numpy().astype(np.float64)


def _descriptions(folder: Path, seal: integrity.Seal) -> tuple[dict, dict]:
    """(finetune.json, labels.json) of a verified folder, checked against the seal."""
    if seal.kind != KIND:
        raise ConfigError(f"{folder} is a saved {seal.kind} model, not a fine-tuned model folder")
    described = json.loads((folder / RUN_FILE).read_text())
    labels = json.loads((folder / LABELS_FILE).read_text())
    integrity.check_outputs(seal, labels, folder / LABELS_FILE, ("classes", "label_set"))
    return described, labels


def _commit(trained: dict) -> str | None:
    """The hub commit a base model was loaded at (None for a local folder: bytes are checked)."""
    revision = str(trained.get("revision") or "")
    local = revision.startswith(("local:", "untrained:", "unresolved:")) or not revision
    return None if local else revision


def _check_base(identity: dict, trained: dict, folder: Path) -> None:
    """Refuse an adapter on base weights other than those it was trained on."""
    if str(identity.get("revision")) != str(trained.get("revision")):
        raise ConfigError(
            f"{folder}: its adapter was trained on {trained.get('model')} at revision "
            f"{trained.get('revision')}, but that model now loads at revision "
            f"{identity.get('revision')}; the adapter's predictions would not be the run's"
        )


def _load_head(model: finetune_model.EmotionModel, path: Path) -> None:
    """Put the saved head (and layer weights) in; a head of other shapes is refused in words."""
    state = load_file(str(path))
    head = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
    mine = model.head.state_dict()
    shapes = {k: tuple(v.shape) for k, v in head.items()}
    wanted = {k: tuple(v.shape) for k, v in mine.items()}
    if shapes != wanted:
        raise ConfigError(
            f"{path} holds a head of shapes {shapes}, but the settings and "
            f"{model.n_classes} classes make {wanted}; refused"
        )
    model.head.load_state_dict(head)
    scaler = {k.removeprefix("scaler."): v for k, v in state.items() if k.startswith("scaler.")}
    if scaler:  # folders saved before the head standardised its input hold none: identity
        model.scaler.load_state_dict(scaler)
    if model.layer_logits is not None:
        if "layer_logits" not in state:
            raise ConfigError(f"{path} has no layer weights, but the settings say weighted layers")
        with torch.no_grad():
            model.layer_logits.copy_(state["layer_logits"])


def _load_adapter(model: finetune_model.EmotionModel, path: Path) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model.encoder, load_file(str(path)))
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ConfigError(
            f"{path}: adapter weights that the model has no place for: {unexpected[:3]}"
        )
