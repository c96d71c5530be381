"""Feature sources and the feature matrices classifiers train on.

A *feature source* is anything with ``ids``, ``layers``, ``poolings``, ``dim``,
``key`` and ``read(layer, pooling) -> (len(ids), dim)``: :class:`InMemoryFeatures`
for arrays built in memory (tests, benchmarks), :class:`CacheFeatures` over an
HDF5 cache reader. :class:`FeatureBlocks` reads every (layer, pooling) the sweep
needs exactly once into (layers, rows, dim) arrays, and builds each classifier's
input from them: one layer, several layers concatenated or averaged, with mean,
std or both poolings.

Pooling choices resolve per extractor (:func:`resolve_poolings`). ``auto``, the
default everywhere, is each extractor's honest baseline: ``mean+std`` for the
frame-level classic baselines (MFCC, log-mel: the mean alone drops how the
spectrum moves: MFCC + logreg scored 0.50 UA on EmoDB against 0.60), the single
stored pooling of eGeMAPS (its 88 functionals, stored as ``mean``), and ``mean``
for SSL models (the usual layer-wise probing setup, SUPERB's, at half the
width). An explicit choice that an extractor does not store is replaced by its
only stored pooling, with a warning; the results always record the pooling used.

Every source tells what its features are through its ``content_digest()``, which
keys results cells (a sweep reuses a cell only for the same features): a cache
digests the audio fingerprints its rows were extracted from (so a cache rebuilt
from the same audio reuses cells, one from other audio never does), in-memory
arrays digest their values.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ssl_ser.classify.settings import parse_layers as layer_items
from ssl_ser.classify.settings import parse_poolings as pooling_items
from ssl_ser.errors import CacheError, ConfigError, UnknownChoiceError

log = logging.getLogger(__name__)

COMBINES: tuple[str, ...] = ("each", "concat", "mean")
POOLING_CHOICES: tuple[str, ...] = ("mean", "std", "mean+std")
AUTO_POOLING = "auto"
# what a user may ask for: ``auto`` resolves per extractor to one of POOLING_CHOICES
POOLING_OPTIONS: tuple[str, ...] = (AUTO_POOLING, *POOLING_CHOICES)
# classic baselines computed per frame and pooled like SSL layers (eGeMAPS is not)
FRAME_LEVEL_CLASSIC: tuple[str, ...] = ("mfcc", "logmel")
SSL_DEFAULT_POOLING = "mean"
FRAME_DEFAULT_POOLING = "mean+std"
RANGE = re.compile(r"^(?P<first>\d+)-(?P<last>\d+)$")  # "0-6" -> layers 0 to 6 inclusive


class FeatureSource(Protocol):
    """Pooled per-layer features of a set of utterances (a cache or an in-memory table)."""

    ids: list[str]
    layers: list[str]
    poolings: tuple[str, ...]
    dim: int
    key: Mapping[str, Any]

    def read(self, layer: str, pooling: str = "mean") -> np.ndarray:
        """Features of every id for one layer and pooling, shape (len(ids), dim)."""
        ...

    def content_digest(self) -> str:
        """What the features are, as a hex digest (it keys results cells)."""
        ...


class InMemoryFeatures:
    """A feature source over arrays: ``arrays[pooling]`` has shape (n_ids, n_layers, dim)."""

    def __init__(
        self,
        ids: Sequence[str],
        layers: Sequence[str],
        arrays: Mapping[str, np.ndarray],
        key: Mapping[str, Any] | None = None,
    ):
        self.ids = list(ids)
        self.layers = [str(layer) for layer in layers]
        self.arrays = {p: np.asarray(a, dtype=np.float32) for p, a in arrays.items()}
        self.poolings = tuple(self.arrays)
        first = next(iter(self.arrays.values()))
        self.dim = int(first.shape[2])
        self.key = dict(key or {})
        for pooling, array in self.arrays.items():
            if array.shape != (len(self.ids), len(self.layers), self.dim):
                raise ConfigError(
                    f"{pooling} features have shape {array.shape}; expected "
                    f"({len(self.ids)}, {len(self.layers)}, {self.dim})"
                )

    def read(self, layer: str, pooling: str = "mean") -> np.ndarray:
        """Features of every id for one layer and pooling."""
        if pooling not in self.arrays:
            raise UnknownChoiceError("pooling", pooling, self.poolings)
        if layer not in self.layers:
            raise UnknownChoiceError("layer", layer, self.layers)
        return self.arrays[pooling][:, self.layers.index(layer)]

    def content_digest(self) -> str:
        """SHA-256 over the ids and every value of every pooling: what these features are."""
        digest = hashlib.sha256()
        for utt_id in self.ids:
            digest.update(utt_id.encode() + b"\n")
        for pooling in sorted(self.arrays):
            digest.update(pooling.encode())
            digest.update(np.ascontiguousarray(self.arrays[pooling]).tobytes())
        return digest.hexdigest()


class CacheFeatures:
    """A feature source over an HDF5 cache written by ``ser extract``."""

    def __init__(self, path: str | Path):
        from ssl_ser import cache  # the cache package imports h5py; load it only here

        self.path = Path(path)
        self.reader = cache.open(self.path)
        self.ids = list(self.reader.ids)
        self.layers = [str(layer) for layer in self.reader.layers]
        self.poolings = tuple(self.reader.poolings)
        self.dim = int(self.reader.dim)
        self.key = dict(self.reader.key)

    def read(self, layer: str, pooling: str = "mean") -> np.ndarray:
        """Features of every complete row for one layer and pooling (float32)."""
        return np.asarray(self.reader.read(layer, pooling=pooling), dtype=np.float32)

    def content_digest(self) -> str:
        """SHA-256 over each complete row's id, audio size and audio digest.

        The audio's time is left out, so a cache rebuilt from the same audio
        gives the same digest. Rows without a recorded fingerprint (a cache of an
        older ssl-ser that no ``ser extract`` has fingerprinted since) are
        digested by their stored values of the last layer, every pooling: other
        audio gives other values.
        """
        digest = hashlib.sha256()
        records = self.reader.fingerprints
        lacking = np.ones(len(self.ids), dtype=bool)
        if records is not None:
            lacking = records["blake2b"] == b""
            for utt_id, record in zip(self.ids, records, strict=True):
                line = f"{utt_id}\t{int(record['size'])}\t"
                digest.update(line.encode() + bytes(record["blake2b"]) + b"\n")
        if lacking.any():
            rows = np.flatnonzero(lacking)
            for row in rows:
                digest.update(self.ids[row].encode() + b"\n")
            for pooling in self.poolings:
                digest.update(self.read(self.layers[-1], pooling)[rows].tobytes())
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"CacheFeatures({str(self.path)!r})"


def select_layers(
    spec: str | Sequence[str], available: Sequence[str], option: str = "--layers"
) -> list[str]:
    """Layer names selected by ``("all",)``, ``("0-6",)``, ``("3", "6", "9")`` or a mix.

    Each item is ``all``, a layer name or a range ``first-last``; text is read by
    the one layer grammar (:func:`ssl_ser.classify.settings.parse_layers`). Errors
    name `option` (the flag or key the selection came from) and the layer count.

    Raises:
        UnknownChoiceError: a layer or range end that the features do not have.
        ConfigError: a selection of no layer.
    """
    available = [str(a) for a in available]
    held = f"{option} (the cache holds {len(available)} layers)"
    items = list(layer_items(spec if isinstance(spec, str) else list(spec), "the layers"))
    if items == ["all"]:
        return list(available)
    chosen: list[str] = []
    for item in items:
        match = RANGE.match(item)
        if match:
            first, last = match["first"], match["last"]
            for end in (first, last):
                if end not in available:
                    raise UnknownChoiceError("layer", end, available, f"range {item!r} of {held}")
            lo, hi = available.index(first), available.index(last)
            chosen += available[min(lo, hi) : max(lo, hi) + 1]
        elif item in available:
            chosen.append(item)
        else:
            raise UnknownChoiceError("layer", item, ["all", *available], held)
    if not chosen:
        raise ConfigError(f"layer selection {','.join(items)!r} selects no layer")
    return list(dict.fromkeys(chosen))


def stored_poolings(sources: Sequence[FeatureSource]) -> tuple[str, ...]:
    """The poolings every one of `sources` stores, in the first source's order."""
    first = tuple(sources[0].poolings)
    return tuple(p for p in first if all(p in source.poolings for source in sources[1:]))


