"""`ser predict --window/--hop`: positive, finite seconds, refused in one line before loading."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError
from ssl_ser.predict.predictor import _check_window


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--window", "inf"], "--window inf must be a positive, finite number of seconds"),
        (["--window", "nan"], "--window nan must be a positive, finite number of seconds"),
        (["--window", "0"], "--window 0.0 must be a positive, finite number of seconds"),
        (
            ["--window", "2", "--hop", "inf"],
            "--hop inf must be a positive, finite number of seconds",
        ),
        (
            ["--window", "2", "--hop", "-1"],
            "--hop -1.0 must be a positive, finite number of seconds",
        ),
    ],
)
def test_a_window_that_is_not_finite_seconds_is_one_line(tmp_path, options, message) -> None:
    # the folder is no model: the window is refused before the bundle is even read
    result = CliRunner().invoke(cli, ["predict", str(tmp_path), "x.wav", *options])
    assert result.exit_code == 1
    assert result.output == f"error: {message}\n"


def test_the_library_refuses_an_infinite_window_too() -> None:
    with pytest.raises(ConfigError, match=r"^--window inf must be a positive, finite number"):
        _check_window(float("inf"), None)
    assert _check_window(2.0, None) == 2.0 and _check_window(2.0, 0.5) == 0.5
