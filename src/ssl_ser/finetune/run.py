"""``ser finetune``: fine-tune a backbone per fold, into the same results table as the probes.

For each (train condition, test condition) pair and each fold of the split
(made by the code that makes ``ser classify``'s folds, on the same rows, so a
fold holds the same speakers in both), the model is loaded fresh, trained on
the fold's training speakers with its epoch chosen on validation speakers drawn
from them (:mod:`ssl_ser.finetune.train`), and the test fold is scored once,
with the chosen weights. The fold is then a *cell* of the results folder like
any probe cell (classifier ``finetune``, layer ``all`` or ``weighted``), stored
at once, so a re-run skips finished folds; its per-epoch curve and learned layer
weights are columns of its rows. The chosen model is saved under
``models/<cell id>/`` with its label map and run configuration.

Before the first fold, one pass of the untrained model over every row gives
the head's inputs: their mean and scale over each fold's fitting rows
standardise the head (as the probes' ``StandardScaler``), and with
``from_probe`` they choose the layer and refit each fold's probe
(:mod:`ssl_ser.finetune.probe_init`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssl_ser import audio as audio_module
from ssl_ser import manifest as manifest_module
from ssl_ser.atomic import check_writable, write_file
from ssl_ser.classify.batched import layer_standardiser
from ssl_ser.classify.results import CellStore, summary_line, write_tables
from ssl_ser.classify.search import ua_of
from ssl_ser.classify.splits import (
    SPEAKER_INDEPENDENT,
    Fold,
    SplitOptions,
    condition_folds,
    drop_unseen_classes,
    fold_corpora,
    fold_digest,
)
from ssl_ser.classify.sweep import CellInfo, Outcome, Rows, score_cell, supersede_other_cells
from ssl_ser.errors import ConfigError, UnknownChoiceError
from ssl_ser.extract.backbones import library_progress_bars
from ssl_ser.extract.config import default_workers
from ssl_ser.finetune import data, probe_init, train
from ssl_ser.finetune import model as model_module
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.distributed import World, barrier, from_main, gather, world
from ssl_ser.finetune.segment_store import SegmentStore
from ssl_ser.finetune.validation import METHOD, closest_speaker_split
from ssl_ser.progress import announce
from ssl_ser.results import FINETUNE_CLASSIFIER, cell_id
from ssl_ser.versions import library_versions

log = logging.getLogger(__name__)

MODELS_DIR = "models"
CHECKPOINTS_DIR = "checkpoints"
SKIPPED_CSV = "finetune_skipped.csv"
LABELS_FILE = "labels.json"
RUN_FILE = "finetune.json"


@dataclass(frozen=True)
class RunOptions:
    """Which rows and folds a fine-tune run uses, with ``ser classify``'s meaning for each.

    Each field is the ``ser finetune`` option of its name (``split_options``: the
    split's folds, seed, ratios, corpora and shots); ``from_probe`` is a results
    folder whose probes start the heads (:mod:`ssl_ser.finetune.probe_init`).
    """

    labels: str = "basic4"
    split: str = "speaker-kfold"
    split_options: SplitOptions = field(default_factory=SplitOptions)
    conditions: tuple[str, ...] = ("clean",)
    train_condition: str | None = None
    test_condition: str | None = None
    telephone_source: str = "derived"
    bootstrap: int = 1000
    device: str = "auto"
    workers: int | None = None
    force: bool = False
    save_models: bool = True
    from_probe: str | Path | None = None
    audio_in_memory: bool = False

    @property
    def seed(self) -> int:
        """The split's seed, which also seeds the heads, adapters and batch order."""
        return self.split_options.seed


@dataclass
class FinetuneResult:
    """What a fine-tune run did: folds trained and skipped, files written, one summary line."""

    folds_run: int
    folds_skipped: int
    skipped_audio: int
    paths: dict[str, Path]
    summary: pd.DataFrame
    seconds: float
    main: bool = True

    @property
    def line(self) -> str:
        """UA per setting (mean over folds)."""
        return summary_line(self.summary)


@dataclass
class _Run:
    """Everything the folds of one run share."""

    config: FinetuneConfig
    settings: RunOptions
    output: Path
    store: CellStore | None  # rank 0's: the other processes of torchrun write no results
    audio: data.Audio
    table: data.RunTable
    rows: Rows
    keys: list[tuple[str, str]]  # (utt_id, condition) of each row of the table
    identity: dict[str, Any]
    here: World
    progress: bool
    # the untrained model's head inputs (states read, rows, dim), computed once
    features: np.ndarray | None = None
    probes: pd.DataFrame | None = None  # the probe rows of the chosen layer (from_probe)
    probe_folder: Path | None = None
    # folds whose validation share was printed (--from-probe draws each fold's split twice)
    announced: set[tuple[str, bytes]] = field(default_factory=set)

    def close(self) -> None:
        """Remove the run's stored audio (when it ends, or fails)."""
        self.audio.close()


def run_finetune(
    manifest: pd.DataFrame,
    config: FinetuneConfig,
    settings: RunOptions,
    output: str | Path,
    *,
    progress: bool = False,
    tables: bool = True,
) -> FinetuneResult:
    """Fine-tune and score every fold not already in `output`; rebuild its tables.

    With ``tables=False`` the tables are left to the caller (``ser run`` writes
    them once after a variant's sweeps and fine-tune runs); the summary is then empty.

    Raises:
        ManifestError: a manifest that breaks the schema.
        ConfigError, UnknownChoiceError: bad options, a model that cannot load, a
            split the data cannot make, memory exhausted (the message says what
            to lower).
    """
    start = time.perf_counter()
    manifest = manifest_module.validate(manifest)
    _check_settings(settings)
    output = check_writable(output)  # a read-only or full disk: one line before any training
    with (
        world(settings.device) as here,
        contextlib.closing(_prepare(manifest, config, settings, output, here, progress)) as run,
    ):
        if settings.from_probe is not None:
            _from_probe(run, Path(settings.from_probe))
            config = run.config
        elif config.init == "probe" and config.head_layer is None:
            raise ConfigError(
                "init 'probe' starts the head from one layer's probe: give head_layer "
                "(--head-layer N) or the probes' results (--from-probe RESULTS_DIR)"
            )
        described: dict[str, Mapping[str, Any]] = {}
        counts = [_run_scenario(run, *pair, described) for pair in _scenarios(settings)]
        ran, skipped = map(sum, zip(*counts, strict=True))
        paths: dict[str, Path] = {}
        summary = pd.DataFrame()
        if here.main:
            supersede_other_cells(run.store, described, f"fine-tune of {config.model}")
        if here.main and tables:
            paths = write_tables(run.store, n_boot=settings.bootstrap, seed=settings.seed)
            summary = pd.read_csv(paths["summary"])
            mine = (summary["classifier"] == FINETUNE_CLASSIFIER) & (
                summary["setting"] == config.setting(here.size)
            )
            summary = summary[mine]
        barrier(here)
    seconds = time.perf_counter() - start
    return FinetuneResult(
        ran, skipped, len(run.audio.failed), paths, summary, seconds, main=here.main
    )


def _check_settings(settings: RunOptions) -> None:
    if settings.from_probe is not None:  # before the audio is read
        probe_init.results_folder(settings.from_probe)
    for condition in settings.conditions:
        audio_module.check_condition(condition)
    audio_module.check_telephone_source(settings.telephone_source)
    for value in (settings.train_condition, settings.test_condition):
        if value is not None and value not in settings.conditions:
            raise UnknownChoiceError("condition", value, settings.conditions, where="--condition")


def _scenarios(settings: RunOptions) -> list[tuple[str, str]]:
    """(train, test) condition pairs: the requested one, else each condition on itself."""
    if settings.train_condition is None and settings.test_condition is None:
        return [(c, c) for c in settings.conditions]
    train_condition = settings.train_condition or settings.test_condition
    return [(train_condition, settings.test_condition or train_condition)]


def _prepare(
    manifest: pd.DataFrame,
    config: FinetuneConfig,
    settings: RunOptions,
    output: Path,
    here: World,
    progress: bool,
) -> _Run:
    """Load the preprocessor and all audio once, build the table the splits see."""
    with library_progress_bars(progress and here.main):
        _, backbone = model_module.build_model(config, 2, here.device(settings.device), 0)
    if backbone.device.type != "cuda" and config.dtype != "float32":
        raise ConfigError(
            f"dtype {config.dtype!r} trains under autocast on CUDA only; on {backbone.device} "
            "fine-tuning runs in float32: pass --dtype float32"
        )
    workers = default_workers() if settings.workers is None else settings.workers
    store = None if settings.audio_in_memory else SegmentStore(output)
    try:
        audio = data.load_audio(
            manifest,
            backbone.preprocessor,
            settings.conditions,
            settings.telephone_source,
            workers,
            progress and here.main,
            store,
        )
    except BaseException:
        if store is not None:
            store.close()
        raise
    # a file one process could not read is left out by all, so that all make the same folds
    audio.failed = sorted(set().union(*map(set, gather(audio.failed, here))))
    cells = CellStore(output) if here.main else None
    if here.main:
        _report_skipped(audio, output)
    table = data.run_table(manifest, settings.labels, settings.conditions, audio)
    frame = table.table
    rows = Rows.of(frame, table.classes)
    keys = list(zip(frame["utt_id"], frame["condition"], strict=True))
    identity = dict(backbone.identity)
    del backbone
    return _Run(config, settings, output, cells, audio, table, rows, keys, identity, here, progress)


def _report_skipped(audio: data.Audio, output: Path) -> None:
    """Warn about, and list in a CSV, every utterance whose audio could not be used."""
    path = output / SKIPPED_CSV
    if not audio.failed:
        path.unlink(missing_ok=True)  # a list of an earlier run's failures would mislead
        return
    failed = pd.DataFrame(audio.failed, columns=["utt_id", "condition", "reason"])
    write_file(path, lambda p: failed.to_csv(p, index=False))
    shown = "; ".join(f"{u} ({c}): {r}" for u, c, r in audio.failed[:3])
    log.warning(
        "%d utterance(s) skipped, their audio could not be used (listed in %s): %s",
        len(audio.failed),
        path,
        shown,
    )


def _run_scenario(
    run: _Run,
    train_condition: str,
    test_condition: str,
    described: dict[str, Mapping[str, Any]],
) -> tuple[int, int]:
    """Train every pending fold of one condition pair; returns (run, skipped) fold counts."""
    ran = skipped = 0
    for fold, n_dropped in _pair_folds(run, train_condition, test_condition):
        meta = _fold_meta(run, fold, train_condition, test_condition)
        description = {
            **meta,
            "layer": run.config.layer,
            "pooling": "mean",
            "classifier": FINETUNE_CLASSIFIER,
            "params": run.config.params(run.here.size),
        }
        cell = cell_id(description)
        described[cell] = description
        # one decision for all processes (rank 0 holds the stored cells)
        done = from_main(run.here.main and run.store.done(cell), run.here)
        if done and run.here.main:  # a run killed between storing a fold and cleaning up,
            # or one forced to train again: never resume its old checkpoints
            shutil.rmtree(run.output / CHECKPOINTS_DIR / cell, ignore_errors=True)
        barrier(run.here)
        if done and not run.settings.force:
            _warn_without_model(run, cell, fold)
            skipped += 1
            continue
        _run_fold(run, cell, fold, n_dropped, meta)
        barrier(run.here)
        ran += 1
    if skipped and run.here.main:
        announce(f"finetune: {skipped} fold(s) already done in {run.output}")
    return ran, skipped


def _warn_without_model(run: _Run, cell: str, fold: Fold) -> None:
    """Say when a finished fold has no saved model although models are asked for."""
    folder = run.output / MODELS_DIR / cell
    if run.here.main and run.settings.save_models and not folder.is_dir():
        log.warning(
            "fold %s is done but its model was not saved (an earlier run with "
            "--no-save-models); --force trains it again and saves it",
            fold.name,
        )


def _fold_meta(run: _Run, fold: Fold, train_condition: str, test_condition: str) -> dict:
    """The columns shared by a fold's rows, named as ``ser classify`` names them."""
    frame = run.table.table
    settings = run.settings
    train_corpus, test_corpus = fold_corpora(fold, frame["corpus"])
    keys = [run.keys[i] for i in sorted({*fold.train, *fold.test})]
    return {
        "extractor": str(run.identity["model"]),
        "model_revision": str(run.identity["revision"]),
        "train_corpus": train_corpus,
        "train_condition": train_condition,
        "test_corpus": test_corpus,
        "test_condition": test_condition,
        "split": settings.split,
        "fold": fold.name,
        "seed": settings.seed,
        "labels": run.table.label_set,
        "speaker_norm": False,
        "search": False,
        "speaker_independent": fold.speaker_independent and settings.split in SPEAKER_INDEPENDENT,
        "grouping": ",".join(f"{k}:{v}" for k, v in sorted(run.table.grouping.items())),
        "split_options": asdict(settings.split_options),
        "shots": settings.split_options.shots if settings.split == "few-shot" else None,
        "fold_digest": fold_digest(frame["utt_id"].to_numpy(), fold),
        "audio_digest": run.audio.digest(keys),
        "telephone_source": settings.telephone_source,
        # what the audio went through: the chain (bumped with the toolkit) and the family version
        "condition_params": json.dumps(
            {c: audio_module.condition_params(c) for c in (train_condition, test_condition)},
            sort_keys=True,
        ),
        "feature_version": run.config.extractor_config().feature_version,
        "setting": run.config.setting(run.here.size),
        # how the validation rows are drawn (see validation.METHOD)
        "validation": "the split's validation part" if len(fold.val) else METHOD,
    }


def _validation(run: _Run, fold: Fold) -> tuple[np.ndarray, np.ndarray]:
    """(fitting rows, validation rows): the split's validation part, else training speakers.

    Without a validation part of its own, the set of training speakers whose
    share of rows is closest to ``val_fraction`` is held out
    (:func:`~ssl_ser.finetune.validation.closest_speaker_split`); the share is printed.
    """
    if len(fold.val):
        return fold.train, fold.val
    split = closest_speaker_split(
        run.rows.groups[fold.train],
        run.rows.codes[fold.train],
        run.config.val_fraction,
        run.settings.seed,
    )
    if len(split.val) == 0:
        raise ConfigError(f"fold {fold.name}: no validation rows could be drawn from training")
    key = (str(fold.name), fold.train.tobytes())
    if run.here.main and key not in run.announced:
        run.announced.add(key)
        announce(f"fold {fold.name}: validation on {split.describe(run.config.val_fraction)}")
    return fold.train[split.fit], fold.train[split.val]


def _run_fold(run: _Run, cell: str, fold: Fold, n_dropped: int, meta: dict) -> None:
    """Train one fold from scratch (or its checkpoint), score its test rows once, store it."""
    started = time.perf_counter()
    keys = run.keys
    fit, val = _validation(run, fold)
    rows = train.FoldRows(
        [keys[i] for i in fit],
        run.rows.codes[fit],
        [keys[i] for i in val],
        run.rows.codes[val],
        len(run.table.classes),
    )
    with library_progress_bars(False):  # loaded once per fold: the fold's own bar says enough
        model, _ = model_module.build_model(
            run.config,
            len(run.table.classes),
            run.here.device(run.settings.device),
            run.settings.seed,
        )
    describe = f"finetune {meta['train_condition']}->{meta['test_condition']} fold {fold.name}"
    trainer = train.Trainer(model, run.config, run.audio, run.settings.seed, run.here, describe)
    trainer.progress = run.progress
    trainer.started = started  # fit_seconds: the whole fold, earlier runs of a resume included
    _start_head(run, trainer, fold, fit, meta)
    folder = run.output / CHECKPOINTS_DIR / cell
    state = train.train_fold(trainer, rows, folder)
    probabilities = train.predict(trainer, [keys[i] for i in fold.test])
    if not run.here.main:
        return
    weights = model.layer_weights()
    outcome = Outcome(
        probabilities.argmax(1),
        probabilities,
        np.arange(len(run.table.classes)),
        {},
        state.best_val_ua,
        trainer.elapsed(),
    )
    model_dir = run.output / MODELS_DIR / cell
    extra = {
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "training_curve": json.dumps(state.curve),
        "layer_weights": None if weights is None else json.dumps(weights.round(6).tolist()),
        "model_dir": str(model_dir) if run.settings.save_models else None,
        "n_val": len(val),
    }
    if run.settings.save_models:
        with library_progress_bars(False):
            _save_model(run, model, model_dir, meta, cell)
    info = CellInfo(
        meta=meta,
        layer=run.config.layer,
        pooling="mean",
        classifier=FINETUNE_CLASSIFIER,
        params=run.config.params(run.here.size),
        n_dropped=n_dropped,
        extra=extra,
    )
    settings = run.settings
    scored = score_cell(
        cell, info, fold, outcome, run.rows, bootstrap=settings.bootstrap, seed=settings.seed
    )
    run.store.save(cell, *scored)
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # the last fold's checkpoints gone: the folder too
        folder.parent.rmdir()


def _start_head(run: _Run, trainer: train.Trainer, fold: Fold, fit: np.ndarray, meta: dict) -> None:
    """Standardise the head's input on the fitting rows, or start the head as the fold's probe."""
    config = run.config
    if run.features is None:  # the backbone is loaded afresh per fold: the same for every fold
        run.features = train.pooled_features(trainer, run.keys)
    if config.freeze == "base" and config.adapter == "none":
        trainer.use_frozen_features(run.features, run.keys)
    model = trainer.model
    if config.init == "probe":
        _probe_head(run, trainer, fold, fit, meta)
    elif config.standardise:
        mean, scale = layer_standardiser(run.features, fit)
        model.scaler.set(mean[:, 0], scale[:, 0])


def _probe_head(run: _Run, trainer: train.Trainer, fold: Fold, fit: np.ndarray, meta: dict) -> None:
    """Start the head as the fold's logreg probe; the probe itself is kept if epoch 0 wins.

    Training starts from the probe fitted on the fitting rows, so that epoch 0,
    like every later epoch, is scored on validation speakers it has not seen.
    When no epoch beats it, the fold's model is the probe as ``ser classify``
    fits it, on all training rows (checked against the stored one), as a
    search refits its chosen setting on all rows.
    """
    n_classes = len(run.table.classes)
    kept, gap = _fold_probe(run, fold, meta, run.config.probe_dtype)
    if gap is not None:
        probe_init.check_gap(gap, fold.name, meta, run.config.head_layer)
    start = _refit(run, fit, run.config.probe_dtype)
    _set_head(trainer.model, probe_init.head_of(start, n_classes))
    trainer.epoch_zero = lambda: _set_head(trainer.model, probe_init.head_of(kept, n_classes))


def _refit(run: _Run, rows: np.ndarray, dtype: str) -> Any:
    """The logreg probe of the layer read, fitted on `rows` at the probes' precision."""
    x = probe_init.stored_precision(run.features[0], dtype)
    params = {} if run.probes is None else probe_init.probe_params(run.probes)
    return probe_init.fit_probe(x[rows], run.rows.codes[rows], params, run.settings.seed)


def _set_head(model: Any, head: probe_init.ProbeHead) -> None:
    """Put a probe into the model's standardisation and linear head."""
    import torch

    model.scaler.set(head.mean[None], head.scale[None])
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(head.weight, dtype=torch.float32))
        model.head.bias.copy_(torch.as_tensor(head.bias, dtype=torch.float32))


