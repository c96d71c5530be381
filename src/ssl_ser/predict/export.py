"""Fit a probe on all training rows of cached features and save it as a bundle.

The layer is chosen on training speakers only, by default: whole speakers are
held out of the rows (:func:`~ssl_ser.classify.splits.inner_split`), each
candidate layer is fitted on the rest and scored (UA) on them, and the best
(the lowest on a tie) is refitted on every row. ``ser classify --save-probe``
(:func:`check_sweep_export`, :func:`export_sweep_probe`) and ``ser export`` both
call :func:`export_probe`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssl_ser.classify import registry
from ssl_ser.classify.dataset import Dataset, build_datasets
from ssl_ser.classify.features import (
    FeatureBlocks,
    FeatureSource,
    FeatureSpec,
    load_blocks,
    select_layers,
)
from ssl_ser.classify.search import ua_of
from ssl_ser.classify.splits import inner_split
from ssl_ser.classify.sweep import SweepConfig, sweep_poolings
from ssl_ser.errors import ConfigError
from ssl_ser.predict import bundle, integrity

SELECTED = "selected"
# Splits whose training side is its own set of corpora (a probe is fitted on those).
CROSSED_SPLITS: tuple[str, ...] = ("cross-corpus", "few-shot")
# Share of the rows (whole speakers) that score each candidate layer.
CHOICE_FRACTION = 0.2


@dataclass
class Exported:
    """What was saved: the bundle folder, the layer(s) and how they were chosen."""

    folder: Path
    layers: tuple[str, ...]
    classifier: str
    pooling: str
    choice: dict[str, Any]

    @property
    def line(self) -> str:
        """One line for the command's summary."""
        layers = ",".join(self.layers)
        how = self.choice.get("method", "given")
        return (
            f"probe saved to {self.folder}: {self.classifier} on layer {layers} "
            f"({self.pooling}; layer {how})"
        )


def export_probe(
    sources: Sequence[FeatureSource],
    manifest: pd.DataFrame,
    output: str | Path,
    *,
    classifier: str = "logreg",
    labels: str = "basic4",
    pooling: str = "auto",
    layers: str = SELECTED,
    combine: str = "each",
    condition: str | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    model: str | None = None,
    choose_from: str = "all",
    train_corpora: Sequence[str] = (),
) -> Exported:
    """Fit `classifier` on every training row of the sources' features; save a bundle at `output`.

    `layers` is ``selected`` (chosen on held-out training speakers among
    `choose_from`) or the layer(s) to use; `train_corpora` limits the rows to
    those corpora (a cross-corpus split's training side), else every row is a
    training row.

    Raises:
        ConfigError: a classifier a bundle cannot hold, several extractors or
            conditions without a choice, a pooling or layer the caches lack.
    """
    bundle.check_savable(classifier)
    dataset = _one_dataset(build_datasets(sources, manifest, labels, model=model))
    table = _training_rows(_condition_rows(dataset, condition), train_corpora)
    (chosen_pooling,) = _one_pooling(dataset, pooling)
    available = dataset.layers
    if layers == SELECTED:  # among a sweep's --layers
        candidates = select_layers(choose_from, available)
    else:  # ser export's --layer (a sweep's were checked before it ran)
        candidates = select_layers(layers, available, "--layer")
    blocks = load_blocks(
        dataset.sources,
        table["source"].to_numpy(),
        table["position"].to_numpy(),
        candidates,
        [chosen_pooling],
    )
    codes = table["label"].map({c: i for i, c in enumerate(dataset.classes)}).to_numpy()
    groups = table["group"].to_numpy()
    merged = {**registry.get(classifier).defaults, **(params or {})}
    if layers == SELECTED:
        spec, choice = choose_layer(blocks, chosen_pooling, codes, groups, classifier, merged, seed)
    elif combine == "each" and len(candidates) != 1:
        raise ConfigError(f"--layer {layers!r}: give one layer, or --combine concat/mean")
    else:
        spec, choice = FeatureSpec(tuple(candidates), combine, chosen_pooling), {"method": "given"}
    x = blocks.matrix(spec)
    pipeline = registry.build_pipeline(classifier, merged, seed=seed, threads=1)
    registry.fit_pipeline(pipeline, classifier, x, codes, groups)
    description = _description(dataset, table, spec, classifier, merged, choice, x, seed)
    description["audio"] = _audio_reading(description, table, manifest)
    folder = bundle.save(output, pipeline, description)
    return Exported(folder, spec.layers, classifier, chosen_pooling, choice)


