"""Experiment files: validation names the bad key; YAML and TOML agree; shipped examples load."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest
import yaml

from ssl_ser.errors import ConfigError, SerError, UnknownChoiceError
from ssl_ser.pipelines.experiment import (
    CorpusSpec,
    Experiment,
    experiment_from_dict,
    load_experiment,
    parse_corpus,
)
from ssl_ser.pipelines.quick import probe_experiment

EXAMPLES = sorted((Path(__file__).parents[2] / "experiments").glob("*.*"))
MINIMAL = {"name": "t", "models": ["mfcc"], "corpora": {"emodb": "/data/emodb"}}


def write_yaml(tmp_path: Path, data: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_minimal_file_takes_the_documented_defaults(tmp_path):
    experiment = load_experiment(write_yaml(tmp_path, MINIMAL))
    assert experiment.models == ("mfcc",)
    assert experiment.corpora == (CorpusSpec("emodb", "/data/emodb", "emodb"),)
    assert experiment.conditions == ("clean",)
    assert experiment.pairs == (("clean", "clean"),)
    assert experiment.split.method == "speaker-kfold" and experiment.split.folds == 5
    assert experiment.seeds == (0,) and experiment.labels == "basic4"
    assert experiment.mode == "each"
    assert experiment.output_dir == Path("ser-out/t")
    assert experiment.extract.poolings == ("mean", "std")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        experiment.name = "other"  # type: ignore[misc]


def test_an_experiment_validates_again_from_its_own_values(tmp_path):
    data = {
        **MINIMAL,
        "conditions": ["clean", "telephone"],
        "condition_pairs": [["clean", "telephone"]],
    }
    experiment = load_experiment(write_yaml(tmp_path, data))
    assert experiment.condition_pairs == (("clean", "telephone"),)
    again = Experiment(**dict(experiment))  # specs and pairs built in code, not a file's
    assert again == experiment
    assert again.corpora == (CorpusSpec("emodb", "/data/emodb", "emodb"),)


@pytest.mark.parametrize(
    ("patch", "key", "listed"),
    [
        ({"modle": ["mfcc"]}, "'modle'", "models, corpora"),
        ({"split": {"method": "loso", "fold": 3}}, "'fold' in 'split'", "method, folds"),
        ({"extract": {"devise": "cpu"}}, "'devise' in 'extract'", "device, dtype"),
        ({"classify": {"job": 2}}, "'job' in 'classify'", "combine, search"),
        (
            {"corpora": {"mine": {"root": "/x", "reader": "folder", "speakers": "s"}}},
            "'speakers' in 'corpora.mine'",
            "speaker_pattern",
        ),
    ],
)
def test_unknown_keys_are_named_with_the_valid_ones(tmp_path, patch, key, listed):
    path = write_yaml(tmp_path, {**MINIMAL, **patch})
    with pytest.raises(UnknownChoiceError) as error:
        load_experiment(path)
    message = str(error.value)
    assert f"unknown key {key}" in message and str(path) in message and listed in message


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"split": {"folds": "five"}}, "'split.folds' in .* must be an integer; got a string"),
        ({"split": {"folds": True}}, "'split.folds' .* must be an integer; got a boolean"),
        ({"seeds": ["a"]}, r"'seeds.0' .* must be an integer"),
        ({"models": {"a": 1}}, "'models' .* must be a list of strings; got a table"),
        ({"report": "yes"}, "'report' .* must be true or false"),
        ({"extract": {"batch_seconds": "60"}}, "'extract.batch_seconds' .* must be a number"),
        ({"split": "loso"}, "'split' .* must be a table of keys; got a string"),
        ({"corpora": ["emodb"]}, "'corpora' .* must be a non-empty table"),
        ({"condition_pairs": [["clean"]]}, r"'condition_pairs.0' .* must be a pair"),
        (
            {"corpora": {"mine": {"root": "/m", "reader": "folder", "speaker_pattern": 3}}},
            "'corpora.mine.speaker_pattern' .* must be a string or a table of strings",
        ),
    ],
)
def test_wrong_types_name_the_key_and_the_expected_type(tmp_path, patch, expected):
    with pytest.raises(ConfigError, match=expected):
        load_experiment(write_yaml(tmp_path, {**MINIMAL, **patch}))


@pytest.mark.parametrize("key", ["name", "models", "corpora"])
def test_missing_required_keys_are_named(tmp_path, key):
    data = {k: v for k, v in MINIMAL.items() if k != key}
    with pytest.raises(ConfigError, match=f"missing required key '{key}' in .*exp.yaml"):
        load_experiment(write_yaml(tmp_path, data))


def test_missing_corpus_root_is_named(tmp_path):
    data = {**MINIMAL, "corpora": {"mine": {"reader": "folder"}}}
    with pytest.raises(ConfigError, match="missing required key 'root' in 'corpora.mine'"):
        load_experiment(write_yaml(tmp_path, data))


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"classifiers": ["logreg", "svm"]}, "unknown value 'svm' in 'classifiers'.*logreg"),
        ({"conditions": ["clean", "radio"]}, "unknown value 'radio'.*clean, telephone"),
        ({"split": {"method": "kfold"}}, "unknown value 'kfold' in 'split.method'"),
        ({"labels": "basic5"}, "unknown label set 'basic5' in 'labels'.*basic4"),
        ({"labels": ["angry", "joy"]}, "unknown emotion 'joy' in label list 'angry,joy'.*'labels'"),
        ({"labels": "angry,sad,sad"}, "'labels' in .* names sad more than once"),
        ({"labels": 4}, "'labels' in .* must be basic4, all, sentiment, or a list"),
        ({"corpora": {"mycorpus": "/x"}}, "corpus reader 'mycorpus'.*reader: folder or csv"),
        ({"pooling": "max"}, "unknown value 'max' in 'pooling'.*mean, std, mean\\+std"),
        (
            {"split": {"method": "cross-corpus", "test": ["cremad"]}},
            "unknown value 'cremad' in 'split.test'.*emodb",
        ),
        ({"condition_pairs": [["clean", "telephone"]]}, "'telephone'.*'condition_pairs'"),
        ({"extract": {"dtype": "int8"}}, "unknown value 'int8' in 'extract.dtype'"),
    ],
)
def test_values_outside_their_choices_are_refused(tmp_path, patch, expected):
    with pytest.raises(SerError, match=expected):
        load_experiment(write_yaml(tmp_path, {**MINIMAL, **patch}))


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"name": "a/b"}, "'name' in .* use letters, digits"),
        ({"models": ["mfcc", "mfcc"]}, "'models' .* lists a value twice"),
        ({"split": {"folds": 1}}, "'split.folds' .* at least 2"),
        (
            {
                "split": {"method": "cross-corpus"},
                "corpora_mode": "each",
                "corpora": {"emodb": "/a", "emovo": "/b"},
            },
            "corpora_mode' .* 'each'.*use corpora_mode: pooled",
        ),
        (
            {"split": {"method": "few-shot"}},
            "'split.method' .*: split 'few-shot' needs at least 2 corpora",
        ),
        ({"split": {"shots": [10, -1]}}, "'split.shots' .* must be at least 0"),
        ({"extract": {"max_seconds": -1}}, "'extract' .*max_seconds"),
        ({"corpora": {"berlin": {"root": "/x", "reader": "emodb"}}}, "use that name as the key"),
    ],
)
def test_fields_are_checked_together(tmp_path, patch, expected):
    with pytest.raises(SerError, match=expected):
        load_experiment(write_yaml(tmp_path, {**MINIMAL, **patch}))


def test_yaml_and_toml_describe_the_same_experiment(tmp_path):
    yaml_path = write_yaml(
        tmp_path,
        {
            "name": "tel",
            "models": ["facebook/wav2vec2-base", "egemaps"],
            "corpora": {"emodb": "/data/emodb", "mine": {"root": "/m", "reader": "folder"}},
            "conditions": ["clean", "telephone"],
            "condition_pairs": "all",
            "split": {"method": "speaker-kfold", "folds": 4},
            "seeds": [0, 1],
            "extract": {"dtype": "bfloat16"},
        },
    )
    toml_path = tmp_path / "exp.toml"
    toml_path.write_text(
        'name = "tel"\nmodels = ["facebook/wav2vec2-base", "egemaps"]\n'
        'conditions = ["clean", "telephone"]\ncondition_pairs = "all"\nseeds = [0, 1]\n'
        '[corpora]\nemodb = "/data/emodb"\nmine = {root = "/m", reader = "folder"}\n'
        '[split]\nmethod = "speaker-kfold"\nfolds = 4\n[extract]\ndtype = "bfloat16"\n'
    )
    from_yaml, from_toml = load_experiment(yaml_path), load_experiment(toml_path)
    assert from_yaml == from_toml
    assert from_yaml.pairs == (
        ("clean", "clean"),
        ("clean", "telephone"),
        ("telephone", "clean"),
        ("telephone", "telephone"),
    )
    configs = from_yaml.extractor_configs()
    assert configs["facebook/wav2vec2-base"].dtype == "bfloat16"
    assert configs["egemaps"].dtype == "float32" and configs["egemaps"].poolings == ("mean",)


def test_unparseable_files_and_unknown_suffixes_are_refused(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_experiment(bad_yaml)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("name = \n")
    with pytest.raises(ConfigError, match="bad.toml is not valid TOML"):
        load_experiment(bad_toml)
    with pytest.raises(UnknownChoiceError, match="'.json'.*.yaml, .yml, .toml"):
        load_experiment(tmp_path / "exp.json")
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "absent.yaml")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: Or\u00e9au\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml is not UTF-8 text \(byte 8: b'\\xe9'\)"):
        load_experiment(latin)
    top_list = write_yaml(tmp_path, [1, 2], name="list.yaml")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="list.yaml must be a table of keys; got a list"):
        load_experiment(top_list)


def test_a_manifest_root_needs_no_reader_and_any_name(tmp_path):
    experiment = experiment_from_dict({**MINIMAL, "corpora": {"mine": "/data/mine.csv"}})
    spec = experiment.corpora[0]
    assert spec.reader is None  # a manifest file
    csv_reader = experiment_from_dict(
        {**MINIMAL, "corpora": {"mine": {"root": "/data/list.csv", "reader": "csv"}}}
    ).corpora[0]
    assert csv_reader.reader == "csv"


def test_to_dict_round_trips_through_validation():
    experiment = experiment_from_dict(
        {
            **MINIMAL,
            "corpora": {
                "mine": {"root": "/m", "reader": "folder", "speaker_pattern": "^(?P<speaker>x)"}
            },
            "condition_pairs": [["clean", "clean"]],
            "classify": {"params": {"mlp": {"max_epochs": 5}}},
        }
    )
    data = json.loads(json.dumps(experiment.to_dict()))
    assert experiment_from_dict(data) == experiment


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_shipped_example_validates(path):
    experiment = load_experiment(path)
    assert experiment.name == path.stem
    for spec in experiment.corpora:
        assert spec.root.startswith("/data/"), "examples use placeholder corpus roots"
    assert experiment.output_dir == Path("ser-out") / experiment.name


def test_the_shipped_examples_cover_the_named_experiments():
    experiments = {p.stem: load_experiment(p) for p in EXAMPLES}
    eight = {"cremad", "esd", "subesco", "emodb", "mesd", "emovo", "oreau", "emouerj"}
    baselines = experiments["baselines"]
    assert set(baselines.corpus_names) == eight and baselines.mode == "each"
    telephone = experiments["telephone"]
    assert ("clean", "telephone") in telephone.pairs and len(telephone.pairs) == 4
    pooled = experiments["pooled-cv"]
    assert set(pooled.corpus_names) == eight and pooled.mode == "pooled"
    assert pooled.split.method == "speaker-kfold" and pooled.split.folds == 5
    few_shot = experiments["few-shot"]
    assert few_shot.split.method == "few-shot" and len(few_shot.split.test) == 1
    assert few_shot.split.shots[0] == 0 and len(few_shot.split.shots) > 2


def probe_values(*args: str) -> dict:
    """The parsed option values of a ``ser probe`` command line."""
    from ssl_ser.cli.pipelines import probe

    return probe.make_context("probe", list(args)).params


def test_probe_options_become_the_same_experiment_a_file_describes():
    experiment = probe_experiment(
        probe_values(
            *("--model", "facebook/wav2vec2-base", "--model", "mfcc"),
            *("--corpus", "emodb=/data/emodb", "--corpus", "mine=/data/mine.csv"),
            *("--condition", "clean", "--condition", "telephone", "--classifiers", "logreg,mlp"),
            *("--split", "speaker-kfold", "--folds", "5", "--device", "cuda"),
            *("--dtype", "float16", "--cache-dir", "c", "--output", "o"),
        )
    )
    assert isinstance(experiment, Experiment)
    assert experiment.corpus_names == ("emodb", "mine")
    assert experiment.classifiers == ("logreg", "mlp") and experiment.split.folds == 5
    assert experiment.extract.device == "cuda" and experiment.extract.workers is None
    assert experiment.labels == "basic4" and experiment.output_dir == Path("o")
    assert experiment.conditions == ("clean", "telephone") and experiment.finetune is None
    assert parse_corpus("emodb=/data/x=y") == ("emodb", "/data/x=y")
    with pytest.raises(ConfigError, match="NAME=ROOT"):
        parse_corpus("/data/emodb")
    with pytest.raises(ConfigError, match="given twice"):
        probe_experiment(
            probe_values("--model", "mfcc", "--corpus", "emodb=/a", "--corpus", "emodb=/b")
        )
    with pytest.raises(ConfigError, match="--folds must be at least 2; got 1"):
        probe_experiment(probe_values("--model", "mfcc", "--corpus", "emodb=/a", "--folds", "1"))
    tuned = probe_experiment(probe_values("--model", "m/w2v", "--corpus", "emodb=/a", "--finetune"))
    assert tuned.finetune is not None and tuned.finetune.epochs == 20


def test_probe_warns_once_of_the_deprecated_dask_spelling(caplog):
    values = probe_values("--model", "mfcc", "--corpus", "emodb=/a", "--backend", "dask")
    with caplog.at_level("WARNING", logger="ssl_ser.classify.sweep.plan"):
        experiment = probe_experiment(values)
    assert experiment.classify.backend == "dask"
    warned = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert warned == ["--backend dask is deprecated and goes in the next release; use --dask local"]


@pytest.mark.parametrize(
    "labels",
    [
        ["angry", "happy", "sad", "neutral", "fear", "disgust"],
        "disgust, fear, neutral, sad, happy, angry",
    ],
)
def test_an_explicit_label_list_is_stored_in_its_one_spelling(tmp_path, labels):
    experiment = load_experiment(write_yaml(tmp_path, {**MINIMAL, "labels": labels}))
    assert experiment.labels == "angry,happy,sad,neutral,fear,disgust"
    assert experiment.to_dict()["labels"] == experiment.labels
    same = probe_experiment(
        probe_values(
            "--model", "mfcc", "--corpus", "emodb=/d", "--labels", "neutral,sad,happy,angry"
        )
    )
    assert same.labels == "basic4"


@pytest.mark.parametrize(
    ("data", "error", "expected"),
    [
        (["emodb"], ConfigError, r"exp.yaml must be a table of keys; got a list"),
        ({**MINIMAL, "split": {"folds": 2.0}}, ConfigError, r"'split.folds' .* integer; got a nu"),
        ({**MINIMAL, "extract": {"workers": "2"}}, ConfigError, r"'extract.workers' .* integer"),
        ({**MINIMAL, "extract": {"batch_seconds": True}}, ConfigError, r"number; got a boolean"),
        ({**MINIMAL, "split": {"ratios": "0.8"}}, ConfigError, r"'split.ratios' .* three non-neg"),
        ({**MINIMAL, "split": {"shots": ["5"]}}, ConfigError, r"'split.shots.0' .* an integer"),
        ({**MINIMAL, "classify": {"params": [1]}}, ConfigError, r"'classify.params' .* table of"),
        ({**MINIMAL, "description": 3}, ConfigError, r"'description' .* a string; got an integer"),
        (
            {**MINIMAL, "extract": {"poolings": ["mean", "max"]}},
            UnknownChoiceError,
            r"unknown value 'max' in 'extract.poolings' in .*exp.yaml.*mean, std",
        ),
        (
            {**MINIMAL, "classify": {"combine": "sum"}},
            UnknownChoiceError,
            r"unknown value 'sum' in 'classify.combine'.*each, concat, mean",
        ),
        (
            {**MINIMAL, "extract": {"devise": "cpu", "dtype": 3}},
            UnknownChoiceError,
            r"unknown key 'devise' in 'extract'",
        ),
        ({"name": "t", "modles": ["mfcc"]}, UnknownChoiceError, r"unknown key 'modles' in .*yaml"),
        (
            {**MINIMAL, "classify": {"backend": "slurm"}},
            UnknownChoiceError,
            r"unknown value 'slurm' in 'classify.backend'.*local, dask",
        ),
        (
            {**MINIMAL, "classify": {"scheduler": "tcp://h:8786"}},
            ConfigError,
            r"exp.yaml: classify.scheduler \('tcp://h:8786'\) needs classify.backend: dask, "
            r"not 'local'$",
        ),
        ({**MINIMAL, "classify": {"scheduler": 8786}}, ConfigError, r"'classify.scheduler' .* str"),
    ],
)
def test_bad_inputs_name_key_file_expected_and_found(tmp_path, data, error, expected):
    """Each kind of schema error: where (key path and file), what was expected, what was found."""
    with pytest.raises(error, match=expected):
        load_experiment(write_yaml(tmp_path, data))


def test_lenient_spellings_read_as_their_values(tmp_path):
    """Exponent strings are numbers, comma strings are lists, one number is a list of one."""
    patch = {
        "classifiers": "logreg, mlp",
        "split": {"method": "speaker", "ratios": ["8e-1", 0.1, "1e-1"]},
        "extract": {"batch_seconds": "6e1"},
    }
    experiment = load_experiment(write_yaml(tmp_path, {**MINIMAL, **patch}))
    assert experiment.classifiers == ("logreg", "mlp")
    assert experiment.split.ratios == (0.8, 0.1, 0.1)
    assert experiment.extract.batch_seconds == 60.0
    corpora = {"emodb": "/a", "emovo": "/b"}
    few_shot = {"split": {"method": "few-shot", "shots": 5}, "corpora": corpora}
    experiment = load_experiment(write_yaml(tmp_path, {**MINIMAL, **few_shot}))
    assert experiment.split.shots == (5,)


def test_schema_classes_check_values_built_in_code():
    """The sections are pydantic dataclasses: code that builds one with a bad value is refused."""
    from ssl_ser.classify.settings import SplitSettings
    from ssl_ser.extract.settings import ExtractSettings

    with pytest.raises(ValueError, match="folds"):
        SplitSettings(folds="five")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="int8"):
        ExtractSettings(dtype="int8")
    experiment = experiment_from_dict(MINIMAL)
    renamed = experiment.model_copy(update={"name": "u"})
    assert renamed.name == "u" and renamed.corpora == experiment.corpora


def test_every_schema_choice_lists_exactly_its_registry():
    """Experiment-file choices are read from the modules that own them, never restated."""
    from ssl_ser import audio
    from ssl_ser.cache import STORAGE_DTYPE_CHOICES
    from ssl_ser.classify import features, measures
    from ssl_ser.classify.features import COMBINES
    from ssl_ser.classify.registry import CLASSIFIERS
    from ssl_ser.classify.settings import SplitSettings, SweepSettings
    from ssl_ser.classify.splits import SPLITS
    from ssl_ser.classify.sweep.plan import BACKENDS
    from ssl_ser.extract import config as extract_config
    from ssl_ser.extract.settings import ExtractSettings
    from ssl_ser.finetune import config as finetune
    from ssl_ser.finetune.settings import FinetuneSettings
    from ssl_ser.pipelines import experiment
    from ssl_ser.settings import option_of

    registries = {
        ("SplitSettings", "method"): tuple(SPLITS),
        ("ExtractSettings", "dtype"): extract_config.DTYPES,
        ("ExtractSettings", "poolings"): extract_config.POOLINGS,
        ("ExtractSettings", "long_audio"): extract_config.LONG_AUDIO_POLICIES,
        ("ExtractSettings", "telephone_source"): audio.TELEPHONE_SOURCES,
        ("ExtractSettings", "storage_dtype"): STORAGE_DTYPE_CHOICES,
        ("SweepSettings", "combine"): COMBINES,
        ("SweepSettings", "backend"): BACKENDS,
        ("SweepSettings", "target"): measures.REQUESTED_TARGETS,
        ("Experiment", "conditions"): audio.CONDITIONS,
        ("Experiment", "classifiers"): tuple(CLASSIFIERS),
        ("Experiment", "corpora_mode"): experiment.CORPORA_MODES,
        ("Experiment", "pooling"): features.POOLING_OPTIONS,
        ("FinetuneSettings", "head"): finetune.HEADS,
        ("FinetuneSettings", "freeze"): finetune.FREEZES,
        ("FinetuneSettings", "adapter"): finetune.ADAPTERS,
        ("FinetuneSettings", "init"): finetune.INITS,
        ("FinetuneSettings", "probe_dtype"): finetune.PROBE_DTYPES,
        ("FinetuneSettings", "dtype"): finetune.FINETUNE_DTYPES,
        ("FinetuneSettings", "long_audio"): extract_config.LONG_AUDIO_POLICIES,
        ("FinetuneSettings", "conditions"): audio.CONDITIONS,
    }
    seen = set()
    models = (SplitSettings, ExtractSettings, SweepSettings, FinetuneSettings)
    for model in (*models, experiment.Experiment):
        for name in model.model_fields:
            opt = option_of(model, name)
            if opt is None or opt.choices is None:
                continue
            key = (model.__name__, name)
            assert key in registries, (key, "add it to this table")
            assert tuple(opt.choice_list()) == tuple(registries[key]), key
            seen.add(key)
    assert seen == set(registries)


def test_every_extraction_option_of_ser_extract_is_an_experiment_key():
    """verify_cache, dask, shards and keep_shards were missing from files (issue 20)."""
    from ssl_ser.extract.settings import ExtractSettings
    from ssl_ser.settings import option_of

    data = {**MINIMAL, "extract": {"verify_cache": False, "dask": "local", "shards": 2}}
    experiment = experiment_from_dict(data)
    assert experiment.extract.verify_cache is False
    assert (experiment.extract.dask, experiment.extract.shards) == ("local", 2)
    file_only_cli = {
        n for n in ExtractSettings.model_fields if not option_of(ExtractSettings, n).file
    }
    assert file_only_cli == {"root", "shard"}  # a single input and one shard of many: CLI only
    with pytest.raises(ConfigError, match="key 'shard' .* command line only \\(--shard\\)"):
        experiment_from_dict({**MINIMAL, "extract": {"shard": "1/2"}})


def test_an_experiment_with_extract_dask_extracts_on_the_cluster(tmp_path, monkeypatch):
    from ssl_ser.extract import cluster
    from ssl_ser.extract.settings import ExtractSettings

    calls = []
    monkeypatch.setattr(cluster, "extract_on_dask", lambda *a, **k: calls.append(k) or [])
    settings = ExtractSettings(dask="local", shards=3, workers=0, verify_cache=False)
    assert settings.run("rows", "config", tmp_path, ["clean"], progress=False) == []
    assert calls[0]["address"] == "local" and calls[0]["shards_count"] == 3
    assert calls[0]["verify_cache"] is False and "shard" not in calls[0]
