"""Sweeps on a Dask cluster: the local backend's numbers, resumes, and a worker lost mid-sweep."""

import os
import signal
import threading
import time

import pandas as pd
import pytest

from ssl_ser.classify.results import CellStore
from ssl_ser.classify.splits import SplitOptions
from ssl_ser.classify.sweep import SweepConfig, run_sweep
from ssl_ser.errors import ConfigError, UnknownChoiceError

from .conftest import SMALL_LINEAR, SMALL_MLP

# everything a cell's numbers are made of; fit_seconds and the like may differ
COMPARED = ["cell_id", "test_corpus", "ua", "wa", "macro_f1", "ua_low", "ua_high", "confusion"]
OPTIONS = {
    "layers": ("0-3",),
    "split_options": SplitOptions(folds=3, seed=1),
    "bootstrap": 50,
    "params": {"mlp": SMALL_MLP, "linear": SMALL_LINEAR},
}


def _table(result) -> pd.DataFrame:
    keys = ["cell_id", "test_corpus"]
    return result.results.sort_values(keys)[[*COMPARED, "params"]].reset_index(drop=True)


def _predictions(folder) -> pd.DataFrame:
    table = pd.read_parquet(folder / "predictions.parquet")
    return table.sort_values(["cell_id", "utt_id"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def local_run(alpha, tmp_path_factory):
    """The local backend's sweep (one process), what every Dask run must reproduce."""
    table, features = alpha
    folder = tmp_path_factory.mktemp("local")
    config = SweepConfig(classifiers=("logreg", "mlp"), batched=False, **OPTIONS)
    return run_sweep([features], table, config, folder), folder


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on the loopback interface, no dashboard.

    Shared by the tests below (worker start-up and imports are most of their time);
    the test that kills a worker comes last.
    """
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as started:
        yield started


def test_backend_choices_are_checked_naming_the_value():
    with pytest.raises(UnknownChoiceError, match="unknown backend 'slurm'.*local, dask"):
        SweepConfig(backend="slurm")
    with pytest.raises(ConfigError, match="'tcp://h:8786'.* needs backend 'dask'"):
        SweepConfig(scheduler="tcp://h:8786")


def test_the_local_backend_does_not_import_dask():
    import subprocess
    import sys

    code = (
        "import sys, ssl_ser.cli.classify, ssl_ser.classify.sweep; "
        "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_a_local_cluster_gives_the_local_results_and_resumes_like_it(alpha, local_run, tmp_path):
    table, features = alpha
    local, local_folder = local_run
    config = SweepConfig(
        classifiers=("logreg", "mlp"), batched=False, backend="dask", jobs=2, **OPTIONS
    )
    remote = run_sweep([features], table, config, tmp_path)  # starts its own LocalCluster
    assert (remote.cells_run, remote.cells_skipped) == (local.cells_run, 0)
    pd.testing.assert_frame_equal(_table(remote), _table(local))
    pd.testing.assert_frame_equal(_predictions(tmp_path), _predictions(local_folder))
    again = run_sweep([features], table, config, tmp_path)
    assert (again.cells_run, again.cells_skipped) == (0, local.cells_run)


@pytest.mark.slow
def test_batched_and_weighted_tasks_match_the_local_backend(alpha, cluster, tmp_path):
    table, features = alpha
    options = {**OPTIONS, "classifiers": ("linear", "mlp-weighted")}
    local = run_sweep([features], table, SweepConfig(**options), tmp_path / "local")
    address = cluster.scheduler_address
    config = SweepConfig(**options, backend="dask", scheduler=address)
    remote = run_sweep([features], table, config, tmp_path / "dask")
    pd.testing.assert_frame_equal(_table(remote), _table(local))
    assert cluster.scheduler_address == address and len(cluster.workers) == 2  # left running


@pytest.mark.slow
def test_a_worker_killed_mid_sweep_costs_only_its_running_cells(
    alpha, local_run, cluster, tmp_path
):
    from distributed import Client

    table, features = alpha
    local, _ = local_run
    store = CellStore(tmp_path)
    killed: dict[str, int] = {}

    def kill_a_busy_worker() -> None:
        """Once two cells are stored, SIGKILL a worker process that is running a task."""
        with Client(cluster.scheduler_address, set_as_default=False) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                busy = [w for w, keys in client.processing().items() if keys]
                if len(list(store.cells.glob("*.json"))) >= 2 and busy:
                    pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                    killed["stored"] = len(list(store.cells.glob("*.json")))
                    os.kill(pid, signal.SIGKILL)
                    return
                time.sleep(0.01)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    config = SweepConfig(
        classifiers=("logreg", "mlp"),
        batched=False,
        backend="dask",
        scheduler=cluster.scheduler_address,
        **OPTIONS,
    )
    remote = run_sweep([features], table, config, tmp_path)
    killer.join(timeout=5)
    assert 2 <= killed["stored"] < local.cells_run  # killed mid-sweep
    assert (remote.cells_run, remote.cells_skipped) == (local.cells_run, 0)
    pd.testing.assert_frame_equal(_table(remote), _table(local))