def check_sweep_export(
    config: SweepConfig,
    sources: Sequence[FeatureSource],
    output: str | Path,
    results: str | Path,
) -> None:
    """Refuse a sweep's probe export (``--save-probe``) that cannot be made, before any cell runs.

    Raises:
        ConfigError: a target other than emotion, a classifier a bundle cannot hold,
            several conditions without --train-condition, a cross-corpus split
            without named training corpora, or an `output` folder that cannot be
            written (the `results` folder itself, a folder of other files).
    """
    if config.target != "emotion":
        raise ConfigError(
            f"--save-probe exports an emotion probe; --target {config.target} probes predict "
            "something else"
        )
    bundle.check_savable(registry.parse_classifiers(config.classifiers)[0])
    conditions = {str(s.key.get("condition", "clean")) for s in sources}
    if len(conditions) > 1 and config.train_condition is None:
        raise ConfigError(
            f"--save-probe: the caches hold conditions {sorted(conditions)}; pass "
            "--train-condition to say which the probe is fitted on"
        )
    crossed = config.split in CROSSED_SPLITS
    split = config.split_options
    if crossed and not (split.train_corpora or split.test_corpora):
        raise ConfigError(
            f"--save-probe with --split {config.split}: each held-out corpus has its own training "
            "set; name the training corpora with --train (or the test ones with --test)"
        )
    integrity.check_replaceable(output, results)


def export_sweep_probe(
    sources: Sequence[FeatureSource],
    manifest: pd.DataFrame,
    config: SweepConfig,
    output: str | Path,
    model: str | None = None,
) -> Exported:
    """Export a sweep's first classifier and pooling, fitted on its training rows, to `output`."""
    classifier = registry.parse_classifiers(config.classifiers)[0]
    each = config.combine == "each"
    crossed = config.split in CROSSED_SPLITS
    train = config.split_options.train_corpora
    if crossed and not train:
        present = sorted(manifest["corpus"].unique())
        train = tuple(c for c in present if c not in config.split_options.test_corpora)
    return export_probe(
        sources,
        manifest,
        output,
        classifier=classifier,
        labels=config.labels,
        pooling=config.poolings[0],
        layers=SELECTED if each else config.layers,
        choose_from=config.layers if each else "all",
        combine=config.combine,
        condition=config.train_condition,
        params=config.params.get(classifier),
        seed=config.seed,
        model=model,
        train_corpora=train if crossed else (),
    )


def _one_dataset(datasets: Sequence[Dataset]) -> Dataset:
    if len(datasets) > 1:
        names = ", ".join(d.extractor for d in datasets)
        raise ConfigError(f"the caches hold several extractors ({names}); pass --model to pick one")
    return datasets[0]


def _condition_rows(dataset: Dataset, condition: str | None) -> pd.DataFrame:
    present = dataset.conditions
    if condition is None and len(present) > 1:
        raise ConfigError(f"the caches hold conditions {present}; pass --condition to pick one")
    chosen = condition or present[0]
    if chosen not in present:
        raise ConfigError(f"condition {chosen!r} is not in the caches ({present})")
    return dataset.table[dataset.table["condition"] == chosen].reset_index(drop=True)


def _training_rows(table: pd.DataFrame, corpora: Sequence[str]) -> pd.DataFrame:
    """The rows of the training corpora (all rows when none are named)."""
    if not corpora:
        return table
    present = sorted(table["corpus"].unique())
    missing = sorted(set(corpora) - set(present))
    if missing:
        raise ConfigError(f"training corpora {missing} are not in the caches ({present})")
    return table[table["corpus"].isin(corpora)].reset_index(drop=True)


def _one_pooling(dataset: Dataset, pooling: str) -> list[str]:
    (choices,) = sweep_poolings([dataset], pooling)
    if len(choices) != 1:
        raise ConfigError(f"--pooling {pooling!r} names {choices}; a probe takes one pooling")
    return choices


