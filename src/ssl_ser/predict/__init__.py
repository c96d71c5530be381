"""Use what was trained: label new audio with a saved model (``ser predict``).

``ssl_ser.predict.load(folder).predict(paths)`` returns one row per file with
the predicted emotion and a probability per class.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ssl_ser.errors import ConfigError

if TYPE_CHECKING:  # torch loads with the predictor, inside load(), not with the package
    from ssl_ser.predict.predictor import Predictor


def load(bundle: str | Path, device: str = "auto") -> Predictor:
    """The predictor saved in `bundle`: a probe bundle or a fine-tuned model folder.

    Every file is checked against the folder's ``integrity.json`` first
    (:func:`ssl_ser.predict.integrity.verify`).

    Raises:
        ConfigError: `bundle` is not a folder the toolkit saved, or one whose
            files or record disagree (one line naming the file).
    """
    from ssl_ser.predict import integrity
    from ssl_ser.predict.bundle import ProbePredictor
    from ssl_ser.predict.finetuned import FinetunedPredictor

    folder = Path(bundle)
    if not folder.is_dir():
        raise ConfigError(f"{bundle} is not a folder; give a probe bundle or a model folder")
    seal = integrity.verify(folder)
    if seal.kind == "finetuned":
        return FinetunedPredictor(folder, device, seal)
    return ProbePredictor(folder, device, seal)