def default_pooling(model: str, stored: Sequence[str]) -> str:
    """The pooling ``auto`` stands for with `model`'s features, given the stored poolings.

    A cache of one pooling gives that one (eGeMAPS: its functionals, stored as
    ``mean``); MFCC and log-mel give ``mean+std`` when both are stored; SSL
    models (and anything else) give ``mean`` when it is stored.
    """
    stored = list(stored)
    if len(stored) == 1:
        return stored[0]
    wanted = FRAME_DEFAULT_POOLING if model in FRAME_LEVEL_CLASSIC else SSL_DEFAULT_POOLING
    if set(wanted.split("+")) <= set(stored):
        return wanted
    return SSL_DEFAULT_POOLING if SSL_DEFAULT_POOLING in stored else stored[0]


@dataclass(frozen=True)
class PoolingChoice:
    """Pooling choices of one extractor, resolved from what the user asked for.

    Attributes:
        model: the extractor (as its cache key names it).
        stored: the poolings its features store.
        requested: the choices as asked (``auto``, ``mean+std``, ``mean,std``).
        poolings: the choices used, each made of stored poolings; never ``auto``.
        honoured: explicit choices used as asked (``auto`` is not listed).
        notes: what was replaced or dropped, and why (logged as warnings).
    """

    model: str
    stored: tuple[str, ...]
    requested: tuple[str, ...]
    poolings: tuple[str, ...]
    honoured: tuple[str, ...]
    notes: tuple[str, ...]