def choose_layer(
    blocks: FeatureBlocks,
    pooling: str,
    codes: np.ndarray,
    groups: np.ndarray,
    classifier: str,
    params: Mapping[str, Any],
    seed: int,
) -> tuple[FeatureSpec, dict[str, Any]]:
    """The layer with the best UA on held-out training speakers (lowest on a tie)."""
    fit, val = inner_split(groups, codes, CHOICE_FRACTION, seed)
    scores: dict[str, float] = {}
    for layer in blocks.layers:
        x = blocks.matrix(FeatureSpec((layer,), "each", pooling))
        pipeline = registry.build_pipeline(classifier, params, seed=seed, threads=1)
        registry.fit_pipeline(pipeline, classifier, x[fit], codes[fit], groups[fit])
        scores[layer] = ua_of(codes[val], pipeline.predict(x[val]))
    best = max(blocks.layers, key=lambda layer: (scores[layer], -blocks.layers.index(layer)))
    choice = {
        "method": "chosen on held-out training speakers",
        "validation_ua": {k: round(v, 4) for k, v in scores.items()},
        "validation_rows": int(len(val)),
    }
    return FeatureSpec((best,), "each", pooling), choice


def _description(
    dataset: Dataset,
    table: pd.DataFrame,
    spec: FeatureSpec,
    classifier: str,
    params: Mapping[str, Any],
    choice: Mapping[str, Any],
    x: np.ndarray,
    seed: int,
) -> dict[str, Any]:
    """What bundle.json records about a fitted probe."""
    source = dataset.sources[int(table["source"].iloc[0])]
    key = dict(source.key)
    reader = getattr(source, "reader", None)
    return {
        "extractor_config": json.loads(str(key["config"])),
        "cache_key": key,
        "storage_dtype": str(getattr(reader, "storage_dtype", "float32")),
        "label_set": dataset.label_set,
        "classes": list(dataset.classes),
        "layers": list(spec.layers),
        "combine": spec.combine,
        "pooling": spec.pooling,
        "classifier": classifier,
        "params": dict(params),
        "layer_choice": dict(choice),
        "condition": str(table["condition"].iloc[0]),
        "n_train": int(len(table)),
        "n_features": int(x.shape[1]),
        "seed": seed,
    }


def _audio_reading(
    description: Mapping[str, Any], table: pd.DataFrame, manifest: pd.DataFrame
) -> dict[str, Any]:
    """How the training rows' audio was read: the manifest's channels, the cache key's rate."""
    key = description["cache_key"]
    params = json.loads(str(key.get("condition_params", "{}")))
    rows = table[["utt_id", "corpus"]]
    if "channel" in manifest:
        channels = manifest.drop_duplicates("utt_id").set_index("utt_id")["channel"]
        rows = rows.assign(channel=rows["utt_id"].map(channels).to_numpy())
    rate = key.get("sample_rate", "native")
    return integrity.audio_reading(
        rows,
        description["condition"],
        params.get("telephone_source", "derived"),
        rate if rate == "native" else int(rate),
    )


def settings_from_results(results: str | Path, sources: Sequence[FeatureSource]) -> dict[str, Any]:
    """Label set, seed, and the best savable classifier and pooling of a results folder.

    Raises:
        ConfigError: no results there, no savable classifier among them, or
            caches other than those the results were computed from.
    """
    path = Path(results) / "results.parquet"
    if not path.is_file():
        raise ConfigError(f"{results} holds no results.parquet; run `ser classify` there first")
    rows = pd.read_parquet(path)
    # a bundle refits with default settings on unnormalised features: compare like with like
    # (older cells lack the columns: False)
    flags = rows.reindex(columns=["speaker_norm", "search"], fill_value=False)
    plain = ~flags.fillna(False).astype(bool).any(axis=1)
    # a bundle predicts emotion: control-labelling and speaker-target rows score other tasks
    emotion = rows["target"].fillna("emotion") == "emotion" if "target" in rows else True
    rows = rows[rows["classifier"].isin(bundle.SAVABLE) & plain & emotion]
    if rows.empty:
        raise ConfigError(f"{results} has no emotion results of a classifier a bundle can hold")
    keys = {json.dumps(dict(s.key), sort_keys=True, default=str) for s in sources}
    stored = {json.dumps(k, sort_keys=True) for r in rows["cache_keys"] for k in json.loads(r)}
    if not keys <= stored:
        raise ConfigError(
            f"the caches given are not those {results} was computed from (their keys differ); "
            "pass the same --cache files"
        )
    by_layer = rows.groupby(["classifier", "pooling", "labels", "seed", "layer"])["ua"].mean()
    classifier, pooling, labels, seed, _ = by_layer.idxmax()
    return {"classifier": classifier, "pooling": pooling, "labels": labels, "seed": int(seed)}
