"""Running a sweep's tasks on a Dask cluster (``ser classify --dask ADDRESS|local``).

Where the cells run:

- no scheduler address: a :class:`distributed.LocalCluster` on this machine,
  listening on the loopback interface only, without a dashboard, with ``jobs``
  worker processes of one thread each;
- an address (``tcp://10.0.0.5:8786``): the workers of that cluster, started by
  hand (``dask scheduler`` and ``dask worker ADDRESS --nthreads 1``), by
  dask-jobqueue on SLURM or PBS, or on Kubernetes. Every worker needs the same
  ssl-ser (and library) versions as the driver.

What travels: the driver reads the caches, then broadcasts the feature blocks
and the per-row arrays to every worker once (:meth:`distributed.Client.scatter`
with ``broadcast=True``); each task refers to them by future, so the features
are sent once per worker, never once per cell, and a worker that joins later
fetches them from a peer. Tasks return their scored cells and the driver stores
each one as it comes back (:func:`distributed.as_completed`), so only the driver
needs the cache files and the results folder: no shared filesystem is needed.

Same numbers, anywhere: a task fits and scores exactly as the local backend does
(:func:`~ssl_ser.classify.sweep.run.scored_cells`), under the same BLAS/torch thread
limit (``threads``, 1 by default). Thread limits are process-wide, so a worker
process runs one task at a time even when it has several threads.

Failures: a task whose worker is lost is rescheduled by the scheduler on another
worker (up to Dask's ``distributed.scheduler.allowed-failures``, 3 by default); a
task that raises is retried :data:`TASK_RETRIES` times. Cells already stored stay
stored, and a re-run skips them as locally.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from ssl_ser.classify.features import FeatureBlocks
from ssl_ser.classify.results import CellStore
from ssl_ser.classify.sweep.plan import SweepConfig, Task
from ssl_ser.classify.sweep.score import Rows, ScoredCell
from ssl_ser.scheduler import as_finished, cluster_client, loopback_cluster

if TYPE_CHECKING:
    from distributed import Client, Future

log = logging.getLogger(__name__)

TASK_RETRIES = 2  # a task that raises is tried this many more times (a lost worker: see above)
# one task at a time per worker process: BLAS and torch thread limits are process-wide
_ONE_TASK = threading.Lock()
# What fits and scores one task: (task, blocks, rows, config, threads) -> its scored cells.
Scorer = Callable[[Task, FeatureBlocks, Rows, SweepConfig, int], Iterable[ScoredCell]]


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[Client]:
    """A client of the cluster at `scheduler`, or of a new loopback LocalCluster of `workers`.

    A cluster started here is closed on exit; one given by address is left running.
    """
    local = functools.partial(loopback_cluster, workers)
    with _quiet_dask(), cluster_client(scheduler, "--scheduler", local) as client:
        yield client


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """Dask's INFO chatter (connections, shutdown) hidden while the sweep runs; warnings kept."""
    logger = logging.getLogger("distributed")
    before = logger.level
    logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(before)


def remote_score_task(
    task: Task, blocks: FeatureBlocks, rows: Rows, *, score: Scorer, config: SweepConfig
) -> list[ScoredCell]:
    """On a worker: fit and score one task (one at a time per process); nothing is written."""
    with _ONE_TASK:
        return list(score(task, blocks, rows, config, config.cell_threads))


@contextlib.contextmanager
def dask_outcomes(
    tasks: list[Task],
    blocks: FeatureBlocks,
    rows: Rows,
    config: SweepConfig,
    store: CellStore,
    score: Scorer,
) -> Iterator[Iterator[tuple[int, int]]]:
    """Submit every task to the cluster; ``(task index, cells stored)`` as each comes back.

    `score` fits and scores one task on a worker, as the local backend does
    (:func:`~ssl_ser.classify.sweep.run.scored_cells`).

    Unfinished tasks are cancelled when the caller stops early (an error, Ctrl-C).
    """
    remote = functools.partial(remote_score_task, score=score, config=config)
    with dask_client(config.scheduler, config.jobs) as client:
        _note_threads(client)
        with as_finished(
            client, remote, tasks, [blocks, rows], name="task", broadcast=True, retries=TASK_RETRIES
        ) as finished:
            yield _stored(finished, store)


def _stored(finished: Iterator[tuple[int, Future]], store: CellStore) -> Iterator[tuple[int, int]]:
    """Store each task's cells on the driver as it completes; ``(task index, cells)``."""
    for index, future in finished:
        scored: list[ScoredCell] = future.result()  # raises the task's error after retries
        for cell in scored:
            store.save(cell.cell, cell.rows, cell.predictions)
        future.release()
        yield index, len(scored)


def _note_threads(client: Client) -> None:
    """Log the cluster's size; say when workers have threads that will sit idle."""
    threads = client.nthreads()
    log.info("dask: %d worker(s) at %s", len(threads), client.scheduler.address)
    if any(n > 1 for n in threads.values()):
        log.warning(
            "dask workers with several threads run one sweep task at a time each (thread "
            "limits are per process); start workers with --nthreads 1 and more processes"
        )