def _stored_text(model: str, stored: Sequence[str]) -> str:
    """``'mean' (its 88 eGeMAPS functionals)`` or ``'mean', 'std'``: what a cache holds."""
    text = ", ".join(repr(p) for p in stored)
    return f"{text} (its 88 eGeMAPS functionals)" if model == "egemaps" else text


def resolve_poolings(spec: str | Sequence[str], model: str, stored: Sequence[str]) -> PoolingChoice:
    """Resolve ``auto`` and explicit pooling choices against one extractor's stored poolings.

    ``auto`` becomes :func:`default_pooling`. An explicit choice whose parts are
    stored is kept. One that is not stored is replaced by the stored pooling
    when the extractor stores only one (eGeMAPS), else dropped; either way a
    note names the model and the pooling. Repeats after resolving are dropped.
    `spec` is read as :func:`ssl_ser.classify.settings.parse_poolings` reads it;
    `model` is the extractor's model name (``mfcc``, ``egemaps``, a hub id...).

    Raises:
        UnknownChoiceError: a choice that is not one of :data:`POOLING_OPTIONS`.
        ConfigError: no choice given.
    """
    requested = tuple(dict.fromkeys(pooling_items(spec, "the poolings")))
    for choice in requested:
        if choice not in POOLING_OPTIONS:
            raise UnknownChoiceError("pooling", choice, POOLING_OPTIONS)
    stored = list(stored)
    used: list[str] = []
    honoured: list[str] = []
    notes: list[str] = []
    for choice in requested:
        if choice == AUTO_POOLING:
            pooling = default_pooling(model, stored)
            frame = model in FRAME_LEVEL_CLASSIC and pooling != FRAME_DEFAULT_POOLING
            if frame:
                notes.append(
                    f"{model} stores only {_stored_text(model, stored)}: pooling auto uses "
                    f"{pooling!r}, not {FRAME_DEFAULT_POOLING!r} (extract with both poolings "
                    "for the stronger baseline)"
                )
            used.append(pooling)
        elif set(choice.split("+")) <= set(stored):
            used.append(choice)
            honoured.append(choice)
        elif len(stored) == 1:
            notes.append(
                f"{model} stores only {_stored_text(model, stored)}: pooling {choice!r} does "
                f"not apply, using {stored[0]!r}"
            )
            used.append(stored[0])
        else:
            notes.append(
                f"{model} does not store pooling {choice!r} (it stores "
                f"{_stored_text(model, stored)}): left out"
            )
    poolings = tuple(dict.fromkeys(used))
    return PoolingChoice(model, tuple(stored), requested, poolings, tuple(honoured), tuple(notes))


def check_honoured(choices: Sequence[PoolingChoice], where: str = "the run") -> None:
    """Refuse an explicit pooling request that no extractor of a run can use as asked.

    A request that some extractor honours (or one that includes ``auto``) passes:
    the others use their only stored pooling, with a warning.

    Raises:
        ConfigError: naming the request, each extractor and what it stores.
    """
    if not choices or AUTO_POOLING in choices[0].requested:
        return
    if any(c.honoured for c in choices):
        return
    stores = "; ".join(f"{c.model} stores {_stored_text(c.model, c.stored)}" for c in choices)
    options = sorted({p for c in choices for p in c.stored})
    raise ConfigError(
        f"pooling {','.join(choices[0].requested)!r} is not stored for any extractor of "
        f"{where}: {stores}. Use pooling auto (each extractor's default) or one they store "
        f"({', '.join(options)})"
    )


@dataclass(frozen=True)
class FeatureSpec:
    """One classifier input: which layers, how they are combined, which pooling."""

    layers: tuple[str, ...]
    combine: str
    pooling: str

    @property
    def label(self) -> str:
        """The layer column of the results: ``12``, ``0-6:mean``, ``3,6,9:concat``."""
        if self.combine == "each":
            return self.layers[0]
        return f"{_compact(self.layers)}:{self.combine}"


