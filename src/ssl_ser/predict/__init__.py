"""Use what was trained: label new audio with a saved model (``ser predict``).

``ssl_ser.predict.load(folder).predict(paths)`` returns one row per file with
the predicted emotion and a probability per class.
"""

from __future__ import annotations

from pathlib import Path

from ssl_ser.errors import ConfigError
from ssl_ser.predict.predictor import Predictor


def load(bundle: str | Path, device: str = "auto") -> Predictor:
    """The predictor saved in `bundle`: a probe bundle or a fine-tuned model folder.

    Raises:
        ConfigError: `bundle` is not a folder the toolkit saved.
    """
    from ssl_ser.predict.finetuned import FinetunedPredictor, is_finetuned
    from ssl_ser.predict.probe import ProbePredictor, is_probe

    folder = Path(bundle)
    if is_finetuned(folder):
        return FinetunedPredictor(folder, device)
    if is_probe(folder):
        return ProbePredictor(folder, device)
    raise ConfigError(
        f"{bundle} is not a saved model: expected a probe bundle (`ser classify --save-probe`, "
        "`ser export`: a folder with bundle.json) or a fine-tuned model folder from "
        "`ser finetune` (OUTPUT/models/<cell id>/, with finetune.json and head.safetensors)"
    )
