"""Experiment files: a grid of models x corpora x conditions x classifiers x split, with seeds.

An experiment file (YAML or TOML) is validated into :class:`Experiment`, a
settings model (see :mod:`ssl_ser.settings`) whose sections are the stages' own
settings models, the ones their commands' options are generated from; an unknown
key is an error naming it and the valid keys, a wrong type names the key, the
expected and the found type. A minimal file::

    name: emodb-baseline
    models: [facebook/wav2vec2-base, egemaps]
    corpora:
      emodb: /data/emodb            # a folder (edit the path), or a manifest CSV/parquet
    conditions: [clean, telephone]
    condition_pairs: all            # matched (default), all, or [[clean, telephone], ...]
    classifiers: [logreg, mlp]
    split: {method: speaker-kfold, folds: 5}
    seeds: [0]
    finetune: {epochs: 20}          # optional: also fine-tune the SSL models on the same folds

Relative paths (corpus roots, ``cache_dir``, ``output``) are read from the
current directory when the experiment runs. See ``experiments/`` for the
shipped examples and :mod:`ssl_ser.pipelines.run` for what running one does.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import ValidationInfo, field_validator

from ssl_ser.choices import CONDITIONS, ON_ERROR_CHOICES
from ssl_ser.classify.settings import SplitSettings, SweepGrid, SweepSettings
from ssl_ser.errors import ConfigError, SerError, UnknownChoiceError
from ssl_ser.extract.settings import ExtractSettings
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.settings import FinetuneSettings, finetune_section
from ssl_ser.manifest import MANIFEST_SUFFIXES
from ssl_ser.settings import CACHE_KEY, Opt, Settings, Where, check_choices, setting, wrong_type

SUFFIXES: dict[str, str] = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}
# An experiment file is a few hundred lines; a larger one is a mistake (or an attack).
MAX_FILE_BYTES = 1_000_000
CORPORA_MODES: tuple[str, ...] = ("each", "pooled")
PAIR_KEYWORDS: tuple[str, ...] = ("matched", "all")
CROSS_CORPUS_SPLITS: tuple[str, ...] = ("cross-corpus", "few-shot")
# Reader options the pipeline sets itself (the corpus key is the name), never the file.
RESERVED_OPTIONS: tuple[str, ...] = ("name",)
CORPUS_KEYS: tuple[str, ...] = ("root", "reader", "on_error")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # one folder name: "emodb-baseline"
DEFAULT_OUTPUT_ROOT = "ser-out"
DEFAULT_CACHE_DIR = f"{DEFAULT_OUTPUT_ROOT}/cache"


@dataclass(frozen=True)
class CorpusSpec:
    """One corpus of the grid: where it lives and which reader turns it into a manifest.

    Attributes:
        name: the corpus name (a registry corpus such as ``emodb``, or any name for
            the generic ``folder``/``csv`` readers and for manifests).
        root: the corpus folder (or a user CSV for the ``csv`` reader), or a
            manifest file (``.csv``/``.parquet``, as ``ser prepare`` writes) whose
            rows of corpus `name` are used.
        reader: the reader of the corpus registry that scans `root`; None when
            `root` is a manifest file.
        options: the reader's own keyword options (``speaker_pattern``, ``language``...).
        on_error: ``skip`` leaves bad files out (listed beside the manifest), ``raise`` stops.
    """

    name: str
    root: str
    reader: str | None
    options: dict[str, Any] = field(default_factory=dict)
    on_error: str = "skip"


def _corpus(name: str, entry: object, where: Where) -> CorpusSpec:
    if isinstance(entry, str):
        entry = {"root": entry}
    if not isinstance(entry, dict):
        raise wrong_type(entry, "a root path or a table with 'root'", where)
    if "root" not in entry:
        raise ConfigError(f"missing required key 'root' in {where}")
    root = entry["root"]
    if not isinstance(root, str) or not root:
        raise wrong_type(root, "a path (string)", where.child("root"))
    reader = _reader(name, entry, root, where)
    options = {k: v for k, v in entry.items() if k not in CORPUS_KEYS}
    valid = sorted({*CORPUS_KEYS, *(reader_options(reader) if reader else ())})
    for key, value in options.items():
        if key not in valid:
            raise UnknownChoiceError("key", key, valid, where=str(where))
        # reader options are strings (patterns, language codes) or tables of strings (mappings)
        strings = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        if not isinstance(value, str) and not strings:
            raise wrong_type(value, "a string or a table of strings", where.child(key))
    on_error = entry.get("on_error", "skip")
    check_choices(on_error, ON_ERROR_CHOICES, where.child("on_error"))
    return CorpusSpec(name, root, reader, options, on_error)


def _reader(name: str, entry: dict, root: str, where: Where) -> str | None:
    """The registry reader of a corpus entry, or None when its root is a manifest file."""
    from ssl_ser import corpora

    if "reader" not in entry and Path(root).suffix.lower() in MANIFEST_SUFFIXES:
        return None
    reader = entry.get("reader", name)
    if not isinstance(reader, str) or reader not in corpora.names():
        hint = " (for your own corpus give reader: folder or csv, or a manifest file as root)"
        hint = "" if "reader" in entry else hint
        raise UnknownChoiceError("corpus reader", reader, corpora.names(), where=f"{where}{hint}")
    if reader not in corpora.GENERIC and name != reader:
        raise ConfigError(
            f"{where}: reader {reader!r} names its corpus {reader!r}; use that name as the key"
        )
    return reader


def reader_options(reader: str) -> list[str]:
    """Keyword options a corpus reader's ``scan`` accepts beyond the pipeline's own."""
    from ssl_ser import corpora

    return [name for name in corpora.reader_options(reader) if name not in RESERVED_OPTIONS]


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


def _place(info: ValidationInfo, flag: str) -> Where:
    """Where a top-level value sits: its key in the file, or its flag."""
    where = (info.context or {}).get("where")
    return where.child(info.field_name) if where is not None else Where(flag)


class Experiment(SweepGrid):
    """A validated experiment: what to extract, classify and report.

    The sweep grid (``labels``, ``layers``, ``pooling``, ``classifiers``) comes
    from :class:`~ssl_ser.classify.settings.SweepGrid`; ``extract``, ``split``,
    ``classify`` and ``finetune`` are the stages' own settings models. The
    relative paths are read from the current directory when the experiment runs.
    """

    name: Annotated[
        str, Opt("A folder-safe name; the default output folder is ser-out/<name>.", cli=False)
    ]
    models: Annotated[
        tuple[str, ...],
        Opt(
            "Hub id (facebook/wav2vec2-base), local model folder, or egemaps/mfcc/logmel. "
            "Repeatable.",
            flag="--model",
            multiple=True,
            enters=CACHE_KEY,
        ),
    ]
    corpora: Annotated[
        tuple[CorpusSpec, ...],
        Opt(
            "NAME=ROOT (a corpus folder, e.g. emodb=/data/emodb) or NAME=MANIFEST "
            "(a manifest CSV/parquet from `ser prepare`). Repeatable.",
            flag="--corpus",
            multiple=True,
        ),
    ]
    description: str = setting("", "Free text, shown by ser run --dry-run.", cli=False)
    conditions: tuple[str, ...] = setting(
        ("clean",),
        "Audio condition to extract. Repeatable (each value once).",
        choices=CONDITIONS,
        flag="--condition",
        multiple=True,
        enters=CACHE_KEY,
    )
    condition_pairs: str | tuple[tuple[str, str], ...] = setting(
        "matched",
        "Evaluate each condition on itself (matched), or every train x test combination "
        "(all); a file may also list [train, test] pairs.",
        metavar="[matched|all]",
    )
    split: SplitSettings = setting(SplitSettings(), "How the data is split.", cli=False)
    corpora_mode: str | None = setting(
        None,
        "One sweep per corpus, or one over all corpora (default: by split).",
        choices=CORPORA_MODES,
    )
    cache_dir: str = setting(
        DEFAULT_CACHE_DIR, "Feature cache root (shared between runs).", metavar="DIRECTORY"
    )
    output: str | None = setting(
        None, "Results and report folder [default: ser-out/<name>].", metavar="DIRECTORY"
    )
    extract: ExtractSettings = setting(ExtractSettings(), "Extraction options.", cli=False)
    classify: SweepSettings = setting(SweepSettings(), "Further classify options.", cli=False)
    report: bool = setting(True, "Write the HTML/Markdown report.", negatable=True)
    finetune: FinetuneSettings | None = setting(
        None, "Also fine-tune the SSL models end to end on every probe fold.", cli=False
    )

    @field_validator("corpora", mode="before")
    @classmethod
    def _corpora(cls, value: object, info: ValidationInfo) -> tuple[CorpusSpec, ...]:
        """Specs of a file's ``{name: root | {root: ..., reader: ...}}`` or the NAME=ROOTs."""
        if isinstance(value, tuple) and all(isinstance(c, CorpusSpec) for c in value):
            return value  # built in code
        where = _place(info, "--corpus")
        from_cli = not where.keys
        if from_cli and isinstance(value, list | tuple) and all(isinstance(c, str) for c in value):
            table: dict[str, str] = {}  # the NAME=ROOTs as the table a file gives
            for name, root in map(parse_corpus, value):
                if name in table:
                    raise ConfigError(f"--corpus {name} is given twice")
                table[name] = root
            value = table
        if not isinstance(value, dict) or not value:
            raise wrong_type(value, "a non-empty table of corpus name -> root", where)
        return tuple(_corpus(str(name), entry, where.child(name)) for name, entry in value.items())

    @field_validator("condition_pairs", mode="before")
    @classmethod
    def _pairs(cls, value: object, info: ValidationInfo) -> Any:
        """``matched``, ``all`` or a list of [train condition, test condition] pairs."""
        if isinstance(value, tuple):
            return value  # built in code
        where = _place(info, "--condition-pairs")
        if isinstance(value, str):
            check_choices(value, PAIR_KEYWORDS, where)
            return value
        if not isinstance(value, list) or not value:
            raise wrong_type(
                value, "matched, all or a list of [train, test] condition pairs", where
            )
        pairs = []
        for i, pair in enumerate(value):
            ok = isinstance(pair, list) and len(pair) == 2 and all(isinstance(c, str) for c in pair)
            if not ok:
                raise wrong_type(pair, "a pair [train condition, test condition]", where.child(i))
            check_choices(tuple(pair), CONDITIONS, where.child(i))
            pairs.append((pair[0], pair[1]))
        return tuple(dict.fromkeys(pairs))

    @field_validator("finetune", mode="before")
    @classmethod
    def _finetune(cls, value: object, info: ValidationInfo) -> Any:
        if value is None or isinstance(value, FinetuneSettings):
            return value
        return finetune_section(value, _place(info, "--finetune"))

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """The (train condition, test condition) pairs to evaluate."""
        if self.condition_pairs == "matched":
            return tuple((c, c) for c in self.conditions)
        if self.condition_pairs == "all":
            return tuple(itertools.product(self.conditions, repeat=2))
        return tuple(self.condition_pairs)

    @property
    def mode(self) -> str:
        """``each`` or ``pooled`` (the default follows the split)."""
        if self.corpora_mode is not None:
            return self.corpora_mode
        return "pooled" if self.split.method in CROSS_CORPUS_SPLITS else "each"

    @property
    def output_dir(self) -> Path:
        """Where results and reports go."""
        return Path(self.output or f"{DEFAULT_OUTPUT_ROOT}/{self.name}")

    @property
    def corpus_names(self) -> tuple[str, ...]:
        """Corpus names in file order."""
        return tuple(c.name for c in self.corpora)

    def extractor_configs(self) -> dict[str, Any]:
        """Each model's :class:`~ssl_ser.extract.ExtractorConfig` (validates every field)."""
        return {model: self.extract.extractor_config(model) for model in self.models}

    @property
    def ssl_models(self) -> tuple[str, ...]:
        """The models that are not classic baselines (the ones fine-tuning can train)."""
        from ssl_ser.extract.config import CLASSIC_MODELS

        return tuple(m for m in self.models if m not in CLASSIC_MODELS)

    @property
    def finetune_models(self) -> tuple[str, ...]:
        """The models to fine-tune: ``finetune.models``, else every SSL model; () without one."""
        if self.finetune is None:
            return ()
        return self.finetune.models if self.finetune.models is not None else self.ssl_models

    def finetune_configs(self) -> dict[str, FinetuneConfig]:
        """Each fine-tuned model's :class:`FinetuneConfig` (validates the settings together)."""
        if self.finetune is None:
            return {}
        revision = self.extract.revision
        return {m: self.finetune.config(model=m, revision=revision) for m in self.finetune_models}

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON data (what ``ser run`` records beside its results)."""
        data = self.file_data()
        data["corpora"] = {
            c.name: {"root": c.root, "reader": c.reader, "on_error": c.on_error, **c.options}
            for c in self.corpora
        }
        return json.loads(json.dumps(data, default=list))


class RunSettings(Settings):
    """How ``ser run`` and ``ser probe`` run an experiment (never part of the file)."""

    dry_run: bool = setting(
        False, "Print the plan (caches, sweeps, cells); run nothing.", file=False
    )


def experiment_from_dict(data: object, source: str = "experiment") -> Experiment:
    """Validate parsed experiment data (a dict as YAML/TOML gives it) into an :class:`Experiment`.

    Raises:
        ConfigError, UnknownChoiceError: naming the bad key and `source`.
    """
    where = Where(source)
    experiment = Experiment.from_file(data, where)
    check_experiment(experiment, where)
    return experiment


def check_experiment(experiment: Experiment, where: Where) -> None:
    """Checks that span several fields (corpora named by the split, pairs within conditions...).

    Raises:
        ConfigError, UnknownChoiceError: naming the key and the file.
    """
    if not NAME.match(experiment.name):
        raise ConfigError(
            f"{where.child('name')} is {experiment.name!r}; use letters, digits, '.', '_' "
            "and '-' only (it names the output folder)"
        )
    for key in ("models", "conditions", "classifiers", "seeds"):
        _check_listed(getattr(experiment, key), where.child(key))
    _check_split(experiment, where.child("split"))
    for pair in experiment.pairs:
        check_choices(pair, experiment.conditions, where.child("condition_pairs"))
    if experiment.mode == "each" and experiment.split.method in CROSS_CORPUS_SPLITS:
        raise ConfigError(
            f"{where.child('corpora_mode')} is 'each', but split {experiment.split.method!r} "
            "trains and tests on different corpora; use corpora_mode: pooled"
        )
    _check_target(experiment, where.child("classify"))
    try:
        experiment.extractor_configs()
    except SerError as error:
        raise ConfigError(f"{where.child('extract')}: {error}") from error
    _check_finetune(experiment, where.child("finetune"))


def _check_finetune(experiment: Experiment, where: Where) -> None:
    """The fine-tuned models are SSL models of the experiment; the settings fit together."""
    if experiment.finetune is None:
        return
    if not experiment.ssl_models:
        raise ConfigError(
            f"{where}: the experiment's models {list(experiment.models)} are all classic "
            "baselines, which are not fine-tuned; add an SSL model to 'models'"
        )
    models = experiment.finetune.models
    if models is not None:
        _check_listed(models, where.child("models"), "model (or leave out the finetune section)")
        check_choices(models, experiment.ssl_models, where.child("models"))


def _check_listed(values: tuple[Any, ...], where: Where, one: str = "value") -> None:
    """A list of at least one value, each value once."""
    if not values:
        raise ConfigError(f"{where} must list at least one {one}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where} lists a value twice: {list(values)}")


def _check_split(experiment: Experiment, where: Where) -> None:
    split = experiment.split  # folds, ratios and shots are bounded by SplitSettings itself
    for key in ("train", "test"):
        check_choices(getattr(split, key), experiment.corpus_names, where.child(key))
    if set(split.train) & set(split.test):
        raise ConfigError(
            f"{where}: corpora {sorted(set(split.train) & set(split.test))} "
            "are both in train and test"
        )
    if not split.shots:
        raise ConfigError(f"{where.child('shots')} must list numbers >= 0; got {split.shots}")
    if split.method in CROSS_CORPUS_SPLITS and len(experiment.corpora) < 2:
        raise ConfigError(
            f"{where.child('method')}: split {split.method!r} needs at least 2 corpora"
        )


def _check_target(experiment: Experiment, where: Where) -> None:
    """A speaker target needs folds of utterances and has no control labelling nor fine-tune."""
    from ssl_ser.classify.measures import SPEAKER_TARGET, SPEAKER_TARGET_SPLITS

    settings = experiment.classify
    if settings.target != SPEAKER_TARGET:
        return
    if settings.control:
        raise ConfigError(
            f"{where.child('control')}: control permutes emotion labels within speakers; it "
            "has no meaning for target: speaker"
        )
    if experiment.split.method not in SPEAKER_TARGET_SPLITS:
        raise ConfigError(
            f"{where.child('target')}: speaker needs folds of utterances: split.method "
            f"{' or '.join(SPEAKER_TARGET_SPLITS)}, not {experiment.split.method!r}"
        )
    if experiment.finetune is not None:
        raise ConfigError(
            f"{where.child('target')}: speaker probes cannot share a results folder with "
            "emotion fine-tuning; leave finetune out"
        )


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file (``.yaml``, ``.yml`` or ``.toml``).

    Raises:
        ConfigError: the file is missing, cannot be parsed, or breaks the schema
            (the message names the key and the file).
        UnknownChoiceError: an unknown key or value, with the valid ones.
    """
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UnknownChoiceError("experiment file type", path.suffix, SUFFIXES, where=str(path))
    if not path.is_file():
        raise ConfigError(f"experiment file {path} does not exist")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ConfigError(
            f"experiment file {path} is {size:,} bytes; an experiment file may hold at most "
            f"{MAX_FILE_BYTES:,}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"experiment file {path} is not UTF-8 text (byte {error.start}: "
            f"{error.object[error.start : error.start + 1]!r}); save it as UTF-8"
        ) from error
    data = _parse_yaml(text, path) if kind == "yaml" else _parse_toml(text, path)
    return experiment_from_dict(data, str(path))


def _parse_yaml(text: str, path: Path) -> object:
    import yaml

    from ssl_ser.pipelines import _yaml

    try:
        return _yaml.load(text)
    except _yaml.RefusedYAMLError as error:
        raise ConfigError(f"experiment file {path} refused: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None


def _parse_toml(text: str, path: Path) -> object:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    except RecursionError:
        raise ConfigError(f"experiment file {path} refused: it nests too deep") from None