def _compact(layers: Sequence[str]) -> str:
    """``0,1,2,3`` -> ``0-3`` when the layers are consecutive integers."""
    if all(layer.isdigit() for layer in layers) and len(layers) > 2:
        numbers = [int(layer) for layer in layers]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            return f"{numbers[0]}-{numbers[-1]}"
    return ",".join(layers)


def feature_specs(
    layers: Sequence[str], combine: str, poolings: Sequence[str]
) -> list[FeatureSpec]:
    """The classifier inputs of a sweep: one per layer (``each``) or one combined set."""
    if combine not in COMBINES:
        raise UnknownChoiceError("layer combination", combine, COMBINES)
    if combine == "each":
        return [FeatureSpec((layer,), combine, p) for p in poolings for layer in layers]
    return [FeatureSpec(tuple(layers), combine, p) for p in poolings]


class FeatureBlocks:
    """Features of the sweep's rows, read once: ``blocks[pooling]`` is (layers, rows, dim)."""

    def __init__(self, layers: Sequence[str], blocks: Mapping[str, np.ndarray]):
        self.layers = list(layers)
        self.blocks = dict(blocks)

    @property
    def nbytes(self) -> int:
        """Memory held by the feature arrays."""
        return sum(int(b.nbytes) for b in self.blocks.values())

    def stack(self, pooling: str, layers: Sequence[str] | None = None) -> np.ndarray:
        """(layers, rows, dim') for a pooling choice; ``mean+std`` joins the two on dim."""
        index = [self.layers.index(layer) for layer in (layers or self.layers)]
        parts = [self.blocks[p] for p in pooling.split("+")]
        if len(parts) == 1:
            block = parts[0]
            return block if index == list(range(len(self.layers))) else block[index]
        return np.concatenate([part[index] for part in parts], axis=2)

    def matrix(self, spec: FeatureSpec) -> np.ndarray:
        """(rows, features) input of one classifier, as `spec` combines layers."""
        if spec.combine == "each":
            position = self.layers.index(spec.layers[0])
            parts = [self.blocks[p][position] for p in spec.pooling.split("+")]
            return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        stacked = self.stack(spec.pooling, spec.layers)
        if spec.combine == "mean":
            return stacked.mean(axis=0)
        return np.concatenate(list(stacked), axis=1)


def load_blocks(
    sources: Sequence[FeatureSource],
    source_of_row: np.ndarray,
    position_of_row: np.ndarray,
    layers: Sequence[str],
    poolings: Sequence[str],
    *,
    progress: bool = False,
) -> FeatureBlocks:
    """Read each (source, layer, pooling) once into arrays over the sweep's rows.

    The sources share layer names and dim; row i of the sweep is row
    ``position_of_row[i]`` of ``sources[source_of_row[i]]``. A ``mean+std``
    pooling choice loads both stored poolings.
    """
    from tqdm.auto import tqdm

    stored = list(dict.fromkeys(part for p in poolings for part in p.split("+")))
    dim = sources[0].dim
    n_rows = len(source_of_row)
    blocks = {p: np.empty((len(layers), n_rows, dim), dtype=np.float32) for p in stored}
    rows_of = [np.flatnonzero(source_of_row == s) for s in range(len(sources))]
    for li, layer in enumerate(
        tqdm(layers, desc="load features", unit="layer", disable=not progress)
    ):
        for pooling in stored:
            for s, source in enumerate(sources):
                if len(rows_of[s]) == 0:
                    continue
                values = source.read(layer, pooling)
                if values.shape != (len(source.ids), dim):
                    raise CacheError(
                        f"{source!r} returned {values.shape} for layer {layer} {pooling}; "
                        f"expected ({len(source.ids)}, {dim})"
                    )
                blocks[pooling][li, rows_of[s]] = values[position_of_row[rows_of[s]]]
    loaded = FeatureBlocks(layers, blocks)
    log.info("loaded %d layer(s) x %s: %.1f MB", len(layers), stored, loaded.nbytes / 1e6)
    return loaded


def speaker_znorm(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Standardise each speaker's rows with that speaker's own mean and std.

    Works on the last axis of (rows, dim) or (layers, rows, dim); label-free, so
    test speakers are normalised with their own statistics without leaking labels.
    """
    out = np.empty_like(x, dtype=np.float32)
    for name in np.unique(groups):
        rows = np.flatnonzero(groups == name)
        part = x[..., rows, :]
        mean = part.mean(axis=-2, keepdims=True)
        std = part.std(axis=-2, keepdims=True)
        out[..., rows, :] = (part - mean) / np.where(std > 1e-8, std, 1.0)
    return out