def _fold_probe(run: _Run, fold: Fold, meta: dict, dtype: str) -> tuple[Any, float | None]:
    """The fold's probe refitted on features at the probes' storage `dtype`, and its gap.

    The gap is the largest test-probability difference from the stored probe
    (None without stored probes).
    """
    fitted = _refit(run, fold.train, dtype)
    x = probe_init.stored_precision(run.features[0], dtype)
    if run.probes is None:
        return fitted, None
    mine = run.probes[  # this fold's probe (a folder may hold other seeds' folds too)
        (run.probes["fold_digest"].astype(str) == fold_digest(run.rows.utt_ids, fold))
        & (run.probes["train_condition"] == meta["train_condition"])
        & (run.probes["test_condition"] == meta["test_condition"])
    ]
    gap = probe_init.stored_gap(
        run.probe_folder,
        mine,
        list(run.rows.utt_ids[fold.test]),
        probe_init.probabilities(fitted, x[fold.test], len(run.table.classes)),
        run.table.classes,
    )
    return fitted, gap


def _from_probe(run: _Run, path: Path) -> None:
    """Choose the layer on training speakers from the probes of the same folds; start from them.

    Sets ``run.config`` (``head_layer``, ``init="probe"``), ``run.features``
    (that layer's untrained states) and ``run.probes``. A ``head_layer`` given
    in the config is kept (it must have been probed).

    Raises:
        ConfigError: no such probes, probes of other folds, a head that is not linear.
    """
    folder = probe_init.results_folder(path)
    pairs = _scenarios(run.settings)
    rows = probe_init.probe_rows(folder, str(run.identity["model"]), pairs)
    folds = [
        (pair, fold, fit, val)
        for pair in pairs
        for fold, _ in _pair_folds(run, *pair)
        for fit, val in [_validation(run, fold)]
    ]
    digests = {
        (*pair, str(fold.name)): fold_digest(run.rows.utt_ids, fold) for pair, fold, _, _ in folds
    }
    probe_init.check_same_folds(rows, digests)
    params = probe_init.probe_params(rows)
    full = dataclasses.replace(
        run.config, head_layer=None, weighted_layers=True, init="random", epochs=1
    )
    with library_progress_bars(False):
        model, _ = model_module.build_model(
            full, len(run.table.classes), run.here.device(run.settings.device), run.settings.seed
        )
    trainer = train.Trainer(model, full, run.audio, run.settings.seed, run.here)
    states = train.pooled_features(trainer, run.keys)
    del trainer, model
    layer = run.config.head_layer
    if layer is None:
        layer = _probe_layer(run, rows, states, folds, params, folder)
    elif str(layer) not in set(rows["layer"].astype(str)):
        raise probe_init.ProbeMismatchError(
            f"--from-probe {folder}: no probe of layer {layer}; probed layers: "
            f"{sorted(set(rows['layer'].astype(str)), key=int)}"
        )
    run.features = states[layer : layer + 1]
    run.probes = rows[rows["layer"].astype(str) == str(layer)]
    run.probe_folder = folder
    pair, fold, _, _ = folds[0]
    meta = {"train_condition": pair[0], "test_condition": pair[1]}
    gaps = {d: _fold_probe(run, fold, meta, d)[1] for d in probe_init.STORAGE_DTYPES}
    dtype = min(gaps, key=lambda d: gaps[d])  # the precision the probes' cache stored
    probe_init.check_gap(gaps[dtype], fold.name, meta, layer)
    run.config = dataclasses.replace(run.config, head_layer=layer, init="probe", probe_dtype=dtype)


