"""Run one fine-tune from a JSON description (for kill/resume and torchrun tests).

Usage: python run_script.py SPEC.json  (keys: manifest, output, config, settings)
"""

from __future__ import annotations

import json
import sys

import torch

from ssl_ser import manifest
from ssl_ser.classify.splits import SplitOptions
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.run import RunOptions, run_finetune


def main(path: str) -> None:
    """Read the spec and run it."""
    torch.set_num_threads(1)
    with open(path) as handle:
        spec = json.load(handle)
    settings = dict(spec["settings"])
    settings["split_options"] = SplitOptions(**settings.get("split_options", {}))
    settings["conditions"] = tuple(settings.get("conditions", ("clean",)))
    run_finetune(
        manifest.read(spec["manifest"]),
        FinetuneConfig(**spec["config"]),
        RunOptions(**settings),
        spec["output"],
    )


if __name__ == "__main__":
    main(sys.argv[1])
