"""A cache writer that test_crash.py runs in a subprocess; it can SIGKILL itself at a named point.

    python crash_writer.py PATH [--kill POINT --at K] [--sleep S] [--hold [--fork]]

It registers the first 36 of 60 ids, writes them in batches of 5 (some fail),
then registers all 60 (the manifest grew: the file is rebuilt) and writes the
rest. Batches follow a fixed shuffled order, like an extractor sorting by length.
Kill points (the K-th time the point is reached, counted from 1):
  copy     inside a rebuild, before rows are copied into the new file
  replace  after a rebuild's new file is complete, before it is renamed
  data     after a batch's features are written and synced, before the mask is
  sync     just before the K-th file sync (odd: after data, even: after mask)
  digest   after the digest attribute is changed in memory, before the sync
After each commit it prints "committed N" (rows complete); at the end "done".
With --hold it takes the lock, prints "ready" (and with --fork, the pid of a
forked child that sleeps too) and sleeps.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from helpers import DIM, KEY, LAYERS, batch, is_failing, reason_of, utt_ids  # noqa: E402

from ssl_ser import cache  # noqa: E402
from ssl_ser.cache import layout  # noqa: E402
from ssl_ser.cache.writer import CacheWriter  # noqa: E402

N_IDS = 60
N_FIRST = 36
BATCH = 5


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_kill(point: str, at: int) -> None:
    calls = {"n": 0}

    def reached() -> bool:
        calls["n"] += 1
        return calls["n"] == at

    def before(owner, name):
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            if reached():
                die()
            return original(*args, **kwargs)

        setattr(owner, name, wrapped)

    def after(owner, name):
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            result = original(*args, **kwargs)
            if reached():
                die()
            return result

        setattr(owner, name, wrapped)

    targets = {
        "copy": (before, layout, "_copy_rows"),
        "replace": (after, layout, "build"),
        "data": (before, CacheWriter, "_write_states"),
        "sync": (before, CacheWriter, "_sync"),
        "digest": (after, layout, "write_digest"),
    }
    how, owner, name = targets[point]
    how(owner, name)


def say(line: str) -> None:
    """Write one whole line in one system call, so lines of parent and child never interleave.

    ``print("ready", child)`` writes its parts one by one when Python runs unbuffered
    (PYTHONUNBUFFERED=1, as in CI), and a forked child's line could land in between.
    """
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


def hold(fork: bool) -> None:
    child = os.fork() if fork else -1
    if child == 0:
        say("child-ready")  # the at-fork hooks have run by now
        time.sleep(120)
        os._exit(0)
    say(f"ready {child}")
    time.sleep(120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--kill", default=None)
    parser.add_argument("--at", type=int, default=1)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--fork", action="store_true")
    args = parser.parse_args()
    if args.kill:
        install_kill(args.kill, args.at)
    ids = utt_ids(N_IDS)
    with cache.CacheWriter(args.path, KEY, LAYERS, DIM, flush_rows=1000) as writer:
        if args.hold:
            hold(args.fork)
        for part, digest in ((ids[:N_FIRST], "a" * 64), (ids, "b" * 64)):
            writer.add_ids(part)
            writer.set_manifest_digest(digest)
            todo = sorted(writer.missing(part), key=lambda u: zlib.crc32(u.encode()))
            for start in range(0, len(todo), BATCH):
                chunk = todo[start : start + BATCH]
                good = [u for u in chunk if not is_failing(u)]
                for utt_id in chunk:
                    if is_failing(utt_id):
                        writer.fail(utt_id, reason_of(utt_id))
                writer.write(good, batch(good))
                writer.flush()
                say(f"committed {writer.n_complete}")
                time.sleep(args.sleep)
    say("done")


if __name__ == "__main__":
    main()