def _probe_layer(
    run: _Run,
    rows: pd.DataFrame,
    states: np.ndarray,
    folds: list,
    params: Mapping[str, Any],
    folder: Path,
) -> int:
    """The probed layer whose probes, fitted on fitting rows, score best on validation speakers."""
    layers = sorted({int(layer) for layer in rows["layer"]} & set(range(len(states))))
    scores: dict[int, list[float]] = {layer: [] for layer in layers}
    n_classes = len(run.table.classes)
    codes = run.rows.codes
    for _, _, fit, val in folds:
        for layer in layers:
            fitted = probe_init.fit_probe(states[layer][fit], codes[fit], params, run.settings.seed)
            scored = probe_init.probabilities(fitted, states[layer][val], n_classes)
            scores[layer].append(ua_of(codes[val], scored.argmax(1)))
    layer = probe_init.choose_layer(scores)
    if run.here.main:
        shown = ", ".join(f"{k}: {np.mean(v):.3f}" for k, v in scores.items())
        announce(
            f"finetune: --from-probe {folder}: layer {layer} chosen on validation speakers "
            f"(mean validation UA of each layer's probe: {shown})"
        )
    return layer


def _pair_folds(run: _Run, train_condition: str, test_condition: str) -> Iterator[tuple[Fold, int]]:
    """The folds of one condition pair, classes unseen in training dropped, and their counts."""
    frame = run.table.table
    settings = run.settings
    folds = condition_folds(
        frame, train_condition, test_condition, settings.split, settings.split_options
    )
    for fold in folds:
        yield drop_unseen_classes(fold, frame["label"].to_numpy())


