"""Dask for extraction and sweeps: connecting, loopback clusters, and running tasks.

:func:`cluster_client` gives a client of a scheduler started elsewhere or of a
cluster on this machine (:func:`loopback_cluster`); :func:`as_finished` submits
one function over a list of tasks and hands back each result as it finishes.
``ser extract --dask`` (:mod:`ssl_ser.extract.cluster`) and ``ser classify
--backend dask`` (:mod:`ssl_ser.classify.sweep.cluster`) both run through them.

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

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ssl_ser.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster

CONNECT_SECONDS = 10.0
CLIENT_GRACE = 5.0
TCP_SCHEMES = ("tcp", "tls")
LOOPBACK = "127.0.0.1"


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
    """Connect, and for plain TCP wait for the server's first byte (OSError if none in time)."""
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
    """``Client(address)`` made in a thread, given up on (TimeoutError) after a bounded wait."""
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


@contextlib.contextmanager
def cluster_client(
    address: str | None,
    option: str,
    local: Callable[[], Any],
    *,
    set_as_default: bool = False,
) -> Iterator[Client]:
    """A client of the scheduler at `address` (left running), else of the cluster `local()` starts.

    A cluster started here is closed on exit.

    Raises:
        ConfigError: see :func:`connect` (`option` names the address in messages).
    """
    if address:
        with connect(address, option, set_as_default=set_as_default) as client:
            yield client
        return
    from distributed import Client

    with local() as cluster, Client(cluster, set_as_default=set_as_default) as client:
        yield client


def loopback_cluster(workers: int = 1, *, processes: bool = True, **options: Any) -> LocalCluster:
    """A LocalCluster of `workers` one-thread workers, on the loopback interface, no dashboard.

    Workers in threads (`processes` False) talk in-process and take no host.
    """
    from distributed import LocalCluster

    if processes:
        options["host"] = LOOPBACK
    return LocalCluster(
        n_workers=max(1, workers),
        threads_per_worker=1,
        processes=processes,
        dashboard_address=None,
        **options,
    )


@contextlib.contextmanager
def as_finished(
    client: Client,
    function: Callable[..., Any],
    tasks: Sequence[Any],
    shared: Sequence[Any],
    *,
    name: str,
    broadcast: bool = False,
    **submit: Any,
) -> Iterator[Iterator[tuple[int, Future]]]:
    """Run ``function(task, *shared)`` for each task; ``(index, future)`` as each one ends.

    `shared` is sent once (to every worker with `broadcast`), never once per task;
    tasks listed first start first; `submit` goes to every ``client.submit``
    (``resources``, ``retries``). A future's ``result()`` raises the task's error.
    Unfinished tasks are cancelled when the caller stops early (an error, Ctrl-C).
    """
    from distributed import as_completed

    scattered = client.scatter(list(shared), broadcast=broadcast, hash=False) if shared else []
    run = uuid.uuid4().hex[:8]
    futures = {
        client.submit(
            function,
            task,
            *scattered,
            key=f"ssl-ser-{name}-{run}-{index}",
            priority=len(tasks) - index,
            pure=False,
            **submit,
        ): index
        for index, task in enumerate(tasks)
    }
    try:
        finished = as_completed(list(futures), loop=client.loop)
        yield ((futures.pop(future), future) for future in finished)
    finally:
        client.cancel(list(futures), force=True)
