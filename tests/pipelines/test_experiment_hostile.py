"""Hostile experiment files are refused fast, in one line: alias bombs, deep nesting,
repeated keys, huge files and seeds out of range."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError
from ssl_ser.pipelines import _yaml
from ssl_ser.pipelines.experiment import MAX_FILE_BYTES, load_experiment

MINIMAL = "name: t\nmodels: [mfcc]\ncorpora: {emodb: /data/emodb}\n"
BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"{chr(c)}: &{chr(c)} [{','.join([f'*{chr(c - 1)}'] * 9)}]\n" for c in range(98, 106))
    + MINIMAL
)


def _write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_an_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    path = _write(tmp_path, BILLION_LAUGHS)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    assert time.perf_counter() - start < 2.0
    assert str(error.value).startswith(
        f"experiment file {path} refused: expands to more than 100,000 values through its "
        "aliases (&anchor / *alias, at line "
    )
    assert "alias bomb" in str(error.value)


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    text = "name: t\nmodels: &m [mfcc]\nclassifiers: [logreg]\ncorpora: {emodb: /x}\n"
    extra = "x_models: *m\n"
    assert _yaml.load(text + extra)["x_models"] == ["mfcc"]
    assert load_experiment(_write(tmp_path, text)).models == ("mfcc",)


@pytest.mark.parametrize(
    "nested",
    [
        "deep: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "deep: " + "{a: " * 10_000 + "1" + "}" * 10_000,
    ],
)
def test_ten_thousand_levels_are_refused_without_recursion_error(
    tmp_path: Path, nested: str
) -> None:
    path = _write(tmp_path, MINIMAL + nested)
    with pytest.raises(
        ConfigError,
        match=rf"^experiment file {path} refused: nests deeper than "
        r"64 levels \(line 4\)$",
    ):
        load_experiment(path)


def test_deep_nesting_through_aliases_is_refused(tmp_path: Path) -> None:
    levels = "".join(f"l{i}: &l{i} [{'[' * 40}*l{i - 1}{']' * 40}]\n" for i in range(1, 4))
    path = _write(tmp_path, "l0: &l0 [1]\n" + levels + MINIMAL)
    with pytest.raises(ConfigError, match="nests deeper than 64 levels once aliases are expanded"):
        load_experiment(path)


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "loop: &x [1, *x]\n")
    with pytest.raises(
        ConfigError, match=r"refused: an alias refers to the value that contains it"
    ):
        load_experiment(path)


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        (MINIMAL + "models: [egemaps]\n", "'models'", "lines 2 and 4"),
        (MINIMAL + "split:\n  folds: 3\n  folds: 5\n", "'folds'", "lines 5 and 6"),
    ],
)
def test_a_repeated_key_is_refused_naming_it(
    tmp_path: Path, text: str, key: str, lines: str
) -> None:
    assert yaml.safe_load(text)  # PyYAML's own loader takes the last value silently
    path = _write(tmp_path, text)
    with pytest.raises(
        ConfigError,
        match=rf"^experiment file {path} refused: key {key} is given "
        rf"twice in one mapping \({lines}\); keep one$",
    ):
        load_experiment(path)


def test_merge_keys_still_work() -> None:
    data = _yaml.load("base: &b {folds: 3, method: loso}\nsplit:\n  <<: *b\n  folds: 5\n")
    assert data["split"] == {"folds": 5, "method": "loso"}


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path, MINIMAL + "#" * MAX_FILE_BYTES + "\n", name=f"exp{suffix}")
    with pytest.raises(
        ConfigError,
        match=rf"^experiment file {path} is 1,000,0\d\d bytes; an "
        r"experiment file may hold at most 1,000,000$",
    ):
        load_experiment(path)


def test_deep_toml_is_one_line(tmp_path: Path) -> None:
    text = 'name = "t"\nmodels = ["mfcc"]\ndeep = ' + "[" * 10_000 + "]" * 10_000 + "\n"
    path = _write(tmp_path, text, name="exp.toml")
    with pytest.raises(ConfigError, match=rf"^experiment file {path} refused: it nests too deep$"):
        load_experiment(path)


@pytest.mark.parametrize("seed", [2**32, -1])
def test_seeds_out_of_range_in_a_file_are_named(tmp_path: Path, seed: int) -> None:
    path = _write(tmp_path, MINIMAL + f"seeds: [0, {seed}]\n")
    with pytest.raises(
        ConfigError,
        match=rf"^'seeds.1' in {path} is {seed}, out of range; give a "
        r"whole number from 0 to 4294967295$",
    ):
        load_experiment(path)


def test_the_largest_seed_is_taken(tmp_path: Path) -> None:
    assert load_experiment(_write(tmp_path, MINIMAL + "seeds: [4294967295]\n")).seeds == (
        2**32 - 1,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["classify", "--cache", "x", "--manifest", "m.csv", "--output", "o"],
        ["finetune", "--manifest", "m.csv", "--model", "m", "--output", "o"],
        ["report", "r"],
        ["compare", "r"],
        ["export", "--cache", "x", "--manifest", "m.csv", "--output", "o"],
        ["probe", "--corpus", "emodb=/x", "--model", "mfcc"],
    ],
)
def test_a_seed_beyond_2_32_is_one_line_on_every_command(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the cache and manifest exist: only the seed is wrong
    for name in ("x", "m.csv"):
        (tmp_path / name).touch()
    result = CliRunner().invoke(cli, [*args, "--seed", str(2**32)])
    assert result.exit_code == 1, result.output
    assert result.output == (
        "error: --seed is 4294967296, out of range; give a whole number from 0 to 4294967295\n"
    )
