r"""``ser probe``: one command line for extract (where missing), classify over all layers, report.

It builds the same :class:`~ssl_ser.pipelines.experiment.Experiment` an
experiment file would describe, so the options are validated the same way,
and runs it with :func:`~ssl_ser.pipelines.run.run_experiment`. For example::

    ser probe --model facebook/wav2vec2-base --model mfcc --corpus emodb=/data/emodb \
        --condition clean --condition telephone --classifiers logreg,mlp \
        --split speaker-kfold --folds 5 --cache-dir ser-out/cache --output ser-out/probe
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssl_ser.classify.settings import SplitSettings, SweepSettings
from ssl_ser.errors import ConfigError
from ssl_ser.extract.settings import ExtractSettings
from ssl_ser.finetune.settings import FinetuneSettings
from ssl_ser.pipelines.experiment import Experiment, RunSettings, check_experiment
from ssl_ser.pipelines.run import RunSummary, run_experiment
from ssl_ser.settings import Feedback, Settings, Where, bare, flag_of, setting

FINETUNE_EPOCHS = FinetuneSettings().epochs  # --finetune alone: ser finetune's default
SOURCE = "the ser probe options"
PROBE_NAME = "probe"
# Extraction options that run the work on a cluster: not ser probe's (its --dask is the
# sweep's; an experiment file's extract section takes them). ser probe's options leave out
# root and shard too (a single input, one shard of many).
NOT_PROBE_EXTRACT: tuple[str, ...] = ("dask", "shards", "keep_shards")


class ProbeSettings(Settings):
    """What ``ser probe`` takes beyond the experiment's own fields."""

    finetune_epochs: int | None = setting(
        None,
        "Also fine-tune each SSL model (not the classic baselines) end to end on the same "
        "folds, with ser finetune's default settings and at most EPOCHS epochs "
        f"(alone: {FINETUNE_EPOCHS}); classifier finetune rows in the same results and "
        "report.",
        flag="--finetune",
        flag_value=FINETUNE_EPOCHS,
        metavar="[EPOCHS]",
        minimum=1,
        file=False,
    )


@dataclass(frozen=True)
class FlagWhere(Where):
    """A place in ser probe's options: reads as its flag (``--split``), not as a file key."""

    def __str__(self) -> str:
        model: Any = Experiment
        for index, key in enumerate(self.keys):
            info = model.model_fields.get(key)
            inner = bare(info.annotation) if info is not None else None
            if isinstance(inner, type) and issubclass(inner, Settings):
                model = inner  # a section (split, classify...): its fields are the flags
                continue
            return " ".join([flag_of(model, key), *self.keys[index + 1 :]])
        return self.source


def probe_experiment(values: Mapping[str, Any]) -> Experiment:
    """The experiment one ``ser probe`` command line describes (its parsed option values).

    Raises:
        ConfigError, UnknownChoiceError: a bad option, named by its flag.
    """
    extract = {k: v for k, v in values.items() if k not in NOT_PROBE_EXTRACT}
    epochs = ProbeSettings.from_cli(values).finetune_epochs
    experiment = Experiment.from_cli(
        values,
        name=PROBE_NAME,
        split=SplitSettings.from_cli(values),
        extract=ExtractSettings.from_cli(extract),
        classify=SweepSettings.from_cli(values),
        finetune=None if epochs is None else {"epochs": epochs},
    )
    check_experiment(experiment, FlagWhere(SOURCE))
    return experiment


def probe(values: Mapping[str, Any]) -> RunSummary:
    """Build and run the experiment of a ``ser probe`` command line (see probe_experiment)."""
    experiment = probe_experiment(values)
    for corpus in experiment.corpora:  # refused naming the flag (files: run's check_roots)
        if not Path(corpus.root).expanduser().exists():
            raise ConfigError(
                f"--corpus {corpus.name}={corpus.root}: no such corpus folder or manifest"
            )
    run = RunSettings.from_cli(values)
    progress = Feedback.from_cli(values).progress
    return run_experiment(experiment, source=SOURCE, dry_run=run.dry_run, progress=progress)
