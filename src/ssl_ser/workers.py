"""Worker processes that never outlive the run that started them.

A sweep's joblib (loky) workers and extraction's DataLoader workers otherwise
keep running their task, holding hundreds of MB (or block on a full pipe), after
their parent was killed with SIGKILL: nothing tells them. :func:`exit_with_parent`
starts, once per worker process, a daemon thread that watches the parent's pid
and ends the worker as soon as it is gone.
Polling ``os.getppid()`` works for any process start method and any thread of
the parent, unlike ``PR_SET_PDEATHSIG``, which fires when the *thread* that
started the worker ends.
"""

from __future__ import annotations

import functools
import os
import threading
import time

PARENT_POLL_SECONDS = 0.5
# What an orphaned worker exits with (128 + SIGHUP, as a shell reports a hang-up).
ORPHAN_EXIT_CODE = 129


@functools.cache
def exit_with_parent(parent: int) -> None:
    """In a worker process: exit as soon as process `parent` is no longer this one's parent.

    Args:
        parent: pid of the process that started the worker (``os.getpid()`` there).
            Called in that process itself, it does nothing.
    """
    if parent == os.getpid():
        return
    watcher = threading.Thread(
        target=_watch, args=(parent,), name="ssl-ser-exit-with-parent", daemon=True
    )
    watcher.start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(ORPHAN_EXIT_CODE)
