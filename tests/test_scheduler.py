"""A Dask scheduler address that is malformed, closed or silent: one line after a bounded wait."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from ssl_ser.errors import ConfigError
from ssl_ser.scheduler import CONNECT_SECONDS, check_address, connect


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("address", "detail"),
    [
        ("not an address", "(missing port number in address 'not an address')"),
        ("http://host:8786", "(unknown scheme 'http')"),
        ("tcp://host:99999", ""),
        ("tcp://:8786", ""),
    ],
)
def test_a_malformed_address_is_named(address: str, detail: str) -> None:
    expected = f"--scheduler {address!r} is not a Dask scheduler address {detail}".replace(
        "address  ", "address "
    ).rstrip()
    with pytest.raises(ConfigError) as error:
        check_address(address, "--scheduler")
    message = str(error.value)
    assert (
        message.startswith(expected.rstrip(" "))
        if detail
        else message.startswith(f"--scheduler {address!r} is not a Dask scheduler address; ")
    )
    assert message.endswith("give tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786")


def test_a_closed_port_is_one_line_at_once(closed_port: int) -> None:
    address = f"tcp://127.0.0.1:{closed_port}"
    start = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        connect(address, "--scheduler")
    assert time.perf_counter() - start < 3.0
    assert str(error.value) == (
        f"no Dask scheduler answers at {address!r} within {CONNECT_SECONDS:g} s (Connection "
        "refused); start one with `dask scheduler`, or check --scheduler"
    )


def test_a_silent_listener_is_one_line_after_the_bounded_wait(silent_port: int) -> None:
    address = f"tcp://127.0.0.1:{silent_port}"
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"^no Dask scheduler answers at '{address}' within 1 s"):
        connect(address, "--dask", seconds=1.0)
    assert time.perf_counter() - start < 8.0


def test_classify_and_extract_connect_through_the_check(closed_port: int) -> None:
    from ssl_ser.classify.sweep.cluster import dask_client
    from ssl_ser.extract.cluster import _client

    refused = r"^--scheduler 'nowhere' is not a Dask scheduler"
    with pytest.raises(ConfigError, match=refused), dask_client("nowhere", 1):
        pass
    address = f"127.0.0.1:{closed_port}"
    silent = rf"^no Dask scheduler answers at '{address}' within 10 s"
    with pytest.raises(ConfigError, match=silent), _client(address, "cpu", processes=False):
        pass


def test_a_malformed_address_is_refused_before_any_work(tmp_path) -> None:
    from click.testing import CliRunner

    from ssl_ser.classify.sweep import SweepConfig
    from ssl_ser.cli.main import cli

    with pytest.raises(ConfigError, match=r"^--scheduler 'host-without-port' is not a Dask"):
        SweepConfig(backend="dask", scheduler="host-without-port")
    manifest = tmp_path / "never-read.csv"
    manifest.write_text("not a manifest\n")
    arguments = ["extract", str(manifest), "--model", "mfcc", "--dask", "http://x:1"]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 1
    assert result.output == (
        "error: --dask 'http://x:1' is not a Dask scheduler address (unknown scheme 'http'); "
        "give tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786\n"
    )
