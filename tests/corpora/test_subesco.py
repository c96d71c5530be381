"""SUBESCO reader against fixture trees whose expected rows come from the fixture."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ssl_ser.corpora import info, load, scan
from ssl_ser.errors import CorpusFileError
from ssl_ser.testing import subesco as fixture
from ssl_ser.testing import write_empty_wav, write_garbage, write_wav

COLUMNS = ["speaker", "gender", "language", "emotion", "emotion_raw", "text", "split"]


def assert_matches(manifest: pd.DataFrame, rows: list[dict], root: Path) -> None:
    expected = pd.DataFrame(rows).set_index("utt_id").sort_index()
    got = manifest.set_index("utt_id").sort_index()
    assert got.index.tolist() == expected.index.tolist()
    pd.testing.assert_frame_equal(got[COLUMNS], expected[COLUMNS], check_dtype=False)
    assert got["sample_rate"].tolist() == expected["sample_rate"].tolist()
    assert got["duration"].to_numpy() == pytest.approx(expected["duration"].to_numpy())
    assert got["path"].tolist() == [str(root.resolve() / p) for p in expected["relpath"]]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("subesco")
    fixture.make_tree(root)
    return root


def test_published_layout_matches_fixture(published: Path) -> None:
    result = scan("subesco", published)
    assert result.skipped.empty
    assert_matches(result.manifest, fixture.expected_rows("published"), published)
    assert set(result.manifest["sample_rate"]) == {44100, 48000}
    assert set(result.manifest["emotion"]) == set(info("subesco").emotions.values())


def test_flat_layout_pairs_telephone_copies(tmp_path: Path) -> None:
    fixture.make_tree(tmp_path, layout="flat")
    manifest = load("subesco", tmp_path)
    assert_matches(manifest, fixture.expected_rows("flat"), tmp_path)
    names = [Path(p).name for p in manifest["telephone_path"]]
    assert names == [Path(p).name for p in manifest["path"]]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("F_01_OISHI_S_1_EXCITED_1.wav", "unknown emotion code 'EXCITED'; expected one of ANGRY"),
        ("F01_OISHI_S_1_ANGRY_1.wav", "does not match the SUBESCO naming scheme"),
        ("X_01_OISHI_S_1_ANGRY_1.wav", "does not match the SUBESCO naming scheme"),
        ("F_01_OISHI_1_ANGRY_1.wav", "does not match the SUBESCO naming scheme"),
    ],
)
def test_bad_file_stops_the_scan_naming_it(tmp_path: Path, name: str, reason: str) -> None:
    write_wav(tmp_path / "F_02_MONIKA_S_1_NEUTRAL_5.wav", seconds=0.05, sample_rate=48000)
    write_wav(tmp_path / name, seconds=0.05)
    with pytest.raises(CorpusFileError) as error:
        scan("subesco", tmp_path)
    assert error.value.path.endswith(name)
    assert reason in error.value.reason
    assert name in str(error.value)


def test_skip_mode_accounts_for_every_audio_file(tmp_path: Path) -> None:
    fixture.make_tree(tmp_path)
    folder = tmp_path / "SUBESCO"
    bad = {
        "F_01_OISHI_S_2_EXCITED_1.wav": "unknown emotion code",
        "F01_OISHI_S_2_ANGRY_1.wav": "naming scheme",
        "M_01_RAKIB_S_2_ANGRY_1.wav": "unreadable audio",
        "M_01_RAKIB_S_2_SAD_1.wav": "empty audio",
    }
    write_wav(folder / "F_01_OISHI_S_2_EXCITED_1.wav", seconds=0.05)
    write_wav(folder / "F01_OISHI_S_2_ANGRY_1.wav", seconds=0.05)
    write_garbage(folder / "M_01_RAKIB_S_2_ANGRY_1.wav")
    write_empty_wav(folder / "M_01_RAKIB_S_2_SAD_1.wav")

    result = scan("subesco", tmp_path, on_error="skip")

    found = {str(p) for p in tmp_path.resolve().rglob("*.wav")}
    kept, skipped = set(result.manifest["path"]), set(result.skipped["path"])
    assert kept | skipped == found
    assert not kept & skipped
    assert_matches(result.manifest, fixture.expected_rows(), tmp_path)
    reasons = {Path(p).name: r for p, r in result.skipped.itertuples(index=False)}
    assert set(reasons) == set(bad)
    for name, reason in bad.items():
        assert reason in reasons[name]
