"""The extraction runner end to end: cache contents, resume, failures, keys, locks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from ssl_ser import audio, cache
from ssl_ser.errors import CacheKeyMismatchError, CacheLockedError, ConfigError
from ssl_ser.extract import ExtractorConfig, extract
from ssl_ser.extract.runner import cache_key, progress_total
from ssl_ser.testing import write_garbage

from .helpers import lengths, make_manifest, save_waveform_model

FLOAT16_TOLERANCE = 2e-3


def reference(folder, rows, condition="clean") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """utt_id -> (mean, std) of shape (states, dim) from plain per-utterance forward passes."""
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    out = {}
    for _, row in rows.iterrows():
        wave = audio.load_utterance(row, condition)
        inputs = extractor(wave, sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            states = model(inputs["input_values"], output_hidden_states=True).hidden_states
        frames = np.stack([s[0].numpy() for s in states])
        out[row.utt_id] = (frames.mean(axis=1), frames.std(axis=1))
    return out


def assert_close(actual: np.ndarray, expected: np.ndarray, tolerance=FLOAT16_TOLERANCE) -> None:
    scale = np.abs(expected).max()
    assert np.abs(actual - expected).max() <= tolerance * scale


@pytest.fixture
def toy(tmp_path, model_dirs):
    table = make_manifest(tmp_path / "audio", lengths(7))
    return table, model_dirs["wav2vec2-group"], tmp_path / "cache"


def test_cache_holds_every_layer_equal_to_a_direct_forward_pass(toy):
    table, folder, cache_dir = toy
    config = ExtractorConfig(model=str(folder))
    (summary,) = extract(table, config, cache_dir, workers=1, batch_seconds=2.5)
    assert summary.path == cache_dir / config.slug() / "toy" / "clean.h5"
    assert (summary.extracted, summary.already_done, summary.failed) == (7, 0, [])
    assert summary.audio_seconds == pytest.approx(table["duration"].sum(), abs=1e-3)
    assert summary.layers == 3 and "7 utterances" in summary.line()
    with cache.open(summary.path) as reader:
        check_contents(reader, table, folder)


def check_contents(reader, table, folder) -> None:
    assert sorted(reader.ids) == sorted(table["utt_id"])
    assert reader.layers == ["0", "1", "2"] and reader.poolings == ["mean", "std"]
    assert reader.key["model_type"] == "wav2vec2"
    # the helper marks its random weights, and the revision says so
    assert reader.key["revision"].startswith("untrained:local:")
    for utt_id, (mean, std) in reference(folder, table).items():
        assert_close(reader.read_rows([utt_id], "mean")[0], mean)
        assert_close(reader.read_rows([utt_id], "std")[0], std)


def test_batch_size_and_workers_do_not_change_results(toy):
    table, folder, cache_dir = toy
    config = ExtractorConfig(model=str(folder))
    (one,) = extract(table, config, cache_dir / "a", workers=0, batch_seconds=0.1)
    (many,) = extract(table, config, cache_dir / "b", workers=2, batch_seconds=100)
    ids = sorted(table["utt_id"])
    with cache.open(one.path) as a, cache.open(many.path) as b:
        for pooling in ("mean", "std"):
            assert_close(a.read_rows(ids, pooling), b.read_rows(ids, pooling), 1e-3)


def test_rerun_after_manifest_change_extracts_only_new_rows(toy):
    table, folder, cache_dir = toy
    config = ExtractorConfig(model=str(folder))
    (first,) = extract(table.iloc[:4], config, cache_dir, workers=0)
    assert first.extracted == 4
    with cache.open(first.path) as reader:
        before = reader.read_rows(table["utt_id"][:4], "mean")
    (second,) = extract(table, config, cache_dir, workers=0)
    assert (second.extracted, second.already_done) == (3, 4)
    with cache.open(second.path) as reader:
        assert sorted(reader.ids) == sorted(table["utt_id"])
        np.testing.assert_array_equal(reader.read_rows(table["utt_id"][:4], "mean"), before)
    (third,) = extract(table.iloc[2:], config, cache_dir, workers=0)
    assert (third.extracted, third.already_done) == (0, 5)
    with cache.open(third.path) as reader:
        assert len(reader.ids) == 7  # rows of the smaller manifest are not dropped


def test_bad_audio_is_reported_and_the_rest_completes(toy):
    table, folder, cache_dir = toy
    write_garbage(table.loc[2, "path"])
    missing = table.loc[4, "path"]
    table.loc[4, "path"] = missing + ".gone.wav"
    (summary,) = extract(table, ExtractorConfig(model=str(folder)), cache_dir, workers=1)
    failed = dict(summary.failed)
    assert sorted(failed) == sorted(table["utt_id"][[2, 4]])
    assert "unreadable" in failed[table.loc[2, "utt_id"]]
    assert "does not exist" in failed[table.loc[4, "utt_id"]]
    assert summary.extracted == 5 and "2 failed" in summary.line()
    with cache.open(summary.path) as reader:
        assert len(reader.ids) == 5
        assert sorted(reader.failures["utt_id"]) == sorted(failed)


def test_too_short_audio_is_reported(tmp_path, model_dirs):
    table = make_manifest(tmp_path / "audio", [0.001, 0.5])
    (summary,) = extract(table, ExtractorConfig(model=str(model_dirs["hubert"])), tmp_path / "c")
    assert [utt for utt, _ in summary.failed] == ["toy/utt000"]
    assert "too short" in summary.failed[0][1]


def test_a_different_key_on_the_same_file_is_refused(toy, tmp_path):
    table, _, cache_dir = toy
    folder = save_waveform_model("wav2vec2-layer", tmp_path / "model", seed=0)
    config = ExtractorConfig(model=str(folder))
    extract(table.iloc[:2], config, cache_dir, "telephone", workers=0)
    # same path (same config, corpus, condition), other condition parameters
    with pytest.raises(CacheKeyMismatchError, match="condition_params"):
        extract(table.iloc[:2], config, cache_dir, "telephone", telephone_source="folder")
    # same folder, other weights: the revision fingerprint differs
    save_waveform_model("wav2vec2-layer", folder, seed=1)
    with pytest.raises(CacheKeyMismatchError, match="revision"):
        extract(table.iloc[:2], config, cache_dir, "telephone", workers=0)


def test_key_names_what_changes_results_and_not_what_does_not(model_dirs):
    from ssl_ser.extract.backbones import load_backbone

    config = ExtractorConfig(model=str(model_dirs["hubert"]))
    backbone = load_backbone(config, "cpu")
    clean = cache_key(backbone.identity, config, "clean", "derived")
    assert cache_key(backbone.identity, config, "clean", "folder") == clean
    assert cache_key(backbone.identity, config, "telephone", "derived") != clean
    for field in ("model", "revision", "config_digest", "sample_rate", "condition_params", "dtype"):
        assert field in clean
    assert not {"device", "batch_seconds", "workers"} & set(clean)


def test_a_second_writer_is_refused(toy):
    table, folder, cache_dir = toy
    config = ExtractorConfig(model=str(folder))
    (summary,) = extract(table.iloc[:1], config, cache_dir, workers=0)
    with cache.open(summary.path) as reader:
        key = reader.key
    with cache.CacheWriter(summary.path, key, ["0", "1", "2"], 32), pytest.raises(CacheLockedError):
        extract(table, config, cache_dir, workers=0)


def test_one_cache_file_per_corpus(tmp_path, model_dirs):
    import pandas as pd

    table = pd.concat(
        [
            make_manifest(tmp_path / "a", [0.4, 0.6], corpus="alpha"),
            make_manifest(tmp_path / "b", [0.5], corpus="beta"),
        ],
        ignore_index=True,
    )
    summaries = extract(table, ExtractorConfig(model=str(model_dirs["hubert"])), tmp_path / "c")
    assert [(s.corpus, s.extracted, s.path.parent.name) for s in summaries] == [
        ("alpha", 2, "alpha"),
        ("beta", 1, "beta"),
    ]


def test_the_model_loads_once_and_each_file_is_read_once(tmp_path, model_dirs, monkeypatch):
    import pandas as pd

    from ssl_ser.extract import runner

    loads, reads = [], []
    load_backbone, load_utterance = runner.load_backbone, audio.load_utterance
    monkeypatch.setattr(runner, "load_backbone", lambda *a: loads.append(a) or load_backbone(*a))
    monkeypatch.setattr(
        audio,
        "load_utterance",
        lambda row, *a: reads.append(row["utt_id"]) or load_utterance(row, *a),
    )
    table = pd.concat(
        [
            make_manifest(tmp_path / "a", [0.4, 0.6, 1.3], corpus="alpha"),
            make_manifest(tmp_path / "b", [0.5, 0.9], corpus="beta"),
        ],
        ignore_index=True,
    )
    config = ExtractorConfig(model=str(model_dirs["hubert"]), max_seconds=0.5)
    summaries = extract(table, config, tmp_path / "c", workers=0, batch_seconds=0.6)
    assert len(summaries) == 2 and len(loads) == 1
    assert sorted(reads) == sorted(table["utt_id"])  # windowed and multi-batch: still one read


def test_bad_options_fail_before_the_model_loads(toy):
    table, folder, cache_dir = toy
    config = ExtractorConfig(model=str(folder))
    with pytest.raises(ConfigError, match="batch seconds"):
        extract(table, config, cache_dir, batch_seconds=0)
    with pytest.raises(ConfigError, match="workers"):
        extract(table, config, cache_dir, workers=-1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(toy):
    table, folder, cache_dir = toy
    with pytest.raises(ConfigError, match="CUDA is not available"):
        extract(table, ExtractorConfig(model=str(folder)), cache_dir, device="cuda:0")


def test_out_of_memory_names_the_batch_and_what_to_lower(toy, monkeypatch):
    from ssl_ser.extract.backbones import WaveformBackbone

    def exhausted(self, segments):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    table, folder, cache_dir = toy
    monkeypatch.setattr(WaveformBackbone, "run", exhausted)
    with pytest.raises(ConfigError, match="out of memory") as caught:
        extract(table, ExtractorConfig(model=str(folder)), cache_dir, batch_seconds=2, workers=0)
    message = str(caught.value)
    assert "--batch-seconds (now 2)" in message and "toy/utt" in message


def test_whisper_encoder_end_to_end_with_long_audio_windows(tmp_path, model_dirs):
    table = make_manifest(tmp_path / "audio", [0.6, 1.1])
    config = ExtractorConfig(model=str(model_dirs["whisper"]), max_seconds=0.5)
    (summary,) = extract(table, config, tmp_path / "cache", workers=0)
    assert summary.extracted == 2 and summary.layers == 3
    with cache.open(summary.path) as reader:
        assert reader.shape == (2, 3, 32) and reader.key["model_type"] == "whisper"
        assert np.isfinite(reader.read_rows(reader.ids, "std")).all()


def test_several_conditions_share_one_model_load(toy, monkeypatch):
    from ssl_ser.extract import runner

    table, folder, cache_dir = toy
    loads = []
    load_backbone = runner.load_backbone
    monkeypatch.setattr(runner, "load_backbone", lambda *a: loads.append(a) or load_backbone(*a))
    config = ExtractorConfig(model=str(folder))
    both = extract(table, config, cache_dir / "both", ["clean", "telephone"], workers=0)
    assert len(loads) == 1
    assert [s.condition for s in both] == ["clean", "telephone"]
    (alone,) = extract(table, config, cache_dir / "alone", "telephone", workers=0)
    with cache.open(both[1].path) as joint, cache.open(alone.path) as single:
        assert joint.key == single.key
        np.testing.assert_array_equal(joint.read(1), single.read(1))


def test_the_progress_bar_reaches_its_total_without_a_clamping_warning(tmp_path):
    import warnings

    from tqdm import TqdmWarning

    # lengths whose per-batch sums, added in batch order, exceed np.sum of them by 1 ulp
    table = make_manifest(tmp_path / "audio", [0.59, 0.68, 0.53, 0.85])
    durations = table["duration"].to_numpy(dtype=float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (summary,) = extract(
            table,
            ExtractorConfig(model="mfcc"),
            tmp_path / "c",
            workers=0,
            batch_seconds=0.5,
            progress=True,
        )
    assert summary.extracted == 4
    assert not [w for w in caught if issubclass(w.category, TqdmWarning)], [
        str(w.message) for w in caught
    ]
    assert progress_total(list(durations)) == pytest.approx(float(durations.sum()), abs=1e-9)


def write_float_wav(path, samples, rate=16000):
    """A float WAV (which, unlike PCM, can hold NaN and inf)."""
    import soundfile as sf

    sf.write(path, np.asarray(samples, dtype=np.float32), rate, subtype="FLOAT")


@pytest.mark.parametrize("model", ["mfcc", "egemaps", "hubert"])
def test_non_finite_audio_is_a_recorded_failure_and_the_rest_completes(tmp_path, model_dirs, model):
    table = make_manifest(tmp_path / "audio", [0.5, 0.5, 0.5])
    wave = np.sin(np.linspace(0, 400, 8000)).astype(np.float32)
    wave[4000] = np.nan
    write_float_wav(table.loc[0, "path"], wave)
    wave[4000] = np.inf
    write_float_wav(table.loc[1, "path"], wave)
    name = str(model_dirs["hubert"]) if model == "hubert" else model
    config = ExtractorConfig.for_model(name)
    (summary,) = extract(table, config, tmp_path / "c", workers=0)
    failed = dict(summary.failed)
    assert sorted(failed) == sorted(table["utt_id"][[0, 1]]) and summary.extracted == 1
    assert "1 non-finite sample(s) (NaN or inf), the first at 0.250 s" in failed["toy/utt000"]
    with cache.open(summary.path) as reader:
        assert reader.ids == ["toy/utt002"]
        assert np.isfinite(reader.read_rows(reader.ids)).all()
    (again,) = extract(table, config, tmp_path / "c", workers=0, retry_failed=True)
    assert len(again.failed) == 2  # a re-run records the same two and does not stop


def test_egemaps_on_audio_under_60_ms_is_reported_too_short(tmp_path):
    table = make_manifest(tmp_path / "audio", [0.031, 0.059, 0.06, 0.5])
    (summary,) = extract(table, ExtractorConfig.for_model("egemaps"), tmp_path / "c", workers=0)
    failed = dict(summary.failed)
    assert sorted(failed) == ["toy/utt000", "toy/utt001"]
    assert "audio too short (0.0310 s); the model needs 0.0600 s" in failed["toy/utt000"]
    with cache.open(summary.path) as reader:
        assert sorted(reader.ids) == ["toy/utt002", "toy/utt003"]
        assert np.isfinite(reader.read_rows(reader.ids)).all()


def test_audio_truncated_since_prepare_is_a_recorded_failure(tmp_path):
    table = make_manifest(tmp_path / "audio", [0.5, 0.5, 0.5])
    path = table.loc[1, "path"]
    with open(path, "r+b") as handle:  # keep the header, cut the samples: 28 of 8000 left
        handle.truncate(100)
    (summary,) = extract(table, ExtractorConfig.for_model("mfcc"), tmp_path / "c", workers=0)
    failed = dict(summary.failed)
    assert list(failed) == ["toy/utt001"] and summary.extracted == 2
    assert "but the manifest says 0.500 s: the file is truncated or changed" in failed["toy/utt001"]
    telephone = extract(table, ExtractorConfig.for_model("egemaps"), tmp_path / "c", "telephone")
    assert [u for u, _ in telephone[0].failed] == ["toy/utt001"]  # at the chain's own 8 kHz too


def test_failed_rows_are_not_retried_by_default_anywhere(tmp_path):
    import inspect

    from click.testing import CliRunner

    from ssl_ser.cli.main import cli
    from ssl_ser.extract.config import RETRY_FAILED
    from ssl_ser.pipelines.experiment import ExtractSettings

    assert RETRY_FAILED is False
    assert inspect.signature(extract).parameters["retry_failed"].default is RETRY_FAILED
    assert ExtractSettings().retry_failed is RETRY_FAILED
    table = make_manifest(tmp_path / "audio", [0.5, 0.5])
    write_garbage(table.loc[0, "path"])
    config = ExtractorConfig.for_model("mfcc")
    (first,) = extract(table, config, tmp_path / "c", workers=0)
    (again,) = extract(table, config, tmp_path / "c", workers=0)
    assert len(first.failed) == 1 and again.failed == [] and again.extracted == 0
    manifest_csv = tmp_path / "m.csv"
    table.to_csv(manifest_csv, index=False)
    args = ["extract", str(manifest_csv), "--model", "mfcc", "--cache-dir", str(tmp_path / "c")]
    retried = CliRunner().invoke(cli, [*args, "--workers", "0", "--retry-failed", "--no-progress"])
    assert retried.exit_code == 0 and "1 failed" in retried.output, retried.output


def test_a_missing_file_that_appears_later_is_extracted_then(tmp_path):
    import shutil

    table = make_manifest(tmp_path / "audio", [0.5, 0.5, 0.5])
    path = table.loc[2, "path"]
    shutil.move(path, tmp_path / "aside.wav")
    config = ExtractorConfig.for_model("mfcc")
    (first,) = extract(table, config, tmp_path / "c", workers=0)
    assert [u for u, _ in first.failed] == ["toy/utt002"] and "does not exist" in first.failed[0][1]
    (unchanged,) = extract(table, config, tmp_path / "c", workers=0)
    assert unchanged.extracted == 0 and unchanged.failed == []  # still absent: not retried
    shutil.move(tmp_path / "aside.wav", path)
    (again,) = extract(table, config, tmp_path / "c", workers=0)
    assert again.extracted == 1 and again.failed == [] and again.changed == 1
