"""Connecting to a running Dask scheduler: checked address, bounded wait, one-line errors.

``ser classify --dask ADDRESS``, ``ser extract --dask ADDRESS``
and the experiment key ``classify.dask`` name a scheduler started by hand
(``dask scheduler``). Given a typo or a scheduler that is down, distributed's
``Client`` retries for its whole timeout and ends in a traceback. :func:`connect`
first checks the address form, then opens one TCP connection with a bounded
wait (a closed port answers at once, a silent host after :data:`CONNECT_SECONDS`)
and waits, as long again at most, for the greeting a Dask server sends first on
every connection (a port held by something else stays silent). Only then does
it start the client, in a thread given the same bound plus :data:`CLIENT_GRACE`
seconds, because the client itself can wait for ever on a peer that never answers.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from ssl_ser.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client

CONNECT_SECONDS = 10.0
CLIENT_GRACE = 5.0
TCP_SCHEMES = ("tcp", "tls")


def check_address(address: str, option: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a scheduler address; port is None for non-TCP schemes.

    Raises:
        ConfigError: not an address Dask can reach (naming the option and the value).
    """
    from distributed.comm import registry
    from distributed.comm.addressing import parse_address, parse_host_port

    form = "give tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786"
    try:
        scheme, location = parse_address(address.strip())
        if scheme not in registry.backends:
            raise ValueError(f"unknown scheme {scheme!r}")
        if scheme not in TCP_SCHEMES:
            return scheme, location, None
        host, port = parse_host_port(location)
    except ValueError as error:
        raise ConfigError(
            f"{option} {address!r} is not a Dask scheduler address ({error}); {form}"
        ) from None
    if not host or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{option} {address!r} is not a Dask scheduler address; {form}")
    return scheme, host, port


def connect(
    address: str, option: str, *, seconds: float = CONNECT_SECONDS, set_as_default: bool = False
) -> Client:
    """A client of the scheduler at `address`, or a one-line error within about `seconds`.

    Raises:
        ConfigError: a malformed address, or no scheduler answering in time
            (the message names the address, the wait and the reason).
    """
    scheme, host, port = check_address(address, option)
    try:
        if port is not None:
            _greeted(host, port, seconds, expect_greeting=scheme == "tcp")
        return _client_within(address.strip(), seconds, set_as_default)
    except (OSError, TimeoutError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error).splitlines()[0] or "no answer"
        raise ConfigError(
            f"no Dask scheduler answers at {address!r} within {seconds:g} s ({reason}); start "
            f"one with `dask scheduler`, or check {option}"
        ) from None


def _greeted(host: str, port: int, seconds: float, *, expect_greeting: bool) -> None:
    """Connect, and for plain TCP wait for the first byte of the server's handshake.

    Raises:
        OSError: refused, unreachable, or silent for `seconds` (TimeoutError).
    """
    with socket.create_connection((host, port), timeout=seconds) as sock:
        if not expect_greeting:
            return
        sock.settimeout(seconds)
        try:
            first = sock.recv(1)
        except TimeoutError:
            raise TimeoutError("the port is open but sends no Dask handshake") from None
        if not first:
            raise ConnectionError("the port closed the connection without a Dask handshake")


def _client_within(address: str, seconds: float, set_as_default: bool) -> Client:
    """``Client(address)`` made in a thread that is given up on after a bounded wait.

    Raises:
        TimeoutError: no client within ``seconds + CLIENT_GRACE``.
    """
    from distributed import Client

    made: dict[str, Any] = {}

    def make() -> None:
        try:
            made["client"] = Client(address, timeout=f"{seconds}s", set_as_default=set_as_default)
        except BaseException as error:  # handed to the caller's thread below
            made["error"] = error

    thread = threading.Thread(target=make, name="dask-connect", daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(seconds + CLIENT_GRACE)
    if thread.is_alive():
        waited = time.monotonic() - start
        raise TimeoutError(f"the client got no answer in {waited:.0f} s")
    if "error" in made:
        raise made["error"]
    return made["client"]
