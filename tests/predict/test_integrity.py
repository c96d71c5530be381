"""Sealed saved models: each file of a probe bundle or fine-tuned folder damaged in turn is refused.

Each damage (an edit, a truncation, a swap, a removal, an extra file) must make
``ser predict`` stop with one line naming the file (exit 1, no traceback) and
write no predictions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ssl_ser import predict
from ssl_ser.classify.features import CacheFeatures
from ssl_ser.classify.splits import SplitOptions
from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError
from ssl_ser.extract.config import ExtractorConfig
from ssl_ser.extract.runner import extract
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.run import RunOptions, run_finetune
from ssl_ser.predict import integrity
from ssl_ser.predict.export import export_probe
from ssl_ser.testing import write_wav

PROBES = ("logreg", "linear", "xgb-fast")
FINETUNES = ("finetuned", "lora")
SAVED = (*PROBES, *(pytest.param(kind, marks=pytest.mark.slow) for kind in FINETUNES))
OPERATIONS = ("edit", "truncate", "swap", "remove")


@pytest.fixture(scope="module")
def cache(corpus_manifest, tiny_model, tmp_path_factory) -> CacheFeatures:
    folder = tmp_path_factory.mktemp("integrity-cache")
    (summary,) = extract(
        corpus_manifest, ExtractorConfig(str(tiny_model)), folder, device="cpu", workers=0
    )
    return CacheFeatures(summary.path)


def finetuned_folder(manifest, model, output: Path, **fields) -> Path:
    """One fold fine-tuned for one epoch; its saved model folder."""
    config = FinetuneConfig(
        model=str(model), epochs=1, learning_rate=1e-3, batch_seconds=8.0, patience=None, **fields
    )
    settings = RunOptions(
        split="speaker", split_options=SplitOptions(), device="cpu", workers=0, bootstrap=20
    )
    run_finetune(manifest, config, settings, output)
    return sorted((output / "models").iterdir())[0]


@pytest.fixture(scope="module")
def probes(cache, corpus_manifest, tmp_path_factory) -> dict[str, Path]:
    """Probe bundles of the three storage kinds (skops; + safetensors head; + xgboost JSON)."""
    root = tmp_path_factory.mktemp("probes")
    return {
        classifier: export_probe(
            [cache], corpus_manifest, root / classifier, classifier=classifier, layers="1"
        ).folder
        for classifier in PROBES
    }


@pytest.fixture(scope="module")
def finetunes(corpus_manifest, tiny_model, tmp_path_factory) -> dict[str, Path]:
    """A full fine-tune (backbone/ folder, weighted layers, mlp head) and a LoRA one."""
    root = tmp_path_factory.mktemp("finetunes")
    return {
        "finetuned": finetuned_folder(
            corpus_manifest, tiny_model, root / "ft", weighted_layers=True, head="mlp"
        ),
        "lora": finetuned_folder(
            corpus_manifest, tiny_model, root / "lora", adapter="lora", lora_rank=2
        ),
    }


def saved_folder(request, kind: str) -> Path:
    """The saved folder of `kind` (fine-tuning only for the kinds that need it)."""
    return request.getfixturevalue("finetunes" if kind in FINETUNES else "probes")[kind]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_wav(tmp_path_factory.mktemp("clip") / "clip.wav", seconds=1.0, sample_rate=16000)


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def files_of(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def damage(folder: Path, name: str, operation: str) -> list[Path]:
    """Apply one damage to one file of `folder`; the files it touched."""
    path = folder / name
    data = path.read_bytes()
    if operation == "edit":  # one byte changed, same size
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :])
    elif operation == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif operation == "swap":  # exchanged with the next file of the folder
        names = files_of(folder)
        other = folder / names[(names.index(name) + 1) % len(names)]
        path.write_bytes(other.read_bytes())
        other.write_bytes(data)
        return [path, other]
    else:
        path.unlink()
    return [path]


def refused(folder: Path, clip: Path, tmp_path: Path) -> str:
    """The one error line of `ser predict` on `folder` (asserting exit 1 and no predictions)."""
    out = tmp_path / "predictions.csv"
    result = CliRunner().invoke(
        cli, ["predict", str(folder), str(clip), "--device", "cpu", "--output", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert not out.exists()
    return lines[0]


EXPECTED = {
    "edit": "differs from the file that was saved (sha256 mismatch): edited or swapped",
    "truncate": "were saved: truncated or replaced; refused",
    "remove": "is missing (integrity.json lists it): the saved model is incomplete",
}
RECORD_EXPECTED = {  # a changed byte may leave valid JSON: then its own digest tells
    "edit": ("integrity.json is damaged", "integrity.json was edited after saving"),
    "truncate": ("integrity.json is damaged",),
    "swap": ("integrity.json is damaged",),
    "remove": ("has no integrity.json: it was saved by an ssl-ser without integrity records",),
}


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("kind", SAVED)
def test_every_file_damaged_in_turn_is_refused_naming_it(kind, operation, request, clip, tmp_path):
    source = saved_folder(request, kind)
    names = files_of(source)
    assert integrity.INTEGRITY_FILE in names and len(names) >= 3
    for name in names:
        folder = copy_of(source, tmp_path / name.replace("/", "_"))
        touched = damage(folder, name, operation)
        line = refused(folder, clip, tmp_path)
        record = folder / integrity.INTEGRITY_FILE
        if record in touched:
            assert any(text in line for text in RECORD_EXPECTED[operation]), line
            continue
        if operation == "swap":  # the first of the two swapped files is named
            assert "sha256 mismatch" in line or "truncated or replaced" in line, line
            assert any(f"{path} " in line for path in touched), line
            continue
        assert f"{folder / name} " in line and EXPECTED[operation] in line, line


@pytest.mark.parametrize("kind", SAVED)
def test_an_extra_file_is_refused(kind, request, clip, tmp_path):
    folder = copy_of(saved_folder(request, kind), tmp_path)
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "notes.txt").write_text("mine")
    line = refused(folder, clip, tmp_path)
    assert f"{folder / 'sub' / 'notes.txt'} is not part of the saved model" in line


def edit_json(path: Path, change) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content, indent=1, default=str))


def reversed_classes(content: dict) -> None:
    content["classes"] = content["classes"][::-1]


@pytest.mark.parametrize(
    ("kind", "file", "change"),
    [
        ("logreg", "bundle.json", reversed_classes),
        ("logreg", "bundle.json", lambda c: c.update(layers=["2"])),
        ("logreg", "bundle.json", lambda c: c.update(pooling="std")),
        pytest.param("finetuned", "labels.json", reversed_classes, marks=pytest.mark.slow),
        pytest.param(
            "finetuned",
            "labels.json",
            lambda c: c.update(classes=c["classes"][:-1]),
            marks=pytest.mark.slow,
        ),
    ],
    ids=["class-order", "layers", "pooling", "labels-order", "labels-missing-class"],
)
def test_edited_descriptions_are_refused(kind, file, change, request, clip, tmp_path):
    folder = copy_of(saved_folder(request, kind), tmp_path)
    edit_json(folder / file, change)
    line = refused(folder, clip, tmp_path)
    assert f"error: {folder / file} " in line
    assert "sha256 mismatch" in line or "truncated or replaced" in line


def reseal(folder: Path, outputs: dict | None = None) -> None:
    """Seal the files as they now are (a deliberate edit), with the old or given meaning."""
    record = integrity.read_record(folder)
    integrity.seal(folder, record.kind, outputs or record.outputs, record.audio)


def test_a_description_disagreeing_with_the_recorded_meaning_is_refused(probes, tmp_path):
    probe = copy_of(probes["logreg"], tmp_path)
    edit_json(probe / "bundle.json", reversed_classes)
    reseal(probe)
    with pytest.raises(ConfigError, match=r"bundle.json says classes \['neutral', 'sad',") as error:
        predict.load(probe, "cpu")
    assert "but the model was saved with classes ['angry', 'happy'," in str(error.value)


@pytest.mark.slow
def test_labels_disagreeing_with_the_recorded_meaning_are_refused(finetunes, tmp_path):
    folder = copy_of(finetunes["finetuned"], tmp_path)
    edit_json(folder / "labels.json", reversed_classes)
    reseal(folder)
    with pytest.raises(ConfigError, match=r"labels.json says classes \['neutral', 'sad',"):
        predict.load(folder, "cpu")


def test_a_description_lacking_a_recorded_field_is_refused(probes, tmp_path):
    probe = copy_of(probes["logreg"], tmp_path)
    edit_json(probe / "bundle.json", lambda c: c.pop("classes"))
    reseal(probe)
    with pytest.raises(
        ConfigError, match=r"bundle.json lacks 'classes', which the model was saved"
    ):
        predict.load(probe, "cpu")


def test_a_missing_class_sealed_anew_is_refused_by_the_classifier(probes, tmp_path):
    probe = copy_of(probes["logreg"], tmp_path)
    edit_json(probe / "bundle.json", lambda c: c.update(classes=c["classes"][:-1]))
    record = integrity.read_record(probe)
    reseal(probe, {**record.outputs, "classes": record.outputs["classes"][:-1]})
    with pytest.raises(ConfigError, match=r"class indices \[0, 1, 2, 3\], but bundle.json names 3"):
        predict.load(probe, "cpu")


@pytest.mark.slow
def test_a_missing_class_sealed_anew_is_refused_by_the_head(finetunes, tmp_path):
    folder = copy_of(finetunes["finetuned"], tmp_path)
    edit_json(folder / "labels.json", lambda c: c.update(classes=c["classes"][:-1]))
    record = integrity.read_record(folder)
    reseal(folder, {**record.outputs, "classes": record.outputs["classes"][:-1]})
    with pytest.raises(ConfigError, match=r"head.safetensors holds a head of shapes .* 3 classes"):
        predict.load(folder, "cpu")


def test_a_bundle_saved_without_a_record_is_refused_with_how_to_remake_it(probes, tmp_path):
    probe = copy_of(probes["logreg"], tmp_path)
    (probe / "integrity.json").unlink()
    with pytest.raises(ConfigError, match=r"has no integrity.json.*export it again \(`ser export"):
        predict.load(probe, "cpu")


@pytest.mark.slow
def test_a_model_folder_saved_without_a_record_is_refused(finetunes, tmp_path):
    folder = copy_of(finetunes["finetuned"], tmp_path)
    (folder / "integrity.json").unlink()
    with pytest.raises(ConfigError, match=r"train it again \(`ser finetune \.\.\. --force`"):
        predict.load(folder, "cpu")


@pytest.mark.slow
def test_the_record_lists_every_file_and_an_intact_folder_predicts(
    probes, finetunes, clip, tmp_path
):
    for kind, folder in {**probes, **finetunes}.items():
        record = integrity.verify(folder)
        listed = set(record.files) | {integrity.INTEGRITY_FILE}
        assert listed == set(files_of(folder)), kind
        for name, entry in record.files.items():
            assert entry["sha256"] == integrity.file_sha256(folder / name)
        assert record.outputs["classes"] == ["angry", "happy", "sad", "neutral"]
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(
        cli, ["predict", str(finetunes["lora"]), str(clip), "--device", "cpu", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_saving_replaces_a_saved_model_whole_and_never_other_files(
    cache, corpus_manifest, tmp_path
):
    folder = tmp_path / "b"
    export_probe([cache], corpus_manifest, folder, classifier="xgb-fast", layers="1")
    assert (folder / "booster.json").is_file()
    export_probe([cache], corpus_manifest, folder, classifier="logreg", layers="1")
    assert not (folder / "booster.json").exists()  # no stale file sealed with the new bundle
    integrity.verify(folder)
    other = tmp_path / "work"
    other.mkdir()
    (other / "results.csv").write_text("mine")
    with pytest.raises(ConfigError, match="holds files that are not a saved model"):
        export_probe([cache], corpus_manifest, other, classifier="logreg", layers="1")
    assert (other / "results.csv").read_text() == "mine"


def test_save_probe_into_the_results_or_a_folder_of_other_files_is_refused_first(
    cache, corpus_manifest, tmp_path
):
    manifest = tmp_path / "manifest.csv"
    corpus_manifest.to_csv(manifest, index=False)
    common = ["classify", "--cache", str(cache.path), "--manifest", str(manifest)]
    results = tmp_path / "r"
    same = CliRunner().invoke(
        cli, [*common, "--output", str(results), "--save-probe", str(results), "--no-progress"]
    )
    assert same.exit_code == 1
    assert same.stderr == (
        f"error: {results} is also the results folder; save the model into a folder of its own\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    other = CliRunner().invoke(
        cli, [*common, "--output", str(results), "--save-probe", str(work), "--no-progress"]
    )
    assert other.exit_code == 1 and "holds files that are not a saved model" in other.stderr
    assert not (results / "cells").exists()  # refused before any cell ran


@pytest.mark.parametrize("kind", ["linear", "xgb-fast"])
def test_a_damaged_file_under_a_rewritten_record_is_one_line_not_a_traceback(
    kind, request, clip, tmp_path
):
    folder = copy_of(saved_folder(request, kind), tmp_path)
    name = "head.safetensors" if kind == "linear" else "booster.json"
    damage(folder, name, "truncate")
    reseal(folder)
    line = refused(folder, clip, tmp_path)
    assert line.startswith(f"error: {folder} cannot be loaded (") and line.endswith("; refused")


def test_export_into_a_folder_of_other_files_is_refused_before_fitting(
    cache, corpus_manifest, tmp_path
):
    manifest = tmp_path / "manifest.csv"
    corpus_manifest.to_csv(manifest, index=False)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(
        cli,
        ["export", "--cache", str(cache.path), "--manifest", str(manifest)]
        + ["--output", str(tmp_path / "out")],
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {tmp_path / 'out'} holds files that are not a saved model; saving there "
        "would replace them: choose a new or empty folder\n"
    )
