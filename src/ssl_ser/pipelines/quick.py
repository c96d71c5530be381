r"""``ser probe``: one command line for extract (where missing), classify over all layers, report.

It builds the same :class:`~ssl_ser.pipelines.experiment.Experiment` an
experiment file would describe, so the options are validated the same way,
and runs it with :func:`~ssl_ser.pipelines.run.run_experiment`. For example::

    ser probe --model facebook/wav2vec2-base --model mfcc --corpus emodb=/data/emodb \
        --condition clean --condition telephone --classifiers logreg,mlp \
        --split speaker-kfold --folds 5 --cache-dir ser-out/cache --output ser-out/probe
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ssl_ser.errors import ConfigError
from ssl_ser.pipelines.experiment import Experiment, experiment_from_dict
from ssl_ser.pipelines.run import RunSummary, run_experiment

SOURCE = "the ser probe options"
PROBE_NAME = "probe"


def parse_corpus(text: str) -> tuple[str, str]:
    """``emodb=/data/emodb`` -> ("emodb", "/data/emodb").

    Raises:
        ConfigError: no ``=`` or an empty side.
    """
    name, sep, root = text.partition("=")
    if not sep or not name.strip() or not root.strip():
        raise ConfigError(
            f"--corpus {text!r} must be NAME=ROOT (a corpus folder) or NAME=MANIFEST "
            "(a manifest CSV/parquet), e.g. emodb=/data/emodb"
        )
    return name.strip(), root.strip()


def probe_experiment(
    models: Sequence[str],
    corpora: Sequence[str],
    *,
    conditions: Sequence[str] = ("clean",),
    condition_pairs: str = "matched",
    extract: dict[str, Any] | None = None,
    classify: dict[str, Any] | None = None,
    split: dict[str, Any] | None = None,
    **fields: Any,
) -> Experiment:
    """The experiment one ``ser probe`` command line describes.

    Args:
        models: hub ids, local model folders or classic baselines.
        corpora: ``NAME=ROOT`` or ``NAME=MANIFEST`` strings.
        conditions: audio conditions to extract.
        condition_pairs: ``matched`` or ``all``.
        extract: extraction settings (device, dtype, batch_seconds...).
        classify: further classify settings (jobs, bootstrap...).
        split: split settings (method, folds, train, test, shots).
        **fields: further experiment fields (classifiers, labels, layers, pooling,
            seeds, cache_dir, output, corpora_mode, report).

    Raises:
        ConfigError, UnknownChoiceError: a bad option, named.
    """
    entries: dict[str, str] = {}
    for text in corpora:
        name, root = parse_corpus(text)
        if name in entries:
            raise ConfigError(f"--corpus {name} is given twice")
        entries[name] = root
    data: dict[str, Any] = {
        "name": PROBE_NAME,
        "models": list(models),
        "corpora": entries,
        "conditions": list(conditions),
        "condition_pairs": condition_pairs,
        **{k: v for k, v in fields.items() if v is not None},
    }
    for key, value in (("extract", extract), ("classify", classify), ("split", split)):
        if value:
            data[key] = {k: v for k, v in value.items() if v is not None}
    return experiment_from_dict(data, SOURCE)


def probe(
    models: Sequence[str],
    corpora: Sequence[str],
    *,
    dry_run: bool = False,
    progress: bool = False,
    **options: Any,
) -> RunSummary:
    """Build and run the experiment of a ``ser probe`` command line (see probe_experiment)."""
    experiment = probe_experiment(models, corpora, **options)
    return run_experiment(experiment, source=SOURCE, dry_run=dry_run, progress=progress)
