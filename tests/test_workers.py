import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A parent that hands a slow task to two loky workers through the sweep's own dispatch
# function, prints the workers' pids, then waits to be killed.
PARENT = """
import os, sys, time
from joblib import Parallel, delayed
from ssl_ser.classify.sweep.run import _in_worker

def slow(seconds):
    os.write(1, f"worker {os.getpid()}\\n".encode())  # one write: lines never interleave
    time.sleep(seconds)
    return 1

calls = (delayed(_in_worker)(i, os.getpid(), slow, 120) for i in range(2))
for _ in Parallel(n_jobs=2, return_as="generator_unordered")(calls):
    pass
"""

# The same with two DataLoader workers set up as extraction sets them up (init_worker).
LOADER_PARENT = """
import os, time
from torch.utils.data import DataLoader
from ssl_ser.extract.runner import init_worker

class Slow:
    def __len__(self):
        return 2
    def __getitem__(self, index):
        os.write(1, f"worker {os.getpid()}\\n".encode())  # one write: lines never interleave
        time.sleep(120)
        return index

for _ in DataLoader(Slow(), num_workers=2, worker_init_fn=init_worker, collate_fn=list):
    pass
"""


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("script", [PARENT, LOADER_PARENT], ids=["sweep", "extract-loader"])
def test_sweep_and_loader_workers_exit_when_their_parent_is_killed(script):
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    workers, other = [], []
    try:
        while len(workers) < 2:
            line = parent.stdout.readline()
            assert line, f"the parent ended before its workers started; it printed {other}"
            match = re.fullmatch(r"worker (\d+)\n", line)
            if match:
                workers.append(int(match[1]))
            else:
                other.append(line)  # e.g. a library's own output: not a worker's pid
        assert all(alive(pid) for pid in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers), "workers outlived their killed parent"
    finally:
        parent.kill()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