def _save_model(run: _Run, model: Any, folder: Path, meta: Mapping[str, Any], cell: str) -> None:
    """The chosen weights, label map and run configuration, ready for prediction, sealed last.

    Saved whole into a temporary folder that replaces `folder` (no stale files
    of an earlier save), with ``integrity.json`` over every file written last
    (:mod:`ssl_ser.predict.integrity`): files added to a model folder are
    covered without a change here.
    """
    from ssl_ser.predict import integrity

    labels = {"classes": list(run.table.classes), "label_set": run.table.label_set}
    described = {
        "cell_id": cell,
        "finetune": run.config.to_dict(),
        "settings": {**asdict(run.settings), "split_options": asdict(run.settings.split_options)},
        "fold": {k: v for k, v in meta.items() if k != "split_options"},
        "backbone": run.identity,
        "versions": library_versions(),
    }
    frame = run.table.table
    trained = frame[frame["corpus"].isin(str(meta["train_corpus"]).split("+"))]
    rate = integrity.model_rate(model.backbone.preprocessor)
    reading = integrity.audio_reading(
        trained, meta["train_condition"], run.settings.telephone_source, rate
    )
    with integrity.fresh_folder(folder) as saving:
        model_module.save_model(model, run.config, saving)
        (saving / LABELS_FILE).write_text(json.dumps(labels, indent=1))
        (saving / RUN_FILE).write_text(json.dumps(described, indent=1, default=str))
        meaning = model_module.output_meaning(labels["classes"], labels["label_set"], run.config)
        integrity.seal(saving, "finetuned", meaning, reading)
