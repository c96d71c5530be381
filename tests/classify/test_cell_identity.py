"""A results cell knows what features it used; stale features are refused at classify.

Issue 9, point 3: after a cache was deleted and extracted again from new audio,
``ser classify`` into the same output skipped every cell as done and reported
the old UA. Cells are now keyed by the features' content (the audio digests of
the cache rows), cells of other content of the same caches are moved aside, and
a cache whose manifest audio changed since extraction is refused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ssl_ser import manifest
from ssl_ser.cache import layout
from ssl_ser.classify.dataset import build_datasets
from ssl_ser.classify.features import CacheFeatures, InMemoryFeatures
from ssl_ser.cli.main import cli
from ssl_ser.errors import CacheError
from ssl_ser.extract import ExtractorConfig
from ssl_ser.extract import extract as extract_api
from ssl_ser.testing import write_wav, written_duration

from .conftest import corpus, relabel

N_UTTS = 24
RATE = 16000


def write_corpus(folder, variant: str) -> pd.DataFrame:
    """24 utterances of 4 speakers, angry or neutral, under the same names and lengths.

    Variant ``a``: the emotion sets the pitch (easy to classify); ``b``: other
    audio whose pitch has nothing to do with the emotion.
    """
    rows = []
    for i in range(N_UTTS):
        emotion = ("angry", "neutral")[(i // 4) % 2]
        seconds = 0.3 + 0.02 * (i % 3)
        if variant == "a":
            frequency, seed = (650.0 if emotion == "angry" else 140.0) + 5 * (i % 4), i
        else:
            frequency, seed = 140.0 + 510.0 * ((i * 7) % 5) / 4, 100 + i
        path = write_wav(folder / f"u{i:02d}.wav", seconds, RATE, frequency, seed=seed)
        rows.append(
            {
                "utt_id": f"toy/u{i:02d}",
                "corpus": "toy",
                "path": str(path),
                "speaker": f"toy/s{i % 4}",
                "gender": "F" if i % 2 else "M",
                "language": "deu",
                "emotion": emotion,
                "emotion_raw": emotion,
                "duration": written_duration(seconds, RATE),
                "sample_rate": RATE,
                "text": "",
                "split": "",
            }
        )
    return manifest.validate(pd.DataFrame(rows))


def ser(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def toy(tmp_path):
    table = write_corpus(tmp_path / "audio", "a")
    csv = manifest.write(table, tmp_path / "toy.csv")
    cache_dir = tmp_path / "cache"
    path = cache_dir / ExtractorConfig(model="mfcc").slug() / "toy" / "clean.h5"
    return tmp_path, csv, cache_dir, path


def extract(csv, cache_dir):
    result = ser("extract", csv, "--model", "mfcc", "--cache-dir", cache_dir, "--workers", 0)
    assert result.exit_code == 0, result.output
    return result


def classify(path, csv, output):
    options = ["--layers", "all", "--classifiers", "logreg", "--folds", 2, "--bootstrap", 10]
    return ser("classify", "--cache", path, "--manifest", csv, *options, "--threads", 1,
               "--output", output, "--no-progress")  # fmt: skip


def results(output) -> pd.DataFrame:
    table = pd.read_parquet(output / "results.parquet")
    return table.sort_values(["cell_id", "test_corpus"]).reset_index(drop=True)


def test_a_cache_rebuilt_from_other_audio_never_reuses_cells(toy):
    tmp_path, csv, cache_dir, path = toy
    extract(csv, cache_dir)
    first = classify(path, csv, tmp_path / "out")
    assert first.exit_code == 0, first.output
    n_cells = results(tmp_path / "out")["cell_id"].nunique()
    old_ua = results(tmp_path / "out")["ua"].to_numpy()
    shutil.rmtree(cache_dir)
    write_corpus(tmp_path / "audio", "b")  # other audio, same names, same manifest
    extract(csv, cache_dir)
    rebuilt = classify(path, csv, tmp_path / "out")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert f"{n_cells} cell(s) run, 0 already done" in rebuilt.output
    fresh = classify(path, csv, tmp_path / "fresh")
    assert fresh.exit_code == 0, fresh.output
    reused, expected = results(tmp_path / "out"), results(tmp_path / "fresh")
    timings = [c for c in expected.columns if c.endswith("seconds")]
    pd.testing.assert_frame_equal(reused.drop(columns=timings), expected.drop(columns=timings))
    assert not np.allclose(reused["ua"].to_numpy(), old_ua)
    superseded = tmp_path / "out" / "cells" / "superseded"
    assert len(list(superseded.glob("*.json"))) == n_cells
    # rebuilt again from the same audio: the same features, every cell reused
    shutil.rmtree(cache_dir)
    extract(csv, cache_dir)
    again = classify(path, csv, tmp_path / "out")
    assert f"0 cell(s) run, {n_cells} already done" in again.output


def test_classify_refuses_a_cache_whose_audio_changed_since_extraction(toy):
    tmp_path, csv, cache_dir, path = toy
    extract(csv, cache_dir)
    audio = tmp_path / "audio" / "u03.wav"
    info = os.stat(audio)
    os.utime(audio, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))  # only touched
    refused = classify(path, csv, tmp_path / "out")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "the audio of 1 of 24 utterance(s) changed since their features were" in refused.output
    assert "toy/u03" in refused.output and "run `ser extract`" in refused.output
    assert not (tmp_path / "out" / "results.parquet").exists()
    touched = extract(csv, cache_dir)  # same content: kept, its new time recorded
    assert "0 utterances" in touched.output
    assert classify(path, csv, tmp_path / "out").exit_code == 0
    write_wav(audio, 0.34, RATE, 900.0, seed=7)  # new content under the same name
    os.utime(audio, ns=(info.st_atime_ns, info.st_mtime_ns + 4_000_000_000))
    assert classify(path, csv, tmp_path / "out").exit_code == 1
    table = manifest.read(csv)
    table.loc[table["utt_id"] == "toy/u03", "duration"] = written_duration(0.34, RATE)
    manifest.write(table, csv)
    changed = extract(csv, cache_dir)
    assert "1 utterances" in changed.output and "1 changed since extraction" in changed.output
    assert classify(path, csv, tmp_path / "out").exit_code == 0


def test_in_memory_features_are_identified_by_their_values():
    table, features = corpus("alpha", n_utts=40, n_speakers=4, seed=0)
    same = InMemoryFeatures(features.ids, features.layers, features.arrays, features.key)
    changed_arrays = {p: a.copy() for p, a in features.arrays.items()}
    changed_arrays["mean"][5, 2, 3] += 1.0
    changed = InMemoryFeatures(features.ids, features.layers, changed_arrays, features.key)
    digests = [build_datasets([f], table, "basic4")[0].digest() for f in (features, same, changed)]
    assert digests[0] == digests[1] != digests[2]


def test_the_stat_check_follows_the_ready_telephone_copy(tmp_path):
    table = write_corpus(tmp_path / "audio", "a")
    for i in range(N_UTTS):
        copy = write_wav(tmp_path / "tel" / f"{i:02d}.wav", 0.3, 8000, 300.0 + i, seed=i)
        table.loc[i, "telephone_path"] = str(copy)
    (summary,) = extract_api(
        table, ExtractorConfig(model="mfcc"), tmp_path / "cache", "telephone",
        telephone_source="folder", workers=0,
    )  # fmt: skip
    source = CacheFeatures(summary.path)
    touch(table.loc[0, "path"])  # not what this cache was extracted from
    build_datasets([source], table, "angry,neutral")
    touch(table.loc[5, "telephone_path"])
    with pytest.raises(CacheError, match=r"the audio of 1 of 24 .*toy/u05"):
        build_datasets([source], table, "angry,neutral")


def test_a_cache_without_fingerprints_is_identified_by_its_values(tmp_path, caplog):
    table = write_corpus(tmp_path / "audio", "a")
    digests = []
    for variant in ("a", "b"):
        write_corpus(tmp_path / "audio", variant)
        (summary,) = extract_api(
            table, ExtractorConfig(model="mfcc"), tmp_path / variant, workers=0
        )
        with h5py.File(summary.path, "r+") as file:  # as ssl-ser built caches before
            del file[layout.FINGERPRINT]
        with caplog.at_level(logging.WARNING, logger="ssl_ser.classify.dataset"):
            (dataset,) = build_datasets([CacheFeatures(summary.path)], table, "angry,neutral")
        digests.append(dataset.digest())
    assert "was extracted before ssl-ser recorded audio fingerprints" in caplog.text
    assert digests[0] != digests[1]


def touch(path) -> None:
    info = os.stat(path)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 3_000_000_000))


# Cell ids of this single-cache sweep as ssl-ser computed them before cells were keyed
# by the caches they read (issue 20): a single-cache folder keeps its ids.
PINNED_SINGLE_CACHE_IDS = ["006e93f7186f6f2d", "24423b5f4ac85953", "4a2ac3ae28c14678",
                           "a9a3beb2f222180f"]  # fmt: skip


def _cell_ids(sources, table, output) -> dict[tuple[str, str], list[str]]:
    from ssl_ser.classify.splits import SplitOptions
    from ssl_ser.classify.sweep import SweepConfig, run_sweep_cells

    config = SweepConfig(
        labels="basic4",
        classifiers=("logreg",),
        layers=("0", "2"),
        split="speaker-kfold",
        split_options=SplitOptions(folds=2, seed=0),
        jobs=1,
    )
    run_sweep_cells(sources, table, config, output)
    ids: dict[tuple[str, str], list[str]] = {}
    for path in sorted((output / "cells").glob("*.json")):
        row = json.loads(path.read_text())[0]
        ids.setdefault((row["train_condition"], row["test_condition"]), []).append(row["cell_id"])
    return {k: sorted(v) for k, v in ids.items()}


def test_a_cells_id_depends_on_the_caches_it_reads_only(tmp_path):
    """Clean cells are the same cells whether or not a telephone cache is passed too."""
    table, clean = corpus("alpha", n_utts=48, n_speakers=4, seed=0)
    telephone = relabel(clean, condition="telephone")
    alone = _cell_ids([clean], table, tmp_path / "alone")
    both = _cell_ids([clean, telephone], table, tmp_path / "both")
    assert alone == {("clean", "clean"): PINNED_SINGLE_CACHE_IDS}
    assert both[("clean", "clean")] == PINNED_SINGLE_CACHE_IDS
    assert set(both) == {("clean", "clean"), ("telephone", "telephone")}
    assert not set(both[("telephone", "telephone")]) & set(PINNED_SINGLE_CACHE_IDS)


@pytest.mark.slow
def test_report_takes_two_folders_of_the_same_clean_cells(tmp_path):
    """A clean-only folder and a clean+telephone folder share their clean cells: no refusal."""
    from ssl_ser.classify.results import CellStore, write_tables

    table, clean = corpus("alpha", n_utts=48, n_speakers=4, seed=0)
    _cell_ids([clean], table, tmp_path / "clean")
    _cell_ids([clean, relabel(clean, condition="telephone")], table, tmp_path / "both")
    for name in ("clean", "both"):
        write_tables(CellStore(tmp_path / name), n_boot=0, seed=0)
    out = tmp_path / "report.html"
    result = ser("report", tmp_path / "clean", tmp_path / "both", "-o", out, "--bootstrap", 0,
                 "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "4 result row(s) appear in both" in markdown and "identical numbers" in markdown


def test_classify_refuses_rows_whose_paths_were_exchanged_in_the_manifest(toy):
    """Issue 19: equal size and time passed the stat; the path bound in the fingerprint does not."""
    tmp_path, csv, cache_dir, path = toy
    table = manifest.read(csv)
    u00, u03 = table.loc[0, "path"], table.loc[3, "path"]
    assert os.stat(u00).st_size == os.stat(u03).st_size  # both 0.30 s long
    stamp = os.stat(u00).st_mtime_ns
    for audio in (u00, u03):
        os.utime(audio, ns=(stamp, stamp))
    extract(csv, cache_dir)
    swapped = table.copy()
    swapped.loc[[0, 3], "path"] = [u03, u00]
    swapped_csv = manifest.write(swapped, tmp_path / "swapped.csv")
    refused = classify(path, swapped_csv, tmp_path / "out")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "the audio of 2 of 24 utterance(s) changed since their features were" in refused.output
    assert f"toy/u00 ({u03}: not the file it was extracted from)" in refused.output
    assert not (tmp_path / "out" / "results.parquet").exists()
    redone = extract(swapped_csv, cache_dir)
    assert "2 changed since extraction" in redone.output
    assert classify(path, swapped_csv, tmp_path / "out").exit_code == 0
